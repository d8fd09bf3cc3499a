//! Policies whose hidden activations can be read, whatever runs them: what probes need from a
//! network (mesascope-learn's `probe`), met by mesascope's own networks and by ONNX models that
//! expose layers as extra outputs. The core stays free of any deep-learning dependency: the
//! trait speaks in plain vectors.

use crate::agents::Agent;
use crate::state::EpisodeState;
use crate::Result;

/// A policy that reports named activations for a batch of states.
pub trait Activations: Sync {
    /// The layers, in the order [`Activations::activations`] returns them.
    fn layer_names(&self) -> Vec<String>;

    /// Each layer's activations for each state, `[layer][state][unit]`, a state's activation
    /// flattened to one row; every row of a layer has the same width.
    fn activations(&self, states: &[&EpisodeState]) -> Result<Vec<Vec<Vec<f32>>>>;

    /// A copy of the policy to play episodes with.
    fn player(&self) -> Box<dyn Agent>;
}
