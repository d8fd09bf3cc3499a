//! A regret curriculum for the base optimizer, in the manner of prioritized level replay
//! (Jiang et al. 2021): levels are scored by the policy's regret for the *intended* goal (the
//! planner's optimal return minus what the policy earns there), and training draws half of its
//! episodes from the highest-regret levels seen so far. Minimax-regret curricula were found more
//! robust to goal misgeneralization than domain randomization (Abdel Sadek et al. 2025): where
//! the training distribution holds a few levels that separate the proxy from the intended goal,
//! a proxy-seeker fails exactly there, so regret finds them and training dwells on them.

use crate::error::{LearnError, Result};
use crate::eval::hidden_on_levels;
use crate::ppo::Trainer;
use mesascope_core::env::generate_level;
use mesascope_core::planner::{GoalSpec, Planner, UNREACHABLE};
use mesascope_core::rng::mix;
use mesascope_core::testbed::success_reward;
use mesascope_core::{Env, GoalId, Level, ProxyId, Split, Testbed};
use serde::Serialize;
use std::sync::Arc;

/// The curriculum's settings.
#[derive(Clone, Debug, Serialize)]
pub struct CurriculumConfig {
    /// Fresh levels drawn from the training distribution at every refresh.
    pub candidates: usize,
    /// Highest-regret levels kept and replayed.
    pub buffer: usize,
    /// Fresh levels beside the buffer in the training pool (PLR's exploration share).
    pub fresh: usize,
    /// PPO updates between refreshes.
    pub every: u64,
}

impl Default for CurriculumConfig {
    /// 1,024 candidates, a buffer of 256 beside 768 fresh levels (a quarter of episodes
    /// replayed), refreshed every 5 updates (about 40,000 env steps with the default PPO batch).
    /// Half replayed from a buffer of 128 (PLR's usual share) did worse on exit-vs-green: the
    /// small pool costs more diversity than the curriculum gains (docs/mitigation.md).
    fn default() -> CurriculumConfig {
        CurriculumConfig {
            candidates: 1024,
            buffer: 256,
            fresh: 768,
            every: 5,
        }
    }
}

/// What one refresh found.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub update: u64,
    /// Mean regret of the buffer and of the fresh candidates.
    pub buffer_regret: f64,
    pub candidate_regret: f64,
    /// Share of buffer levels where the proxy stands apart from the intended goal, against its
    /// share among the candidates: how strongly regret singles them out.
    pub buffer_apart: f64,
    pub candidate_apart: f64,
}

pub struct RegretCurriculum {
    testbed: Arc<dyn Testbed>,
    pub config: CurriculumConfig,
    seed: u64,
    buffer: Vec<Level>,
    round: u64,
    pub rounds: Vec<Round>,
}

/// The best return for the intended goal on a level: the base reward for reaching it by the
/// shortest path (0 if it cannot be reached).
pub fn optimal_return(testbed: &Arc<dyn Testbed>, level: &Level) -> f32 {
    let env = Env::from_level(testbed.clone(), Split::Train, level.clone());
    let mut spec = GoalSpec::default();
    testbed.goal_spec(&env.state, GoalId::INTENDED, &mut spec);
    let mut planner = Planner::new(&env.state.grid);
    let mut dist = Vec::new();
    planner.distances(&spec, &mut dist);
    match dist[env.state.agent] {
        UNREACHABLE => 0.0,
        d => success_reward(d as u32, env.state.max_steps),
    }
}

/// Whether any proxy's targets differ from the intended goal's at the start.
fn proxy_apart(testbed: &Arc<dyn Testbed>, level: &Level) -> bool {
    let env = Env::from_level(testbed.clone(), Split::Train, level.clone());
    let targets = |g: GoalId| {
        let mut spec = GoalSpec::default();
        testbed.goal_spec(&env.state, g, &mut spec);
        let mut t = spec.targets;
        t.sort_unstable();
        t
    };
    let intended = targets(GoalId::INTENDED);
    ProxyId::all(testbed.as_ref()).any(|p| targets(p.goal()) != intended)
}

impl RegretCurriculum {
    /// A curriculum over `testbed`'s training distribution (its knobs, `decorrelate` included).
    pub fn new(testbed: Arc<dyn Testbed>, config: CurriculumConfig, seed: u64) -> Result<Self> {
        if config.candidates == 0 || config.buffer == 0 || config.every == 0 {
            return Err(LearnError::Config(
                "the curriculum needs candidates, a buffer and a refresh interval above 0".into(),
            ));
        }
        Ok(RegretCurriculum {
            testbed,
            config,
            seed,
            buffer: Vec::new(),
            round: 0,
            rounds: Vec::new(),
        })
    }

    fn fresh(&self, n: usize, stream: u64) -> Vec<Level> {
        (0..n as u64)
            .map(|i| {
                generate_level(
                    self.testbed.as_ref(),
                    Split::Train,
                    mix(&[self.seed, 0xc0_11c0, stream, self.round, i]),
                )
            })
            .collect()
    }

    /// Before an update: every `every` updates, scores fresh candidates and the buffer with the
    /// current policy, keeps the highest-regret levels, and gives the trainer its next pool.
    pub fn before_update(&mut self, trainer: &mut Trainer) -> Result<()> {
        if !trainer.updates().is_multiple_of(self.config.every) {
            return Ok(());
        }
        let candidates = self.fresh(self.config.candidates, 1);
        let n_candidates = candidates.len();
        let mut scored: Vec<Level> = candidates;
        scored.append(&mut self.buffer);
        let hidden = hidden_on_levels(
            self.testbed.clone(),
            scored.clone(),
            trainer.model(),
            &trainer.policy,
            mix(&[self.seed, 0xc0_11c0, 2, self.round]),
        )?;
        let regret: Vec<f64> = scored
            .iter()
            .zip(&hidden)
            .map(|(l, &h)| (optimal_return(&self.testbed, l) - h).max(0.0) as f64)
            .collect();
        let mut order: Vec<usize> = (0..scored.len()).collect();
        // Highest regret first; ties keep the earlier level, so the order is deterministic.
        order.sort_by(|&a, &b| regret[b].total_cmp(&regret[a]).then(a.cmp(&b)));
        order.truncate(self.config.buffer);
        let mean = |ix: &mut dyn Iterator<Item = usize>| {
            let v: Vec<f64> = ix.map(|i| regret[i]).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let apart = |ix: &mut dyn Iterator<Item = usize>| {
            let v: Vec<bool> = ix.map(|i| proxy_apart(&self.testbed, &scored[i])).collect();
            v.iter().filter(|&&b| b).count() as f64 / v.len().max(1) as f64
        };
        self.rounds.push(Round {
            update: trainer.updates(),
            buffer_regret: mean(&mut order.iter().copied()),
            candidate_regret: mean(&mut (0..n_candidates)),
            buffer_apart: apart(&mut order.iter().copied()),
            candidate_apart: apart(&mut (0..n_candidates)),
        });
        self.buffer = order.iter().map(|&i| scored[i].clone()).collect();
        let mut pool = self.buffer.clone();
        pool.extend(self.fresh(self.config.fresh, 3));
        trainer.set_level_pool(pool)?;
        self.round += 1;
        Ok(())
    }
}
