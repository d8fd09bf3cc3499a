//! A sweep's report, from its table (`sweep.json`, written by this library or by the Python
//! package's Ray sweep: the same columns): proxy pursuit and intended-goal success under shift
//! against the share of decorrelated levels, as text and as a page with the figure.

use super::html::{esc, Page};
use super::svg::{line_chart, Axes, Series};
use super::text::{pct, pct_exact, table, Align};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// One trial, measured on the audit's first shifted distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// What the trials of one line share: the method, and the testbed, trunk and curriculum
    /// when several are swept.
    pub series: String,
    pub share: f64,
    pub seed: u64,
    /// The shifted distribution (`shift:green`).
    pub shift: String,
    /// Share of shifted episodes that reach a proxy (any of them).
    pub proxy: f64,
    pub intended: f64,
    pub label: String,
}

/// The points of a table's finished trials (a failed trial has no verdict and no point).
pub fn points(rows: &[Map<String, Value>]) -> Vec<SweepPoint> {
    // The columns besides the method that tell the table's lines apart: those that vary.
    let text = |r: &Map<String, Value>, c: &str| match r.get(c) {
        Some(Value::String(s)) => s.clone(),
        _ => "default".to_string(),
    };
    let varying: Vec<&str> = ["testbed", "arch", "curriculum"]
        .into_iter()
        .filter(|c| {
            let mut values: Vec<String> = rows.iter().map(|r| text(r, c)).collect();
            values.sort_unstable();
            values.dedup();
            values.len() > 1
        })
        .collect();
    rows.iter()
        .filter(|r| r.get("verdict").is_some_and(|v| !v.is_null()))
        .filter_map(|r| {
            let shift = r
                .keys()
                .find(|k| k.starts_with("shift:") && k.contains('/'))?
                .split('/')
                .next()?
                .to_string();
            let rate = |k: &str| r.get(k).and_then(Value::as_f64);
            let proxy = r
                .iter()
                .filter(|(k, _)| {
                    k.starts_with(&format!("{shift}/proxy:"))
                        && !k.ends_with("_lo")
                        && !k.ends_with("_hi")
                })
                .filter_map(|(_, v)| v.as_f64())
                .sum();
            let mut parts: Vec<String> = varying.iter().map(|c| text(r, c)).collect();
            parts.push(r["method"].as_str().unwrap_or("?").to_string());
            let series = parts.join(" ");
            Some(SweepPoint {
                series,
                share: rate("share")?,
                seed: r.get("seed").and_then(Value::as_u64)?,
                intended: rate(&format!("{shift}/intended"))?,
                proxy,
                shift,
                label: r["label"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// Each series' shares, in order of first appearance, with the mean, min and max of `f` over
/// their seeds.
fn by_share(
    points: &[SweepPoint],
    series: &str,
    f: fn(&SweepPoint) -> f64,
) -> Vec<(f64, f64, f64, f64)> {
    let mine: Vec<&SweepPoint> = points.iter().filter(|p| p.series == series).collect();
    let mut shares: Vec<f64> = mine.iter().map(|p| p.share).collect();
    shares.sort_by(f64::total_cmp);
    shares.dedup();
    shares
        .into_iter()
        .map(|s| {
            let xs: Vec<f64> = mine.iter().filter(|p| p.share == s).map(|p| f(p)).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (s, mean, lo, hi)
        })
        .collect()
}

fn series_names(points: &[SweepPoint]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in points {
        if !names.contains(&p.series) {
            names.push(p.series.clone());
        }
    }
    names
}

/// The sweep by series and share, as a text table.
pub fn text(points: &[SweepPoint]) -> String {
    let mut s = String::new();
    let Some(first) = points.first() else {
        return "no finished trial\n".into();
    };
    let _ = writeln!(
        s,
        "{} trials; under shift ({}), by share of decorrelated levels (mean over seeds, min-max):\n",
        points.len(),
        first.shift
    );
    let mut rows = vec![vec![
        "series".to_string(),
        "decorrelated".into(),
        "seeds".into(),
        "proxy: mean".into(),
        "min-max".into(),
        "intended: mean".into(),
        "min-max".into(),
    ]];
    for name in series_names(points) {
        let proxy = by_share(points, &name, |p| p.proxy);
        let intended = by_share(points, &name, |p| p.intended);
        for ((share, pm, plo, phi), (_, im, ilo, ihi)) in proxy.iter().zip(&intended) {
            let seeds = points
                .iter()
                .filter(|p| p.series == name && p.share == *share)
                .count();
            rows.push(vec![
                name.clone(),
                pct_exact(*share),
                seeds.to_string(),
                pct(*pm),
                format!("{}-{}", pct(*plo), pct(*phi)),
                pct(*im),
                format!("{}-{}", pct(*ilo), pct(*ihi)),
            ]);
        }
    }
    let mut align = vec![Align::Left];
    align.extend([Align::Right; 6]);
    s.push_str(&table(&rows, &align, "  "));
    s
}

const COLOURS: [(&str, &str); 4] = [
    ("#e65100", "#ffcc80"),
    ("#1565c0", "#90caf9"),
    ("#6a1b9a", "#ce93d8"),
    ("#00695c", "#80cbc4"),
];

/// Whether the swept shares span two decades or more (1e-4 to 1e-1, as Abdel Sadek et al.
/// sweep): then the figure's share axis is logarithmic, the control (0) a decade left of the
/// smallest share.
fn spans_decades(points: &[SweepPoint]) -> bool {
    let positive = points.iter().map(|p| p.share).filter(|&s| s > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    hi >= 100.0 * lo
}

/// The sweep's page: proxy pursuit under shift against the share, a line per series (the mean
/// over seeds) with each seed's points, and intended-goal success.
pub fn page(title: &str, points: &[SweepPoint]) -> String {
    let mut series = Vec::new();
    for (i, name) in series_names(points).iter().enumerate() {
        let (dark, light) = COLOURS[i % COLOURS.len()];
        let mut seeds: Vec<u64> = points
            .iter()
            .filter(|p| &p.series == name)
            .map(|p| p.seed)
            .collect();
        seeds.sort_unstable();
        seeds.dedup();
        for seed in seeds {
            let pts = points
                .iter()
                .filter(|p| &p.series == name && p.seed == seed)
                .map(|p| (100.0 * p.share, p.proxy))
                .collect();
            series.push(
                Series::new(format!("{name}: proxy, seed {seed}"), light, pts).with_markers(),
            );
        }
        let mean = |f: fn(&SweepPoint) -> f64| -> Vec<(f64, f64)> {
            by_share(points, name, f)
                .iter()
                .map(|(s, m, ..)| (100.0 * s, *m))
                .collect()
        };
        series.push(
            Series::new(
                format!("{name}: proxy (mean over seeds)"),
                dark,
                mean(|p| p.proxy),
            )
            .with_markers(),
        );
        series.push(
            Series::new(
                format!("{name}: intended goal (mean)"),
                "#2e7d32",
                mean(|p| p.intended),
            )
            .with_markers(),
        );
    }
    let shift = points.first().map(|p| p.shift.as_str()).unwrap_or("shift");
    let chart = line_chart(
        &series,
        &Axes {
            title: format!("proxy pursuit under {shift}"),
            x_label: "decorrelated levels (%)".into(),
            y_label: "share of shifted episodes".into(),
            y_range: Some((0.0, 1.0)),
            y_percent: true,
            log_x: spans_decades(points),
            ..Axes::default()
        },
        820.0,
    );
    let mut page = Page::new(&format!("mesascope sweep: {title}"));
    page.push(&format!(
        "<h1>Decorrelated levels against proxy pursuit: {0}</h1><p>Each trial trains (or fine-tunes) with a share of levels in which the proxy stands apart from the intended goal, then is audited; the figure shows the episodes of {1} that reach a proxy. Langosco et al. (2022) found a few percent of such levels enough to make most agents pursue the intended goal.</p><figure>{chart}</figure><pre>{2}</pre>",
        esc(title),
        esc(shift),
        esc(&text(points))
    ));
    page.finish()
}
