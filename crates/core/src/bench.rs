//! Throughput measurements, shared by `mesascope bench` and `cargo bench -p mesascope-core`.
//!
//! Each measurement runs for a wall-clock budget and reports what it managed: batch steps of a
//! [`VecEnv`] (no observation, the MiniGrid u8 encoding, float planes; on one thread or on all
//! of rayon's), level generation, and the planner's shortest-path solve for a handful of
//! candidate goals on one level. Actions are drawn before the clock starts, so the figures are
//! the engine's alone. Measure release builds: debug figures say nothing.

use crate::env::generate_level;
use crate::error::{Error, Result};
use crate::grid::{Object, Pos};
use crate::planner::{GoalSpec, Planner};
use crate::rng::{mix, Rng};
use crate::testbed::{Knobs, Split, Testbed};
use crate::testbeds;
use crate::vec_env::{ObsBuf, StepBufs, VecEnv};
use serde::Serialize;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Targets from the engine's issue, per core.
pub const TARGET_RAW_PER_CORE: f64 = 50e6;
/// Steps/s per core with the u8 observation written.
pub const TARGET_U8_PER_CORE: f64 = 5e6;
/// Microseconds for the planner to solve 5 candidate goals on an 11x11 level.
pub const TARGET_PLANNER_MICROS: f64 = 20.0;
/// Candidate goals per planner measurement (the target's figure).
pub const PLANNER_GOALS: usize = 5;
/// Side of the level the planner target is stated for.
pub const PLANNER_SIZE: usize = 11;

/// Which observation a step measurement writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObsKind {
    None,
    U8,
    Planes,
}

impl ObsKind {
    pub fn label(self) -> &'static str {
        match self {
            ObsKind::None => "raw",
            ObsKind::U8 => "u8",
            ObsKind::Planes => "planes",
        }
    }
}

/// What one step measurement achieved.
#[derive(Clone, Debug, Serialize)]
pub struct StepRate {
    pub obs: ObsKind,
    pub envs: usize,
    /// Threads that stepped the batch (1, or rayon's pool size).
    pub threads: usize,
    /// Environment steps taken while the clock ran.
    pub steps: u64,
    /// Episodes that ended (and were reset) while the clock ran.
    pub episodes: u64,
    pub seconds: f64,
    pub steps_per_sec: f64,
}

impl StepRate {
    pub fn per_thread(&self) -> f64 {
        self.steps_per_sec / self.threads.max(1) as f64
    }

    /// Mean episode length seen while measuring.
    pub fn mean_episode_steps(&self) -> f64 {
        self.steps as f64 / self.episodes.max(1) as f64
    }
}

/// What one planner measurement achieved.
#[derive(Clone, Debug, Serialize)]
pub struct PlannerRate {
    pub height: usize,
    pub width: usize,
    /// Candidate goals solved per call (single random open cells).
    pub goals: usize,
    /// Distinct levels cycled through (tables built once per level, before the clock).
    pub levels: usize,
    /// Calls timed; one call solves all `goals`.
    pub calls: u64,
    pub micros_per_call: f64,
}

/// Settings of a benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchConfig {
    /// Wall-clock budget of each measurement.
    pub seconds: f64,
    /// Environments in the single-thread measurements.
    pub single_envs: usize,
    /// Environments in the all-cores measurement.
    pub batch_envs: usize,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            seconds: 1.0,
            single_envs: 256,
            batch_envs: 4096,
            seed: 0,
        }
    }
}

impl BenchConfig {
    fn check(&self) -> Result<()> {
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 3600.0) {
            return Err(Error::Input(format!(
                "the time per measurement must be in (0, 3600] seconds, found {}",
                self.seconds
            )));
        }
        if self.single_envs == 0 || self.batch_envs == 0 {
            return Err(Error::Input(
                "a measurement needs at least one environment".into(),
            ));
        }
        Ok(())
    }
}

/// Every figure for one testbed.
#[derive(Clone, Debug, Serialize)]
pub struct TestbedBench {
    pub testbed: String,
    /// Training-level shape with default knobs.
    pub height: usize,
    pub width: usize,
    /// One thread, no observation, a new level generated at every autoreset.
    #[serde(rename = "raw_new_levels")]
    pub raw: StepRate,
    /// One thread, no observation, episodes restarting on pre-generated levels: the step alone
    /// (what the raw target is about).
    #[serde(rename = "raw")]
    pub raw_cached: StepRate,
    /// One thread, MiniGrid u8 observation.
    pub u8: StepRate,
    /// One thread, float planes.
    pub planes: StepRate,
    /// All of rayon's threads, u8 observation.
    pub batched_u8: StepRate,
    /// Mean microseconds to generate one training level (the cost of an autoreset).
    pub level_micros: f64,
    /// The planner on this testbed's levels at `size = 11` where it has such a knob.
    pub planner: PlannerRate,
}

/// A whole benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `std::thread::available_parallelism`.
    pub cores: usize,
    /// rayon's pool size (the batched measurement's threads).
    pub threads: usize,
    /// Whether the engine was compiled with optimizations (debug figures mean little).
    pub optimized: bool,
    pub config: BenchConfig,
    pub testbeds: Vec<TestbedBench>,
    pub targets: Targets,
}

/// The targets, for machine-readable reports.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    pub raw_steps_per_sec_per_core: f64,
    pub u8_steps_per_sec_per_core: f64,
    pub planner_micros_5_goals_11x11: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            raw_steps_per_sec_per_core: TARGET_RAW_PER_CORE,
            u8_steps_per_sec_per_core: TARGET_U8_PER_CORE,
            planner_micros_5_goals_11x11: TARGET_PLANNER_MICROS,
        }
    }
}

/// Cores the OS says this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Random actions are read from a table of this many bytes (plus one batch), at an offset that
/// moves by an odd stride each step: every environment sees a sequence of period
/// `ACTION_TABLE`, so a random walk does not settle into a short cycle.
const ACTION_TABLE: usize = 1 << 16;
const ACTION_STRIDE: usize = 997;

fn action_table(n: usize, n_actions: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(mix(&[seed, 0xac7])); // apart from the level stream
    (0..ACTION_TABLE + n)
        .map(|_| rng.below(n_actions) as u8)
        .collect()
}

#[inline]
fn actions_at(table: &[u8], n: usize, t: usize) -> &[u8] {
    let o = (t.wrapping_mul(ACTION_STRIDE)) % ACTION_TABLE;
    &table[o..o + n]
}

/// Steps a batch of `envs` environments of `split` with random actions for `seconds`, writing
/// the `obs` observation, on one thread or (`parallel`) on rayon's pool; with `num_levels`,
/// episodes restart on a pool of levels generated before the clock starts.
#[allow(clippy::too_many_arguments)]
pub fn step_rate(
    testbed: &Arc<dyn Testbed>,
    split: Split,
    obs: ObsKind,
    envs: usize,
    parallel: bool,
    num_levels: Option<usize>,
    seconds: f64,
    seed: u64,
) -> Result<StepRate> {
    let mut v = VecEnv::new(testbed.clone(), split, envs, seed)?;
    if let Some(n) = num_levels {
        v = v.with_num_levels(n)?;
    }
    v.parallel = parallel;
    let n = v.len();
    let na = v.n_actions();
    let actions = action_table(n, na, seed);
    let mut u8_buf = vec![
        0u8;
        if obs == ObsKind::U8 {
            n * v.u8_len()
        } else {
            0
        }
    ];
    let mut planes_buf = vec![
        0f32;
        if obs == ObsKind::Planes {
            n * v.planes_len()
        } else {
            0
        }
    ];
    let (mut rewards, mut terminated, mut truncated) =
        (vec![0f32; n], vec![false; n], vec![false; n]);
    let mut step = |v: &mut VecEnv, t: usize| -> Result<u64> {
        let a = actions_at(&actions, n, t);
        let out = match obs {
            ObsKind::None => ObsBuf::None,
            ObsKind::U8 => ObsBuf::U8(&mut u8_buf),
            ObsKind::Planes => ObsBuf::Planes(&mut planes_buf),
        };
        v.step(
            a,
            out,
            StepBufs {
                rewards: &mut rewards,
                terminated: &mut terminated,
                truncated: &mut truncated,
            },
        )?;
        let ended = terminated
            .iter()
            .zip(&truncated)
            .filter(|(a, b)| **a | **b)
            .count();
        Ok(ended as u64)
    };
    let (calls, episodes, elapsed) = timed(seconds, |t| step(&mut v, t))?;
    black_box((&u8_buf, &planes_buf, &rewards));
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    Ok(StepRate::new(obs, n, threads, calls, episodes, elapsed))
}

impl StepRate {
    fn new(
        obs: ObsKind,
        envs: usize,
        threads: usize,
        calls: u64,
        episodes: u64,
        seconds: f64,
    ) -> Self {
        let steps = calls * envs as u64;
        StepRate {
            obs,
            envs,
            threads,
            steps,
            episodes,
            seconds,
            steps_per_sec: steps as f64 / seconds,
        }
    }
}

/// Calls `batch(t)` for t = 0, 1, ... (four warm-up calls first) until `seconds` have passed;
/// `batch` returns the episodes it ended. Returns (timed calls, episodes, seconds).
fn timed(seconds: f64, mut batch: impl FnMut(usize) -> Result<u64>) -> Result<(u64, u64, f64)> {
    let mut t = 0;
    for _ in 0..4 {
        batch(t)?;
        t += 1;
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut calls, mut episodes) = (0u64, 0u64);
    loop {
        episodes += batch(t)?;
        t += 1;
        calls += 1;
        if start.elapsed() >= budget {
            break;
        }
    }
    Ok((calls, episodes, start.elapsed().as_secs_f64()))
}

/// Levels in the pool of the cached measurement.
const LEVEL_POOL: usize = 256;

/// A single-thread raw [`step_rate`] whose episodes restart on a pool of pre-generated levels
/// (`VecEnv::with_num_levels`): the engine's step alone, without the cost of generating a level at
/// each reset.
pub fn step_rate_cached(
    testbed: &Arc<dyn Testbed>,
    split: Split,
    envs: usize,
    seconds: f64,
    seed: u64,
) -> Result<StepRate> {
    step_rate(
        testbed,
        split,
        ObsKind::None,
        envs,
        false,
        Some(LEVEL_POOL),
        seconds,
        seed,
    )
}

/// Mean microseconds to generate one level of `split`.
pub fn level_micros(testbed: &dyn Testbed, split: Split, seconds: f64, seed: u64) -> f64 {
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut k = 0u64;
    loop {
        black_box(generate_level(testbed, split, mix(&[seed, k])));
        k += 1;
        if k.is_multiple_of(16) && start.elapsed() >= budget {
            break;
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / k as f64
}

/// Cells a goal may sit on: walkable and not lava.
fn open_cells(grid: &crate::grid::Grid) -> Vec<Pos> {
    grid.find(|c| c.walkable() && c.object != Object::Lava as u8)
}

/// Times [`Planner::distances`] for `goals` candidate goals (each a single random open cell) on
/// training levels of `testbed`, cycling through `levels` levels whose planner tables are built
/// before the clock starts. Reports the mean time of one call solving all `goals`.
pub fn planner_rate(
    testbed: &dyn Testbed,
    goals: usize,
    levels: usize,
    seconds: f64,
    seed: u64,
) -> PlannerRate {
    let levels = levels.max(1);
    let mut rng = Rng::new(mix(&[seed, 0x91a]));
    let mut work: Vec<(Planner, Vec<GoalSpec>)> = (0..levels as u64)
        .map(|k| {
            let level = generate_level(testbed, Split::Train, mix(&[seed, k]));
            let open = open_cells(&level.grid);
            let specs = (0..goals)
                .map(|_| GoalSpec {
                    targets: rng.pick(&open).into_iter().collect(),
                    avoid: Vec::new(),
                })
                .collect();
            (Planner::new(&level.grid), specs)
        })
        .collect();
    let first = generate_level(testbed, Split::Train, mix(&[seed, 0]));
    let (height, width) = (first.grid.height, first.grid.width);
    let mut dist = Vec::with_capacity(first.grid.len());
    let budget = Duration::from_secs_f64(seconds);
    // Warm-up pass.
    for (planner, specs) in work.iter_mut() {
        for s in specs.iter() {
            planner.distances(s, &mut dist);
        }
    }
    let start = Instant::now();
    let mut calls = 0u64;
    'outer: loop {
        for (planner, specs) in work.iter_mut() {
            for s in specs.iter() {
                planner.distances(black_box(s), &mut dist);
                black_box(&dist);
            }
            calls += 1;
            if calls.is_multiple_of(64) && start.elapsed() >= budget {
                break 'outer;
            }
        }
        if start.elapsed() >= budget {
            break;
        }
    }
    PlannerRate {
        height,
        width,
        goals,
        levels,
        calls,
        micros_per_call: start.elapsed().as_secs_f64() * 1e6 / calls.max(1) as f64,
    }
}

/// The testbed the planner is measured on: `name` at `size = 11` where it has that knob, else
/// its defaults.
pub fn planner_testbed(name: &str) -> Result<Arc<dyn Testbed>> {
    testbeds::make(name, &Knobs::new().with("size", PLANNER_SIZE as f64))
        .or_else(|_| testbeds::make(name, &Knobs::new()))
}

/// Every measurement for testbed `name` (default knobs).
pub fn bench_testbed(name: &str, cfg: &BenchConfig) -> Result<TestbedBench> {
    cfg.check()?;
    let tb = testbeds::make(name, &Knobs::new())?;
    let s = cfg.seconds;
    let first = generate_level(tb.as_ref(), Split::Train, cfg.seed);
    let raw = step_rate(
        &tb,
        Split::Train,
        ObsKind::None,
        cfg.single_envs,
        false,
        None,
        s,
        cfg.seed,
    )?;
    let raw_cached = step_rate_cached(&tb, Split::Train, cfg.single_envs, s, cfg.seed)?;
    let u8 = step_rate(
        &tb,
        Split::Train,
        ObsKind::U8,
        cfg.single_envs,
        false,
        None,
        s,
        cfg.seed,
    )?;
    let planes = step_rate(
        &tb,
        Split::Train,
        ObsKind::Planes,
        cfg.single_envs,
        false,
        None,
        s,
        cfg.seed,
    )?;
    let batched_u8 = step_rate(
        &tb,
        Split::Train,
        ObsKind::U8,
        cfg.batch_envs,
        true,
        None,
        s,
        cfg.seed,
    )?;
    let level_micros = level_micros(tb.as_ref(), Split::Train, s / 4.0, cfg.seed);
    let ptb = planner_testbed(name)?;
    let planner = planner_rate(ptb.as_ref(), PLANNER_GOALS, 64, s, cfg.seed);
    Ok(TestbedBench {
        testbed: name.to_string(),
        height: first.grid.height,
        width: first.grid.width,
        raw,
        raw_cached,
        u8,
        planes,
        batched_u8,
        level_micros,
        planner,
    })
}

/// Runs [`bench_testbed`] for each name, calling `progress` before each.
pub fn run(
    names: &[&str],
    cfg: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport> {
    cfg.check()?;
    let mut testbeds = Vec::new();
    for &name in names {
        progress(name);
        testbeds.push(bench_testbed(name, cfg)?);
    }
    Ok(BenchReport {
        cores: cores(),
        threads: rayon::current_num_threads(),
        optimized: !cfg!(debug_assertions),
        config: cfg.clone(),
        testbeds,
        targets: Targets::default(),
    })
}

/// `12.3 M`, `456 k`, `789`.
pub fn si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The report as an aligned table with the targets beside it.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mesascope bench: {} cores (available_parallelism), {} rayon threads, {} s per measurement, {} build",
        r.cores,
        r.threads,
        r.config.seconds,
        if r.optimized {
            "optimized"
        } else {
            "DEBUG (figures meaningless: build with --release)"
        }
    );
    let _ = writeln!(
        s,
        "1T: one thread, {} envs; all cores: {} envs; random actions drawn before timing\n",
        r.config.single_envs, r.config.batch_envs
    );
    let header = [
        "testbed",
        "level",
        "raw 1T new levels",
        "raw 1T",
        "u8 1T",
        "planes 1T",
        "u8 all cores",
        "per core",
        "episode",
        "level gen",
        "planner 5 goals",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let rate = |x: f64| format!("{}/s", si(x));
    for t in &r.testbeds {
        rows.push(vec![
            t.testbed.clone(),
            format!("{}x{}", t.height, t.width),
            rate(t.raw.steps_per_sec),
            rate(t.raw_cached.steps_per_sec),
            rate(t.u8.steps_per_sec),
            rate(t.planes.steps_per_sec),
            rate(t.batched_u8.steps_per_sec),
            rate(t.batched_u8.per_thread()),
            format!("{:.0} steps", t.raw.mean_episode_steps()),
            format!("{:.1} us", t.level_micros),
            format!(
                "{:.1} us ({}x{})",
                t.planner.micros_per_call, t.planner.height, t.planner.width
            ),
        ]);
    }
    rows.push(vec![
        "target".into(),
        String::new(),
        String::new(),
        format!(">= {}", rate(TARGET_RAW_PER_CORE)),
        format!(">= {}", rate(TARGET_U8_PER_CORE)),
        String::new(),
        format!(">= {}", rate(TARGET_U8_PER_CORE * r.threads as f64)),
        format!(">= {}", rate(TARGET_U8_PER_CORE)),
        String::new(),
        String::new(),
        format!("<= {TARGET_PLANNER_MICROS:.0} us (11x11)"),
    ]);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            if c == 0 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let _ = writeln!(
        s,
        "\nraw: the engine's step alone, episodes restarting on a pool of {} pre-generated levels\n\
         (VecEnv::with_num_levels); raw new levels: a freshly generated level at every autoreset\n\
         (level gen per episode, the default for training).\n",
        LEVEL_POOL
    );
    for t in &r.testbeds {
        let mut below = Vec::new();
        if t.raw_cached.steps_per_sec < TARGET_RAW_PER_CORE {
            below.push("raw");
        }
        if t.u8.steps_per_sec < TARGET_U8_PER_CORE {
            below.push("u8 1T");
        }
        if t.batched_u8.per_thread() < TARGET_U8_PER_CORE {
            below.push("u8 per core on all cores");
        }
        if t.planner.micros_per_call > TARGET_PLANNER_MICROS {
            below.push("planner");
        }
        let planner_note = if (t.planner.height, t.planner.width) == (PLANNER_SIZE, PLANNER_SIZE) {
            ""
        } else {
            " (planner level not 11x11: the testbed has no size knob)"
        };
        let _ = writeln!(
            s,
            "{}: {}{}",
            t.testbed,
            if below.is_empty() {
                "every target met".to_string()
            } else {
                format!("below target: {}", below.join(", "))
            },
            planner_note
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_reports_positive_rates() {
        let cfg = BenchConfig {
            seconds: 0.005,
            single_envs: 8,
            batch_envs: 16,
            seed: 1,
        };
        let name = testbeds::NAMES[0];
        let r = run(&[name], &cfg, |_| {}).unwrap();
        let t = &r.testbeds[0];
        for rate in [&t.raw, &t.raw_cached, &t.u8, &t.planes, &t.batched_u8] {
            assert!(rate.steps > 0 && rate.steps_per_sec > 0.0, "{rate:?}");
        }
        assert!(t.planner.calls > 0 && t.planner.micros_per_call > 0.0);
        assert!(render(&r).contains(name));
        let bad = BenchConfig {
            seconds: f64::NAN,
            ..cfg
        };
        assert!(run(&[name], &bad, |_| {}).is_err());
    }
}
