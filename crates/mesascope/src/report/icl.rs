//! The in-context-learning lab's report: the comparison with gradient descent as text, and a page
//! with the training curve and the verdict.

use super::html::{esc, Page};
use super::svg::{line_chart, Axes, Series};
use super::text::{table, Align};
use mesascope_learn::icl::{Comparison, IclReport, IclVerdict};
use std::fmt::Write as _;

fn rows(r: &IclReport) -> Vec<Vec<String>> {
    let mut t = vec![vec![
        "tasks".to_string(),
        "inputs".into(),
        "model loss".into(),
        format!(
            "GD loss ({} step{})",
            r.config.layers,
            if r.config.layers == 1 { "" } else { "s" }
        ),
        "zero loss".into(),
        "gap".into(),
        "model cos".into(),
        "sens. L2".into(),
        "|y_model - y_GD|".into(),
    ]];
    let row = |name: &str, c: &Comparison| {
        vec![
            name.to_string(),
            format!("U[-{0}, {0}]", c.input_range),
            format!("{:.4}", c.model_loss),
            format!("{:.4}", c.gd_loss),
            format!("{:.4}", c.zero_loss),
            format!("{:+.2}%", 100.0 * c.loss_gap),
            format!("{:.4}", c.model_cos),
            format!("{:.4}", c.sensitivity_l2),
            format!("{:.4}", c.prediction_diff),
        ]
    };
    t.push(row("held-out", &r.in_distribution));
    t.push(row("scaled (OOD)", &r.out_of_distribution));
    t
}

pub fn text(r: &IclReport) -> String {
    let c = &r.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mesascope icl: d={}, {} context points, {} LSA layer{} trained {} Adam steps on {} tasks each; {} held-out tasks\n",
        c.dim,
        c.context,
        c.layers,
        if c.layers == 1 { "" } else { "s" },
        c.steps,
        c.batch,
        c.eval_tasks
    );
    let _ = writeln!(
        s,
        "gradient descent: {} step{} from w = 0, step size {:.4} (tuned on {} held-out tasks)",
        c.layers,
        if c.layers == 1 { "" } else { "s" },
        r.gd_eta,
        c.tune_tasks
    );
    let _ = writeln!(
        s,
        "constructed LSA weights (one GD step per layer): max |y_LSA - y_GD| = {:.1e}\n",
        r.constructed_max_diff
    );
    let mut align = vec![Align::Left, Align::Left];
    align.extend([Align::Right; 7]);
    s.push_str(&table(&rows(r), &align, "  "));
    let _ = writeln!(
        s,
        "\nverdict: {} (thresholds: |gap| <= {:.0}% and model cos >= {} held-out; model cos >= {} scaled)",
        r.verdict.describe(),
        100.0 * r.thresholds.max_loss_gap,
        r.thresholds.min_model_cos,
        r.thresholds.min_model_cos
    );
    s
}

pub fn page(r: &IclReport) -> String {
    let c = &r.config;
    let mut s = String::new();
    let _ = write!(
        s,
        "<h1>In-context regression: is the forward pass gradient descent?</h1><p class='note'>schema {} &middot; seed {} &middot; d = {} &middot; {} context points &middot; {} layer(s) &middot; {} Adam steps of {} tasks &middot; {} held-out tasks</p>",
        r.schema_version, c.seed, c.dim, c.context, c.layers, c.steps, c.batch, c.eval_tasks
    );
    let class = match r.verdict {
        IclVerdict::ImplementsGd => "ok",
        IclVerdict::GdInDistributionOnly => "unk",
        IclVerdict::NotGd => "bad",
    };
    let _ = write!(
        s,
        "<p class='verdict {class}'>{}</p><p class='note'>Thresholds: the model's held-out loss within {:.0}% of tuned gradient descent's and model cos at least {} on held-out tasks; model cos at least {} on scaled inputs.</p>",
        esc(r.verdict.describe()),
        100.0 * r.thresholds.max_loss_gap,
        r.thresholds.min_model_cos,
        r.thresholds.min_model_cos
    );
    let _ = write!(
        s,
        "<p>Each task is a linear function y = w&middot;x with w ~ N(0, I); the transformer sees the context points as tokens (x, y) and the query as (x, 0). Gradient descent: {} step(s) from w = 0 on the context's squared loss, step size {:.4} tuned on held-out tasks. The hand-constructed weights that make each layer one GD step reproduce it to {:.1e}. Model cos is the mean cosine between the sensitivities &part;&ycirc;/&part;x<sub>query</sub> of the model and of GD.</p>",
        c.layers, r.gd_eta, r.constructed_max_diff
    );
    s.push_str("<h2>Training</h2><figure>");
    let model: Vec<(f64, f64)> = r
        .curve
        .iter()
        .map(|p| (p.step as f64, p.val_loss))
        .collect();
    let x_max = r.curve.last().map_or(1.0, |p| p.step as f64);
    let series = [
        Series::new("trained LSA (validation)", "#1565c0", model),
        Series::new(
            "tuned gradient descent",
            "#e65100",
            vec![(0.0, r.gd_val_loss), (x_max, r.gd_val_loss)],
        ),
    ];
    s.push_str(&line_chart(
        &series,
        &Axes {
            title: "loss over training".into(),
            x_label: "Adam step".into(),
            y_label: "loss (log)".into(),
            log_y: true,
            ..Axes::default()
        },
        800.0,
    ));
    s.push_str("<figcaption>Mean (&ycirc; &minus; y)&sup2;/2 on fixed validation tasks.</figcaption></figure>");
    s.push_str("<h2>Model against gradient descent</h2><table>");
    for (i, row) in rows(r).iter().enumerate() {
        s.push_str("<tr>");
        for (j, cell) in row.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            let cls = if j < 2 { " class='l'" } else { "" };
            let _ = write!(s, "<{tag}{cls}>{}</{tag}>", esc(cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table><p class='note'>gap: model loss / GD loss &minus; 1. Scaled: inputs uniform on a wider range than in training (out of distribution).</p>");
    let mut page = Page::new("mesascope icl: in-context learning as gradient descent");
    page.push(&s);
    page.finish()
}
