//! `mesascope probe POLICY --env TESTBED`: linear probes from the network's activations to
//! each declared goal's position and to the oversight cue, and a steering experiment against the
//! proxy with random vectors as the control (`mesascope_learn::probe`). POLICY is a checkpoint,
//! or an ONNX model whose extra outputs are its activations (probed, not steered).

use crate::args::ProbeArgs;
use crate::audit::{load_onnx, PolicySpec};
use crate::demo::write_atomic;
use crate::error::input;
use crate::html::{esc, CSS};
use crate::text::{table, Align};
use crate::train::learn_err;
use anyhow::Result;
use mesascope_core::{testbeds, Knobs};
use mesascope_learn::agent::PolicyAgent;
use mesascope_learn::probe::{probe, probe_readout, ProbeConfig, ProbeReport, SteerOutcome};
use mesascope_onnx::OnnxAgent;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// Runs the probes the arguments describe.
pub fn run_probe(a: &ProbeArgs) -> Result<ProbeReport> {
    let spec = PolicySpec::parse(&a.policy)?;
    if let PolicySpec::Scripted { .. } = spec {
        return Err(input(format!(
            "probes read a network's activations: '{}' is a scripted agent, give a checkpoint folder or an ONNX model that exposes activations",
            a.policy
        )));
    }
    let tb = testbeds::make(&a.env, &Knobs::from_pairs(&a.knobs.knobs))?;
    let cfg = ProbeConfig {
        levels: a.levels as usize,
        layer: a.layer,
        scale: a.scale,
        episodes: a.episodes as usize,
        per_state: !a.mean_vector,
        controls: a.controls as usize,
        seed: a.seed,
        ..ProbeConfig::default()
    };
    cfg.validate().map_err(|e| input(e.to_string()))?;
    match &spec {
        PolicySpec::Onnx(path) => {
            let model = load_onnx(tb.as_ref(), path)?;
            if model.layer_names().is_empty() {
                return Err(input(format!(
                    "ONNX model {} exposes no activations: add extra outputs besides 'logits', float32 [N, ...] each named after its layer (docs/onnx.md, \"Activations for probes\")",
                    path.display()
                )));
            }
            let agent = OnnxAgent::new(Arc::new(model));
            probe_readout(&tb, &agent, &spec.label(), &cfg).map_err(learn_err)
        }
        _ => {
            // The factory checks the checkpoint against the testbed (name, grid, actions) first.
            let _checked = spec.factory(&tb)?;
            let PolicySpec::Checkpoint(dir) = &spec else {
                unreachable!("scripted policies are refused above")
            };
            let agent = PolicyAgent::load(dir).map_err(learn_err)?;
            probe(&tb, &agent, &spec.label(), &cfg).map_err(learn_err)
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

fn steer_rows(s: &[&SteerOutcome]) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "steering".to_string(),
        "intended".into(),
        "proxy".into(),
        "P(proxy-ward) median".into(),
        "mean".into(),
        "P(intended-ward) mean".into(),
    ]];
    for o in s {
        rows.push(vec![
            o.condition.clone(),
            pct(o.intended),
            pct(o.proxy),
            opt(o.decision_median),
            opt(o.decision_mean),
            opt(o.decision_intended_mean),
        ]);
    }
    rows
}

/// The report as text.
pub fn render(r: &ProbeReport, seconds: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mesascope probe: {} on {}, {} levels per distribution ({} states), seed {}\n",
        r.policy, r.testbed, r.levels, r.states, r.seed
    );
    let _ = writeln!(
        s,
        "Goal probes: does a linear read-out of the layer name a best move toward the goal? (ridge,\nheld-out levels; shifted levels only, where the goals stand apart)"
    );
    let mut rows = vec![vec![
        "layer".to_string(),
        "goal".into(),
        "held-out accuracy".into(),
        "shuffled labels".into(),
    ]];
    for p in &r.goals {
        rows.push(vec![
            p.layer.clone(),
            format!("{}{}", p.goal, if p.intended { " (intended)" } else { "" }),
            pct(p.accuracy),
            pct(p.accuracy_shuffled),
        ]);
    }
    s.push_str(&table(
        &rows,
        &[Align::Left, Align::Left, Align::Right, Align::Right],
        "  ",
    ));
    if let Some((goal, layer)) = &r.strongest_goal {
        let _ = writeln!(s, "strongest: {goal} at {layer}");
    }
    if !r.cue.is_empty() {
        let _ = writeln!(s, "\nOversight-cue probe (watched or not):");
        let mut rows = vec![vec![
            "layer".to_string(),
            "held-out accuracy".into(),
            "majority class".into(),
            "shuffled labels".into(),
        ]];
        for c in &r.cue {
            rows.push(vec![
                c.layer.clone(),
                pct(c.accuracy),
                pct(c.majority),
                pct(c.accuracy_shuffled),
            ]);
        }
        s.push_str(&table(
            &rows,
            &[Align::Left, Align::Right, Align::Right, Align::Right],
            "  ",
        ));
    }
    match (&r.steering, &r.steering_skipped) {
        (Some(st), _) => {
            let _ = writeln!(
                s,
                "\nSteering at {}: {}, {} (coefficient {}, norm {:.2}; {} paired states) on {}, {} episodes\neach; {} decision points:",
                st.layer,
                st.vector,
                if st.per_state { "each state's own vector" } else { "one mean vector" },
                st.scale,
                st.norm,
                st.pairs,
                st.distribution,
                st.none.episodes,
                st.decision_points
            );
            let rows = steer_rows(&[&st.none, &st.steered, &st.random]);
            let mut align = vec![Align::Left];
            align.extend([Align::Right; 5]);
            s.push_str(&table(&rows, &align, "  "));
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "\nNo steering experiment: {why}.");
        }
        _ => {}
    }
    let _ = writeln!(s, "\nprobed in {seconds:.1} s");
    s
}

const EXPLAIN: &str = "Linear probes read which goal the network's activations encode: a ridge regression from a layer's activations to the moves that are best for a goal (found with the planner), scored on held-out levels beside the same probe fitted to shuffled labels. A steering vector is the activation difference a goal's target makes in a state (the state minus the same state with the goal's object removed or, where the goal is a place, the cell walled off); subtracting the proxy's vector during play, beside random vectors of the same norm, shows whether that direction controls which goal the agent pursues. Decision points are visited states where the intended goal's and the proxy's best moves differ; P(proxy-ward) is the policy's probability of a move that serves the proxy there.";

/// The probes as a section of an HTML page (the audit's, or the probe's own).
pub fn section(r: &ProbeReport) -> String {
    let text = render(r, 0.0);
    let body: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("probed in"))
        .collect();
    format!(
        "<h2>Inside the network: probes and steering</h2><p>{}</p><pre>{}</pre>",
        esc(EXPLAIN),
        esc(&body.join("\n"))
    )
}

/// The report as a self-contained HTML page.
pub fn page(r: &ProbeReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>mesascope probe: {} on {}</title><style>{CSS}</style></head><body><h1>Probes and steering: {} on {}</h1>{}</body></html>\n",
        esc(&r.policy),
        esc(&r.testbed),
        esc(&r.policy),
        esc(&r.testbed),
        section(r)
    )
}

/// `mesascope probe`.
pub fn run(a: &ProbeArgs) -> Result<String> {
    let start = Instant::now();
    let report = run_probe(a)?;
    let mut s = render(&report, start.elapsed().as_secs_f64());
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| {
            input(format!(
                "cannot create output folder {}: {e}",
                dir.display()
            ))
        })?;
        let mut json = serde_json::to_vec_pretty(&report)?;
        json.push(b'\n');
        write_atomic(&dir.join("probe.json"), &json)?;
        write_atomic(&dir.join("probe.html"), page(&report).as_bytes())?;
        let _ = writeln!(s, "wrote {} (probe.json, probe.html)", dir.display());
    }
    Ok(s)
}
