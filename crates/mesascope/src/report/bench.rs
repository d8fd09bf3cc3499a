//! `bench --train`'s report.

use serde::Serialize;

/// PPO training throughput at a testbed's default settings.
#[derive(Clone, Debug, Serialize)]
pub struct TrainThroughput {
    pub testbed: String,
    /// The grid's side (its `size` knob; 0 for a testbed without one).
    pub size: usize,
    pub arch: String,
    pub num_envs: usize,
    /// Steps per environment per update.
    #[serde(skip)]
    pub num_steps: usize,
    pub batch: usize,
    pub updates: usize,
    pub seconds: f64,
    pub env_steps_per_second: f64,
    pub threads: usize,
}

/// The throughput in one line.
pub fn text(t: &TrainThroughput) -> String {
    format!(
        "PPO training on {} {}x{} ({}, {} envs x {} steps, {} threads): {:.0} env steps/s end to end over {} updates ({:.1} s)\n",
        t.testbed,
        t.size,
        t.size,
        t.arch,
        t.num_envs,
        t.num_steps,
        t.threads,
        t.env_steps_per_second,
        t.updates,
        t.seconds
    )
}
