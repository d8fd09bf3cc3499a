//! `mesascope mitigate CHECKPOINT --env TESTBED --sweep`: fine-tunes the checkpoint with each share
//! p of decorrelated training levels, over several seeds, and measures proxy pursuit under shift
//! against p: the analogue of Langosco et al. (2022)'s figure 2 (a few percent of levels where
//! the proxy comes apart from the goal already make most agents robust).
//!
//! The output folder receives one checkpoint folder per run (`p<P>-seed<S>`), `sweep.json` and
//! `sweep.html` (the plot), written atomically.

use crate::args::MitigateArgs;
use crate::demo::write_atomic;
use crate::error::input;
use crate::html::{esc, CSS};
use crate::mitigate::{curriculum, default_out, Source};
use crate::svg::{line_chart, Axes, Series};
use crate::text::{table, Align};
use crate::train::learn_err;
use anyhow::Result;
use mesascope_core::Split;
use mesascope_learn::checkpoint::META_FILE;
use mesascope_learn::eval::evaluate;
use mesascope_learn::ppo::PpoConfig;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// Langosco et al.'s shares of decorrelated levels.
pub const DEFAULT_SHARES: [f64; 6] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2];

/// One fine-tuning run, measured on the shift.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRun {
    pub p: f64,
    pub seed: u64,
    pub intended: f64,
    pub proxy: f64,
    pub timed_out: f64,
    pub train_success: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub kind: &'static str,
    /// diversify (uniform levels) or adversarial (regret curriculum).
    pub method: &'static str,
    pub source: String,
    pub testbed: String,
    /// Fine-tuning env steps of every run.
    pub steps: u64,
    /// Shifted episodes each run is measured on.
    pub episodes: usize,
    pub shift: String,
    pub runs: Vec<SweepRun>,
}

/// Mean, min and max of one measure over the seeds of each share.
fn by_share(r: &SweepReport, f: fn(&SweepRun) -> f64) -> Vec<(f64, f64, f64, f64)> {
    let mut shares: Vec<f64> = r.runs.iter().map(|x| x.p).collect();
    shares.dedup();
    shares
        .into_iter()
        .map(|p| {
            let xs: Vec<f64> = r.runs.iter().filter(|x| x.p == p).map(f).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (p, mean, lo, hi)
        })
        .collect()
}

/// Runs the sweep the arguments describe.
pub fn sweep(a: &MitigateArgs) -> Result<SweepReport> {
    let shares = a.shares.clone().unwrap_or_else(|| DEFAULT_SHARES.to_vec());
    if shares.is_empty() || shares.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(input(format!(
            "--shares must be values in [0, 1], found {shares:?}"
        )));
    }
    if a.episodes == 0 {
        return Err(input("--episodes must be positive".to_string()));
    }
    let source = Source::load(&a.policy, &a.env)?;
    let out = out_dir(a);
    let steps = a
        .steps
        .unwrap_or(PpoConfig::for_testbed(&a.env).total_steps);
    let start = Instant::now();
    let mut runs = Vec::new();
    let total = shares.len() * a.seeds as usize;
    for &p in &shares {
        for k in 0..a.seeds as u64 {
            let seed = a.seed + k;
            let dir = out.join(format!("p{p}-seed{seed}"));
            if dir.join(META_FILE).exists() {
                return Err(input(format!(
                    "{} already holds a checkpoint; choose another --out",
                    dir.display()
                )));
            }
            if !a.quiet {
                eprintln!(
                    "sweep {}/{total}: decorrelate {p}, seed {seed}, {steps} env steps ({:.0} s so far) ...",
                    runs.len() + 1,
                    start.elapsed().as_secs_f64()
                );
            }
            let (run, trainer, _) =
                source.fine_tune(p, steps, seed, &dir, a.quiet, curriculum(a.method))?;
            let e = evaluate(
                source.audited.clone(),
                Split::Shift(0),
                trainer.model(),
                &trainer.policy,
                a.episodes as usize,
                seed,
            )
            .map_err(learn_err)?;
            runs.push(SweepRun {
                p,
                seed,
                intended: e.intended,
                proxy: e.proxies.iter().sum(),
                timed_out: e.timed_out,
                train_success: run.last.and_then(|u| u.success_rate),
            });
        }
    }
    let report = SweepReport {
        kind: "mesascope-sweep",
        method: a.method.name(),
        source: a.policy.display().to_string(),
        testbed: a.env.clone(),
        steps,
        episodes: a.episodes as usize,
        shift: Split::Shift(0).label(source.audited.as_ref()),
        runs,
    };
    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    write_atomic(&out.join("sweep.json"), &json)?;
    write_atomic(&out.join("sweep.html"), page(&report).as_bytes())?;
    Ok(report)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The sweep as a text table.
pub fn render(r: &SweepReport) -> String {
    let mut s = String::new();
    let seeds = r.runs.iter().filter(|x| x.p == r.runs[0].p).count();
    let _ = writeln!(
        s,
        "mitigate --sweep ({}) {} on {}: fine-tuned {} env steps per run, {} seeds per share, {} episodes on {}\n",
        r.method, r.source, r.testbed, r.steps, seeds, r.episodes, r.shift
    );
    let mut rows = vec![vec![
        "decorrelated levels".to_string(),
        "proxy under shift: mean".into(),
        "min-max".into(),
        "intended: mean".into(),
        "min-max".into(),
    ]];
    let (proxy, intended) = (by_share(r, |x| x.proxy), by_share(r, |x| x.intended));
    for ((p, pm, plo, phi), (_, im, ilo, ihi)) in proxy.iter().zip(&intended) {
        rows.push(vec![
            format!("{:.0}%", 100.0 * p),
            pct(*pm),
            format!("{}-{}", pct(*plo), pct(*phi)),
            pct(*im),
            format!("{}-{}", pct(*ilo), pct(*ihi)),
        ]);
    }
    let mut align = vec![Align::Left];
    align.extend([Align::Right; 4]);
    s.push_str(&table(&rows, &align, "  "));
    s
}

/// The sweep's page: proxy pursuit and intended-goal success under shift against the share.
pub fn page(r: &SweepReport) -> String {
    let mean = |f: fn(&SweepRun) -> f64| -> Vec<(f64, f64)> {
        by_share(r, f)
            .iter()
            .map(|(p, m, ..)| (100.0 * p, *m))
            .collect()
    };
    // Seeds first, so that the means are drawn over them.
    let mut seeds: Vec<u64> = r.runs.iter().map(|x| x.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut series: Vec<Series> = seeds
        .into_iter()
        .map(|s| {
            let pts = r
                .runs
                .iter()
                .filter(|x| x.seed == s)
                .map(|x| (100.0 * x.p, x.proxy))
                .collect();
            Series::new(format!("proxy, seed {s}"), "#ffcc80", pts).with_markers()
        })
        .collect();
    series
        .push(Series::new("proxy (mean over seeds)", "#e65100", mean(|x| x.proxy)).with_markers());
    series.push(
        Series::new(
            "intended goal (mean over seeds)",
            "#2e7d32",
            mean(|x| x.intended),
        )
        .with_markers(),
    );
    let chart = line_chart(
        &series,
        &Axes {
            title: format!("{} under shift after fine-tuning", r.testbed),
            x_label: "decorrelated training levels (%)".into(),
            y_label: "share of shifted episodes".into(),
            y_range: Some((0.0, 1.0)),
            y_percent: true,
            ..Axes::default()
        },
        820.0,
    );
    format!(
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>mesascope sweep: {0} on {1}</title><style>{CSS}</style></head><body><h1>Decorrelated levels against proxy pursuit: {0} on {1}</h1><p>Each run fine-tunes the checkpoint for {2} env steps on the training distribution with a share of levels in which the proxy stands apart from the intended goal, then plays {3} episodes of {4}. Langosco et al. (2022) found a few percent of such levels enough to make most agents pursue the intended goal.</p><figure>{chart}</figure><pre>{5}</pre></body></html>\n",
        esc(&r.source),
        esc(&r.testbed),
        r.steps,
        r.episodes,
        esc(&r.shift),
        esc(&render(r))
    )
}

/// Where a sweep writes: `--out`, else a folder beside the policy.
pub fn out_dir(a: &MitigateArgs) -> std::path::PathBuf {
    a.out
        .clone()
        .unwrap_or_else(|| default_out(&a.policy, "sweep"))
}
