//! Recorded rollouts: every state's action distribution, the sampled action, and each candidate
//! goal's Q-values there, plus the time spent inside the policy.

use crate::agents::{goal_path_lengths, run_episode_with, Agent, SeekGoal};
use crate::env::Env;
use crate::error::Result;
use crate::grid::Pos;
use crate::rng::Rng;
use crate::state::Outcome;
use crate::testbed::GoalId;
use std::time::Instant;

/// Builds a fresh policy. Audits call it once per episode (and per probed state), from several
/// threads, so that policies with per-episode state start clean and no policy is shared.
pub type AgentFactory<'a> = dyn Fn() -> Result<Box<dyn Agent>> + Sync + 'a;

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
    let na = env.n_actions();
    let shortest = if with_q {
        goal_path_lengths(env)
    } else {
        Vec::new()
    };
    let mut seekers: Vec<SeekGoal> = GoalId::all(env.testbed())
        .map(|g| SeekGoal::new(g, 1.0))
        .collect();
    if with_q {
        for s in &mut seekers {
            s.begin(env)?;
        }
    }
    let mut agent = factory()?;
    let mut timed = Timed {
        inner: agent.as_mut(),
        ns: 0,
    };
    let mut probs = Vec::new();
    let mut q = Vec::new();
    let mut qbuf = vec![0f32; na];
    let episode = run_episode_with(env, &mut timed, rng, &mut |env, p, _| {
        probs.extend_from_slice(p);
        if with_q {
            for s in &mut seekers {
                s.q_values(env, &mut qbuf);
                push_finite_q(&qbuf, &mut q);
            }
        }
        Ok(())
    })?;
    Ok(Recorded {
        outcome: episode.outcome,
        shortest,
        positions: episode.positions,
        actions: episode.actions,
        probs,
        q,
        policy_ns: timed.ns,
    })
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
