//! Step 1: the states a policy visits on every distribution, with their labels.

use super::{ProbeConfig, PROBE_STREAM};
use crate::error::Result;
use mesascope_core::activations::Activations;
use mesascope_core::agents::{run_lockstep, SeekGoal};
use mesascope_core::audit::rollout::EPISODE_BATCH;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::{Env, GoalId, Split, Testbed};
use rayon::prelude::*;
use std::sync::Arc;

/// A visited state and its labels.
pub(super) struct Visited {
    pub env: Env,
    pub split: Split,
    /// Which level of its distribution (`0..levels`).
    pub level: usize,
    /// Per declared goal, by [`GoalId`]: which moves are best for it (`None` where it cannot
    /// be reached).
    goal_moves: Vec<Option<Vec<bool>>>,
    pub watched: Option<bool>,
}

impl Visited {
    pub fn goal_moves(&self, goal: GoalId) -> Option<&Vec<bool>> {
        self.goal_moves[goal.0].as_ref()
    }
}

/// The moves that are best for `goal` in `env`'s state (the planner's), if it can be reached.
pub(super) fn best_moves(env: &Env, goal: GoalId) -> Option<Vec<bool>> {
    let mut seek = SeekGoal::new(goal, f32::INFINITY);
    let mut q = vec![0f32; env.n_actions()];
    seek.q_values(env, &mut q);
    let max = q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max.is_finite()
        .then(|| q.iter().map(|&x| x >= max).collect())
}

/// The states the policy visits on `cfg.levels` levels of every distribution, training first.
/// The levels are played in lockstep groups (one policy call per step for a group when the
/// policy takes batches), the groups in parallel; each level keeps its own random stream, so the
/// states are those of playing it alone.
pub(super) fn collect_states(
    tb: &Arc<dyn Testbed>,
    policy: &dyn Activations,
    cfg: &ProbeConfig,
) -> Result<Vec<Visited>> {
    let mut out = Vec::new();
    for split in Split::all(tb.as_ref()) {
        let levels: Vec<usize> = (0..cfg.levels).collect();
        let groups: Vec<Result<Vec<Vec<Visited>>>> = levels
            .par_chunks(EPISODE_BATCH)
            .map(|group| {
                let mut envs: Vec<Env> = group
                    .iter()
                    .map(|&k| {
                        let level = mix(&[cfg.seed, PROBE_STREAM, split.code(), k as u64]);
                        Env::new(tb.clone(), split, level)
                    })
                    .collect();
                let mut rngs: Vec<Rng> = group
                    .iter()
                    .map(|&k| Rng::new(mix(&[cfg.seed, PROBE_STREAM, 1, split.code(), k as u64])))
                    .collect();
                let mut states: Vec<Vec<Visited>> = group.iter().map(|_| Vec::new()).collect();
                run_lockstep(
                    &mut envs,
                    &mut rngs,
                    &|| Ok(policy.player()),
                    &mut |i, e, _, _| {
                        states[i].push(Visited {
                            env: e.clone(),
                            split,
                            level: group[i],
                            goal_moves: GoalId::all(e.testbed())
                                .map(|g| best_moves(e, g))
                                .collect(),
                            watched: e.watched(),
                        });
                        Ok(())
                    },
                )?;
                Ok(states)
            })
            .collect();
        for g in groups {
            out.extend(g?.into_iter().flatten());
        }
    }
    Ok(out)
}
