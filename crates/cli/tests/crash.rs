//! Outputs that survive kills: `train` killed with SIGKILL at 50 moments leaves a checkpoint that
//! loads and resumes, with metrics that have no duplicated or broken line; SIGTERM writes a final
//! checkpoint; a second run into a folder being written is refused.
#![cfg(unix)]

mod common;

use common::{fails, ok, text};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("crash", name)
}

/// 8 environments of 32 steps: an update of 256 steps every few tens of milliseconds, a
/// checkpoint after each.
fn spawn_train(out: &Path, steps: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mesascope"))
        .args(["train", "exit-vs-green", "--steps"])
        .arg(steps.to_string())
        .args([
            "--envs",
            "8",
            "--checkpoint-every",
            "1",
            "--eval-episodes",
            "0",
            "--quiet",
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

/// The `update` of every line of `metrics.jsonl`; panics on a broken line.
fn metric_updates(dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "a torn last line");
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("broken line {l:?}: {e}"));
            v["update"].as_u64().unwrap()
        })
        .collect()
}

fn checkpoint_meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap()
}

#[test]
fn sigkill_at_any_moment_leaves_a_checkpoint_that_resumes() {
    const KILLS: u64 = 50;
    const STEPS: u64 = 2048;
    // Waits for the first checkpoint of the run writing `dir`.
    let first_checkpoint = |dir: &Path, child: &mut std::process::Child| {
        let started = Instant::now();
        while !dir.join("model.json").exists() && child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no checkpoint"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // How long a run goes on after its first checkpoint, on this machine now: the kills are
    // spread over that span, whatever the machine's speed or load.
    let dir = temp_dir("calibration");
    let mut child = spawn_train(&dir, STEPS);
    first_checkpoint(&dir, &mut child);
    let started = Instant::now();
    child.wait().unwrap();
    let rest = started.elapsed();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut mid_run = 0;
    for i in 0..KILLS {
        let dir = temp_dir(&format!("kill-{i}"));
        let mut child = spawn_train(&dir, STEPS);
        // After the first checkpoint, at moments spread over the rest of the run (updates, saves,
        // the end), in a mixed order.
        first_checkpoint(&dir, &mut child);
        let delay = rest.mul_f64((i * 31 % KILLS) as f64 / KILLS as f64);
        std::thread::sleep(delay);
        mid_run += child.try_wait().unwrap().is_none() as u64;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The resumed run goes one update past the end, so that it always trains.
        let out = ok(&[
            "train",
            "exit-vs-green",
            "--resume",
            "--steps",
            &(STEPS + 256).to_string(),
            "--eval-episodes",
            "0",
            "--quiet",
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(
            out.contains("checkpoint:"),
            "kill {i} after {delay:?}: {out}"
        );
        let meta = checkpoint_meta(&dir);
        assert_eq!(meta["steps"], STEPS + 256, "kill {i}");
        let updates = metric_updates(&dir);
        let expected: Vec<u64> = (1..=(STEPS + 256) / 256).collect();
        assert_eq!(updates, expected, "kill {i} after {delay:?}: metrics lines");
        for leftover in ["model.next.json", "model.next.safetensors"] {
            assert!(!dir.join(leftover).exists(), "kill {i}: {leftover} left");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Most kills land while the run still trains; the count shows the test tested something.
    assert!(
        mid_run >= KILLS / 2,
        "only {mid_run} of {KILLS} kills came before the run ended"
    );
}

#[test]
fn sigterm_writes_a_final_checkpoint_and_exits_130() {
    let dir = temp_dir("term");
    let child = spawn_train(&dir, 1 << 30);
    let started = Instant::now();
    while metric_lines(&dir) < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "no training");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("resume"),
        "{}",
        text(&out.stderr)
    );
    // The final checkpoint holds every update the metrics record.
    let updates = metric_updates(&dir);
    assert_eq!(checkpoint_meta(&dir)["updates"], *updates.last().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn metric_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

#[test]
fn a_second_run_into_a_folder_being_written_is_refused() {
    let dir = temp_dir("lock");
    let mut first = spawn_train(&dir, 1 << 30);
    let started = Instant::now();
    while metric_lines(&dir) < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "no training");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = fails(&[
        "train",
        "exit-vs-green",
        "--resume",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(e.contains("another mesascope run"), "{e}");
    assert!(e.contains(&first.id().to_string()), "{e}");
    first.kill().unwrap();
    first.wait().unwrap();
    // Its lock went with the process: the folder resumes.
    let steps = checkpoint_meta(&dir)["steps"].as_u64().unwrap();
    ok(&[
        "train",
        "exit-vs-green",
        "--resume",
        "--steps",
        &(steps + 512).to_string(),
        "--eval-episodes",
        "0",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
}
