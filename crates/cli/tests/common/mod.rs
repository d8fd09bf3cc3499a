//! Running the `mesascope` binary as a user does, shared by the CLI test files.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn mesascope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesascope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and expects success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = mesascope(args);
    assert!(
        o.status.success(),
        "mesascope {args:?} failed ({:?}):\n{}",
        o.status.code(),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Runs and expects a clean failure (exit code 2, `error:` on stderr, no panic); returns stderr.
pub fn fails(args: &[&str]) -> String {
    let o = mesascope(args);
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "mesascope {args:?} should exit 2:\nstdout:\n{}\nstderr:\n{err}",
        text(&o.stdout)
    );
    assert!(
        !err.contains("panicked"),
        "mesascope {args:?} panicked:\n{err}"
    );
    assert!(err.contains("error"), "{args:?}: {err}");
    err
}

/// A path under cargo's test scratch folder, unique to this process, removed if it existed.
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// 5x5 mazes, 16 environments: four PPO updates of 512 steps.
pub fn tiny_train(out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "exit-vs-green",
        "-k",
        "size=5",
        "--steps",
        "2048",
        "--envs",
        "16",
        "--eval-episodes",
        "20",
        "--quiet",
        "--out",
        out,
    ];
    // The fast fixed-size trunk unless the caller names one (exit-vs-green's default is the
    // planner).
    if !extra.contains(&"--arch") {
        args.extend_from_slice(&["--arch", "embed-mlp"]);
    }
    args.extend_from_slice(extra);
    ok(&args)
}
