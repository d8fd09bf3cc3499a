//! `mesascope sweep` and `mesascope audit-many` as a user runs them: a small grid trained and
//! audited into one table and figure, resumed after an interruption, refused when it is bad;
//! every checkpoint of a folder audited into one verdict table.

mod common;

use common::{fails, ok, text, tiny_train};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("sweep", name)
}

/// 2 shares on 5x5 levels: one PPO update of 8,192 steps and a 20-episode audit per trial.
const GRID: &str = "testbed = \"exit-vs-green\"\nseeds = [0]\nshares = [0.0, 0.5]\nsteps = 8192\nepisodes = 20\n\n[knobs]\nsize = 5\n";

fn write_grid(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn rows(out: &Path) -> Vec<serde_json::Map<String, Value>> {
    serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap()
}

/// A row without what differs between runs of the same cell.
fn figures(r: &serde_json::Map<String, Value>) -> Vec<(String, Value)> {
    r.iter()
        .filter(|(k, _)| {
            !["seconds", "restarts", "resumed_from", "checkpoint"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn a_grid_runs_every_cell_into_one_table_and_resumes_only_what_is_unfinished() {
    let dir = temp_dir("grid");
    let grid = write_grid(&dir, "grid.toml", GRID);
    let out = dir.join("out");
    let args = [
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let stdout = ok(&args);
    assert!(stdout.contains("2 trials, 2 run now"), "{stdout}");
    let first = rows(&out);
    assert_eq!(first.len(), 2);
    for (r, share) in first.iter().zip([0.0, 0.5]) {
        assert_eq!(r["testbed"], "exit-vs-green");
        assert_eq!(r["size"], 5);
        assert_eq!(r["share"].as_f64(), Some(share));
        assert_eq!(r["method"], "none");
        assert_eq!(r["trained_steps"], 8192);
        assert!(
            r["verdict"].as_str().is_some_and(|v| !v.is_empty()),
            "{r:?}"
        );
        let proxy = r["shift:green/proxy:green"].as_f64().unwrap();
        let (lo, hi) = (
            r["shift:green/proxy:green_lo"].as_f64().unwrap(),
            r["shift:green/proxy:green_hi"].as_f64().unwrap(),
        );
        assert!(
            lo <= proxy && proxy <= hi && (0.0..=1.0).contains(&proxy),
            "{r:?}"
        );
        // The trial's own audit is the row's.
        let ck = Path::new(r["checkpoint"].as_str().unwrap());
        assert!(ck.join("model.safetensors").is_file());
        let trial = ck.parent().unwrap();
        let audit: Value =
            serde_json::from_str(&std::fs::read_to_string(trial.join("audit.json")).unwrap())
                .unwrap();
        assert_eq!(audit["verdict"]["exit_code"], r["exit_code"]);
    }
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("testbed,size,seed,share,method,"),
        "{header}"
    );
    assert!(header.contains("shift:green/proxy:green_lo"), "{header}");
    assert_eq!(csv.lines().count(), 3);
    let page = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(
        page.contains("<polyline") && page.contains("none: proxy, seed 0"),
        "page"
    );

    // The folder holds a sweep: refused without --resume, and --resume of another grid too.
    let e = fails(&args);
    assert!(e.contains("already holds a sweep"), "{e}");
    let other = write_grid(
        &dir,
        "other.toml",
        &GRID.replace("[0.0, 0.5]", "[0.0, 0.2]"),
    );
    let e = fails(&[
        "sweep",
        other.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert!(e.contains("another grid"), "{e}");

    // An interruption after the second trial's training checkpoint: resuming runs that trial
    // only (from its checkpoint) and gives the same figures.
    let second = out.join("trials").join("trial-0001");
    for f in ["row.json", "state.json", "audit.json", "audit.html"] {
        std::fs::remove_file(second.join(f)).unwrap();
    }
    let before = std::fs::metadata(out.join("trials/trial-0000/row.json"))
        .unwrap()
        .modified()
        .unwrap();
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let stdout = ok(&resumed);
    assert!(stdout.contains("2 trials, 1 run now"), "{stdout}");
    let again = rows(&out);
    assert_eq!(again[1]["resumed_from"], "training@8192");
    assert_eq!(again[1]["restarts"], 1);
    assert_eq!(
        again.iter().map(figures).collect::<Vec<_>>(),
        first.iter().map(figures).collect::<Vec<_>>()
    );
    let after = std::fs::metadata(out.join("trials/trial-0000/row.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a finished trial ran again");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The decorrelation sweep's shape (issue 20): the planner trained with uniform levels and with
/// a regret curriculum, shares over decades: one series per curriculum on a log share axis.
#[test]
fn a_grid_sweeps_the_curriculum_and_the_trunk_on_a_log_share_axis() {
    let dir = temp_dir("curricula");
    let grid = write_grid(
        &dir,
        "grid.toml",
        &GRID.replace("[0.0, 0.5]", "[0.0, 0.001, 0.1]").replace(
            "steps = 8192",
            "steps = 8192\narch = \"planner\"\ncurriculum = [\"uniform\", \"regret\"]",
        ),
    );
    let out = dir.join("out");
    let stdout = ok(&[
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(stdout.contains("6 trials, 6 run now"), "{stdout}");
    let table = rows(&out);
    let cell = |share: f64, curriculum: &str| {
        let r = table
            .iter()
            .find(|r| r["share"].as_f64() == Some(share) && r["curriculum"] == curriculum)
            .unwrap_or_else(|| panic!("no row for share {share} {curriculum}"));
        assert_eq!(r["arch"], "planner");
        PathBuf::from(r["checkpoint"].as_str().unwrap())
    };
    let weights = |ck: PathBuf| std::fs::read(ck.join("model.safetensors")).unwrap();
    let regret = weights(cell(0.1, "regret"));
    assert_ne!(
        regret,
        weights(cell(0.1, "uniform")),
        "the curriculum changed no level"
    );
    // The same training run alone: the same weights (the sweep passes the trunk and the
    // curriculum through, and the curriculum is deterministic).
    let alone = dir.join("alone");
    ok(&[
        "train",
        "exit-vs-green",
        "-k",
        "size=5",
        "--arch",
        "planner",
        "--curriculum",
        "regret",
        "--decorrelate",
        "0.1",
        "--steps",
        "8192",
        "--eval-episodes",
        "0",
        "--out",
        alone.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(weights(alone), regret);
    let page = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    for series in ["uniform none: proxy (mean", "regret none: proxy (mean"] {
        assert!(page.contains(series), "no series {series}");
    }
    // The table names each share as it is (0.1%, not rounded to 0%).
    assert!(page.contains(" 0.1% "), "no row for the share 0.001");
    // Shares in percent on decades: the control (0), 0.1% and 10%.
    for tick in [">0<", ">0.1<", ">1<", ">10<"] {
        assert!(page.contains(tick), "no tick {tick}");
    }
    let e = fails(&[
        "train",
        "exit-vs-green",
        "--curriculum",
        "greedy",
        "--out",
        dir.join("bad").to_str().unwrap(),
    ]);
    assert!(e.contains("greedy"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_grids_exit_2_before_any_trial_naming_the_cell_or_the_line() {
    let dir = temp_dir("bad");
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let cases: [(&str, String, &str); 10] = [
        (
            "curriculum",
            format!("curriculum = [\"uniform\", \"greedy\"]\n{GRID}"),
            "curriculum=greedy: unknown curriculum 'greedy'",
        ),
        (
            "arch",
            format!("arch = \"transformer\"\n{GRID}"),
            "arch=transformer",
        ),
        (
            "arch-source",
            format!("arch = \"planner\"\nsource = \"agents/exit-vs-green\"\nmethods = [\"diversify\"]\n{GRID}"),
            "a `source` checkpoint is not trained",
        ),
        (
            "testbed",
            GRID.replace("exit-vs-green", "exit-vs-blue"),
            "grid cell testbed=exit-vs-blue",
        ),
        (
            "knob",
            GRID.replace("size = 5", "size = [5, 99]"),
            "size=99",
        ),
        (
            "unknown-knob",
            GRID.replace("size = 5", "sizes = 5"),
            "unknown knob",
        ),
        (
            "method",
            format!("methods = [\"none\", \"magic\"]\n{GRID}"),
            "method=magic: unknown method",
        ),
        (
            "key",
            format!("colour = \"green\"\n{GRID}"),
            "unknown key(s) colour",
        ),
        (
            "steps",
            GRID.replace("steps = 8192", "steps = 0"),
            "grid key \"steps\": 0",
        ),
        (
            "empty",
            GRID.replace("[0.0, 0.5]", "[]"),
            "grid key \"shares\": an empty list",
        ),
    ];
    for (name, grid, expect) in cases {
        let g = write_grid(&dir, &format!("{name}.toml"), &grid);
        let e = fails(&["sweep", g.to_str().unwrap(), "--out", o]);
        assert!(e.contains(expect), "{name}: {e}");
    }
    let g = write_grid(
        &dir,
        "parse.toml",
        "testbed = \"exit-vs-green\"\nseeds = [0, 1\nshares = [0.1]\n",
    );
    let e = fails(&["sweep", g.to_str().unwrap(), "--out", o]);
    assert!(
        e.contains("parse.toml does not parse") && e.contains("line 3"),
        "{e}"
    );
    let e = fails(&["sweep", "/no/such/grid.toml", "--out", o]);
    assert!(e.contains("/no/such/grid.toml"), "{e}");
    assert!(!out.exists(), "a refused grid wrote its output folder");
    // --ray with an interpreter that lacks the package: a clear error before any work.
    let g = write_grid(&dir, "good.toml", GRID);
    let o2 = mesascope_with_python(&["sweep", g.to_str().unwrap(), "--out", o, "--ray", "local"]);
    assert_eq!(o2.status.code(), Some(2), "{}", text(&o2.stderr));
    assert!(text(&o2.stderr).contains("needs the Python package with Ray"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn mesascope_with_python(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mesascope"))
        .args(args)
        .env("MESASCOPE_PYTHON", "/no/such/python3")
        .output()
        .unwrap()
}

#[test]
fn audit_many_audits_every_checkpoint_of_a_folder_into_one_table() {
    let dir = temp_dir("many");
    let policies = dir.join("agents");
    tiny_train(policies.join("a").to_str().unwrap(), &["--seed", "1"]);
    tiny_train(policies.join("b").to_str().unwrap(), &["--seed", "2"]);
    std::fs::create_dir_all(policies.join("not-a-policy")).unwrap();
    let out = dir.join("audits");
    let stdout = ok(&[
        "audit-many",
        policies.to_str().unwrap(),
        "--env",
        "exit-vs-green",
        "-k",
        "size=5",
        "--episodes",
        "20",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("agents/a") && stdout.contains("agents/b"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("verdicts.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with("policy,verdict,proxy,label,exit_code,"),
        "{csv}"
    );
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let report = format!("{i:03}-{name}/audit.html");
        assert!(out.join(&report).is_file());
        assert!(index.contains(&format!("href=\"{report}\"")), "{index}");
    }
    // The same seed gives the same table.
    let out2 = dir.join("audits2");
    ok(&[
        "audit-many",
        policies.to_str().unwrap(),
        "--env",
        "exit-vs-green",
        "-k",
        "size=5",
        "--episodes",
        "20",
        "--quiet",
        "--out",
        out2.to_str().unwrap(),
    ]);
    let strip = |s: String| s.replace(out2.to_str().unwrap(), out.to_str().unwrap());
    assert_eq!(
        strip(std::fs::read_to_string(out2.join("verdicts.csv")).unwrap()),
        csv
    );
    // A folder without policies, a testbed it does not know: exit 2.
    let e = fails(&[
        "audit-many",
        dir.join("audits/000-a").to_str().unwrap(),
        "--env",
        "exit-vs-green",
    ]);
    assert!(e.contains("no checkpoint folder"), "{e}");
    fails(&[
        "audit-many",
        policies.to_str().unwrap(),
        "--env",
        "exit-vs-blue",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
}
