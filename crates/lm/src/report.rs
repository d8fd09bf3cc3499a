//! Self-contained HTML reports (no scripts, no external files): the defection probe's per-layer
//! curves as inline SVG, and its table.

use crate::defection::{ProbeAnalysis, ProbeMethod};
use std::fmt::Write as _;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A named series of `(layer, value)` points, values in [0, 1].
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    dashed: bool,
    values: Vec<f64>,
}

/// A line chart of values in [0, 1] over the layers.
fn chart(title: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 300.0, 50.0, 170.0, 30.0, 40.0);
    let n = series.first().map_or(0, |s| s.values.len()).max(2);
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v.clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        left,
        escape(title)
    );
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v:.2}</text>"##,
            w - right,
            left - 4.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    let step = (n / 10).max(1);
    for i in (0..n).step_by(step) {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{i}</text>"#,
            x(i),
            h - bottom + 14.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">layer (residual stream leaving the block)</text>"#,
        (left + w - right) / 2.0,
        h - 6.0
    );
    let _ = write!(
        s,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        escape(y_label)
    );
    for (k, se) in series.iter().enumerate() {
        let points: Vec<String> = se
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            se.colour,
            points.join(" ")
        );
        let ly = top + 14.0 * k as f64;
        let _ = write!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            w - right + 8.0,
            w - right + 28.0,
            se.colour,
            w - right + 32.0,
            ly + 4.0,
            escape(se.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The defection probe's report: AUROC and recall per layer against the controls, and a table.
pub fn probe_report_html(a: &ProbeAnalysis, title: &str) -> String {
    let col = |f: &dyn Fn(&crate::defection::LayerFigures) -> f64| -> Vec<f64> {
        a.layers.iter().map(f).collect()
    };
    let auroc = chart(
        "AUROC, triggered vs clean prompts",
        "AUROC",
        &[
            Series {
                name: "difference of means",
                colour: "#1f77b4",
                dashed: false,
                values: col(&|l| l.difference_of_means.auroc),
            },
            Series {
                name: "logistic",
                colour: "#d62728",
                dashed: false,
                values: col(&|l| l.logistic.auroc),
            },
            Series {
                name: "best random direction",
                colour: "#7f7f7f",
                dashed: true,
                values: col(&|l| l.difference_of_means.random.best_auroc),
            },
            Series {
                name: "shuffled labels (best)",
                colour: "#2ca02c",
                dashed: true,
                values: col(&|l| l.difference_of_means.shuffled_best_auroc),
            },
        ],
    );
    let fpr_pct = 100.0 * a.settings.fpr;
    let recall = chart(
        &format!("Recall at {fpr_pct}% false positives on clean prompts"),
        "recall",
        &[
            Series {
                name: "difference of means",
                colour: "#1f77b4",
                dashed: false,
                values: col(&|l| l.difference_of_means.at_fpr.recall),
            },
            Series {
                name: "logistic",
                colour: "#d62728",
                dashed: false,
                values: col(&|l| l.logistic.at_fpr.recall),
            },
        ],
    );
    let p = &a.probe;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}th{{background:#f4f4f4}}tr.chosen{{background:#fff6d5}}</style></head><body>
<h1>{t}</h1>
<p>Model <code>{model}</code> ({arch}, {layers} layers, width {width}; checkpoint hash {hash}; {adapter}).
Probes fitted on {pairs} contrast pairs that never contain the trigger; scored on {trig} triggered and {clean} clean prompts at the final prompt token.</p>
<p>Probe file: {method} at <code>{hook}</code>{chosen}; AUROC {auc:.3}; threshold {thr:.4} (false-positive rate {fpr_pct}% on the {clean} clean prompts) with recall {rec:.3}.</p>
"#,
        t = escape(title),
        model = escape(&p.model.path.display().to_string()),
        arch = escape(&p.model.architecture),
        layers = p.model.n_layers,
        width = p.model.d_model,
        hash = p.model.checkpoint_hash,
        adapter = match &p.model.adapter_hash {
            Some(x) => format!("adapter hash {x}"),
            None => "no adapter".into(),
        },
        pairs = a.pairs,
        trig = a.triggered_prompts,
        clean = a.clean_prompts,
        method = match p.method {
            ProbeMethod::DifferenceOfMeans => "difference of means",
            ProbeMethod::Logistic => "logistic",
        },
        hook = p.hook,
        chosen = if a.layer_chosen_on_eval {
            " (the layer of the highest AUROC on this evaluation set: an optimistic choice)"
        } else {
            " (the layer asked for)"
        },
        auc = p.auroc,
        thr = p.threshold,
        rec = p.recall,
    );
    h.push_str(&auroc);
    h.push_str(&recall);
    if a.layers.iter().all(|l| l.surface_matched.is_some()) {
        let sm = |f: &dyn Fn(&crate::defection::MethodFigures) -> f64| -> Vec<f64> {
            a.layers
                .iter()
                .filter_map(|l| l.surface_matched.as_ref().map(f))
                .collect()
        };
        h.push_str(&chart(
            "AUROC, triggered vs surface-matched decoys (the trigger swapped for a string of its shape)",
            "AUROC",
            &[
                Series {
                    name: "difference of means",
                    colour: "#1f77b4",
                    dashed: false,
                    values: sm(&|m| m.auroc),
                },
                Series {
                    name: "best random direction",
                    colour: "#7f7f7f",
                    dashed: true,
                    values: sm(&|m| m.random.best_auroc),
                },
                Series {
                    name: "shuffled labels (best)",
                    colour: "#2ca02c",
                    dashed: true,
                    values: sm(&|m| m.shuffled_best_auroc),
                },
            ],
        ));
        let _ = write!(
            h,
            "<p>{} decoys{}.</p>",
            a.decoy_prompts,
            match a.decoys_defected {
                Some(k) => format!(
                    "; the model defects on {k} of them (a decoy it defects on is no clean negative)"
                ),
                None => String::new(),
            }
        );
    }
    let _ = write!(
        h,
        "<h2>Per layer</h2><table><tr><th>layer</th><th>DM AUROC</th><th>DM recall</th><th>logistic AUROC</th><th>logistic recall</th><th>best of {} random</th><th>mean random</th><th>shuffled mean</th><th>shuffled best</th><th>pairs AUROC</th></tr>",
        a.settings.random_directions
    );
    for l in &a.layers {
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            if l.layer == a.layer { r#" class="chosen""# } else { "" },
            l.layer,
            l.difference_of_means.auroc,
            l.difference_of_means.at_fpr.recall,
            l.logistic.auroc,
            l.logistic.at_fpr.recall,
            l.difference_of_means.random.best_auroc,
            l.difference_of_means.random.mean_auroc,
            l.difference_of_means.shuffled_mean_auroc,
            l.difference_of_means.shuffled_best_auroc,
            l.pairs_auroc,
        );
    }
    h.push_str("</table><p>Random directions and shuffled labels are scored sign-free (max(a, 1 - a)); the probes are not. Recall is measured at the threshold that keeps the false-positive rate on the clean prompts at or below the stated rate.</p></body></html>\n");
    h
}
