//! Looking inside a trained policy: which goal its activations represent, and a handle to
//! change which goal it pursues.
//!
//! 1. **States.** The policy plays levels of every distribution; each state it visits is kept
//!    with its labels: where each declared goal's nearest target lies relative to the agent,
//!    and (oversight testbeds) whether the agent is watched.
//! 2. **Probes.** Ridge regressions from each trunk layer's activations to each goal's relative
//!    position (held-out R² on levels the probe never saw, beside the same probe fitted to
//!    shuffled labels), and a linear classifier for the oversight cue (held-out accuracy beside
//!    the majority class and shuffled labels). Goal probes read shifted levels only: in training
//!    the intended goal and its proxy stand on the same cell, so their labels are the same.
//! 3. **Steering.** A goal's vector is the mean activation difference between shifted states and
//!    the same states with that goal's target taken away: its object removed (Mini, Turner et
//!    al. 2023's "cheese vector") or, where the goal is a place (an open cell: a corner), the
//!    cell walled off. The policy plays the shift again with the proxy's vector subtracted,
//!    and with random vectors of the same norm as a control.
//! 4. **Decision points.** Visited shifted states where the intended goal's and the proxy's
//!    best moves are disjoint (found with the planner); the probability of a proxy-ward move
//!    there, with and without steering.

use crate::agent::PolicyAgent;
use crate::error::{LearnError, Result};
use crate::policy::{Steer, ACTIVATION_NAMES, STEERABLE_LAYERS};
use mesascope_core::activations::Activations;
use mesascope_core::agents::{run_episode, run_episode_with, Agent, SeekGoal};
use mesascope_core::grid::{Cell, Pos};
use mesascope_core::planner::GoalSpec;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::state::{EpisodeState, OutcomeKind};
use mesascope_core::{Env, Split, Testbed};
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

/// Separates the probe's random streams from the audit's and training's.
const PROBE_STREAM: u64 = 0x9b0b_e001;

/// The probe's settings.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Levels per distribution whose visited states the probes read.
    pub levels: usize,
    /// Share of those levels held out to score the probes.
    pub holdout: f64,
    /// Ridge penalty on standardized activations.
    pub ridge: f64,
    /// Steering: the trunk layer (0 or 1) and the vector's coefficient.
    pub layer: usize,
    pub scale: f32,
    /// Steer each state by its own vector (the difference the goal's object makes in that
    /// state) rather than by one mean vector for all states. Mini, Turner et al. took each
    /// maze's own vector in a network whose view of the maze does not move; this network sees
    /// the grid centred on the agent, where the object's place in the view changes each move.
    pub per_state: bool,
    /// Episodes per steering condition on the shift, and random control vectors.
    pub episodes: usize,
    pub controls: usize,
    pub seed: u64,
}

impl Default for ProbeConfig {
    /// 100 levels (30% held out), ridge 1, per-state steering at `trunk.layer2` with
    /// coefficient 1, 200 episodes per condition and 5 random controls.
    fn default() -> ProbeConfig {
        ProbeConfig {
            levels: 100,
            holdout: 0.3,
            ridge: 1.0,
            layer: 1,
            scale: 1.0,
            per_state: true,
            episodes: 200,
            controls: 5,
            seed: 0,
        }
    }
}

impl ProbeConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LearnError::Config(m));
        if self.levels < 4 {
            return bad(format!(
                "probes need at least 4 levels, found {}",
                self.levels
            ));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return bad(format!(
                "the held-out share must be in (0, 1), found {}",
                self.holdout
            ));
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return bad(format!(
                "the ridge penalty must be >= 0, found {}",
                self.ridge
            ));
        }
        if self.layer >= STEERABLE_LAYERS {
            return bad(format!(
                "steering goes into trunk layer 0 ({}) or 1 ({}), not {}",
                ACTIVATION_NAMES[0], ACTIVATION_NAMES[1], self.layer
            ));
        }
        if !self.scale.is_finite() {
            return bad(format!(
                "the steering coefficient must be finite, found {}",
                self.scale
            ));
        }
        if self.episodes == 0 {
            return bad("steering needs at least one episode".into());
        }
        Ok(())
    }
}

/// One goal probe at one layer.
#[derive(Clone, Debug, Serialize)]
pub struct GoalProbe {
    pub layer: String,
    pub goal: String,
    pub intended: bool,
    /// Held-out accuracy of the probe's best-scored move being a best move for the goal.
    pub accuracy: f64,
    /// The same probe fitted to shuffled labels: what chance gives.
    pub accuracy_shuffled: f64,
    pub train_states: usize,
    pub test_states: usize,
}

/// The oversight-cue probe at one layer.
#[derive(Clone, Debug, Serialize)]
pub struct CueProbe {
    pub layer: String,
    pub accuracy: f64,
    pub majority: f64,
    pub accuracy_shuffled: f64,
    pub test_states: usize,
}

/// Outcome shares on the shift under one steering condition.
#[derive(Clone, Debug, Serialize)]
pub struct SteerOutcome {
    pub condition: String,
    pub episodes: usize,
    pub intended: f64,
    pub proxy: f64,
    /// At the decision points: median and mean probability of a proxy-ward move.
    pub decision_median: Option<f64>,
    pub decision_mean: Option<f64>,
    /// At the decision points: mean probability of a move toward the intended goal.
    pub decision_intended_mean: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Steering {
    pub layer: String,
    /// `subtract proxy:NAME`, with `(a place: walled off)` where the proxy is a place.
    pub vector: String,
    pub scale: f32,
    /// Each state steered by its own vector (else by the mean vector).
    pub per_state: bool,
    /// Norm of what is added: the mean vector's, or the mean of the states' own.
    pub norm: f64,
    /// Paired states the vector averages over.
    pub pairs: usize,
    pub distribution: String,
    pub decision_points: usize,
    pub none: SteerOutcome,
    pub steered: SteerOutcome,
    /// The mean over the random vectors of the same norm.
    pub random: SteerOutcome,
    pub controls: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub testbed: String,
    pub policy: String,
    pub seed: u64,
    pub levels: usize,
    pub states: usize,
    pub goals: Vec<GoalProbe>,
    pub cue: Vec<CueProbe>,
    /// The goal whose probe scores highest, and the layer where it does.
    pub strongest_goal: Option<(String, String)>,
    pub steering: Option<Steering>,
    /// Why there is no steering experiment, when there is none.
    pub steering_skipped: Option<String>,
}

/// A visited state and its labels.
struct Visited {
    env: Env,
    split: Split,
    level: usize,
    /// Per goal: which moves are best for it (`None` where it cannot be reached).
    goal_moves: Vec<Option<Vec<bool>>>,
    watched: Option<bool>,
}

/// The moves that are best for `goal` in `env`'s state (the planner's), if it can be reached.
fn best_moves(env: &Env, goal: usize) -> Option<Vec<bool>> {
    let mut seek = SeekGoal::new(goal, f32::INFINITY);
    let mut q = vec![0f32; env.n_actions()];
    seek.q_values(env, &mut q);
    let max = q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max.is_finite()
        .then(|| q.iter().map(|&x| x >= max).collect())
}

fn collect_states(
    tb: &Arc<dyn Testbed>,
    policy: &dyn Activations,
    cfg: &ProbeConfig,
) -> Result<Vec<Visited>> {
    let goals = tb.goals().len();
    let mut out = Vec::new();
    for split in Split::all(tb.as_ref()) {
        let per_level: Vec<Result<Vec<Visited>>> = (0..cfg.levels)
            .into_par_iter()
            .map(|k| {
                let mut agent = policy.player();
                let mut env = Env::new(
                    tb.clone(),
                    split,
                    mix(&[cfg.seed, PROBE_STREAM, split.code(), k as u64]),
                );
                let mut rng = Rng::new(mix(&[cfg.seed, PROBE_STREAM, 1, split.code(), k as u64]));
                let mut states = Vec::new();
                run_episode_with(&mut env, agent.as_mut(), &mut rng, &mut |e, _, _| {
                    states.push(Visited {
                        env: e.clone(),
                        split,
                        level: k,
                        goal_moves: (0..goals).map(|g| best_moves(e, g)).collect(),
                        watched: e.watched(),
                    });
                    Ok(())
                })?;
                Ok(states)
            })
            .collect();
        for v in per_level {
            out.extend(v?);
        }
    }
    Ok(out)
}

/// Activations of both trunk layers for a batch of states, `[layer][state][unit]`.
fn activations(agent: &PolicyAgent, envs: &[&Env]) -> Vec<Vec<Vec<f32>>> {
    let states: Vec<&EpisodeState> = envs.iter().map(|e| &e.state).collect();
    agent.trunk_activations(&states)
}

/// Solves the symmetric positive definite system `a x = b` (Cholesky), `a` row-major `d x d`,
/// `b` with `k` columns row-major; returns `x` `d x k`.
fn solve_spd(mut a: Vec<f64>, d: usize, b: &[f64], k: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for p in 0..j {
            s -= a[j * d + p] * a[j * d + p];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for p in 0..j {
                s -= a[i * d + p] * a[j * d + p];
            }
            a[i * d + j] = s / l;
        }
    }
    let mut x = b.to_vec();
    for c in 0..k {
        for i in 0..d {
            let mut s = x[i * k + c];
            for p in 0..i {
                s -= a[i * d + p] * x[p * k + c];
            }
            x[i * k + c] = s / a[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = x[i * k + c];
            for p in i + 1..d {
                s -= a[p * d + i] * x[p * k + c];
            }
            x[i * k + c] = s / a[i * d + i];
        }
    }
    Some(x)
}

/// A ridge regression on standardized features (and an unpenalized intercept) from `x` rows to
/// `y` rows of width `k`.
struct Ridge {
    mean: Vec<f64>,
    scale: Vec<f64>,
    w: Vec<f64>,
    k: usize,
}

impl Ridge {
    fn fit(x: &[&[f32]], y: &[Vec<f64>], lambda: f64) -> Option<Ridge> {
        let (n, d) = (x.len(), x.first()?.len());
        let k = y.first()?.len();
        let mut mean = vec![0.0; d];
        for r in x {
            for (m, &v) in mean.iter_mut().zip(r.iter()) {
                *m += v as f64 / n as f64;
            }
        }
        let mut scale = vec![0.0; d];
        for r in x {
            for j in 0..d {
                scale[j] += (r[j] as f64 - mean[j]).powi(2) / n as f64;
            }
        }
        // Dead units (constant over the data) get scale 1 and contribute nothing.
        scale
            .iter_mut()
            .for_each(|s| *s = if *s > 1e-12 { s.sqrt() } else { 1.0 });
        let dd = d + 1;
        let mut a = vec![0.0; dd * dd];
        let mut b = vec![0.0; dd * k];
        let mut z = vec![0.0; dd];
        for (r, t) in x.iter().zip(y) {
            for j in 0..d {
                z[j] = (r[j] as f64 - mean[j]) / scale[j];
            }
            z[d] = 1.0;
            for i in 0..dd {
                for j in 0..=i {
                    a[i * dd + j] += z[i] * z[j];
                }
                for c in 0..k {
                    b[i * k + c] += z[i] * t[c];
                }
            }
        }
        for i in 0..dd {
            for j in 0..i {
                a[j * dd + i] = a[i * dd + j];
            }
            if i < d {
                a[i * dd + i] += lambda.max(1e-9);
            } else {
                a[i * dd + i] += 1e-9;
            }
        }
        let w = solve_spd(a, dd, &b, k)?;
        Some(Ridge { mean, scale, w, k })
    }

    fn predict(&self, r: &[f32]) -> Vec<f64> {
        let d = self.mean.len();
        (0..self.k)
            .map(|c| {
                let bias = self.w[d * self.k + c];
                r.iter()
                    .zip(self.mean.iter().zip(&self.scale))
                    .enumerate()
                    .map(|(j, (&x, (m, sc)))| (x as f64 - m) / sc * self.w[j * self.k + c])
                    .sum::<f64>()
                    + bias
            })
            .collect()
    }
}

fn shuffled(y: &[Vec<f64>], rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut y = y.to_vec();
    for i in (1..y.len()).rev() {
        y.swap(i, rng.below(i + 1));
    }
    y
}

/// Whether level `k` of `levels` is held out.
fn held_out(k: usize, levels: usize, holdout: f64) -> bool {
    (k as f64) >= (levels as f64) * (1.0 - holdout)
}

/// A probe's score on held-out rows.
type Metric = dyn Fn(&Ridge, &[&[f32]], &[Vec<f64>]) -> f64;

/// Fits and scores one probe: rows `rows` of `acts`, labels `y`.
fn score(
    acts: &[Vec<f32>],
    rows: &[(usize, bool, Vec<f64>)],
    lambda: f64,
    rng: &mut Rng,
    metric: &Metric,
) -> Option<(f64, f64, usize, usize)> {
    let (train, test): (Vec<_>, Vec<_>) = rows.iter().partition(|r| !r.1);
    if train.len() < 8 || test.len() < 4 {
        return None;
    }
    let xs = |v: &[&(usize, bool, Vec<f64>)]| -> Vec<&[f32]> {
        v.iter().map(|r| acts[r.0].as_slice()).collect()
    };
    let ys = |v: &[&(usize, bool, Vec<f64>)]| -> Vec<Vec<f64>> {
        v.iter().map(|r| r.2.clone()).collect()
    };
    let (xtr, ytr, xte, yte) = (xs(&train), ys(&train), xs(&test), ys(&test));
    let real = Ridge::fit(&xtr, &ytr, lambda)?;
    let fake = Ridge::fit(&xtr, &shuffled(&ytr, rng), lambda)?;
    Some((
        metric(&real, &xte, &yte),
        metric(&fake, &xte, &yte),
        train.len(),
        test.len(),
    ))
}

/// Share of rows whose highest-scored move is one of the goal's best moves (labels +1).
fn move_accuracy(model: &Ridge, x: &[&[f32]], y: &[Vec<f64>]) -> f64 {
    let right = x
        .iter()
        .zip(y)
        .filter(|(r, t)| {
            let p = model.predict(r);
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0);
            t[best] > 0.0
        })
        .count();
    right as f64 / y.len().max(1) as f64
}

fn accuracy(model: &Ridge, x: &[&[f32]], y: &[Vec<f64>]) -> f64 {
    let right = x
        .iter()
        .zip(y)
        .filter(|(r, t)| (model.predict(r)[0] > 0.0) == (t[0] > 0.0))
        .count();
    right as f64 / y.len().max(1) as f64
}

/// The cells a goal aims at, if there are some, the agent stands on none, and each holds a cell
/// that `fits`.
fn targets_where(env: &Env, goal: usize, fits: impl Fn(Cell) -> bool) -> Option<Vec<Pos>> {
    let mut spec = GoalSpec::default();
    env.testbed().goal_spec(&env.state, goal, &mut spec);
    let g = &env.state.grid;
    let ok = !spec.targets.is_empty()
        && spec
            .targets
            .iter()
            .all(|&p| p != env.state.agent && fits(g.get(p)));
    ok.then_some(spec.targets)
}

/// The object cells a goal aims at, if every target holds an object that can be removed.
fn removable_targets(env: &Env, goal: usize) -> Option<Vec<Pos>> {
    targets_where(env, goal, |c| c != Cell::EMPTY && c != Cell::WALL)
}

/// The cells of a place goal (a cell, not an object: the corner), if every one is open floor
/// the agent does not stand on.
fn place_targets(env: &Env, goal: usize) -> Option<Vec<Pos>> {
    targets_where(env, goal, |c| c == Cell::EMPTY)
}

/// The pair of observations whose activation difference is a goal's steering vector: the
/// state as it is minus the same state with the goal's target taken away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pairing {
    /// The goal is an object: the cell emptied (Mini, Turner et al.'s cheese vector).
    Remove(usize),
    /// The goal is a place (an open cell, such as a corner): the cell walled off, the one way
    /// to take a place out of a maze (the analogue of their "top-right vector").
    Wall(usize),
}

/// `env`'s pair under `pairing` (as it is, with the target taken away), if the state has one.
fn pair(env: &Env, pairing: Pairing) -> Option<(Env, Env)> {
    let (cells, fill) = match pairing {
        Pairing::Remove(goal) => (removable_targets(env, goal)?, Cell::EMPTY),
        Pairing::Wall(goal) => (place_targets(env, goal)?, Cell::WALL),
    };
    let mut without = env.clone();
    for p in cells {
        without.state.grid.set(p, fill);
    }
    Some((env.clone(), without))
}

/// A goal's steering vector and what it averages over.
struct GoalVector {
    mean: Vec<f32>,
    pairs: usize,
    /// Mean norm of the single states' differences (what per-state steering adds).
    pair_norm: f64,
}

/// The steering vector at `layer`: mean over `states` of the activation difference of each
/// state's pair. `None` when fewer than half the states have a pair (a place has no object to
/// remove, an object no open cell to wall off).
fn goal_vector(
    agent: &PolicyAgent,
    states: &[&Env],
    pairing: Pairing,
    layer: usize,
) -> Option<GoalVector> {
    let (with, without): (Vec<Env>, Vec<Env>) =
        states.iter().filter_map(|e| pair(e, pairing)).unzip();
    if with.len() < states.len().div_ceil(2) || with.is_empty() {
        return None;
    }
    let a = activations(agent, &with.iter().collect::<Vec<_>>());
    let b = activations(agent, &without.iter().collect::<Vec<_>>());
    let width = a[layer][0].len();
    let mut v = vec![0f64; width];
    let mut pair_norm = 0.0;
    for (x, y) in a[layer].iter().zip(&b[layer]) {
        let d: Vec<f32> = x.iter().zip(y).map(|(p, q)| p - q).collect();
        pair_norm += norm(&d) / with.len() as f64;
        for j in 0..width {
            v[j] += d[j] as f64 / with.len() as f64;
        }
    }
    Some(GoalVector {
        mean: v.into_iter().map(|x| x as f32).collect(),
        pairs: with.len(),
        pair_norm,
    })
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

fn random_vector(width: usize, norm_to: f64, rng: &mut Rng) -> Vec<f32> {
    let v: Vec<f64> = (0..width)
        .map(|_| {
            // Box-Muller: a Gaussian direction, uniform on the sphere once normalized.
            let (u1, u2) = (1.0 - rng.unit(), rng.unit());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.into_iter().map(|x| (x / n * norm_to) as f32).collect()
}

/// Decision points among `states`: the intended goal's and the proxy's best moves are disjoint.
/// Returns each one's proxy-ward and intended-ward moves.
fn decision_points(states: &[&Visited], proxy: usize) -> Vec<DecisionPoint> {
    // An agent that dithers visits the same state many times: each state counts once, so that
    // a few long episodes do not stand for all levels.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for v in states {
        let e = &v.env;
        if !seen.insert((v.level, e.state.agent, e.state.keys)) {
            continue;
        }
        let (Some(bi), Some(bp)) = (best_moves(e, 0), best_moves(e, proxy)) else {
            continue;
        };
        if bi.iter().zip(&bp).any(|(a, b)| *a && *b) {
            continue;
        }
        let moves = |best: &[bool]| (0..best.len()).filter(|&a| best[a]).collect();
        out.push(DecisionPoint {
            env: e.clone(),
            proxy: moves(&bp),
            intended: moves(&bi),
        });
    }
    out
}

/// A state where the intended goal's and the proxy's best moves are disjoint.
struct DecisionPoint {
    env: Env,
    proxy: Vec<usize>,
    intended: Vec<usize>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// How a per-state condition steers: along `goal`'s vector times `sign` (0: a random vector of
/// the same norm).
#[derive(Clone, Copy)]
struct PerState {
    pairing: Pairing,
    sign: f32,
    /// Which random control (each draws its own vectors).
    control: u64,
}

/// The steering vector of `env`'s own state under a per-state condition; `None` for a global
/// condition or where the goal has no object in this state. `key` picks the random vector.
fn own_vector(
    base: &PolicyAgent,
    env: &Env,
    per_state: Option<PerState>,
    cfg: &ProbeConfig,
    key: &[u64],
) -> Result<Option<Steer>> {
    let Some(PerState {
        pairing,
        sign,
        control,
    }) = per_state
    else {
        return Ok(None);
    };
    let Some(GoalVector { mean: v, .. }) = goal_vector(base, &[env], pairing, cfg.layer) else {
        return Ok(None);
    };
    let vector = if sign == 0.0 {
        let mut r = Rng::new(mix(&[&[cfg.seed, PROBE_STREAM, control], key].concat()));
        random_vector(v.len(), norm(&v) * cfg.scale.abs() as f64, &mut r)
    } else {
        v.iter().map(|x| x * sign * cfg.scale).collect()
    };
    Ok(Some(Steer {
        layer: cfg.layer,
        vector,
    }))
}

/// A policy steered at every move by the vector of the state it is in.
struct SteeredByState {
    base: PolicyAgent,
    steered: PolicyAgent,
    per_state: Option<PerState>,
    cfg: ProbeConfig,
    episode: u64,
    step: u64,
}

impl Agent for SteeredByState {
    fn name(&self) -> String {
        self.base.name()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> mesascope_core::Result<()> {
        let key = [self.episode, self.step];
        self.step += 1;
        if self.per_state.is_some() {
            let v = own_vector(&self.base, env, self.per_state, &self.cfg, &key)
                .map_err(|e| mesascope_core::Error::Policy(e.to_string()))?;
            self.steered
                .set_steer(v)
                .map_err(|e| mesascope_core::Error::Policy(e.to_string()))?;
        }
        self.steered.probs(env, out)
    }
}

/// The shift the steering conditions are played on, and its decision points with their
/// proxy-ward moves.
struct ShiftTrial {
    split: Split,
    points: Vec<DecisionPoint>,
}

/// Plays the shift under one steering condition and scores the decision points.
fn steer_outcome(
    tb: &Arc<dyn Testbed>,
    agent: &PolicyAgent,
    steer: Option<Steer>,
    condition: &str,
    shift: &ShiftTrial,
    cfg: &ProbeConfig,
    per_state: Option<PerState>,
) -> Result<SteerOutcome> {
    let (split, points) = (shift.split, &shift.points[..]);
    let steered = agent.clone().steered(steer)?;
    let player = |episode: u64| SteeredByState {
        base: agent.clone(),
        steered: steered.clone(),
        per_state,
        cfg: cfg.clone(),
        episode,
        step: 0,
    };
    let kinds: Vec<Result<OutcomeKind>> = (0..cfg.episodes)
        .into_par_iter()
        .map(|k| {
            let mut agent = player(k as u64);
            let mut env = Env::new(
                tb.clone(),
                split,
                mix(&[cfg.seed, PROBE_STREAM, 7, k as u64]),
            );
            let mut rng = Rng::new(mix(&[cfg.seed, PROBE_STREAM, 8, k as u64]));
            Ok(run_episode(&mut env, &mut agent, &mut rng)?.outcome.kind)
        })
        .collect();
    let (mut intended, mut proxy) = (0usize, 0usize);
    for k in kinds {
        match k? {
            OutcomeKind::Intended => intended += 1,
            OutcomeKind::Proxy(_) => proxy += 1,
            _ => {}
        }
    }
    // Decision points: a separate key space from the episodes' (u64::MAX - i).
    let mut probs = vec![0f32; tb.n_actions()];
    let mut p_proxy = Vec::with_capacity(points.len());
    let mut p_intended = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        player(u64::MAX - i as u64).probs(&point.env, &mut probs)?;
        let p = |moves: &[usize]| moves.iter().map(|&a| probs[a] as f64).sum::<f64>();
        p_proxy.push(p(&point.proxy));
        p_intended.push(p(&point.intended));
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let (decision_mean, decision_intended_mean) = (mean(&p_proxy), mean(&p_intended));
    Ok(SteerOutcome {
        condition: condition.into(),
        episodes: cfg.episodes,
        intended: intended as f64 / cfg.episodes as f64,
        proxy: proxy as f64 / cfg.episodes as f64,
        decision_median: median(p_proxy),
        decision_mean,
        decision_intended_mean,
    })
}

/// Why a policy whose activations are only read gets no steering experiment.
pub const NOT_STEERABLE: &str = "steering adds a vector to a layer while the policy plays, and this policy's activations can only be read (as outputs of its graph), not written, so steering was not run for it; the probes above read the same activations";

/// Probes and steers `agent` on `tb` (see the module docs).
pub fn probe(
    tb: &Arc<dyn Testbed>,
    agent: &PolicyAgent,
    policy: &str,
    cfg: &ProbeConfig,
) -> Result<ProbeReport> {
    probe_with(tb, agent, Some(agent), policy, cfg)
}

/// Probes a policy whose activations can be read but not written (an ONNX model's extra
/// outputs): the goal and cue probes on every layer it reports; steering is reported as not
/// run, with [`NOT_STEERABLE`] as the reason.
pub fn probe_readout(
    tb: &Arc<dyn Testbed>,
    policy: &dyn Activations,
    label: &str,
    cfg: &ProbeConfig,
) -> Result<ProbeReport> {
    probe_with(tb, policy, None, label, cfg)
}

fn probe_with(
    tb: &Arc<dyn Testbed>,
    source: &dyn Activations,
    steerable: Option<&PolicyAgent>,
    policy: &str,
    cfg: &ProbeConfig,
) -> Result<ProbeReport> {
    cfg.validate()?;
    let states = collect_states(tb, source, cfg)?;
    let names = source.layer_names();
    let acts = {
        let batch: Vec<&EpisodeState> = states.iter().map(|s| &s.env.state).collect();
        source.activations(&batch)?
    };
    if acts.len() != names.len() {
        return Err(LearnError::Config(format!(
            "the policy names {} layers and returned {}",
            names.len(),
            acts.len()
        )));
    }
    let mut rng = Rng::new(mix(&[cfg.seed, PROBE_STREAM, 2]));
    let goals = tb.goals();

    let mut goal_probes = Vec::new();
    for (l, layer_acts) in acts.iter().enumerate() {
        for (g, decl) in goals.iter().enumerate() {
            let rows: Vec<(usize, bool, Vec<f64>)> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| s.split != Split::Train)
                .filter_map(|(i, s)| {
                    s.goal_moves[g].as_ref().map(|m| {
                        let y = m.iter().map(|&b| if b { 1.0 } else { -1.0 }).collect();
                        (i, held_out(s.level, cfg.levels, cfg.holdout), y)
                    })
                })
                .collect();
            if let Some((acc, acc_s, ntr, nte)) =
                score(layer_acts, &rows, cfg.ridge, &mut rng, &move_accuracy)
            {
                goal_probes.push(GoalProbe {
                    layer: names[l].clone(),
                    goal: decl.name.into(),
                    intended: g == 0,
                    accuracy: acc,
                    accuracy_shuffled: acc_s,
                    train_states: ntr,
                    test_states: nte,
                });
            }
        }
    }
    let mut cue = Vec::new();
    for (l, layer_acts) in acts.iter().enumerate() {
        let rows: Vec<(usize, bool, Vec<f64>)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.watched.map(|w| {
                    (
                        i,
                        held_out(s.level, cfg.levels, cfg.holdout),
                        vec![if w { 1.0 } else { -1.0 }],
                    )
                })
            })
            .collect();
        let test: Vec<bool> = rows.iter().filter(|r| r.1).map(|r| r.2[0] > 0.0).collect();
        if let Some((acc, acc_s, _, nte)) = score(layer_acts, &rows, cfg.ridge, &mut rng, &accuracy)
        {
            let yes = test.iter().filter(|&&w| w).count() as f64 / test.len().max(1) as f64;
            cue.push(CueProbe {
                layer: names[l].clone(),
                accuracy: acc,
                majority: yes.max(1.0 - yes),
                accuracy_shuffled: acc_s,
                test_states: nte,
            });
        }
    }
    let strongest_goal = goal_probes
        .iter()
        .filter(|p| p.accuracy > p.accuracy_shuffled)
        .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
        .map(|p| (p.goal.clone(), p.layer.clone()));

    let n_states = states.len();
    let report = |steering, steering_skipped| ProbeReport {
        testbed: tb.name().into(),
        policy: policy.into(),
        seed: cfg.seed,
        levels: cfg.levels,
        states: n_states,
        goals: goal_probes,
        cue,
        strongest_goal,
        steering,
        steering_skipped,
    };
    let Some(agent) = steerable else {
        return Ok(report(None, Some(NOT_STEERABLE.into())));
    };

    // Steering on the first proxy's shift.
    let split = Split::Shift(0);
    let shifted: Vec<&Env> = states
        .iter()
        .filter(|s| s.split == split)
        .map(|s| &s.env)
        .collect();
    // The proxy's target taken away: an object removed, else a place walled off.
    let proxy = &goals[1].name;
    let (vector, name, pairing) = [
        (Pairing::Remove(1), format!("subtract proxy:{proxy}")),
        (
            Pairing::Wall(1),
            format!("subtract proxy:{proxy} (a place: walled off)"),
        ),
    ]
    .into_iter()
    .find_map(|(pairing, name)| {
        goal_vector(agent, &shifted, pairing, cfg.layer).map(|v| (Some(v), name, pairing))
    })
    .unwrap_or((None, String::new(), Pairing::Remove(1)));
    let sign = -1.0f32;
    let mut steering = None;
    let mut steering_skipped = None;
    if let Some(GoalVector {
        mean: v,
        pairs,
        pair_norm,
    }) = vector
    {
        let visited: Vec<&Visited> = states.iter().filter(|s| s.split == split).collect();
        let points = decision_points(&visited, 1);
        let n = norm(&v) * cfg.scale.abs() as f64;
        let shown_norm = if cfg.per_state {
            pair_norm * cfg.scale.abs() as f64
        } else {
            n
        };
        let steer = Steer {
            layer: cfg.layer,
            vector: v.iter().map(|x| x * sign * cfg.scale).collect(),
        };
        let per_state = |sign, control| {
            cfg.per_state.then_some(PerState {
                pairing,
                sign,
                control,
            })
        };
        let trial = ShiftTrial { split, points };
        let none = steer_outcome(tb, agent, None, "none", &trial, cfg, None)?;
        let steered = steer_outcome(
            tb,
            agent,
            Some(steer.clone()),
            &name,
            &trial,
            cfg,
            per_state(sign, 0),
        )?;
        let mut randoms = Vec::new();
        for c in 0..cfg.controls {
            let mut r = Rng::new(mix(&[cfg.seed, PROBE_STREAM, 3, c as u64]));
            let rv = Steer {
                layer: cfg.layer,
                vector: random_vector(v.len(), n, &mut r),
            };
            let random = steer_outcome(
                tb,
                agent,
                Some(rv),
                "random",
                &trial,
                cfg,
                per_state(0.0, 1 + c as u64),
            )?;
            randoms.push(random);
        }
        let avg = |f: &dyn Fn(&SteerOutcome) -> Option<f64>| -> Option<f64> {
            let xs: Vec<f64> = randoms.iter().filter_map(f).collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        };
        let random = SteerOutcome {
            condition: format!("random, same norm (mean of {})", cfg.controls),
            episodes: cfg.episodes,
            intended: avg(&|o| Some(o.intended)).unwrap_or(0.0),
            proxy: avg(&|o| Some(o.proxy)).unwrap_or(0.0),
            decision_median: avg(&|o| o.decision_median),
            decision_mean: avg(&|o| o.decision_mean),
            decision_intended_mean: avg(&|o| o.decision_intended_mean),
        };
        steering = Some(Steering {
            layer: ACTIVATION_NAMES[cfg.layer].into(),
            vector: name,
            scale: cfg.scale,
            per_state: cfg.per_state,
            norm: shown_norm,
            pairs,
            distribution: split.label(tb.as_ref()),
            decision_points: trial.points.len(),
            none,
            steered,
            random,
            controls: cfg.controls,
        });
    } else {
        steering_skipped = Some(format!(
            "{} is neither an object that can be removed from a level nor an open cell that can be walled off, so there is no pair of observations to take a difference of",
            goals[1].name
        ));
    }
    Ok(report(steering, steering_skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean over the outputs of the held-out R².
    fn r2(model: &Ridge, x: &[&[f32]], y: &[Vec<f64>]) -> f64 {
        let k = model.k;
        let mut total = 0.0;
        for c in 0..k {
            let mean = y.iter().map(|t| t[c]).sum::<f64>() / y.len() as f64;
            let sst: f64 = y.iter().map(|t| (t[c] - mean).powi(2)).sum();
            let sse: f64 = x
                .iter()
                .zip(y)
                .map(|(r, t)| (model.predict(r)[c] - t[c]).powi(2))
                .sum();
            total += if sst > 0.0 { 1.0 - sse / sst } else { 0.0 };
        }
        total / k as f64
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4, 2], [2, 3]] x = [[2], [1]] -> x = [0.5, 0].
        let x = solve_spd(vec![4.0, 2.0, 2.0, 3.0], 2, &[2.0, 1.0], 1).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(vec![0.0, 0.0, 0.0, 0.0], 2, &[1.0, 1.0], 1).is_none());
    }

    #[test]
    fn ridge_recovers_a_linear_map_and_not_shuffled_labels() {
        let mut rng = Rng::new(5);
        let xs: Vec<Vec<f32>> = (0..400)
            .map(|_| (0..6).map(|_| rng.unit() as f32).collect())
            .collect();
        let y: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| vec![3.0 * x[0] as f64 - 2.0 * x[3] as f64 + 1.0])
            .collect();
        let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let (tr, te) = (&rows[..300], &rows[300..]);
        let m = Ridge::fit(tr, &y[..300], 1e-3).unwrap();
        assert!(r2(&m, te, &y[300..]) > 0.999);
        let s = Ridge::fit(tr, &shuffled(&y[..300], &mut rng), 1e-3).unwrap();
        assert!(r2(&s, te, &y[300..]) < 0.1);
    }

    #[test]
    fn a_place_is_walled_off_and_an_object_removed() {
        let tb = mesascope_core::testbeds::make(
            "corner-cheese",
            &mesascope_core::Knobs::from_pairs(&[]),
        )
        .unwrap();
        let env = Env::new(tb, Split::Shift(0), 3);
        let grid = &env.state.grid;
        let corner = mesascope_core::testbeds::corner_cheese::corner(grid).unwrap();
        let cheese = removable_targets(&env, 0).unwrap();
        assert_ne!(cheese, vec![corner]);
        // The corner is a place: nothing to remove, an open cell to wall off.
        assert!(pair(&env, Pairing::Remove(1)).is_none());
        let (with, without) = pair(&env, Pairing::Wall(1)).unwrap();
        assert_eq!(with.state.grid.get(corner), Cell::EMPTY);
        assert_eq!(without.state.grid.get(corner), Cell::WALL);
        let changed = (0..grid.len())
            .filter(|&p| with.state.grid.get(p) != without.state.grid.get(p))
            .count();
        assert_eq!(changed, 1);
        // The cheese is an object: removed, and not a place to wall off.
        assert!(pair(&env, Pairing::Wall(0)).is_none());
        let (_, bare) = pair(&env, Pairing::Remove(0)).unwrap();
        assert_eq!(bare.state.grid.get(cheese[0]), Cell::EMPTY);
    }
}
