//! The library's progress on the terminal: stages as lines on stderr, counted work as a bar
//! (both hidden with `--quiet`), and Ctrl-C as a request to stop cleanly.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mesascope::progress::{Progress, Unit};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set by the first Ctrl-C; the library stops at the next chance and keeps what it wrote.
static STOP: AtomicBool = AtomicBool::new(false);

/// Stderr progress for one command.
pub struct Terminal {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    pub fn new(quiet: bool) -> Terminal {
        Terminal {
            quiet,
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Terminal {
    fn stage(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    fn begin(&self, unit: Unit, total: u64, done: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if self.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template = match unit {
            Unit::EnvSteps => "{bar:30} {human_pos}/{human_len} steps  {per_sec}  eta {eta}  {msg}",
            Unit::TrainingSteps => "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
            Unit::Generations => "{bar:30} {pos}/{len} generations  {per_sec}  eta {eta}  {msg}",
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(done);
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, done: u64, message: &str) {
        if let Ok(b) = self.bar.lock() {
            if let Some(bar) = b.as_ref() {
                bar.set_position(done);
                if !message.is_empty() {
                    bar.set_message(message.to_string());
                }
            }
        }
    }

    fn end(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn should_stop(&self) -> bool {
        STOP.load(Ordering::Relaxed)
    }
}

/// The first Ctrl-C (or SIGTERM) asks the running command to stop at its next chance, keeping
/// what it wrote (a training run writes its checkpoint); a second one ends the process at once.
pub fn stop_on_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::Relaxed) {
            std::process::exit(i32::from(crate::exit::EXIT_INTERRUPTED));
        }
        eprintln!("\nstopping at the next chance (Ctrl-C again to quit now) ...");
    });
}
