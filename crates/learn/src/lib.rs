//! mesascope-learn: the base optimizer. Neural actor-critic policies (burn, `flex` CPU
//! backend), PPO over the core's vectorized environments, checkpoints, and an
//! [`agents::Agent`](mesascope_core::agents::Agent) over a checkpoint so rollouts, `show` and
//! audits can use trained policies.
//!
//! The flow: a [`ppo::Trainer`] builds a [`policy::ActorCritic`] for a testbed and runs PPO
//! updates on its training distribution (the sparse first layer's backward pass and Adam in
//! [`sparse`], global-norm clipping in [`optim`]); [`checkpoint`] writes and reads the network
//! with its metadata; [`eval::evaluate`] measures outcomes on any split; [`agent::PolicyAgent`]
//! acts with it wherever the core expects an agent; [`probe`] reads goals from its activations
//! and steers it.
//!
//! Two transformer labs stand beside the policies: [`icl`] (in-context regression, where a
//! linear self-attention model's forward pass can run gradient descent) and [`backdoor_lm`] (a
//! small causal transformer with a hidden trigger, caught by a probe and a trigger search).

pub mod agent;
pub mod backdoor_lm;
pub mod checkpoint;
pub mod curriculum;
pub mod error;
pub mod eval;
pub mod icl;
pub mod optim;
pub mod planner;
pub mod policy;
pub mod ppo;
pub mod probe;
pub mod sparse;

pub use error::{LearnError, Result};

/// The device every network of this crate runs on: burn's pure-Rust CPU backend. Built without
/// burn's `rayon` feature, so kernels run on the calling thread and results do not depend on
/// the thread count.
pub fn device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
