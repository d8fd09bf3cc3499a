//! A mitigation's report: `mitigation.json`'s layout, and the audits before and after side by
//! side as text.

use super::text::{pct, table, Align};
use super::train::Curve;
use mesascope_core::audit::AuditReport;
use mesascope_learn::curriculum::{CurriculumConfig, Round};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// What a mitigation did: the audits before and after, and the fine-tuning run.
#[derive(Clone, Debug)]
pub struct Mitigation {
    /// The checkpoint mitigated, and its testbed.
    pub source: PathBuf,
    pub testbed: String,
    /// `diversify` or `adversarial`.
    pub method: &'static str,
    pub before: AuditReport,
    pub after: AuditReport,
    pub extra_steps: u64,
    pub source_steps: u64,
    pub decorrelate: f64,
    pub wall: f64,
    /// The fine-tuning run's learning curve (steps counted from the fine-tuning's start).
    pub curve: Curve,
    /// The fine-tuned checkpoint and reports.
    pub out: PathBuf,
}

/// `mitigation.json`.
#[derive(Serialize)]
pub struct Summary<'a> {
    pub kind: &'static str,
    pub method: &'static str,
    pub source: String,
    pub testbed: &'a str,
    pub decorrelate: f64,
    /// adversarial: the curriculum's settings and what each refresh found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curriculum: Option<(CurriculumConfig, Vec<Round>)>,
    /// Fine-tuning env steps: the mitigation's extra training.
    pub extra_steps: u64,
    /// Env steps the source checkpoint had been trained for.
    pub source_steps: u64,
    pub seed: u64,
    pub before: Side,
    pub after: Side,
}

/// One audit in `mitigation.json`: the verdict and the outcome rates.
#[derive(Serialize)]
pub struct Side {
    pub verdict: String,
    pub exit_code: i32,
    /// Per distribution: (name, [(outcome, rate)]).
    pub outcomes: Vec<(String, Vec<(String, f64)>)>,
}

pub fn side(r: &AuditReport) -> Side {
    Side {
        verdict: r.verdict.label.clone(),
        exit_code: r.verdict.exit_code,
        outcomes: r
            .distributions
            .iter()
            .map(|d| {
                let rates = d
                    .outcomes
                    .iter()
                    .map(|o| (o.outcome.clone(), o.rate.rate))
                    .collect();
                (d.name.clone(), rates)
            })
            .collect(),
    }
}

/// The mitigation's summary as text: settings, both audits side by side, verdicts, files.
pub fn text(m: &Mitigation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mitigate {} on {}: {} (decorrelate {}), {} extra env steps in {:.0} s (the source had {})\n",
        m.source.display(),
        m.testbed,
        m.method,
        m.decorrelate,
        m.extra_steps,
        m.wall,
        m.source_steps
    );
    s.push_str(&compare(&m.before, &m.after));
    let _ = writeln!(
        s,
        "\nverdict before: {} (exit {})\nverdict after:  {} (exit {})",
        m.before.verdict.label,
        m.before.verdict.exit_code,
        m.after.verdict.label,
        m.after.verdict.exit_code
    );
    let _ = writeln!(
        s,
        "wrote {} (checkpoint, audit.json, audit.html, audit-before.json, mitigation.json)",
        m.out.display()
    );
    s
}

/// Outcome rates per distribution, before and after.
pub fn compare(before: &AuditReport, after: &AuditReport) -> String {
    let outcomes: Vec<String> = before.distributions[0]
        .outcomes
        .iter()
        .map(|o| o.outcome.clone())
        .collect();
    let mut header = vec!["distribution".to_string(), "".to_string()];
    header.extend(outcomes.iter().cloned());
    header.push("hidden".into());
    let mut rows = vec![header];
    for (b, a) in before.distributions.iter().zip(&after.distributions) {
        for (when, d) in [("before", b), ("after", a)] {
            let mut row = vec![
                if when == "before" {
                    d.name.clone()
                } else {
                    String::new()
                },
                when.to_string(),
            ];
            for o in &outcomes {
                row.push(pct(d.rate(o).map_or(0.0, |r| r.rate)));
            }
            row.push(format!("{:.3}", d.hidden.mean));
            rows.push(row);
        }
    }
    let mut align = vec![Align::Left, Align::Left];
    align.extend(std::iter::repeat_n(Align::Right, outcomes.len() + 1));
    table(&rows, &align, "  ")
}
