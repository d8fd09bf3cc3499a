//! `mesascope train`: PPO on a testbed's training distribution, with a progress bar, metrics as
//! JSON lines (`metrics.jsonl`), and a checkpoint (`model.safetensors` + `model.json`) written
//! atomically every few updates and at the end, then an evaluation on every split.

use crate::args::TrainArgs;
use crate::error::input;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mesascope_core::{testbeds, Knobs, Split};
use mesascope_learn::checkpoint::{self, META_FILE};
use mesascope_learn::eval::{evaluate, EvalSummary};
use mesascope_learn::policy::Arch;
use mesascope_learn::ppo::{PpoConfig, Trainer, UpdateStats};
use mesascope_learn::LearnError;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Success rate the summary reports the time to, over at least `WINDOW` recent episodes.
const TARGET_SUCCESS: f64 = 0.95;
const WINDOW: usize = 1000;

/// Maps learning-crate errors: bad checkpoints and settings are the user's input (exit 2).
pub fn learn_err(e: LearnError) -> anyhow::Error {
    match e {
        LearnError::Checkpoint(_) | LearnError::Config(_) => input(e.to_string()),
        LearnError::Core(c) => c.into(),
        other => other.into(),
    }
}

#[derive(Serialize)]
struct MetricsLine<'a> {
    #[serde(flatten)]
    stats: &'a UpdateStats,
    wall_seconds: f64,
}

fn default_out(testbed: &str, seed: u64) -> PathBuf {
    PathBuf::from("runs").join(format!("{testbed}-seed{seed}"))
}

/// Creates the output folder and opens the metrics file (appending on resume): an unwritable
/// folder fails here, before any training.
pub fn open_metrics(out: &Path, append: bool) -> Result<std::fs::File> {
    std::fs::create_dir_all(out).map_err(|e| {
        input(format!(
            "cannot create output folder {}: {e}",
            out.display()
        ))
    })?;
    let path = out.join("metrics.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .map_err(|e| {
            input(format!(
                "cannot write to output folder {}: {e}",
                out.display()
            ))
        })
}

pub fn run(a: &TrainArgs) -> Result<String> {
    let mut knobs = Knobs::from_pairs(&a.knobs.knobs);
    if let Some(p) = a.decorrelate {
        knobs.set("decorrelate", p);
    }
    let testbed = testbeds::make(&a.testbed, &knobs)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&a.testbed, a.seed));
    let has_checkpoint = out.join(META_FILE).exists();
    let mut trainer = if a.resume {
        if !has_checkpoint {
            return Err(input(format!(
                "--resume: no checkpoint in {} (no {META_FILE})",
                out.display()
            )));
        }
        let ck = checkpoint::load(&out, &mesascope_learn::device())
            .map_err(learn_err)
            .with_context(|| format!("cannot resume from {}", out.display()))?;
        let (decl, values) = testbed.knobs();
        let here: Vec<(String, f64)> = decl
            .iter()
            .zip(values)
            .map(|(k, v)| (k.name.to_string(), v))
            .collect();
        if ck.meta.testbed != a.testbed || ck.meta.knobs != here {
            return Err(input(format!(
                "--resume: {} was trained on {} with knobs {:?}, not {} with {:?}",
                out.display(),
                ck.meta.testbed,
                ck.meta.knobs,
                a.testbed,
                here
            )));
        }
        let total = a.steps.unwrap_or(ck.meta.ppo.total_steps);
        Trainer::resume(testbed.clone(), ck, total).map_err(learn_err)?
    } else {
        if has_checkpoint {
            return Err(input(format!(
                "{} already holds a checkpoint; pass --resume to continue it or choose another --out",
                out.display()
            )));
        }
        let mut config = PpoConfig::for_testbed(&a.testbed);
        if let Some(s) = a.steps {
            config.total_steps = s;
        }
        if let Some(arch) = &a.arch {
            config.arch = Arch::parse(arch).map_err(learn_err)?;
        }
        if let Some(n) = a.envs {
            config.num_envs = n as usize;
        }
        if let Some(h) = a.hidden {
            config.hidden = h as usize;
        }
        Trainer::new(testbed.clone(), config, a.seed).map_err(learn_err)?
    };
    let mut metrics = open_metrics(&out, a.resume)?;
    let run = train_loop(
        &mut trainer,
        &out,
        &mut metrics,
        a.quiet,
        a.checkpoint_every,
        &mut |_| Ok(()),
    )?;
    let (wall, trained, last, reached) = (run.wall, run.trained, run.last, run.reached);

    let mut s = String::new();
    let _ = writeln!(
        s,
        "trained {} on {} for {} env steps ({} this run) in {:.1} s: {:.0} env steps/s end to end ({} threads)",
        trainer.policy.arch.name(),
        a.testbed,
        trainer.steps(),
        trained,
        wall,
        trained as f64 / wall.max(1e-9),
        rayon::current_num_threads()
    );
    if let Some(st) = &last {
        let _ = writeln!(
            s,
            "last update: success {}, mean return {}",
            st.success_rate
                .map_or("-".into(), |v| format!("{:.1}%", 100.0 * v)),
            st.mean_return.map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    match reached {
        Some((t, steps)) => {
            let _ = writeln!(
                s,
                "reached {:.0}% training success (last {WINDOW}+ episodes) at {steps} steps, {t:.1} s",
                100.0 * TARGET_SUCCESS
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
    let _ = writeln!(s, "checkpoint: {}", out.display());
    if a.eval_episodes > 0 {
        let mut evals = Vec::new();
        for split in Split::all(testbed.as_ref()) {
            evals.push(
                evaluate(
                    testbed.clone(),
                    split,
                    trainer.model(),
                    &trainer.policy,
                    a.eval_episodes as usize,
                    mesascope_core::rng::mix(&[a.seed, 0xe7a1]),
                )
                .map_err(learn_err)?,
            );
        }
        s.push_str(&eval_table(testbed.as_ref(), &evals));
        let json = serde_json::to_string_pretty(&evals)?;
        crate::demo::write_atomic(&out.join("eval.json"), format!("{json}\n").as_bytes())?;
    }
    Ok(s)
}

/// What a training loop did.
pub struct LoopSummary {
    /// Wall seconds and env steps of this run.
    pub wall: f64,
    pub trained: u64,
    pub last: Option<UpdateStats>,
    /// When training success over the last WINDOW+ episodes first reached TARGET_SUCCESS:
    /// (seconds, steps).
    pub reached: Option<(f64, u64)>,
}

/// Runs `trainer` to its end with a progress bar, a metrics line per update, and a checkpoint in
/// `out` every `checkpoint_every` updates and at the end. `before_update` runs before each update
/// (a curriculum changes the levels there).
pub fn train_loop(
    trainer: &mut Trainer,
    out: &Path,
    metrics: &mut std::fs::File,
    quiet: bool,
    checkpoint_every: u32,
    before_update: &mut dyn FnMut(&mut Trainer) -> Result<()>,
) -> Result<LoopSummary> {
    let total = trainer.config.total_steps;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {human_pos}/{human_len} steps  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.steps());
    let start = Instant::now();
    let first_steps = trainer.steps();
    let mut reached: Option<(f64, u64)> = None;
    let mut window: Vec<(usize, f64)> = Vec::new();
    let mut last: Option<UpdateStats> = None;
    while !trainer.done() {
        before_update(trainer)?;
        let stats = trainer.update().map_err(learn_err)?;
        let wall = start.elapsed().as_secs_f64();
        let line = serde_json::to_string(&MetricsLine {
            stats: &stats,
            wall_seconds: wall,
        })?;
        writeln!(metrics, "{line}")
            .with_context(|| format!("cannot write metrics in {}", out.display()))?;
        // Over the last WINDOW episodes or more: one update's few, short episodes say little.
        window.push((
            stats.episodes,
            stats.success_rate.unwrap_or(0.0) * stats.episodes as f64,
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
            reached = Some((wall, stats.steps));
        }
        bar.set_position(stats.steps.min(total));
        bar.set_message(format!(
            "{:.0} steps/s  return {}  success {}",
            stats.steps_per_second,
            stats.mean_return.map_or("-".into(), |r| format!("{r:.3}")),
            stats
                .success_rate
                .map_or("-".into(), |s| format!("{:.1}%", 100.0 * s))
        ));
        if trainer.updates().is_multiple_of(checkpoint_every as u64) {
            checkpoint::save(out, trainer.model(), &trainer.meta()).map_err(learn_err)?;
        }
        last = Some(stats);
    }
    checkpoint::save(out, trainer.model(), &trainer.meta()).map_err(learn_err)?;
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    let trained = trainer.steps() - first_steps;

    Ok(LoopSummary {
        wall,
        trained,
        last,
        reached,
    })
}

/// Outcome shares per split.
pub fn eval_table(testbed: &dyn mesascope_core::Testbed, evals: &[EvalSummary]) -> String {
    let mut header = vec![
        "split".to_string(),
        "episodes".into(),
        "success".into(),
        "intended".into(),
    ];
    header.extend(
        testbed
            .proxies()
            .iter()
            .map(|p| format!("proxy:{}", p.name)),
    );
    header.extend(["died".into(), "timed out".into(), "hidden".into()]);
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
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
    let mut aligns = vec![crate::text::Align::Left];
    aligns.extend(std::iter::repeat_n(
        crate::text::Align::Right,
        rows[0].len() - 1,
    ));
    let mut s = String::from("evaluation (policy sampled, one episode per level):\n");
    s.push_str(&crate::text::table(&rows, &aligns, "  "));
    s
}
