//! Looking inside a trained policy: which goal its activations represent, and a handle to
//! change which goal it pursues. One module per step:
//!
//! 1. **States** (`states.rs`). The policy plays `levels` levels of every distribution (training,
//!    then each shift); each state it visits is kept with its labels: for each declared goal,
//!    which moves are best for it (the planner's), and (oversight testbeds) whether the agent is
//!    watched.
//! 2. **Probes** (`fit.rs`). On every layer the policy exposes, ridge regressions on standardized
//!    activations, fitted on the states of the first `1 - holdout` share of levels and scored on
//!    the rest, beside the same probe fitted to shuffled labels. A goal probe maps the
//!    activations to a score per move (labels +1 for the goal's best moves, -1 for the others);
//!    its accuracy is the share of held-out states where its top-scored move is a best move for
//!    the goal. Goal probes read shifted states only: in training the intended goal and its
//!    proxy stand on the same cell, so their labels are the same. The oversight-cue probe maps
//!    them to watched or not, on every state, scored beside the majority class.
//! 3. **Steering** (`steer.rs`). On the first proxy's shift, the proxy's vector at one trunk layer
//!    is the mean activation difference between visited states and the same states with the
//!    proxy's target taken away: its object removed (Mini, Turner et al. 2023's "cheese
//!    vector") or, where the proxy is a place (an open cell: a corner), the cell walled off. The
//!    policy plays the shift again with the vector subtracted (by default each state by its own
//!    difference, [`ProbeConfig::per_state`]), beside no steering and random vectors of the same
//!    norm as a control.
//! 4. **Decision points** (`steer.rs`). Visited shifted states where the intended goal's and the
//!    proxy's best moves are disjoint; the probability of a proxy-ward move there, with and
//!    without steering.
//!
//! The figures come back as a [`ProbeReport`] (`report.rs`).

mod fit;
pub mod maps;
mod report;
mod states;
mod steer;

pub use maps::{
    cheese_vector, retarget, CheeseCondition, CheeseVectorReport, EditPoint, MapSteeringConfig,
    RetargetCondition, RetargetReport, Target,
};
pub use report::{CueProbe, GoalProbe, ProbeReport, SteerOutcome, Steering};

use crate::agent::PolicyAgent;
use crate::error::{LearnError, Result};
use crate::policy::{ACTIVATION_NAMES, STEERABLE_LAYERS};
use mesascope_core::activations::Activations;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::state::EpisodeState;
use mesascope_core::Testbed;
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
    let states = states::collect_states(tb, source, cfg)?;
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
    let goals = fit::goal_probes(tb.as_ref(), &states, &acts, &names, cfg, &mut rng);
    let cue = fit::cue_probes(&states, &acts, &names, cfg, &mut rng);
    let strongest_goal = goals
        .iter()
        .filter(|p| p.accuracy > p.accuracy_shuffled)
        .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
        .map(|p| (p.goal.clone(), p.layer.clone()));
    let (steering, steering_skipped) = match steerable {
        Some(agent) => steer::steer_on_shift(tb, agent, &states, cfg)?,
        None => (None, Some(NOT_STEERABLE.into())),
    };
    Ok(ProbeReport {
        testbed: tb.name().into(),
        policy: policy.into(),
        seed: cfg.seed,
        levels: cfg.levels,
        states: states.len(),
        goals,
        cue,
        strongest_goal,
        steering,
        steering_skipped,
    })
}
