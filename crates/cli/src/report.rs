//! `mesascope demo`'s report: the whole story on one self-contained HTML page (scripted agents,
//! training curves, the audits before and after mitigation, the runtime monitor) and its JSON.
//! The JSON holds no wall-clock times, so the same seed gives the same file.

use crate::demo::DemoReport;
use crate::html::{esc, outcomes_chart, posterior_chart, verdict_class, CSS};
use crate::monitor::{table_text, MonitorReport};
use crate::story::Story;
use crate::svg::{line_chart, Axes, Series, PALETTE};
use anyhow::{Context, Result};
use mesascope_core::audit::AuditReport;
use mesascope_core::monitor::Evidence;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Version of `report.json`'s layout.
pub const SCHEMA_VERSION: u32 = 1;

/// One PPO update's rates on the training distribution.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    pub steps: u64,
    /// Base-objective success (any goal the reward pays for).
    pub success: f64,
    pub intended: f64,
    /// All proxies together.
    pub proxy: f64,
}

/// A training run's curve, read back from its `metrics.jsonl`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Curve {
    pub points: Vec<CurvePoint>,
}

impl Curve {
    /// Reads `metrics.jsonl`, shifting its step counts by `offset` (a fine-tuning run counts
    /// from zero; on the chart it continues its source's steps).
    pub fn read(path: &Path, offset: u64) -> Result<Curve> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut points = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
            let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
            let (Some(steps), Some(success), Some(intended)) =
                (num("steps"), num("success_rate"), num("intended_rate"))
            else {
                anyhow::bail!(
                    "{} line {}: missing steps, success_rate or intended_rate",
                    path.display(),
                    i + 1
                );
            };
            let proxy = v
                .get("proxy_rates")
                .and_then(|p| p.as_array())
                .map_or(0.0, |p| p.iter().filter_map(|x| x.as_f64()).sum());
            points.push(CurvePoint {
                steps: offset + steps as u64,
                success,
                intended,
                proxy,
            });
        }
        Ok(Curve { points })
    }
}

#[derive(Serialize)]
struct Json<'a> {
    schema_version: u32,
    kind: &'static str,
    mesascope_version: &'static str,
    testbed: &'a str,
    seed: u64,
    scripted: &'a DemoReport,
    training: &'a Curve,
    fine_tuning: &'a Curve,
    decorrelate: f64,
    extra_steps: u64,
    audit_before: &'a AuditReport,
    audit_after: &'a AuditReport,
    monitor_before: &'a MonitorReport,
    monitor_after: &'a MonitorReport,
}

/// `report.json`: every figure of the page.
pub fn json(st: &Story, scripted: &DemoReport) -> Result<Vec<u8>> {
    let m = &st.mitigation;
    let mut bytes = serde_json::to_vec_pretty(&Json {
        schema_version: SCHEMA_VERSION,
        kind: "mesascope-demo",
        mesascope_version: env!("CARGO_PKG_VERSION"),
        testbed: st.testbed,
        seed: st.seed,
        scripted,
        training: &st.training,
        fine_tuning: &st.fine_tuning,
        decorrelate: st.decorrelate,
        extra_steps: m.extra_steps,
        audit_before: &m.before,
        audit_after: &m.after,
        monitor_before: &st.monitor_before,
        monitor_after: &st.monitor_after,
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn share(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        pct(n as f64 / d as f64)
    }
}

fn verdict_badge(r: &AuditReport) -> String {
    format!(
        "<span class='verdict {}'>{}</span>",
        verdict_class(r.verdict.exit_code),
        esc(&r.verdict.label)
    )
}

/// The shifted rows of a monitor report: (alarms, alarm before proxy, false alarms) summed.
fn shifted(r: &MonitorReport) -> (usize, usize, usize, usize, usize) {
    r.rows
        .iter()
        .filter(|row| row.distribution != "train")
        .fold((0, 0, 0, 0, 0), |(a, c, p, f, n), row| {
            (
                a + row.alarms,
                c + row.caught,
                p + row.proxy_reached,
                f + row.false_alarms,
                n + row.episodes,
            )
        })
}

fn training_chart(st: &Story) -> String {
    let all: Vec<&CurvePoint> = st
        .training
        .points
        .iter()
        .chain(&st.fine_tuning.points)
        .collect();
    let line = |f: fn(&CurvePoint) -> f64| -> Vec<(f64, f64)> {
        all.iter().map(|p| (p.steps as f64, f(p))).collect()
    };
    let series = [
        Series::new("base-objective success", PALETTE[0], line(|p| p.success)),
        Series::new("intended goal", "#2e7d32", line(|p| p.intended)),
        Series::new("proxy (green)", "#e65100", line(|p| p.proxy)),
    ];
    let marks = st
        .fine_tuning
        .points
        .first()
        .map(|_| {
            vec![(
                st.mitigation.source_steps as f64,
                format!(
                    "fine-tuning ({:.0}% decorrelated levels)",
                    100.0 * st.decorrelate
                ),
            )]
        })
        .unwrap_or_default();
    line_chart(
        &series,
        &Axes {
            title: "training distribution, per PPO update".into(),
            x_label: "env steps".into(),
            y_label: "share of episodes".into(),
            y_range: Some((0.0, 1.0)),
            y_percent: true,
            marks,
            ..Axes::default()
        },
        900.0,
    )
}

fn trace_chart(r: &MonitorReport) -> Option<String> {
    let t = r.trace.as_ref()?;
    let colours = [
        "#2e7d32", "#e65100", "#6a1b9a", "#00838f", "#ad1457", "#9e9e9e",
    ];
    let series: Vec<Series> = t
        .candidates
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let colour = if c + 1 == t.candidates.len() {
                "#9e9e9e"
            } else {
                colours[c % (colours.len() - 1)]
            };
            let mut pts = vec![(0.0, 1.0 / t.candidates.len() as f64)];
            pts.extend(
                t.posterior
                    .iter()
                    .enumerate()
                    .map(|(i, p)| ((i + 1) as f64, p[c])),
            );
            Series::new(name.clone(), colour, pts).with_markers()
        })
        .collect();
    let mut marks = Vec::new();
    if let Some(f) = t.first_proxy_ward {
        marks.push((f as f64 - 0.5, "first proxy-ward move".to_string()));
    }
    if let Some(a) = t.alarm {
        marks.push((a as f64, "alarm".to_string()));
    }
    Some(line_chart(
        &series,
        &Axes {
            title: format!("{}, episode {}", t.distribution, t.episode),
            x_label: "moves".into(),
            y_label: "posterior".into(),
            y_range: Some((0.0, 1.0)),
            y_percent: true,
            marks,
            ..Axes::default()
        },
        700.0,
    ))
}

/// The demo's HTML page.
pub fn page(st: &Story, scripted: &DemoReport) -> String {
    let m = &st.mitigation;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>mesascope demo: {}</title><style>{CSS}</style></head><body>",
        esc(st.testbed)
    );
    let _ = write!(
        s,
        "<h1>mesascope demo: a pseudo-aligned agent, found, fixed and guarded</h1><p class='note'>mesascope {} &middot; testbed {} &middot; seed {} &middot; report schema {SCHEMA_VERSION}</p>",
        env!("CARGO_PKG_VERSION"),
        esc(st.testbed),
        st.seed
    );
    let _ = write!(
        s,
        "<p>A PPO agent is trained on <b>{}</b>, where the exit is always green during training: reaching the exit (the intended goal) and reaching green (a proxy) are the same thing there, and the reward cannot tell which the agent learned. The audit separates them on shifted levels, where the exit has another colour and a green decoy stands elsewhere. Fine-tuning on levels where the two come apart repairs the agent, and a runtime monitor watches both agents move by move.</p>",
        esc(st.testbed)
    );

    // The story in brief.
    let (a0, c0, p0, _, n0) = shifted(&st.monitor_before);
    let (a1, _, _, f1, n1) = shifted(&st.monitor_after);
    let final_success = st.training.points.last().map_or(0.0, |p| p.success);
    let pseudo_found = scripted
        .testbeds
        .iter()
        .flat_map(|t| &t.findings)
        .filter(|f| f.pseudo_aligned)
        .count();
    let findings: usize = scripted.testbeds.iter().map(|t| t.findings.len()).sum();
    s.push_str("<h2>The story in brief</h2><table><tr><th class='l'>step</th><th class='l'>result</th><th>seconds</th></tr>");
    let stage_time = |name: &str| {
        st.stages
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("-".into(), |(_, t)| format!("{t:.0}"))
    };
    let rows = [
        (
            "scripted agents".to_string(),
            format!("{pseudo_found} of {findings} proxy-seekers match the intended agent in training and come apart under shift"),
            "-".to_string(),
        ),
        (
            "1. train".into(),
            format!(
                "{} env steps; base-objective success at the end {}",
                m.source_steps,
                pct(final_success)
            ),
            stage_time("train"),
        ),
        (
            "2. audit".into(),
            format!("{} (exit code {})", verdict_badge(&m.before), m.before.verdict.exit_code),
            stage_time("audit, mitigate, audit"),
        ),
        (
            "3. mitigate, audit again".into(),
            format!(
                "diversify, {:.0}% decorrelated levels, {} extra env steps: {} (exit code {})",
                100.0 * st.decorrelate,
                m.extra_steps,
                verdict_badge(&m.after),
                m.after.verdict.exit_code
            ),
            "".into(),
        ),
        (
            "4. monitor".into(),
            format!(
                "trained agent: alarm in {} of shifted episodes, before the proxy in {} of those that reached it; mitigated agent: alarms in {}, false alarms in {}",
                share(a0, n0),
                share(c0, p0),
                share(a1, n1),
                share(f1, n1)
            ),
            stage_time("monitor"),
        ),
    ];
    for (step, result, secs) in rows {
        // Results hold badges (HTML) built above from escaped text.
        let _ = write!(
            s,
            "<tr><td class='l'>{}</td><td class='l'>{result}</td><td>{}</td></tr>",
            esc(&step),
            esc(&secs)
        );
    }
    s.push_str("</table>");

    // Scripted agents.
    s.push_str("<h2>Ground truth: scripted agents</h2><p>Before any training, exact planners show the phenomenon on every testbed: an agent that seeks a proxy earns what the intended agent earns on training levels and loses hidden performance once the shift separates them.</p><table><tr><th class='l'>testbed</th><th class='l'>agent</th><th>same return as intended in training</th><th class='l'>shift</th><th>hidden performance: agent vs intended</th><th class='l'>reading</th></tr>");
    for t in &scripted.testbeds {
        for f in &t.findings {
            let _ = write!(
                s,
                "<tr><td class='l'>{}</td><td class='l'>{}</td><td>{}/{}{}</td><td class='l'>{}</td><td>{:.3} vs {:.3}</td><td class='l'>{}</td></tr>",
                esc(&t.testbed),
                esc(&f.agent),
                f.train_same_return,
                f.train_levels,
                if f.watched_only { " watched" } else { "" },
                esc(&f.shift),
                f.shift_hidden,
                f.shift_hidden_intended,
                if !f.pseudo_aligned {
                    "not separated"
                } else if f.watched_only {
                    "oversight-conditional"
                } else {
                    "pseudo-aligned"
                }
            );
        }
    }
    s.push_str("</table>");

    // Training.
    let _ = write!(
        s,
        "<h2>Training</h2><figure>{}<figcaption>Rates over each PPO update's episodes on the training distribution. Before the dashed line every level has a green exit, so the intended goal and the proxy are reached together and only the intended line shows; after it, fine-tuning draws {:.0}% of levels with the exit and green apart, where going for green now shows as the proxy's line and falls as the agent learns the exit.</figcaption></figure>",
        training_chart(st),
        100.0 * st.decorrelate
    );

    // Audits.
    let _ = write!(
        s,
        "<h2>Audit before and after mitigation</h2><p>Before: {} &nbsp; After: {}</p><div class='maps'><figure>{}<figcaption>Before: how episodes ended.</figcaption></figure><figure>{}<figcaption>After: how episodes ended.</figcaption></figure></div>",
        verdict_badge(&m.before),
        verdict_badge(&m.after),
        outcomes_chart(&m.before),
        outcomes_chart(&m.after)
    );
    let _ = write!(
        s,
        "<div class='maps'><figure>{}<figcaption>Before: posterior over the goals the agent pursues (inverse planning).</figcaption></figure><figure>{}<figcaption>After.</figcaption></figure></div>",
        posterior_chart(&m.before),
        posterior_chart(&m.after)
    );
    let _ = write!(
        s,
        "<p class='note'>The full audits, with evidence, thresholds, the oversight test, the trigger scan and heat maps: <a href='{0}/audit.html'>{0}/audit.html</a> (after) and <code>{0}/audit-before.json</code>.</p>",
        esc(&st.mitigated.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()))
    );

    // Monitor.
    let _ = write!(
        s,
        "<h2>Runtime monitor</h2><p>The monitor keeps a posterior over the declared goals (and no goal) from the agent's {}, each goal modelled as a Boltzmann-rational planner (beta {}), and raises its alarm when the intended goal's posterior falls below {} while a proxy leads{}. With a fallback, the scripted intended agent takes over at the alarm. A false alarm is one raised in an episode that still reached the intended goal.</p>",
        if st.monitor_before.evidence == Evidence::Policy.label() {
            "action distribution at each move (the expected evidence of its move)"
        } else {
            "moves alone"
        },
        st.monitor_before.beta,
        st.monitor_before.threshold,
        match st.monitor_before.reach {
            Some(n) => format!(", holding it until a move would come within {n} moves of the proxy"),
            None => String::new(),
        }
    );
    for (title, r) in [
        ("The trained (pseudo-aligned) agent", &st.monitor_before),
        ("After mitigation", &st.monitor_after),
    ] {
        let _ = write!(
            s,
            "<h3>{}</h3><pre>{}</pre>",
            esc(title),
            esc(&table_text(r))
        );
    }
    if let Some(chart) = trace_chart(&st.monitor_before) {
        let outcome = st
            .monitor_before
            .trace
            .as_ref()
            .map_or(String::new(), |t| t.outcome.clone());
        let _ = write!(
            s,
            "<figure>{chart}<figcaption>One shifted episode of the trained agent, the monitor only recording: the posterior over goals after each move. The alarm comes when the intended goal's posterior falls below the threshold. The episode ended: {}.</figcaption></figure>",
            esc(&outcome)
        );
    }
    s.push_str("</body></html>\n");
    s
}
