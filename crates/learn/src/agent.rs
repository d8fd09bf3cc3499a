//! A trained network as a core [`Agent`]: it reads the u8 observation of the environment's
//! state and returns the softmax of its logits, so `agents::run_episode`, `mesascope show` and
//! audits use checkpoints like any other agent.

use crate::checkpoint::{self, Checkpoint};
use crate::error::Result;
use crate::policy::STEERABLE_LAYERS;
use crate::policy::{
    to_vec2, ActorCritic, Encoder, GridBatch, Input, PolicyConfig, Steer, ACTIVATION_NAMES,
    PLANNER_MAP_NAMES,
};
use mesascope_core::activations::Activations;
use mesascope_core::agents::Agent;
use mesascope_core::state::EpisodeState;
use mesascope_core::{obs, Env, Error, Testbed};
use std::path::Path;

pub struct PolicyAgent {
    name: String,
    config: PolicyConfig,
    model: ActorCritic,
    encoder: Encoder,
    obs: Vec<u8>,
    steer: Option<Steer>,
}

/// A copy with its own scratch buffers (audits run one per thread).
impl Clone for PolicyAgent {
    fn clone(&self) -> PolicyAgent {
        PolicyAgent {
            name: self.name.clone(),
            config: self.config.clone(),
            model: self.model.clone(),
            encoder: Encoder::default(),
            obs: Vec::new(),
            steer: self.steer.clone(),
        }
    }
}

impl PolicyAgent {
    pub fn new(name: impl Into<String>, config: PolicyConfig, model: ActorCritic) -> PolicyAgent {
        PolicyAgent {
            name: name.into(),
            config,
            model: model.valid(),
            encoder: Encoder::default(),
            obs: Vec::new(),
            steer: None,
        }
    }

    /// The same policy with a steering vector added at a trunk layer on every move (probes'
    /// steering experiments); `None` removes it.
    pub fn steered(mut self, steer: Option<Steer>) -> Result<PolicyAgent> {
        self.set_steer(steer)?;
        Ok(self)
    }

    /// Sets or removes the steering vector in place.
    pub fn set_steer(&mut self, steer: Option<Steer>) -> Result<()> {
        if let Some(st) = &steer {
            if st.layer >= crate::policy::STEERABLE_LAYERS {
                return Err(crate::LearnError::Config(format!(
                    "a steering vector goes into trunk layer 0 or 1, not {}",
                    st.layer
                )));
            }
            let width = self.model.layer_width(st.layer);
            if st.vector.len() != width || st.vector.iter().any(|x| !x.is_finite()) {
                return Err(crate::LearnError::Config(format!(
                    "a steering vector for layer {} needs {width} finite values, found {}",
                    st.layer,
                    st.vector.len()
                )));
            }
        }
        self.steer = steer;
        Ok(())
    }

    pub fn model(&self) -> &ActorCritic {
        &self.model
    }

    /// Loads checkpoint `dir` to act in `testbed` on levels of `height` x `width`, refusing a
    /// checkpoint of another testbed, action count or architecture, or of another grid size
    /// unless its trunk reads any size (`planner`).
    pub fn load_for(
        dir: &Path,
        testbed: &dyn Testbed,
        height: usize,
        width: usize,
    ) -> Result<PolicyAgent> {
        let meta = checkpoint::read_meta(dir)?;
        let here = PolicyConfig {
            height,
            width,
            n_actions: testbed.n_actions(),
            ..meta.policy.clone()
        };
        checkpoint::check_compatible(&meta, testbed.name(), &here)?;
        PolicyAgent::load(dir)
    }

    /// Loads checkpoint `dir`.
    pub fn load(dir: &Path) -> Result<PolicyAgent> {
        let device = crate::device();
        let Checkpoint { meta, model, .. } = checkpoint::load(dir, &device)?;
        Ok(PolicyAgent::new(
            format!("policy {}", dir.display()),
            meta.policy,
            model,
        ))
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The logits of the current state of `env`.
    pub fn logits(&mut self, env: &Env) -> mesascope_core::Result<Vec<f32>> {
        self.logits_batch(&[env])
    }

    /// The logits of the current states of `envs`, `n_actions` per state, from one forward
    /// pass.
    pub fn logits_batch(&mut self, envs: &[&Env]) -> mesascope_core::Result<Vec<f32>> {
        let a = self.config.n_actions;
        self.obs.clear();
        let any_size = self.config.any_size();
        let mut grids = GridBatch::default();
        for env in envs {
            let grid = &env.state.grid;
            // A level the network cannot read is the user's choice of levels, not a policy fault.
            if !any_size && (grid.height, grid.width) != (self.config.height, self.config.width) {
                return Err(Error::Input(format!(
                    "the policy reads {}x{} grids, this level is {}x{}",
                    self.config.height, self.config.width, grid.height, grid.width
                )));
            }
            if env.n_actions() != a {
                return Err(Error::Input(format!(
                    "the policy has {a} actions, this testbed {}",
                    env.n_actions()
                )));
            }
            let start = self.obs.len();
            self.obs.resize(start + obs::u8_len(grid), 0);
            obs::encode_u8(&env.state, &mut self.obs[start..]);
            if any_size {
                grids.push(&self.obs[start..], grid.height, grid.width);
            }
        }
        let input = if any_size {
            Input::Grids(grids)
        } else {
            self.model.encode(&mut self.encoder, &self.obs)
        };
        let logits = to_vec2(
            self.model
                .forward_steered(input, self.steer.as_ref())
                .logits,
        );
        if logits.len() != envs.len() * a {
            return Err(Error::Policy(format!(
                "the network returned {} logits for {} states of {a} actions",
                logits.len(),
                envs.len()
            )));
        }
        if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
            let row = i / a;
            return Err(Error::Policy(format!(
                "non-finite logits {:?}",
                &logits[row * a..(row + 1) * a]
            )));
        }
        Ok(logits)
    }
}

impl PolicyAgent {
    /// The layers [`PolicyAgent::trunk_activations`] reports: both trunk layers, and for a
    /// planner its maps ([`PLANNER_MAP_NAMES`]).
    pub fn activation_names(&self) -> Vec<&'static str> {
        let mut names = ACTIVATION_NAMES[..STEERABLE_LAYERS].to_vec();
        if self.config.any_size() {
            names.extend_from_slice(PLANNER_MAP_NAMES);
        }
        names
    }

    /// Activations of both trunk layers (and a planner's maps) for a batch of states,
    /// `[layer][state][unit]`.
    pub fn trunk_activations(&self, states: &[&EpisodeState]) -> Vec<Vec<Vec<f32>>> {
        let model = &self.model;
        let names = self.activation_names();
        let mut layers: Vec<Vec<Vec<f32>>> = names
            .iter()
            .map(|_| Vec::with_capacity(states.len()))
            .collect();
        for chunk in states.chunks(1024) {
            let mut buf = Vec::new();
            let mut grids = GridBatch::default();
            for s in chunk {
                let start = buf.len();
                buf.resize(start + obs::u8_len(&s.grid), 0);
                obs::encode_u8(s, &mut buf[start..]);
                grids.push(&buf[start..], s.grid.height, s.grid.width);
            }
            let input = if self.config.any_size() {
                Input::Grids(grids)
            } else {
                model.encode(&mut Encoder::default(), &buf)
            };
            let acts = model.forward_with_activations(input);
            for (layer, name) in layers.iter_mut().zip(&names) {
                let Some((_, t)) = acts.iter().find(|(n, _)| n == name) else {
                    continue;
                };
                let t = t.clone();
                let width = t.dims()[1];
                let flat = to_vec2(t);
                layer.extend(flat.chunks(width).map(|r| r.to_vec()));
            }
        }
        layers
    }
}

/// The trunk layers: the ones a steering vector can also be written into.
impl Activations for PolicyAgent {
    fn layer_names(&self) -> Vec<String> {
        self.activation_names()
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    fn activations(&self, states: &[&EpisodeState]) -> mesascope_core::Result<Vec<Vec<Vec<f32>>>> {
        Ok(self.trunk_activations(states))
    }

    fn player(&self) -> Box<dyn Agent> {
        Box::new(self.clone())
    }
}

/// Softmax of logits, stable against large values.
pub fn softmax(logits: &[f32], out: &mut [f32]) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (l - m).exp();
        s += *o;
    }
    out.iter_mut().for_each(|o| *o /= s);
}

impl Agent for PolicyAgent {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> mesascope_core::Result<()> {
        let logits = self.logits(env)?;
        softmax(&logits, out);
        Ok(())
    }

    /// The network reads the current observation only (steering included): one instance serves
    /// every episode.
    fn batched(&self) -> bool {
        true
    }

    /// One forward pass for the whole batch.
    fn probs_batch(&mut self, envs: &[&Env], out: &mut [f32]) -> mesascope_core::Result<()> {
        let a = self.config.n_actions;
        let logits = self.logits_batch(envs)?;
        for (l, o) in logits.chunks(a).zip(out.chunks_mut(a)) {
            softmax(l, o);
        }
        Ok(())
    }
}
