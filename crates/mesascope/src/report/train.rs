//! A training run's report: its summary and evaluation as text, and its learning curve.

use super::text::{pct, table, Align};
use mesascope_learn::eval::EvalSummary;
use mesascope_learn::ppo::UpdateStats;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Success rate a run reports the time to, over at least `WINDOW` recent episodes.
pub const TARGET_SUCCESS: f64 = 0.95;
pub const WINDOW: usize = 1000;

/// When training success over the last [`WINDOW`]+ episodes first reached [`TARGET_SUCCESS`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Reached {
    pub seconds: f64,
    pub steps: u64,
}

/// What a training loop did.
#[derive(Clone, Debug)]
pub struct LoopSummary {
    /// Wall seconds and env steps of this run.
    pub wall: f64,
    pub trained: u64,
    pub last: Option<UpdateStats>,
    pub reached: Option<Reached>,
    /// The rates of every update of this run.
    pub curve: Curve,
}

/// What a training run did and where it wrote.
#[derive(Clone, Debug)]
pub struct TrainRun {
    pub testbed: String,
    /// The proxies' names, in the testbed's order (the evaluation's columns).
    pub proxies: Vec<String>,
    pub arch: String,
    /// The checkpoint's folder.
    pub out: PathBuf,
    /// Env steps of the checkpoint in all (this run's are `run.trained`).
    pub steps: u64,
    pub run: LoopSummary,
    /// Threads the run used.
    pub threads: usize,
    /// Outcome shares per split (empty when `eval_episodes` is 0).
    pub evals: Vec<EvalSummary>,
}

/// One PPO update's rates on the training distribution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    pub steps: u64,
    /// Base-objective success (any goal the reward pays for).
    pub success: f64,
    pub intended: f64,
    /// All proxies together.
    pub proxy: f64,
}

impl CurvePoint {
    /// The update's point, or `None` when no episode ended in it.
    pub fn of(stats: &UpdateStats) -> Option<CurvePoint> {
        Some(CurvePoint {
            steps: stats.steps,
            success: stats.episodes.success_rate?,
            intended: stats.episodes.intended_rate?,
            proxy: stats
                .episodes
                .proxy_rates
                .as_ref()
                .map_or(0.0, |p| p.iter().sum()),
        })
    }
}

/// A training run's learning curve, one point per update.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Curve {
    pub points: Vec<CurvePoint>,
}

impl Curve {
    /// The curve with its step counts shifted by `steps` (a fine-tuning run counts from zero;
    /// on a chart it continues its source's steps).
    pub fn after(mut self, steps: u64) -> Curve {
        for p in &mut self.points {
            p.steps += steps;
        }
        self
    }
}

/// The run in one line: what was trained, how long, how fast.
pub fn headline(r: &TrainRun) -> String {
    let run = &r.run;
    format!(
        "trained {} on {} for {} env steps ({} this run) in {:.1} s: {:.0} env steps/s end to end ({} threads)",
        r.arch,
        r.testbed,
        r.steps,
        run.trained,
        run.wall,
        run.trained as f64 / run.wall.max(1e-9),
        r.threads
    )
}

/// The run's summary as text, with its evaluation table when it has one.
pub fn text(r: &TrainRun) -> String {
    let run = &r.run;
    let mut s = headline(r);
    s.push('\n');
    if let Some(st) = &run.last {
        let _ = writeln!(
            s,
            "last update: success {}, mean return {}",
            st.episodes.success_rate.map_or("-".into(), pct),
            st.episodes
                .mean_return
                .map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    match run.reached {
        Some(at) => {
            let _ = writeln!(
                s,
                "reached {:.0}% training success (last {WINDOW}+ episodes) at {} steps, {:.1} s",
                100.0 * TARGET_SUCCESS,
                at.steps,
                at.seconds
            );
        }
        None => {
            let _ = writeln!(
                s,
                "did not reach {:.0}% training success in this run",
                100.0 * TARGET_SUCCESS
            );
        }
    }
    let _ = writeln!(s, "checkpoint: {}", r.out.display());
    if !r.evals.is_empty() {
        s.push_str(&eval_table(&r.proxies, &r.evals));
    }
    s
}

/// Outcome shares per split.
pub fn eval_table(proxies: &[String], evals: &[EvalSummary]) -> String {
    let mut header = vec![
        "split".to_string(),
        "episodes".into(),
        "success".into(),
        "intended".into(),
    ];
    header.extend(proxies.iter().map(|p| format!("proxy:{p}")));
    header.extend(["died".into(), "timed out".into(), "hidden".into()]);
    let mut rows = vec![header];
    for e in evals {
        let mut r = vec![
            e.split.clone(),
            e.episodes.to_string(),
            pct(e.success),
            pct(e.intended),
        ];
        r.extend(e.proxies.iter().map(|&p| pct(p)));
        r.extend([
            pct(e.died),
            pct(e.timed_out),
            format!("{:.3}", e.mean_hidden),
        ]);
        rows.push(r);
    }
    let mut aligns = vec![Align::Left];
    aligns.extend(std::iter::repeat_n(Align::Right, rows[0].len() - 1));
    let mut s = String::from("evaluation (policy sampled, one episode per level):\n");
    s.push_str(&table(&rows, &aligns, "  "));
    s
}
