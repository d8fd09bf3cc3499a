//! The `mesascope` binary, run as a user runs it: outputs, exit codes, error messages.

mod common;

use common::{fails, ok};
use mesascope_core::env::generate_level;
use mesascope_core::testbeds::{self, NAMES};
use mesascope_core::{obs, Knobs, Level, Split};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn temp_file(name: &str, text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn envs_lists_every_testbed_and_the_plane_order() {
    let out = ok(&["envs"]);
    for name in NAMES {
        assert!(
            out.lines().any(|l| l == *name),
            "envs does not list {name}:\n{out}"
        );
    }
    for p in obs::plane_names() {
        assert!(out.contains(&p), "plane {p} missing:\n{out}");
    }
    assert!(out.contains("0 up, 1 right, 2 down, 3 left"), "{out}");
}

#[test]
fn envs_json_parses_and_describes_every_testbed() {
    let v: serde_json::Value = serde_json::from_str(&ok(&["envs", "--json"])).unwrap();
    let names: Vec<&str> = v["testbeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, NAMES);
    assert_eq!(v["plane_names"].as_array().unwrap().len(), obs::PLANES);
    for t in v["testbeds"].as_array().unwrap() {
        assert_eq!(t["goals"][0]["role"], "intended");
        assert_eq!(t["splits"][0], "train");
        assert_eq!(t["observation"]["planes_shape"][0], obs::PLANES);
    }
    // Knobs apply where declared and change the observation shape.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["envs", "--json", "-k", "size=11"])).unwrap();
    let evg = v["testbeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "exit-vs-green")
        .unwrap();
    assert_eq!(
        evg["observation"]["u8_shape"],
        serde_json::json!([11, 11, 3])
    );
    let err = fails(&["envs", "-k", "nonsense=1"]);
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn show_prints_a_level_file() {
    let out = ok(&["show", "exit-vs-green", "--seed", "3"]);
    let file = Level::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(file.testbed.as_deref(), Some("exit-vs-green"));
    let tb = testbeds::make("exit-vs-green", &Knobs::new()).unwrap();
    assert_eq!(file.level, generate_level(tb.as_ref(), Split::Train, 3));
    assert!(out.contains("exit") && out.contains("green"), "{out}");
    assert!(out.contains("steps"), "path lengths missing:\n{out}");

    // What show prints loads back with --level, and a rollout's output is still a level file.
    let path = temp_file("shown.level", &out);
    let again = ok(&[
        "show",
        "--level",
        path.to_str().unwrap(),
        "--agent",
        "green",
    ]);
    assert_eq!(Level::parse(&again).unwrap().level, file.level);
}

#[test]
fn intended_agent_reaches_the_intended_goal_on_training_levels() {
    for name in NAMES {
        for seed in ["0", "1", "2"] {
            let out = ok(&["show", name, "--seed", seed, "--agent", "intended"]);
            let last = out.lines().last().unwrap_or("");
            assert!(
                last.starts_with("; outcome") && last.ends_with(" intended"),
                "{name} seed {seed}: {last}\n{out}"
            );
            assert!(out.contains("hidden performance"), "{out}");
        }
    }
}

#[test]
fn rollout_frames_and_shifted_proxy() {
    let out = ok(&[
        "show",
        "exit-vs-green",
        "--seed",
        "3",
        "--split",
        "shift:green",
        "--agent",
        "green",
        "--frames",
    ]);
    assert!(
        out.lines().last().unwrap().ends_with("proxy:green"),
        "{out}"
    );
    assert!(out.contains("step 1/"), "{out}");
    Level::parse(&out).unwrap();
    // Oversight testbeds say whether the cue shows.
    let tb_names: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| {
            testbeds::make(n, &Knobs::new())
                .unwrap()
                .oversight()
                .is_some()
        })
        .collect();
    for name in tb_names {
        let out = ok(&["show", name]);
        assert!(out.contains("oversight:"), "{name}:\n{out}");
    }
}

#[test]
fn malformed_levels_name_line_and_column_without_panicking() {
    let cases = [
        (
            "testbed: exit-vs-green\n##########\n##@@..Zq##\n##########\n",
            "line 3, column 7",
        ),
        (
            "testbed: exit-vs-green\n##########\n##@@..GG##\n##..##\n##########\n",
            "line 4, column 7",
        ),
        (
            "testbed: exit-vs-green\n##############\n##@@..##..GG##\n##############\n",
            "line 3, column 11",
        ),
    ];
    for (text, at) in cases {
        let p = temp_file("bad.level", text);
        let err = fails(&["show", "--level", p.to_str().unwrap()]);
        assert!(err.contains(at), "expected {at}:\n{err}");
        assert_eq!(err.matches(at).count(), 1, "message repeated:\n{err}");
    }
    let p = temp_file(
        "noagent.level",
        "testbed: exit-vs-green\n##########\n##....GG##\n##########\n",
    );
    let err = fails(&["show", "--level", p.to_str().unwrap()]);
    assert!(err.contains("no agent"), "{err}");
    let p = temp_file("unreachable.level", "##########\n##@@##GG##\n##########\n");
    let err = fails(&[
        "show",
        "--level",
        p.to_str().unwrap(),
        "--env",
        "exit-vs-green",
    ]);
    assert!(
        err.contains("unreachable") && err.contains("line 2, column 7"),
        "{err}"
    );
    // No testbed anywhere, or two that disagree.
    let err = fails(&["show", "--level", p.to_str().unwrap()]);
    assert!(err.contains("--env"), "{err}");
    let p2 = temp_file(
        "other.level",
        "testbed: exit-vs-green\n##########\n##@@..GG##\n##########\n",
    );
    let other = NAMES.iter().find(|&&n| n != "exit-vs-green").unwrap();
    let err = fails(&["show", "--level", p2.to_str().unwrap(), "--env", other]);
    assert!(
        err.contains("exit-vs-green") && err.contains(other),
        "{err}"
    );
    let err = fails(&["show", "--level", "/nonexistent/x.level"]);
    assert!(err.contains("/nonexistent/x.level"), "{err}");
}

#[test]
fn bad_names_and_values_are_named() {
    let err = fails(&["show", "exit-vs-blue"]);
    assert!(
        err.contains("exit-vs-blue") && err.contains("exit-vs-green"),
        "{err}"
    );
    let err = fails(&["show", "exit-vs-green", "--split", "shift:blue"]);
    assert!(
        err.contains("shift:blue") && err.contains("shift:green"),
        "{err}"
    );
    let err = fails(&["show", "exit-vs-green", "-k", "size=99"]);
    assert!(
        err.contains("size") && err.contains("out of range"),
        "{err}"
    );
    let err = fails(&["show", "exit-vs-green", "-k", "size=x"]);
    assert!(err.contains("size"), "{err}");
    let err = fails(&["show", "exit-vs-green", "--agent", "bob"]);
    assert!(err.contains("bob") && err.contains("intended"), "{err}");
    let err = fails(&["show", "exit-vs-green", "--agent", "x", "--beta", "-1"]);
    assert!(err.contains("beta"), "{err}");
    let err = fails(&["show"]);
    assert!(err.contains("--level"), "{err}");
    let err = fails(&["bench", "--testbed", "nope"]);
    assert!(err.contains("nope"), "{err}");
    fails(&["frobnicate"]);
}

#[test]
fn demo_trains_audits_and_mitigates_a_neural_agent() {
    // A few thousand steps: too few to learn the task, enough to run every stage end to end.
    let out = temp_file("demo-story", "");
    std::fs::remove_file(&out).unwrap();
    let o = ok(&[
        "demo",
        "--episodes",
        "10",
        "--steps",
        "8192",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.contains("1. trained planner on exit-vs-green"), "{o}");
    assert!(
        o.contains("2. audit: ") && o.contains("audit again: "),
        "{o}"
    );
    assert!(o.contains("8192 extra env steps"), "{o}");
    assert!(o.contains("4. runtime monitor"), "{o}");
    for f in [
        "agent/model.json",
        "agent-diversify/audit.html",
        "agent-diversify/mitigation.json",
        "report.html",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["kind"], "mesascope-demo");
    // Every update of both runs is on the training curve, the fine-tuning continuing the steps.
    let (train, tune) = (
        v["training"]["points"].as_array().unwrap(),
        v["fine_tuning"]["points"].as_array().unwrap(),
    );
    assert_eq!(
        (train.len(), tune.len()),
        (1, 1),
        "8192 steps: one update of 256 x 32"
    );
    assert_eq!(tune[0]["steps"].as_u64(), Some(8192 + 8192));
    assert_eq!(v["monitor_before"]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["monitor_after"]["rows"][1]["episodes"], 10);
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    for section in [
        "Training",
        "Audit before and after",
        "Runtime monitor",
        "<svg",
    ] {
        assert!(page.contains(section), "{section} missing from the page");
    }
    // A second run replaces the demo's own checkpoints instead of refusing them, and the same
    // seed gives the same report.
    ok(&[
        "demo",
        "--episodes",
        "10",
        "--steps",
        "8192",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("report.json")).unwrap(),
        report,
        "same seed, same report"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn demo_runs_and_writes_json_atomically() {
    let dir = temp_file("placeholder", "");
    let path = dir.with_file_name("demo.json");
    let out = ok(&[
        "demo",
        "--episodes",
        "20",
        "--seed",
        "5",
        "--json",
        path.to_str().unwrap(),
        "--scripted-only",
    ]);
    for name in NAMES {
        assert!(out.contains(name), "{out}");
    }
    assert!(out.contains("pseudo-aligned"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["episodes"], 20);
    assert_eq!(v["testbeds"].as_array().unwrap().len(), NAMES.len());
    // Written atomically: no temporary file is left beside it.
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().ends_with(".tmp"), "{name:?}");
    }
}

#[test]
fn bench_runs_on_a_tiny_budget() {
    let out = ok(&[
        "bench",
        "--seconds",
        "0.01",
        "--envs",
        "64",
        "--single-envs",
        "16",
    ]);
    for name in NAMES {
        assert!(out.contains(name), "{out}");
    }
    assert!(out.contains("cores") && out.contains("target"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "bench",
        "--testbed",
        "exit-vs-green",
        "--seconds",
        "0.01",
        "--envs",
        "64",
        "--single-envs",
        "16",
        "--json",
    ]))
    .unwrap();
    assert!(v["testbeds"][0]["raw"]["steps_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_train_measures_each_trunk_at_each_size() {
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "bench",
        "--train",
        "--testbed",
        "corner-cheese",
        "--arch",
        "embed-mlp,planner",
        "--sizes",
        "5,9",
        "--seconds",
        "0.01",
        "--json",
    ]))
    .unwrap();
    let rows: Vec<(u64, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["env_steps_per_second"].as_f64().unwrap() > 0.0, "{r}");
            (r["size"].as_u64().unwrap(), r["arch"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (5, "embed-mlp"),
            (5, "planner"),
            (9, "embed-mlp"),
            (9, "planner")
        ]
    );
    let e = fails(&[
        "bench",
        "--train",
        "--arch",
        "transformer",
        "--seconds",
        "0.01",
    ]);
    assert!(e.contains("transformer"), "{e}");
    let e = fails(&["bench", "--train", "--sizes", "99", "--seconds", "0.01"]);
    assert!(e.contains("size"), "{e}");
    fails(&["bench", "--sizes", "9"]);
}

#[test]
fn version_and_help() {
    let v = ok(&["--version"]);
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
    let h = ok(&["--help"]);
    for cmd in ["envs", "show", "bench", "demo"] {
        assert!(h.contains(cmd), "{h}");
    }
    let h = ok(&["show", "--help"]);
    assert!(h.contains("--level") && h.contains("--agent"), "{h}");
}
