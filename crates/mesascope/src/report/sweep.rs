//! The mitigation sweep's report: one row per fine-tuning run, the table by share as text, and
//! the page with proxy pursuit under shift against the share.

use super::html::{esc, Page};
use super::svg::{line_chart, Axes, Series};
use super::text::{pct, pct0, table, Align};
use serde::Serialize;
use std::fmt::Write as _;

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

/// The sweep as a text table.
pub fn text(r: &SweepReport) -> String {
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
            pct0(*p),
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
    let mut page = Page::new(&format!("mesascope sweep: {} on {}", r.source, r.testbed));
    page.push(&format!(
        "<h1>Decorrelated levels against proxy pursuit: {0} on {1}</h1><p>Each run fine-tunes the checkpoint for {2} env steps on the training distribution with a share of levels in which the proxy stands apart from the intended goal, then plays {3} episodes of {4}. Langosco et al. (2022) found a few percent of such levels enough to make most agents pursue the intended goal.</p><figure>{chart}</figure><pre>{5}</pre>",
        esc(&r.source),
        esc(&r.testbed),
        r.steps,
        r.episodes,
        esc(&r.shift),
        esc(&text(r))
    ));
    page.finish()
}
