//! Recorded rollouts: every state's action distribution, the sampled action, and each candidate
//! goal's Q-values there, plus the time spent inside the policy.

use crate::agents::{goal_path_lengths, probs_of_states, run_lockstep, Agent, SeekGoal};
use crate::env::Env;
use crate::error::Result;
use crate::grid::Pos;
use crate::rng::Rng;
use crate::state::Outcome;
use crate::testbed::GoalId;
use rayon::prelude::*;
use std::time::Instant;

/// Builds a fresh policy. Audits call it from several threads: once per group of episodes
/// played in lockstep for a batched policy ([`Agent::batched`]), once per episode otherwise, so
/// that policies with per-episode state start clean and no instance is shared across threads.
pub type AgentFactory<'a> = dyn Fn() -> Result<Box<dyn Agent>> + Sync + 'a;

/// Episodes a batched policy plays in lockstep per group (groups run in parallel). Fixed, not
/// derived from the thread count, so that every policy call sees the same batch on every
/// machine.
pub const EPISODE_BATCH: usize = 256;
/// States per policy call when the audit probes states it built (cue toggled, object added).
pub const PROBE_BATCH: usize = 1024;

/// One recorded episode.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub outcome: Outcome,
    /// The planner's path length from the start to each declared goal.
    pub shortest: Vec<Option<u32>>,
    /// The agent's cell before each action, then its final cell.
    pub positions: Vec<Pos>,
    pub actions: Vec<u8>,
    /// `steps x n_actions`: the policy's distribution at each state.
    pub probs: Vec<f32>,
    /// `steps x goals x n_actions`: each candidate's Q-values, made finite ([`push_finite_q`]).
    pub q: Vec<f64>,
    /// Nanoseconds spent inside the policy (`begin` and `probs`).
    pub policy_ns: u64,
}

/// Times the calls into a policy, so that reports can split policy inference from analysis.
pub struct Timed<'a> {
    pub inner: &'a mut dyn Agent,
    pub ns: u64,
}

impl Agent for Timed<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn begin(&mut self, env: &Env) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.begin(env);
        self.ns += t.elapsed().as_nanos() as u64;
        r
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.probs(env, out);
        self.ns += t.elapsed().as_nanos() as u64;
        r
    }
}

/// Appends one state's Q-values with unreachable moves made finite: one step worse than the
/// worst reachable move there (all equal when none is reachable). A move into another goal's
/// terminal cell ranks last, as it should, but costs a candidate no more than one wasted step, so
/// an agent that pursues a goal most of the time is not declared goal-less for a few episodes
/// that end elsewhere.
pub fn push_finite_q(q: &[f32], out: &mut Vec<f64>) {
    let worst = q
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::INFINITY, f32::min);
    let fill = if worst.is_finite() {
        worst as f64 - 1.0
    } else {
        0.0
    };
    out.extend(
        q.iter()
            .map(|&x| if x.is_finite() { x as f64 } else { fill }),
    );
}

/// Plays the episode `env` is reset to, recording what the audit needs.
pub fn record(
    env: &mut Env,
    factory: &AgentFactory,
    rng: &mut Rng,
    with_q: bool,
) -> Result<Recorded> {
    let mut one = record_lockstep(
        std::slice::from_mut(env),
        std::slice::from_mut(rng),
        factory,
        with_q,
    )?;
    Ok(one.remove(0))
}

/// Plays the episodes `envs` are reset to, episode `i` with stream `rngs[i]`, in lockstep
/// groups of [`EPISODE_BATCH`] for a batched policy (one policy call per step and group) and one
/// episode per task otherwise; the groups run in parallel. The result is the same, episode by
/// episode, as [`record`] on each.
pub fn record_many(
    mut envs: Vec<Env>,
    mut rngs: Vec<Rng>,
    factory: &AgentFactory,
    with_q: bool,
) -> Result<Vec<Recorded>> {
    let group = if factory()?.batched() {
        EPISODE_BATCH
    } else {
        1
    };
    let groups: Vec<(&mut [Env], &mut [Rng])> =
        envs.chunks_mut(group).zip(rngs.chunks_mut(group)).collect();
    let parts = groups
        .into_par_iter()
        .map(|(envs, rngs)| record_lockstep(envs, rngs, factory, with_q))
        .collect::<Result<Vec<Vec<Recorded>>>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// [`record_many`]'s work on one group, in lockstep. The group's policy time is booked on its
/// first episode.
fn record_lockstep(
    envs: &mut [Env],
    rngs: &mut [Rng],
    factory: &AgentFactory,
    with_q: bool,
) -> Result<Vec<Recorded>> {
    let n = envs.len();
    let Some(first) = envs.first() else {
        return Ok(Vec::new());
    };
    let na = first.n_actions();
    let shortest: Vec<Vec<Option<u32>>> = if with_q {
        envs.iter().map(goal_path_lengths).collect()
    } else {
        vec![Vec::new(); n]
    };
    let mut seekers: Vec<Vec<SeekGoal>> = Vec::with_capacity(n);
    for env in envs.iter() {
        let mut mine: Vec<SeekGoal> = GoalId::all(env.testbed())
            .map(|g| SeekGoal::new(g, 1.0))
            .collect();
        if with_q {
            for s in &mut mine {
                s.begin(env)?;
            }
        }
        seekers.push(mine);
    }
    let mut probs: Vec<Vec<f32>> = vec![Vec::new(); n];
    let mut q: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut qbuf = vec![0f32; na];
    let (episodes, ns) = run_lockstep(envs, rngs, factory, &mut |i, env, p, _| {
        probs[i].extend_from_slice(p);
        if with_q {
            for s in &mut seekers[i] {
                s.q_values(env, &mut qbuf);
                push_finite_q(&qbuf, &mut q[i]);
            }
        }
        Ok(())
    })?;
    Ok(episodes
        .into_iter()
        .zip(shortest)
        .zip(probs.into_iter().zip(q))
        .enumerate()
        .map(|(i, ((episode, shortest), (probs, q)))| Recorded {
            outcome: episode.outcome,
            shortest,
            positions: episode.positions,
            actions: episode.actions,
            probs,
            q,
            policy_ns: if i == 0 { ns } else { 0 },
        })
        .collect())
}

/// The policy's action distributions at `states` (built by the audit), `n_actions` values
/// each, every state asked afresh as [`probe`] does: batched policies in calls of
/// [`PROBE_BATCH`] states, others one state at a time, in parallel groups with one instance
/// each. Returns them and the nanoseconds spent inside the policy.
pub fn probe_many(states: &[Env], factory: &AgentFactory) -> Result<(Vec<f32>, u64)> {
    let group = if factory()?.batched() {
        PROBE_BATCH
    } else {
        64
    };
    let parts = states
        .par_chunks(group)
        .map(|chunk| probs_of_states(chunk, factory()?.as_mut(), PROBE_BATCH))
        .collect::<Result<Vec<_>>>()?;
    let ns = parts.iter().map(|p| p.1).sum();
    Ok((parts.into_iter().flat_map(|p| p.0).collect(), ns))
}

/// The policy's action distribution at `env`'s current state, a state the audit built (cue
/// toggled, an object added). `agent` is restarted on it (`begin`) so nothing it cached from
/// another state carries over; callers keep one instance per worker rather than build one per
/// probe, which for a neural policy would copy the network each time. This treats the policy as
/// Markov in the observation, as every mesascope policy is.
pub fn probe(env: &Env, agent: &mut dyn Agent, out: &mut [f32]) -> Result<u64> {
    let mut timed = Timed {
        inner: agent,
        ns: 0,
    };
    timed.begin(env)?;
    timed.probs(env, out)?;
    crate::agents::check_probs(out)?;
    Ok(timed.ns)
}
