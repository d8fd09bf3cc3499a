//! `mesascope mitigate` as a user runs it, on a tiny checkpoint: audits before and after, the
//! fine-tuned checkpoint and the reports it writes, its exit code, and its bad inputs.

mod common;

use common::{fails, mesascope, text, tiny_train};
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("mitigate", name)
}

/// A tiny exit-vs-green checkpoint (5x5 mazes, 2,048 steps).
fn tiny_checkpoint(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    tiny_train(dir.to_str().unwrap(), &[]);
    dir
}

#[test]
fn diversify_fine_tunes_and_audits_before_and_after() {
    let source = tiny_checkpoint("source");
    let out = temp_dir("out");
    let o = mesascope(&[
        "mitigate",
        source.to_str().unwrap(),
        "--env",
        "exit-vs-green",
        "--steps",
        "1024",
        "--episodes",
        "20",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    let code = o.status.code().unwrap();
    assert!(
        [0, 10, 11, 13].contains(&code),
        "exit {code}\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1024 extra env steps"), "{stdout}");
    assert!(stdout.contains("verdict before:") && stdout.contains("verdict after:"));
    assert!(stdout.contains("shift:green"), "{stdout}");
    for f in [
        "model.safetensors",
        "model.json",
        "metrics.jsonl",
        "audit-before.json",
        "audit.json",
        "audit.html",
        "mitigation.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mitigation.json")).unwrap())
            .unwrap();
    assert_eq!(summary["extra_steps"], 1024);
    assert_eq!(summary["source_steps"], 2048);
    assert_eq!(summary["decorrelate"], 0.3);
    assert_eq!(summary["after"]["exit_code"], code);
    // The fine-tuned checkpoint was trained on the decorrelated distribution from the source's
    // weights: its metadata says so.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    let knobs = meta["knobs"].as_array().unwrap();
    assert!(knobs.iter().any(|k| k[0] == "decorrelate" && k[1] == 0.3));
    // The output folder now holds a checkpoint: a second run into it is refused.
    let e = fails(&[
        "mitigate",
        source.to_str().unwrap(),
        "--env",
        "exit-vs-green",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("already holds a checkpoint"), "{e}");
    let _ = std::fs::remove_dir_all(&source);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn mitigate_bad_input_exits_2() {
    let source = tiny_checkpoint("bad");
    let s = source.to_str().unwrap();
    let e = fails(&["mitigate", s, "--env", "corner-cheese"]);
    assert!(e.contains("was trained on exit-vs-green"), "{e}");
    let e = fails(&[
        "mitigate",
        s,
        "--env",
        "exit-vs-green",
        "--decorrelate",
        "-0.1",
    ]);
    assert!(e.contains("--decorrelate"), "{e}");
    fails(&[
        "mitigate",
        s,
        "--env",
        "exit-vs-green",
        "--decorrelate",
        "1.5",
    ]);
    let e = fails(&["mitigate", s, "--env", "exit-vs-green", "--method", "pray"]);
    assert!(e.contains("diversify"), "{e}");
    fails(&["mitigate", s, "--env", "exit-vs-green", "--steps", "0"]);
    fails(&["mitigate", s, "--env", "exit-vs-green", "--episodes", "0"]);
    let e = fails(&["mitigate", "/no/such/checkpoint", "--env", "exit-vs-green"]);
    assert!(e.contains("/no/such/checkpoint"), "{e}");
    let _ = std::fs::remove_dir_all(&source);
}

#[test]
fn sweep_fine_tunes_once_per_share_and_seed_and_plots_proxy_pursuit() {
    let source = tiny_checkpoint("sweep-source");
    let out = temp_dir("sweep");
    let args = [
        "mitigate",
        source.to_str().unwrap(),
        "--env",
        "exit-vs-green",
        "--sweep",
        "--shares",
        "0,0.5",
        "--seeds",
        "2",
        "--steps",
        "512",
        "--episodes",
        "20",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = mesascope(&args);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", text(&o.stderr));
    assert!(stdout.contains("50%"), "{stdout}");
    // One grid trial per share and seed: the table's rows, each with the audit after.
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let keys: Vec<(f64, u64)> = runs
        .iter()
        .map(|r| (r["share"].as_f64().unwrap(), r["seed"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, vec![(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["method"], "diversify");
        assert_eq!(r["extra_steps"], 512);
        assert!(r["label_before"].is_string(), "{r}");
        let (i_, p) = (
            r["shift:green/intended"].as_f64().unwrap(),
            r["shift:green/proxy:green"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&(i_ + p)), "{r}");
        let dir = out.join(format!("trials/trial-{i:04}/mitigated"));
        assert!(
            dir.join("model.json").is_file(),
            "{} missing",
            dir.display()
        );
    }
    let page = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(page.contains("<polyline") && page.contains("proxy, seed 1"));
    // The sweep is not overwritten.
    let e = text(&mesascope(&args).stderr);
    assert!(e.contains("already holds a sweep"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&source);
}

#[test]
fn sweep_bad_input_exits_2() {
    let source = tiny_checkpoint("sweep-bad");
    let s = source.to_str().unwrap();
    let e = fails(&[
        "mitigate",
        s,
        "--env",
        "exit-vs-green",
        "--sweep",
        "--shares",
        "0,1.5",
    ]);
    assert!(e.contains("--shares"), "{e}");
    fails(&[
        "mitigate",
        s,
        "--env",
        "exit-vs-green",
        "--sweep",
        "--decorrelate",
        "0.2",
    ]);
    fails(&["mitigate", s, "--env", "exit-vs-green", "--shares", "0.1"]);
    fails(&["mitigate", s, "--env", "corner-cheese", "--sweep"]);
    let _ = std::fs::remove_dir_all(&source);
}

#[test]
fn adversarial_fine_tunes_on_a_regret_curriculum() {
    let source = tiny_checkpoint("adv-source");
    let out = temp_dir("adv-out");
    let o = mesascope(&[
        "mitigate",
        source.to_str().unwrap(),
        "--env",
        "exit-vs-green",
        "--method",
        "adversarial",
        "--steps",
        "2048",
        "--episodes",
        "20",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(
        [0, 10, 11, 13].contains(&o.status.code().unwrap()),
        "{stdout}\n{}",
        text(&o.stderr)
    );
    assert!(
        stdout.contains("adversarial (decorrelate 0.05)"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mitigation.json")).unwrap())
            .unwrap();
    assert_eq!(summary["method"], "adversarial");
    assert_eq!(summary["decorrelate"], 0.05);
    let rounds = summary["curriculum"][1].as_array().unwrap();
    assert!(
        !rounds.is_empty(),
        "the curriculum refreshed at the first update"
    );
    assert_eq!(rounds[0]["update"], 0);
    assert!(out.join("audit.html").is_file());
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&source);
}
