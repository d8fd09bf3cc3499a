//! Batched evaluation of a network on a split: one episode in each of `episodes` environments,
//! actions sampled from the policy, outcomes counted.

use crate::error::Result;
use crate::policy::{log_probs, to_vec2, ActorCritic, Encoder, PolicyConfig};
use crate::ppo::Finished;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::state::OutcomeKind;
use mesascope_core::testbed::Testbed;
use mesascope_core::vec_env::{ObsBuf, StepBufs};
use mesascope_core::{Level, ProxyId, Split, VecEnv};
use serde::Serialize;
use std::sync::Arc;

/// Shares of outcomes over the evaluated episodes.
#[derive(Clone, Debug, Serialize)]
pub struct EvalSummary {
    pub split: String,
    pub episodes: usize,
    /// Base-objective success (see [`crate::ppo`]).
    pub success: f64,
    pub intended: f64,
    /// One share per proxy, in the testbed's order.
    pub proxies: Vec<f64>,
    pub died: f64,
    pub timed_out: f64,
    pub mean_return: f64,
    pub mean_hidden: f64,
}

/// Plays the first episode of `episodes` environments of `split` (levels `mix(seed, i, 0)`).
pub fn evaluate(
    testbed: Arc<dyn Testbed>,
    split: Split,
    model: &ActorCritic,
    config: &PolicyConfig,
    episodes: usize,
    seed: u64,
) -> Result<EvalSummary> {
    let mut venv = VecEnv::new(testbed.clone(), split, episodes, seed)?;
    let outcomes = first_episodes(&mut venv, model, config, seed)?;
    let eps: Vec<(Finished, f32)> = outcomes.into_iter().flatten().collect();
    let n = eps.len().max(1) as f64;
    let share = |f: &dyn Fn(&Finished) -> bool| eps.iter().filter(|(e, _)| f(e)).count() as f64 / n;
    Ok(EvalSummary {
        split: split.label(testbed.as_ref()),
        episodes: eps.len(),
        success: share(&|e| e.success()),
        intended: share(&|e| e.kind == OutcomeKind::Intended),
        proxies: ProxyId::all(testbed.as_ref())
            .map(|p| share(&|e| e.kind == OutcomeKind::Proxy(p)))
            .collect(),
        died: share(&|e| e.kind == OutcomeKind::Died),
        timed_out: share(&|e| e.kind == OutcomeKind::TimedOut),
        mean_return: eps.iter().map(|(e, _)| e.base_return as f64).sum::<f64>() / n,
        mean_hidden: eps.iter().map(|(_, h)| *h as f64).sum::<f64>() / n,
    })
}

/// Plays the first episode of every environment of a new `venv` with the policy (sampled
/// actions); returns each one's ending and hidden performance, in environment order.
fn first_episodes(
    venv: &mut VecEnv,
    model: &ActorCritic,
    config: &PolicyConfig,
    seed: u64,
) -> Result<Vec<Option<(Finished, f32)>>> {
    let model = model.valid();
    let episodes = venv.len();
    let ol = venv.u8_len();
    let mut obs = vec![0u8; episodes * ol];
    // A new batch stands at the start of its first episodes: no reset, which would draw other
    // levels from a pool.
    venv.write_all(ObsBuf::U8(&mut obs))?;
    let mut rng = Rng::new(mix(&[seed, 7]));
    let mut encoder = Encoder::default();
    let mut actions = vec![0u8; episodes];
    let (mut rewards, mut term, mut trunc) = (
        vec![0f32; episodes],
        vec![false; episodes],
        vec![false; episodes],
    );
    let mut outcomes: Vec<Option<(Finished, f32)>> = vec![None; episodes];
    let mut probs = vec![0f32; config.n_actions];
    let mut left = episodes;
    let (height, width) = venv.shape();
    while left > 0 {
        let input = model.encode_sized(&mut encoder, &obs, height, width);
        let logp = to_vec2(log_probs(model.forward(input).logits));
        if logp.len() != episodes * config.n_actions || logp.iter().any(|v| !v.is_finite()) {
            return Err(mesascope_core::Error::Policy(
                "the policy produced non-finite or missing logits".into(),
            )
            .into());
        }
        for i in 0..episodes {
            let row = &logp[i * config.n_actions..(i + 1) * config.n_actions];
            for (p, &l) in probs.iter_mut().zip(row) {
                *p = l.exp();
            }
            actions[i] = rng.categorical(&probs) as u8;
        }
        venv.step(
            &actions,
            ObsBuf::U8(&mut obs),
            StepBufs {
                rewards: &mut rewards,
                terminated: &mut term,
                truncated: &mut trunc,
            },
        )?;
        for i in 0..episodes {
            if outcomes[i].is_none() && (term[i] || trunc[i]) {
                if let Some(o) = venv.finished(i) {
                    outcomes[i] = Some((
                        Finished {
                            kind: o.kind,
                            base_return: o.base_return,
                            last_reward: rewards[i],
                        },
                        o.hidden,
                    ));
                    left -= 1;
                }
            }
        }
    }
    Ok(outcomes)
}

/// The hidden performance the policy earns on each of `levels` (one episode each, in order): what
/// a regret curriculum compares with the planner's optimum.
pub fn hidden_on_levels(
    testbed: Arc<dyn Testbed>,
    levels: Vec<Level>,
    model: &ActorCritic,
    config: &PolicyConfig,
    seed: u64,
) -> Result<Vec<f32>> {
    let mut venv = VecEnv::from_levels(testbed, Split::Train, levels, seed)?;
    let outcomes = first_episodes(&mut venv, model, config, seed)?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.map_or(0.0, |(_, hidden)| hidden))
        .collect())
}
