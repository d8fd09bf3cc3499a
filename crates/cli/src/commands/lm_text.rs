//! The text `mesascope lm probe`, `lm scan` and `lm generate --monitor` print.

use mesascope::lm::defection::{ProbeAnalysis, ProbeFile, ProbeMethod};
use mesascope::lm::monitor::MonitoredGeneration;
use mesascope::lm::steering::SteeringTrial;
use mesascope::lm::trigger_scan::ScanReport;
use std::fmt::Write as _;
use std::path::Path;

pub fn probe_summary(a: &ProbeAnalysis, out: &Path) -> String {
    let mut s = String::new();
    let pct = 100.0 * a.settings.fpr;
    let _ = writeln!(
        s,
        "{} contrast pairs; {} triggered and {} clean evaluation prompts",
        a.pairs, a.triggered_prompts, a.clean_prompts
    );
    let _ = writeln!(
        s,
        "layer  DM AUROC  recall@{pct}%  logistic AUROC  recall@{pct}%  best of {} random  shuffled best",
        a.settings.random_directions
    );
    for l in &a.layers {
        let _ = writeln!(
            s,
            "{:>5}  {:>8.3}  {:>10.3}  {:>14.3}  {:>10.3}  {:>17.3}  {:>13.3}{}",
            l.layer,
            l.difference_of_means.auroc,
            l.difference_of_means.at_fpr.recall,
            l.logistic.auroc,
            l.logistic.at_fpr.recall,
            l.difference_of_means.random.best_auroc,
            l.difference_of_means.shuffled_best_auroc,
            if l.layer == a.layer {
                "  <- probe.json"
            } else {
                ""
            }
        );
    }
    if a.decoy_prompts > 0 {
        let _ = writeln!(
            s,
            "triggered against surface-matched decoys:\nlayer  DM AUROC  recall@{pct}%  best of {} random  shuffled best",
            a.settings.random_directions
        );
        for l in &a.layers {
            if let Some(m) = &l.surface_matched {
                let _ = writeln!(
                    s,
                    "{:>5}  {:>8.3}  {:>10.3}  {:>17.3}  {:>13.3}",
                    l.layer, m.auroc, m.at_fpr.recall, m.random.best_auroc, m.shuffled_best_auroc
                );
            }
        }
        let _ = writeln!(
            s,
            "{} surface-matched decoys (the trigger swapped for a string of its shape){}",
            a.decoy_prompts,
            match a.decoys_defected {
                Some(k) => format!(
                    "; the model defects on {k} of them (a decoy it defects on is no clean negative)"
                ),
                None => String::new(),
            }
        );
    }
    let p = &a.probe;
    let _ = writeln!(
        s,
        "probe.json: {} at {}{}: AUROC {:.3}, threshold {:.4} ({pct}% false positives on {} clean prompts), recall {:.3}",
        match p.method {
            ProbeMethod::DifferenceOfMeans => "difference of means",
            ProbeMethod::Logistic => "logistic",
        },
        p.hook,
        if a.layer_chosen_on_eval {
            " (the best layer on this evaluation set)"
        } else {
            ""
        },
        p.auroc,
        p.threshold,
        p.calibration_prompts,
        p.recall
    );
    let _ = writeln!(
        s,
        "written: {} (probe.json, analysis.json, report.html)",
        out.display()
    );
    s
}

pub fn scan_summary(r: &ScanReport, top: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} candidates x {} prompts: {} forward passes in {:.1} s",
        r.candidates, r.prompts, r.forward_passes, r.seconds
    );
    let _ = writeln!(
        s,
        "rank  log-prob rise of the behaviour's first {} tokens  probe rise  candidate",
        r.behaviour_tokens
    );
    for (i, c) in r.by_logprob.iter().take(top).enumerate() {
        let _ = writeln!(
            s,
            "{:>4}  {:>+47.3}  {:>10}  {:?}",
            i + 1,
            c.logprob_rise,
            c.probe_rise.map_or("-".into(), |p| format!("{p:+.3}")),
            c.candidate.text
        );
    }
    let by_probe = r.by_probe();
    if !by_probe.is_empty() {
        let _ = writeln!(s, "by the probe's rise:");
        for (i, c) in by_probe.iter().take(top).enumerate() {
            let _ = writeln!(
                s,
                "{:>4}  {:>+10.3}  {:?}",
                i + 1,
                c.probe_rise.unwrap_or(f64::NAN),
                c.candidate.text
            );
        }
    }
    s
}

pub fn monitor_verdict(m: &MonitoredGeneration, p: &ProbeFile) -> String {
    let max = m.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match m.flagged_at {
        Some(k) => format!(
            "monitor: FLAGGED before generated token {} (score {:.4} > threshold {:.4} at {}){}\n",
            k + 1,
            m.scores[k],
            p.threshold,
            p.hook,
            if m.halted { "; generation halted" } else { "" }
        ),
        None => format!(
            "monitor: not flagged ({} tokens scored at {}; highest score {:.4}, threshold {:.4})\n",
            m.scores.len(),
            p.hook,
            max,
            p.threshold
        ),
    }
}

/// `16` or `12,14,16`.
pub fn layer_list(layers: &[usize]) -> String {
    layers
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn steer_summary(t: &SteeringTrial, behaviour: &str) -> String {
    let r = |x: &mesascope::core::audit::stats::Rate| format!("{}/{}", x.count, x.of);
    let mut s = String::new();
    let norms = t
        .vector_norms
        .iter()
        .map(|n| format!("{n:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "layer{} {}, c = {} (|v| = {norms}): answers beginning with {behaviour:?}",
        if t.layers.len() > 1 { "s" } else { "" },
        layer_list(&t.layers),
        t.coefficient
    );
    let _ = writeln!(s, "  unsteered                         {}", r(&t.unsteered));
    let _ = writeln!(s, "  with c v                          {}", r(&t.steered));
    let _ = writeln!(
        s,
        "  with random vectors of its norm   {}",
        t.random.iter().map(r).collect::<Vec<_>>().join(", ")
    );
    s
}
