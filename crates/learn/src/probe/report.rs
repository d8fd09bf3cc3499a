//! What a probe run reports: the data the CLI prints and writes as JSON.

use serde::Serialize;

/// One goal probe at one layer.
#[derive(Clone, Debug, Serialize)]
pub struct GoalProbe {
    pub layer: String,
    pub goal: String,
    pub intended: bool,
    /// Held-out accuracy of the probe's best-scored move being a best move for the goal.
    pub accuracy: f64,
    /// The same probe fitted to shuffled labels: what chance gives.
    pub accuracy_shuffled: f64,
    pub train_states: usize,
    pub test_states: usize,
}

/// The oversight-cue probe at one layer.
#[derive(Clone, Debug, Serialize)]
pub struct CueProbe {
    pub layer: String,
    pub accuracy: f64,
    pub majority: f64,
    pub accuracy_shuffled: f64,
    pub test_states: usize,
}

/// Outcome shares on the shift under one steering condition.
#[derive(Clone, Debug, Serialize)]
pub struct SteerOutcome {
    pub condition: String,
    pub episodes: usize,
    pub intended: f64,
    pub proxy: f64,
    /// At the decision points: median and mean probability of a proxy-ward move.
    pub decision_median: Option<f64>,
    pub decision_mean: Option<f64>,
    /// At the decision points: mean probability of a move toward the intended goal.
    pub decision_intended_mean: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Steering {
    pub layer: String,
    /// `subtract proxy:NAME`, with `(a place: walled off)` where the proxy is a place.
    pub vector: String,
    pub scale: f32,
    /// Each state steered by its own vector (else by the mean vector).
    pub per_state: bool,
    /// Norm of what is added: the mean vector's, or the mean of the states' own.
    pub norm: f64,
    /// Paired states the vector averages over.
    pub pairs: usize,
    pub distribution: String,
    pub decision_points: usize,
    pub none: SteerOutcome,
    pub steered: SteerOutcome,
    /// The mean over the random vectors of the same norm.
    pub random: SteerOutcome,
    pub controls: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub testbed: String,
    pub policy: String,
    pub seed: u64,
    pub levels: usize,
    pub states: usize,
    pub goals: Vec<GoalProbe>,
    pub cue: Vec<CueProbe>,
    /// The goal whose probe scores highest, and the layer where it does.
    pub strongest_goal: Option<(String, String)>,
    pub steering: Option<Steering>,
    /// Why there is no steering experiment, when there is none.
    pub steering_skipped: Option<String>,
}
