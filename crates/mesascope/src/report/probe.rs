//! The probes' report: the summary as text, a section for the audit's page, and a page of its
//! own.

use super::html::{esc, Page};
use super::text::{pct, table, Align};
use mesascope_learn::probe::{ProbeReport, SteerOutcome};
use std::fmt::Write as _;

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
pub fn text(r: &ProbeReport, seconds: f64) -> String {
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
    let text = self::text(r, 0.0);
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
    let mut page = Page::new(&format!("mesascope probe: {} on {}", r.policy, r.testbed));
    page.push(&format!(
        "<h1>Probes and steering: {} on {}</h1>",
        esc(&r.policy),
        esc(&r.testbed)
    ))
    .push(&section(r));
    page.finish()
}
