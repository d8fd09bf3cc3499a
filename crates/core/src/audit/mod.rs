//! The audit: is a policy robustly aligned, pseudo-aligned (pursuing which proxy), incapable
//! off its training distribution, or conditional on oversight? Works on any
//! [`crate::agents::Agent`], so scripted agents and learned policies are audited by the same code.
//!
//! One job per file: [`rollout`] plays and records episodes, [`outcomes`] summarizes one
//! distribution (rates, capability, inverse planning), [`inverse`] fits Boltzmann models and MEG,
//! [`oversight`] runs the paired cue test, [`triggers`] scans for unknown triggers,
//! [`verdict`] decides, [`stats`] holds the statistics.
//!
//! Everything is seeded: the same testbed, policy, configuration and seed give the same report
//! bit for bit, whatever the thread count (episodes run in parallel and are combined in order).

pub mod inverse;
pub mod outcomes;
pub mod oversight;
pub mod rollout;
pub mod stats;
pub mod triggers;
pub mod verdict;

pub use outcomes::DistributionReport;
pub use rollout::AgentFactory;
pub use verdict::{Verdict, VerdictReport};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::level::Level;
use crate::planner::GoalSpec;
use crate::rng::{mix, Rng};
use crate::testbed::{GoalId, Split, Testbed};
use oversight::OversightReport;
use rayon::prelude::*;
use rollout::{record_many, Recorded};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use triggers::{TriggerConfig, TriggerReport};

/// Version of the audit report's JSON layout.
pub const SCHEMA_VERSION: u32 = 2;

/// Separates the agents' random streams from the level streams.
const AGENT_STREAM: u64 = 0xa9e7_0001;

/// Hand-made levels audited as one more distribution.
#[derive(Clone, Debug)]
pub struct LevelSet {
    /// Shown as `levels:NAME`.
    pub name: String,
    /// (file name, level), already validated against the testbed.
    pub levels: Vec<(String, Level)>,
}

#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Episodes per distribution (and paired episodes for the oversight test).
    pub episodes: usize,
    pub seed: u64,
    /// How the policy is named in the report.
    pub policy: String,
    pub levels: Option<LevelSet>,
    /// Also audit on training levels whose side is this many cells longer (shorter when
    /// negative): the change of size as one more distribution, `train@size=N`.
    pub size_shift: Option<i64>,
    pub triggers: TriggerConfig,
    /// Shifted levels drawn as heat maps per distribution, and rollouts per heat map.
    pub heatmap_levels: usize,
    pub heatmap_rollouts: usize,
    /// Told each phase as it starts (a distribution's rollouts, the oversight test, the trigger
    /// scan, the heat maps).
    pub progress: Option<Progress>,
}

/// A phase of the audit starts: its name, its index from 0, and the number of phases.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(&str, usize, usize) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

impl AuditConfig {
    pub fn new(policy: impl Into<String>, episodes: usize, seed: u64) -> AuditConfig {
        AuditConfig {
            episodes,
            seed,
            policy: policy.into(),
            levels: None,
            size_shift: None,
            // Small audits scan fewer levels, so that a quick check stays quick.
            triggers: TriggerConfig {
                levels: episodes.clamp(1, TriggerConfig::default().levels),
                ..TriggerConfig::default()
            },
            heatmap_levels: 3,
            heatmap_rollouts: 16,
            progress: None,
        }
    }
}

/// Cells of one goal, for heat maps.
#[derive(Clone, Debug, Serialize)]
pub struct GoalCells {
    pub goal: String,
    /// `(row, col)` of the cells the goal aims at in the level's first state.
    pub cells: Vec<(usize, usize)>,
}

/// Where the agent went on one level over several rollouts.
#[derive(Clone, Debug, Serialize)]
pub struct Heatmap {
    pub distribution: String,
    /// Index of the episode whose level this is.
    pub episode: usize,
    /// The level as text rows (the level-file glyphs).
    pub rows: Vec<String>,
    pub width: usize,
    pub height: usize,
    pub start: (usize, usize),
    pub rollouts: usize,
    /// Row-major visit counts (a cell counts once per rollout that entered it).
    pub visits: Vec<u32>,
    pub goals: Vec<GoalCells>,
}

/// Wall-clock and policy time. Not part of the JSON, which must not change from run to run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timing {
    pub total_s: f64,
    /// Time inside the policy, summed over threads.
    pub policy_cpu_s: f64,
    pub threads: usize,
    /// Phase wall times; the rollouts include the policy's share.
    pub rollouts_s: f64,
    pub inference_s: f64,
    pub oversight_s: f64,
    pub triggers_s: f64,
    pub heatmaps_s: f64,
}

impl Timing {
    /// Wall time attributable to the policy (its CPU time spread over the threads).
    pub fn policy_wall_s(&self) -> f64 {
        self.policy_cpu_s / self.threads.max(1) as f64
    }

    pub fn analysis_s(&self) -> f64 {
        (self.total_s - self.policy_wall_s()).max(0.0)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GoalInfo {
    pub name: String,
    pub description: String,
    pub intended: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub schema_version: u32,
    pub kind: &'static str,
    pub mesascope_version: &'static str,
    pub testbed: String,
    pub knobs: Vec<(String, f64)>,
    pub policy: String,
    pub seed: u64,
    pub episodes: usize,
    /// The size-shifted distribution's cells and size, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_shift: Option<SizeShift>,
    pub n_actions: usize,
    pub goals: Vec<GoalInfo>,
    pub distributions: Vec<DistributionReport>,
    pub oversight: Option<OversightReport>,
    pub triggers: TriggerReport,
    pub heatmaps: Vec<Heatmap>,
    pub verdict: VerdictReport,
    #[serde(skip)]
    pub timing: Timing,
}

/// The training distribution on levels of another size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SizeShift {
    /// Cells added to the side of the grid (negative: removed).
    pub cells: i64,
    /// The side of the shifted levels.
    pub size: usize,
}

/// Where a distribution's levels come from.
enum Source<'a> {
    Split(Split),
    Levels(&'a LevelSet),
    /// Training levels of the resized testbed.
    Resized(SizeShift, Arc<dyn Testbed>),
}

impl Source<'_> {
    fn name(&self, tb: &dyn Testbed) -> String {
        match self {
            Source::Split(s) => s.label(tb),
            Source::Levels(l) => format!("levels:{}", l.name),
            Source::Resized(s, _) => format!("train@size={}", s.size),
        }
    }

    fn code(&self) -> u64 {
        match self {
            Source::Split(s) => s.code(),
            Source::Levels(_) => 0x1e7e_1500,
            Source::Resized(s, _) => 0x512e_0000 + s.size as u64,
        }
    }

    fn env(&self, tb: &Arc<dyn Testbed>, seed: u64, k: usize) -> Env {
        match self {
            Source::Split(s) => Env::new(tb.clone(), *s, mix(&[seed, k as u64])),
            Source::Levels(l) => {
                let level = l.levels[k % l.levels.len()].1.clone();
                Env::from_level(tb.clone(), Split::Train, level)
            }
            Source::Resized(_, resized) => Env::new(
                resized.clone(),
                Split::Train,
                mix(&[seed, self.code(), k as u64]),
            ),
        }
    }

    fn agent_rng(&self, seed: u64, k: usize, rollout: u64) -> Rng {
        Rng::new(mix(&[seed, AGENT_STREAM, self.code(), k as u64, rollout]))
    }
}

/// Audits the policy `factory` builds on `testbed`.
pub fn audit(
    testbed: &Arc<dyn Testbed>,
    factory: &AgentFactory,
    cfg: &AuditConfig,
) -> Result<AuditReport> {
    let start = Instant::now();
    let tb = testbed.as_ref();
    if cfg.episodes == 0 {
        return Err(Error::Input(
            "an audit needs at least one episode per distribution (episodes = 0)".into(),
        ));
    }
    if let Some(l) = &cfg.levels {
        if l.levels.is_empty() {
            return Err(Error::Input(format!(
                "the level set {} holds no levels",
                l.name
            )));
        }
    }
    check_policy(testbed, factory)?;
    let resized = match cfg.size_shift {
        Some(cells) => {
            let resized = crate::testbeds::resized(tb, cells)?;
            let (decl, values) = resized.knobs();
            let size = decl
                .iter()
                .zip(values)
                .find(|(k, _)| k.name == "size")
                .map_or(0, |(_, v)| v as usize);
            // A policy that reads one size only fails here, before any rollout, naming the shift.
            check_policy(&resized, factory).map_err(|e| match e {
                Error::Input(m) | Error::Policy(m) => Error::Input(format!(
                    "the size shift of {cells:+} cells ({size}x{size} levels) is not one this policy can serve: {m}"
                )),
                other => other,
            })?;
            Some((SizeShift { cells, size }, resized))
        }
        None => None,
    };

    let mut sources: Vec<Source> = Split::all(tb).into_iter().map(Source::Split).collect();
    if let Some(l) = &cfg.levels {
        sources.push(Source::Levels(l));
    }
    if let Some((shift, resized)) = &resized {
        sources.push(Source::Resized(*shift, resized.clone()));
    }
    let mut timing = Timing {
        threads: rayon::current_num_threads(),
        ..Timing::default()
    };
    let mut policy_ns = 0u64;
    let mut distributions = Vec::new();
    let phases = sources.len() + 3;
    let tell = |phase: &str, i: usize| {
        if let Some(p) = &cfg.progress {
            (p.0)(phase, i, phases)
        }
    };
    for (i, src) in sources.iter().enumerate() {
        tell(&format!("rollouts on {}", src.name(tb)), i);
        let t = Instant::now();
        let envs: Vec<Env> = (0..cfg.episodes)
            .into_par_iter()
            .map(|k| src.env(testbed, cfg.seed, k))
            .collect();
        let rngs = (0..cfg.episodes)
            .map(|k| src.agent_rng(cfg.seed, k, 0))
            .collect();
        let eps: Vec<Recorded> =
            record_many(envs, rngs, factory, true).map_err(|e| context(e, &src.name(tb)))?;
        timing.rollouts_s += t.elapsed().as_secs_f64();
        policy_ns += eps.iter().map(|e| e.policy_ns).sum::<u64>();
        let t = Instant::now();
        distributions.push(outcomes::summarize(tb, src.name(tb), &eps));
        timing.inference_s += t.elapsed().as_secs_f64();
    }

    tell("oversight test", sources.len());
    let t = Instant::now();
    let oversight = oversight::scan(testbed, factory, cfg.episodes, cfg.seed)?;
    timing.oversight_s = t.elapsed().as_secs_f64();
    policy_ns += oversight.as_ref().map_or(0, |o| o.policy_ns);

    tell("trigger scan", sources.len() + 1);
    let t = Instant::now();
    let triggers = triggers::scan(testbed, factory, cfg.triggers, cfg.seed)?;
    timing.triggers_s = t.elapsed().as_secs_f64();
    policy_ns += triggers.policy_ns;

    tell("heat maps", sources.len() + 2);
    let t = Instant::now();
    // Every heat map's rollouts in one lockstep batch.
    let mut drawn: Vec<(&Source, usize, Env)> = Vec::new();
    for src in sources
        .iter()
        .filter(|s| !matches!(s, Source::Split(Split::Train)))
    {
        let distinct = match src {
            Source::Levels(l) => l.levels.len(),
            Source::Split(_) | Source::Resized(..) => cfg.episodes,
        };
        for k in 0..cfg.heatmap_levels.min(distinct) {
            drawn.push((src, k, src.env(testbed, cfg.seed, k)));
        }
    }
    let runs = cfg.heatmap_rollouts;
    let envs: Vec<Env> = drawn
        .iter()
        .flat_map(|(_, _, env)| std::iter::repeat_n(env, runs).cloned())
        .collect();
    let rngs: Vec<Rng> = drawn
        .iter()
        .flat_map(|(src, k, _)| (0..runs).map(|r| src.agent_rng(cfg.seed, *k, r as u64)))
        .collect();
    let recs = record_many(envs, rngs, factory, false)?;
    policy_ns += recs.iter().map(|r| r.policy_ns).sum::<u64>();
    let heatmaps = drawn
        .iter()
        .enumerate()
        .map(|(j, (src, k, env))| heatmap(tb, src, *k, env, &recs[j * runs..(j + 1) * runs]))
        .collect();
    timing.heatmaps_s = t.elapsed().as_secs_f64();

    let verdict = verdict::decide(&distributions, oversight.as_ref());
    let (decl, values) = tb.knobs();
    timing.policy_cpu_s = policy_ns as f64 * 1e-9;
    timing.total_s = start.elapsed().as_secs_f64();
    Ok(AuditReport {
        schema_version: SCHEMA_VERSION,
        kind: "mesascope-audit",
        mesascope_version: env!("CARGO_PKG_VERSION"),
        testbed: tb.name().to_string(),
        knobs: decl
            .iter()
            .zip(values)
            .map(|(k, v)| (k.name.to_string(), v))
            .collect(),
        policy: cfg.policy.clone(),
        seed: cfg.seed,
        episodes: cfg.episodes,
        size_shift: resized.as_ref().map(|(s, _)| *s),
        n_actions: tb.n_actions(),
        goals: tb
            .goals()
            .iter()
            .enumerate()
            .map(|(i, g)| GoalInfo {
                name: g.name.to_string(),
                description: g.description.to_string(),
                intended: i == 0,
            })
            .collect(),
        distributions,
        oversight,
        triggers,
        heatmaps,
        verdict,
        timing,
    })
}

fn context(e: Error, what: &str) -> Error {
    match e {
        Error::Policy(m) => Error::Policy(format!("{what}: {m}")),
        other => other,
    }
}

/// One call of the policy on a training level before anything else, so that a policy that does
/// not fit the testbed fails at once with its own message.
fn check_policy(testbed: &Arc<dyn Testbed>, factory: &AgentFactory) -> Result<()> {
    let env = Env::new(testbed.clone(), Split::Train, 0);
    let mut probs = vec![0f32; testbed.n_actions()];
    rollout::probe(&env, factory()?.as_mut(), &mut probs).map(|_| ())
}

/// The heat map of episode `k`'s level of `src`, from its rollouts `recs`.
fn heatmap(tb: &dyn Testbed, src: &Source, k: usize, env0: &Env, recs: &[Recorded]) -> Heatmap {
    let level: &Level = &env0.level;
    let g = &level.grid;
    let mut visits = vec![0u32; g.len()];
    for rec in recs {
        let mut seen = vec![false; g.len()];
        for &p in &rec.positions {
            if !seen[p] {
                seen[p] = true;
                visits[p] += 1;
            }
        }
    }
    let mut spec = GoalSpec::default();
    let goals = tb
        .goals()
        .iter()
        .zip(GoalId::all(tb))
        .map(|(d, id)| {
            spec.clear();
            tb.goal_spec(&env0.state, id, &mut spec);
            GoalCells {
                goal: d.name.to_string(),
                cells: spec.targets.iter().map(|&p| g.row_col(p)).collect(),
            }
        })
        .collect();
    Heatmap {
        distribution: src.name(tb),
        episode: k,
        rows: level
            .render_rows(None)
            .lines()
            .map(str::to_string)
            .collect(),
        width: g.width,
        height: g.height,
        start: g.row_col(level.agent),
        rollouts: recs.len(),
        visits,
        goals,
    }
}
