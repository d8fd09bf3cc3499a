//! Steps 3 and 4: steering vectors and the decision points they are scored at.

use super::report::{SteerOutcome, Steering};
use super::states::{best_moves, Visited};
use super::{ProbeConfig, PROBE_STREAM};
use crate::agent::PolicyAgent;
use crate::error::Result;
use crate::policy::{Steer, ACTIVATION_NAMES};
use mesascope_core::agents::{run_episode, Agent};
use mesascope_core::grid::{Cell, Pos};
use mesascope_core::planner::GoalSpec;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::state::{EpisodeState, OutcomeKind};
use mesascope_core::{Env, GoalId, ProxyId, Split, Testbed};
use rayon::prelude::*;
use std::sync::Arc;

/// Step 3: the steering experiment on the first proxy's shift, from the visited `states`.
/// Returns the experiment, or why there is none.
pub(super) fn steer_on_shift(
    tb: &Arc<dyn Testbed>,
    agent: &PolicyAgent,
    states: &[Visited],
    cfg: &ProbeConfig,
) -> Result<(Option<Steering>, Option<String>)> {
    let proxy = ProxyId(0);
    let goal = proxy.goal();
    let split = Split::Shift(proxy);
    let shifted: Vec<&Env> = states
        .iter()
        .filter(|s| s.split == split)
        .map(|s| &s.env)
        .collect();
    // The proxy's target taken away: an object removed, else a place walled off.
    let proxy_name = tb.proxy(proxy).name;
    let (vector, name, pairing) = [
        (
            Pairing::Remove(goal),
            format!("subtract proxy:{proxy_name}"),
        ),
        (
            Pairing::Wall(goal),
            format!("subtract proxy:{proxy_name} (a place: walled off)"),
        ),
    ]
    .into_iter()
    .find_map(|(pairing, name)| {
        goal_vector(agent, &shifted, pairing, cfg.layer).map(|v| (Some(v), name, pairing))
    })
    .unwrap_or((None, String::new(), Pairing::Remove(goal)));
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
        let points = decision_points(&visited, goal);
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
            proxy_name
        ));
    }
    Ok((steering, steering_skipped))
}

/// Activations of both trunk layers for a batch of states, `[layer][state][unit]`.
fn activations(agent: &PolicyAgent, envs: &[&Env]) -> Vec<Vec<Vec<f32>>> {
    let states: Vec<&EpisodeState> = envs.iter().map(|e| &e.state).collect();
    agent.trunk_activations(&states)
}

/// The cells a goal aims at, if there are some, the agent stands on none, and each holds a cell
/// that `fits`.
fn targets_where(env: &Env, goal: GoalId, fits: impl Fn(Cell) -> bool) -> Option<Vec<Pos>> {
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
fn removable_targets(env: &Env, goal: GoalId) -> Option<Vec<Pos>> {
    targets_where(env, goal, |c| c != Cell::EMPTY && c != Cell::WALL)
}

/// The cells of a place goal (a cell, not an object: the corner), if every one is open floor
/// the agent does not stand on.
fn place_targets(env: &Env, goal: GoalId) -> Option<Vec<Pos>> {
    targets_where(env, goal, |c| c == Cell::EMPTY)
}

/// The pair of observations whose activation difference is a goal's steering vector: the
/// state as it is minus the same state with the goal's target taken away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pairing {
    /// The goal is an object: the cell emptied (Mini, Turner et al.'s cheese vector).
    Remove(GoalId),
    /// The goal is a place (an open cell, such as a corner): the cell walled off, the one way
    /// to take a place out of a maze (the analogue of their "top-right vector").
    Wall(GoalId),
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

pub(super) fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// A Gaussian direction scaled to `norm_to`: the random control of every steering experiment.
pub(super) fn random_vector(width: usize, norm_to: f64, rng: &mut Rng) -> Vec<f32> {
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
fn decision_points(states: &[&Visited], proxy: GoalId) -> Vec<DecisionPoint> {
    // An agent that dithers visits the same state many times: each state counts once, so that
    // a few long episodes do not stand for all levels.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for v in states {
        let e = &v.env;
        if !seen.insert((v.level, e.state.agent, e.state.keys)) {
            continue;
        }
        let (Some(bi), Some(bp)) = (best_moves(e, GoalId::INTENDED), best_moves(e, proxy)) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_walled_off_and_an_object_removed() {
        let tb = mesascope_core::testbeds::make(
            "corner-cheese",
            &mesascope_core::Knobs::from_pairs(&[]),
        )
        .unwrap();
        let env = Env::new(tb, Split::Shift(ProxyId(0)), 3);
        let grid = &env.state.grid;
        let corner = mesascope_core::testbeds::corner_cheese::corner(grid).unwrap();
        let (cheese_goal, corner_goal) = (GoalId::INTENDED, ProxyId(0).goal());
        let cheese = removable_targets(&env, cheese_goal).unwrap();
        assert_ne!(cheese, vec![corner]);
        // The corner is a place: nothing to remove, an open cell to wall off.
        assert!(pair(&env, Pairing::Remove(corner_goal)).is_none());
        let (with, without) = pair(&env, Pairing::Wall(corner_goal)).unwrap();
        assert_eq!(with.state.grid.get(corner), Cell::EMPTY);
        assert_eq!(without.state.grid.get(corner), Cell::WALL);
        let changed = (0..grid.len())
            .filter(|&p| with.state.grid.get(p) != without.state.grid.get(p))
            .count();
        assert_eq!(changed, 1);
        // The cheese is an object: removed, and not a place to wall off.
        assert!(pair(&env, Pairing::Wall(cheese_goal)).is_none());
        let (_, bare) = pair(&env, Pairing::Remove(cheese_goal)).unwrap();
        assert_eq!(bare.state.grid.get(cheese[0]), Cell::EMPTY);
    }
}
