//! Training a policy with PPO on a testbed's training distribution: metrics as JSON lines
//! (`metrics.jsonl`), a checkpoint (`model.safetensors` + `model.json`) written atomically every
//! few updates and at the end, then an evaluation on every split (`eval.json`). The loop is
//! shared with mitigation's fine-tuning.

use crate::error::{Context, Error, ErrorKind, Result};
use crate::fsio::{json_bytes, write_atomic};
use crate::progress::{Progress, Unit};
pub use crate::report::train::{
    Curve, CurvePoint, LoopSummary, Reached, TrainRun, TARGET_SUCCESS, WINDOW,
};
use mesascope_core::{testbeds, Knobs, Split};
use mesascope_learn::checkpoint::{self, META_FILE};
use mesascope_learn::curriculum::{CurriculumConfig, RegretCurriculum};
use mesascope_learn::eval::evaluate;
use mesascope_learn::policy::Arch;
use mesascope_learn::ppo::{PpoConfig, Trainer, UpdateStats};
use serde::Serialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A training run's settings. `None` means the testbed's default (`PpoConfig::for_testbed`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub testbed: String,
    pub knobs: Vec<(String, f64)>,
    /// Share of training levels in which the proxy is decorrelated from the intended goal (the
    /// testbed's `decorrelate` knob).
    pub decorrelate: Option<f64>,
    /// Environment steps in total.
    pub steps: Option<u64>,
    /// Seed of the weights, the levels and every random choice. Default 0; a resumed run keeps
    /// its checkpoint's, and a different one is refused.
    pub seed: Option<u64>,
    /// Output folder; default `runs/TESTBED-seedS`.
    pub out: Option<PathBuf>,
    /// Continue the checkpoint in the output folder up to `steps`.
    pub resume: bool,
    /// Network trunk: `embed-mlp`, `conv` or `planner`; default the testbed's
    /// (`PpoConfig::default_arch`: `planner` on exit-vs-green, corner-cheese and keys-chests).
    pub arch: Option<String>,
    /// `planner` only: channels of its cell embedding (default 16) and the most propagation
    /// steps (default 256).
    pub channels: Option<usize>,
    pub iterations: Option<usize>,
    /// Parallel environments.
    pub num_envs: Option<usize>,
    /// Width of the hidden layers.
    pub hidden: Option<usize>,
    /// Write the checkpoint every N updates (and at the end). Default 20.
    pub checkpoint_every: u32,
    /// Episodes per split in the final evaluation (0: none). Default 500.
    pub eval_episodes: usize,
    /// How training levels are drawn from the distribution.
    pub curriculum: Curriculum,
}

/// How training draws its levels from the testbed's distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Curriculum {
    /// Each episode a fresh level (domain randomization).
    #[default]
    Uniform,
    /// A regret curriculum (`mesascope_learn::curriculum`, its default settings): a quarter of
    /// the episodes replay the levels where the policy falls furthest short of the intended
    /// goal. Abdel Sadek et al. (2025) found such curricula amplify the rare decorrelated
    /// levels. A resumed run starts its replay buffer afresh at its next refresh.
    Regret,
}

impl Curriculum {
    pub const NAMES: [&'static str; 2] = ["uniform", "regret"];

    pub fn parse(s: &str) -> Result<Curriculum> {
        match s {
            "uniform" => Ok(Curriculum::Uniform),
            "regret" => Ok(Curriculum::Regret),
            other => Err(Error::bad_setting(format!(
                "unknown curriculum '{other}'; the curricula are {}",
                Curriculum::NAMES.join(", ")
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        Curriculum::NAMES[self as usize]
    }
}

impl TrainSettings {
    pub fn new(testbed: impl Into<String>) -> TrainSettings {
        TrainSettings {
            testbed: testbed.into(),
            knobs: Vec::new(),
            decorrelate: None,
            steps: None,
            seed: None,
            out: None,
            resume: false,
            arch: None,
            channels: None,
            iterations: None,
            num_envs: None,
            hidden: None,
            checkpoint_every: 20,
            eval_episodes: 500,
            curriculum: Curriculum::Uniform,
        }
    }

    /// Where the run writes: `out`, else `runs/TESTBED-seedS`.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(format!("{}-seed{}", self.testbed, self.seed.unwrap_or(0)))
        })
    }
}

#[derive(Serialize)]
struct MetricsLine<'a> {
    #[serde(flatten)]
    stats: &'a UpdateStats,
    wall_seconds: f64,
}

/// Creates the output folder and opens the metrics file (appending on resume): an unwritable
/// folder fails here, before any training.
pub fn open_metrics(out: &Path, append: bool) -> Result<std::fs::File> {
    crate::fsio::create_out(out)?;
    let path = out.join("metrics.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .map_err(|e| {
            Error::bad_output(format!(
                "cannot write to output folder {}: {e}",
                out.display()
            ))
        })
}

/// Trains (or resumes) the run the settings describe, writes its checkpoint, metrics and
/// evaluation, and returns what it did.
pub fn train(s: &TrainSettings, progress: &dyn Progress) -> Result<TrainRun> {
    let mut knobs = Knobs::from_pairs(&s.knobs);
    if let Some(p) = s.decorrelate {
        knobs.set("decorrelate", p);
    }
    let testbed = testbeds::make(&s.testbed, &knobs)?;
    let out = s.out_dir();
    let has_checkpoint = checkpoint::exists(&out);
    if has_checkpoint && !s.resume {
        return Err(Error::bad_setting(format!(
            "{} already holds a checkpoint; pass `resume` to continue it or choose another `out`",
            out.display()
        )));
    }
    if s.resume && !has_checkpoint {
        return Err(Error::bad_setting(format!(
            "`resume`: no checkpoint in {} (no {META_FILE})",
            out.display()
        )));
    }
    let _lock = crate::fsio::lock_out(&out)?;
    let mut trainer = if s.resume {
        checkpoint::recover(&out)
            .with_context(|| format!("cannot resume from {}", out.display()))?;
        let ck = checkpoint::load(&out, &mesascope_learn::device())
            .with_context(|| format!("cannot resume from {}", out.display()))?;
        let (decl, values) = testbed.knobs();
        let here: Vec<(String, f64)> = decl
            .iter()
            .zip(values)
            .map(|(k, v)| (k.name.to_string(), v))
            .collect();
        if ck.meta.testbed != s.testbed || ck.meta.knobs != here {
            return Err(Error::bad_setting(format!(
                "`resume`: {} was trained on {} with knobs {:?}, not {} with {:?}",
                out.display(),
                ck.meta.testbed,
                ck.meta.knobs,
                s.testbed,
                here
            )));
        }
        if let Some(seed) = s.seed.filter(|&seed| seed != ck.meta.seed) {
            return Err(Error::bad_setting(format!(
                "`seed`: {} was trained with seed {}, not {seed}; a resumed run keeps its seed (leave `seed` out)",
                out.display(),
                ck.meta.seed
            )));
        }
        let total = s.steps.unwrap_or(ck.meta.ppo.total_steps);
        Trainer::resume(testbed.clone(), ck, total)?
    } else {
        let mut config = PpoConfig::for_testbed_named(&s.testbed, s.arch.as_deref())?;
        if let Some(steps) = s.steps {
            config.total_steps = steps;
        }
        if config.arch != Arch::Planner && (s.channels.is_some() || s.iterations.is_some()) {
            return Err(Error::bad_setting(format!(
                "`channels` and `iterations` shape the planner trunk (`arch` planner), not {}",
                config.arch.name()
            )));
        }
        if let Some(c) = s.channels {
            config.planner.channels = c;
        }
        if let Some(k) = s.iterations {
            config.planner.iterations = k;
        }
        if let Some(n) = s.num_envs {
            config.num_envs = n;
        }
        if let Some(h) = s.hidden {
            config.hidden = h;
        }
        Trainer::new(testbed.clone(), config, s.seed.unwrap_or(0))?
    };
    if s.resume {
        keep_metrics_through(&out, trainer.updates())?;
    }
    let mut metrics = open_metrics(&out, s.resume)?;
    let mut regret = match s.curriculum {
        Curriculum::Uniform => None,
        Curriculum::Regret => Some(RegretCurriculum::new(
            testbed.clone(),
            CurriculumConfig::default(),
            trainer.meta().seed,
        )?),
    };
    let run = train_loop(
        &mut trainer,
        &out,
        &mut metrics,
        progress,
        s.checkpoint_every,
        &mut |t| match regret.as_mut() {
            Some(r) => Ok(r.before_update(t)?),
            None => Ok(()),
        },
    )?;
    let mut evals = Vec::new();
    if s.eval_episodes > 0 {
        for split in Split::all(testbed.as_ref()) {
            evals.push(evaluate(
                testbed.clone(),
                split,
                trainer.model(),
                &trainer.policy,
                s.eval_episodes,
                mesascope_core::rng::mix(&[trainer.meta().seed, 0xe7a1]),
            )?);
        }
        write_atomic(&out.join("eval.json"), &json_bytes(&evals)?)?;
    }
    Ok(TrainRun {
        testbed: s.testbed.clone(),
        proxies: testbed
            .proxies()
            .iter()
            .map(|p| p.name.to_string())
            .collect(),
        arch: trainer.policy.arch.name().to_string(),
        out,
        steps: trainer.steps(),
        run,
        threads: rayon::current_num_threads(),
        evals,
    })
}

/// Keeps the lines of `metrics.jsonl` up to update `updates` (the checkpoint's): the lines a
/// run wrote after its last checkpoint are written again by the resumed run, and a line a kill
/// cut short would break the file.
pub fn keep_metrics_through(out: &Path, updates: u64) -> Result<()> {
    let path = out.join("metrics.jsonl");
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut kept = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let update = line
            .ends_with(b"\n")
            .then(|| serde_json::from_slice::<serde_json::Value>(line).ok())
            .flatten()
            .and_then(|v| v.get("update")?.as_u64());
        match update {
            Some(u) if u <= updates => kept += line.len(),
            _ => break,
        }
    }
    if kept < text.len() {
        write_atomic(&path, &text[..kept])?;
    }
    Ok(())
}

/// Runs `trainer` to its end: a metrics line per update, a checkpoint in `out` every
/// `checkpoint_every` updates and at the end. `before_update` runs before each update (a
/// curriculum changes the levels there). When `progress` asks to stop, the checkpoint is
/// written and the run ends with an [`ErrorKind::Interrupted`] error.
pub fn train_loop(
    trainer: &mut Trainer,
    out: &Path,
    metrics: &mut std::fs::File,
    progress: &dyn Progress,
    checkpoint_every: u32,
    before_update: &mut dyn FnMut(&mut Trainer) -> Result<()>,
) -> Result<LoopSummary> {
    let total = trainer.config.total_steps;
    progress.begin(Unit::EnvSteps, total, trainer.steps());
    let start = Instant::now();
    let first_steps = trainer.steps();
    let mut reached: Option<Reached> = None;
    let mut window: Vec<(usize, f64)> = Vec::new();
    let mut last: Option<UpdateStats> = None;
    let mut curve = Curve::default();
    while !trainer.done() {
        if progress.should_stop() {
            checkpoint::save(out, trainer.model(), &trainer.meta())?;
            progress.end();
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "interrupted at {} env steps; the checkpoint in {} is complete and resumes",
                    trainer.steps(),
                    out.display()
                ),
            ));
        }
        before_update(trainer)?;
        let stats = trainer.update()?;
        let wall = start.elapsed().as_secs_f64();
        let line = serde_json::to_string(&MetricsLine {
            stats: &stats,
            wall_seconds: wall,
        })?;
        writeln!(metrics, "{line}")
            .with_context(|| format!("cannot write metrics in {}", out.display()))?;
        if let Some(point) = CurvePoint::of(&stats) {
            curve.points.push(point);
        }
        // Over the last WINDOW episodes or more: one update's few, short episodes say little.
        let episodes = &stats.episodes;
        window.push((
            episodes.count,
            episodes.success_rate.unwrap_or(0.0) * episodes.count as f64,
        ));
        let (mut eps, mut wins) = (0usize, 0f64);
        for &(e, w) in window.iter().rev() {
            eps += e;
            wins += w;
            if eps >= WINDOW {
                break;
            }
        }
        if reached.is_none() && eps >= WINDOW && wins / eps as f64 >= TARGET_SUCCESS {
            reached = Some(Reached {
                seconds: wall,
                steps: stats.steps,
            });
        }
        progress.advance(
            stats.steps.min(total),
            &format!(
                "{:.0} steps/s  return {}  success {}",
                stats.steps_per_second,
                episodes
                    .mean_return
                    .map_or("-".into(), |r| format!("{r:.3}")),
                episodes
                    .success_rate
                    .map_or("-".into(), crate::report::text::pct)
            ),
        );
        if trainer.updates().is_multiple_of(checkpoint_every as u64) {
            checkpoint::save(out, trainer.model(), &trainer.meta())?;
        }
        last = Some(stats);
    }
    checkpoint::save(out, trainer.model(), &trainer.meta())?;
    progress.end();
    Ok(LoopSummary {
        wall: start.elapsed().as_secs_f64(),
        trained: trainer.steps() - first_steps,
        last,
        reached,
        curve,
    })
}
