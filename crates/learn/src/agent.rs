//! A trained network as a core [`Agent`]: it reads the u8 observation of the environment's
//! state and returns the softmax of its logits, so `agents::run_episode`, `mesascope show` and
//! audits use checkpoints like any other agent.

use crate::checkpoint::{self, Checkpoint};
use crate::error::Result;
use crate::policy::{to_vec2, ActorCritic, Encoder, PolicyConfig, Steer};
use mesascope_core::agents::Agent;
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
    /// checkpoint of another testbed, grid size, action count or architecture.
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
        let grid = &env.state.grid;
        if (grid.height, grid.width) != (self.config.height, self.config.width) {
            return Err(Error::Policy(format!(
                "the policy reads {}x{} grids, this level is {}x{}",
                self.config.height, self.config.width, grid.height, grid.width
            )));
        }
        if env.n_actions() != self.config.n_actions {
            return Err(Error::Policy(format!(
                "the policy has {} actions, this testbed {}",
                self.config.n_actions,
                env.n_actions()
            )));
        }
        self.obs.resize(obs::u8_len(grid), 0);
        obs::encode_u8(&env.state, &mut self.obs);
        let input = self.model.encode(&mut self.encoder, &self.obs);
        let logits = to_vec2(
            self.model
                .forward_steered(input, self.steer.as_ref())
                .logits,
        );
        if logits.len() != self.config.n_actions || logits.iter().any(|l| !l.is_finite()) {
            return Err(Error::Policy(format!("non-finite logits {logits:?}")));
        }
        Ok(logits)
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
}
