//! ONNX policies through the command line: audit, show and monitor take `*.onnx` files; a model
//! that breaks the contract is bad input (exit 2) with a message naming the problem. The
//! fixtures read 7x7 levels, hence `-k size=7`.

mod common;
use common::{fails, mesascope, ok, text};

fn fixture(name: &str) -> String {
    format!(
        "{}/../onnx/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn an_onnx_policy_is_audited_shown_and_monitored() {
    let right = fixture("right-planes.onnx");
    let o = mesascope(&[
        "audit",
        &right,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--episodes",
        "20",
    ]);
    let out = text(&o.stdout);
    // Always moving right reaches a goal only where one lies straight to the right.
    assert_eq!(o.status.code(), Some(11), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("right-planes.onnx on exit-vs-green"), "{out}");
    // The u8 model makes the same decisions, so its audit prints the same table.
    let u8_out = text(
        &mesascope(&[
            "audit",
            &fixture("right-u8.onnx"),
            "--env",
            "exit-vs-green",
            "-k",
            "size=7",
            "--episodes",
            "20",
        ])
        .stdout,
    );
    let rows = |s: &str| {
        s.lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("train") || l.starts_with("shift"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&out), rows(&u8_out));
    assert!(!rows(&out).is_empty());

    let shown = ok(&[
        "show",
        "exit-vs-green",
        "-k",
        "size=7",
        "--seed",
        "3",
        "--policy",
        &right,
    ]);
    assert!(shown.contains("right-planes.onnx"), "{shown}");
    let monitored = ok(&[
        "monitor",
        &right,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--episodes",
        "10",
    ]);
    assert!(monitored.contains("alarm"), "{monitored}");
}

#[test]
fn broken_models_are_bad_input_naming_the_problem() {
    for (name, want) in [
        (
            "broken-input-name.onnx",
            "expected one input named 'obs', found 1 ('x')",
        ),
        ("broken-input-type.onnx", "element type i64"),
        ("broken-input-shape.onnx", "expected float32 [N, 20, 7, 7]"),
        ("broken-output-size.onnx", "expected [N, 4]"),
        ("broken-unsupported-op.onnx", "Frobnicate"),
    ] {
        let err = fails(&[
            "audit",
            &fixture(name),
            "--env",
            "exit-vs-green",
            "-k",
            "size=7",
        ]);
        assert!(err.contains(want), "{name}: {err}");
    }
    let err = fails(&[
        "audit",
        "nowhere.onnx",
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
    ]);
    assert!(err.contains("no such ONNX file 'nowhere.onnx'"), "{err}");
    let err = fails(&[
        "show",
        "exit-vs-green",
        "-k",
        "size=7",
        "--policy",
        &fixture("broken-input-shape.onnx"),
    ]);
    assert!(err.contains("expected float32 [N, 20, 7, 7]"), "{err}");
    // Non-finite logits appear only when the model runs: a policy failure, exit 1.
    let o = mesascope(&[
        "audit",
        &fixture("broken-nan.onnx"),
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--episodes",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("non-finite logits"),
        "{}",
        text(&o.stderr)
    );
}
