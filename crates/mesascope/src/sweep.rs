//! The mitigation sweep: fine-tunes a checkpoint with each share p of decorrelated training
//! levels, over several seeds, and measures proxy pursuit under shift against p: the analogue of
//! Langosco et al. (2022)'s figure 2 (a few percent of levels where the proxy comes apart from the
//! goal already make most agents robust).
//!
//! The output folder receives one checkpoint folder per run (`p<P>-seed<S>`), `sweep.json` and
//! `sweep.html` (the plot), written atomically.

use crate::error::{Error, Result};
use crate::fsio::{json_bytes, write_atomic};
use crate::mitigate::{default_out, MitigateSettings, Source};
use crate::progress::Progress;
use crate::report;
use mesascope_core::{ProxyId, Split};
use mesascope_learn::eval::evaluate;
use std::path::PathBuf;
use std::time::Instant;

pub use crate::report::sweep::{SweepReport, SweepRun};

/// Langosco et al.'s shares of decorrelated levels.
pub const DEFAULT_SHARES: [f64; 6] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2];

/// A sweep's settings: one mitigation's (its `decorrelate` unused) run with each share over
/// `seeds` seeds (`seed`, `seed + 1`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSettings {
    pub mitigation: MitigateSettings,
    /// Default [`DEFAULT_SHARES`].
    pub shares: Vec<f64>,
    /// Default 3.
    pub seeds: u32,
}

impl SweepSettings {
    pub fn new(mitigation: MitigateSettings) -> SweepSettings {
        SweepSettings {
            mitigation,
            shares: DEFAULT_SHARES.to_vec(),
            seeds: 3,
        }
    }

    /// Where the sweep writes: the mitigation's `out`, else `runs/<checkpoint>-sweep`.
    pub fn out_dir(&self) -> PathBuf {
        let m = &self.mitigation;
        m.out
            .clone()
            .unwrap_or_else(|| default_out(&m.policy, "sweep"))
    }
}

/// Runs the sweep the settings describe and writes `sweep.json` and `sweep.html`.
pub fn sweep(a: &SweepSettings, progress: &dyn Progress) -> Result<SweepReport> {
    let shares = &a.shares;
    if shares.is_empty() || shares.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::bad_setting(format!(
            "`shares` must be values in [0, 1], found {shares:?}"
        )));
    }
    let m = &a.mitigation;
    if m.episodes == 0 {
        return Err(Error::bad_setting("`episodes` must be positive"));
    }
    let source = Source::load(&m.policy, &m.testbed)?;
    let out = a.out_dir();
    let steps = m.fine_tuning_steps();
    let start = Instant::now();
    let mut runs = Vec::new();
    let total = shares.len() * a.seeds as usize;
    for &p in shares {
        for k in 0..a.seeds as u64 {
            let seed = m.seed + k;
            let dir = out.join(format!("p{p}-seed{seed}"));
            if mesascope_learn::checkpoint::exists(&dir) {
                return Err(Error::bad_setting(format!(
                    "{} already holds a checkpoint; choose another `out`",
                    dir.display()
                )));
            }
            progress.stage(&format!(
                "sweep {}/{total}: decorrelate {p}, seed {seed}, {steps} env steps ({:.0} s so far) ...",
                runs.len() + 1,
                start.elapsed().as_secs_f64()
            ));
            let (run, trainer, _) =
                source.fine_tune(p, steps, seed, &dir, progress, m.method.curriculum())?;
            let e = evaluate(
                source.audited.clone(),
                Split::Shift(ProxyId(0)),
                trainer.model(),
                &trainer.policy,
                m.episodes,
                seed,
            )?;
            runs.push(SweepRun {
                p,
                seed,
                intended: e.intended,
                proxy: e.proxies.iter().sum(),
                timed_out: e.timed_out,
                train_success: run.last.and_then(|u| u.episodes.success_rate),
            });
        }
    }
    let report = SweepReport {
        kind: "mesascope-sweep",
        method: m.method.name(),
        source: m.policy.display().to_string(),
        testbed: m.testbed.clone(),
        steps,
        episodes: m.episodes,
        shift: Split::Shift(ProxyId(0)).label(source.audited.as_ref()),
        runs,
    };
    write_atomic(&out.join("sweep.json"), &json_bytes(&report)?)?;
    write_atomic(
        &out.join("sweep.html"),
        report::sweep::page(&report).as_bytes(),
    )?;
    Ok(report)
}
