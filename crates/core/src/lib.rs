//! mesascope-core: the grid engine, the inner-alignment testbeds, the exact planner, the
//! scripted reference agents. No deep-learning dependency, so it embeds anywhere.
//!
//! The flow: a [`testbed::Testbed`] generates seed-addressable [`level::Level`]s; [`env::Env`]
//! and [`vec_env::VecEnv`] step them; [`planner::Planner`] solves them exactly; the
//! [`agents`] built on it are the ground truth audits are checked against.

pub mod activations;
pub mod agents;
pub mod audit;
pub mod bench;
pub mod env;
pub mod error;
pub mod foreign;
pub mod fsio;
pub mod grid;
pub mod level;
pub mod limits;
pub mod monitor;
pub mod obs;
pub mod planner;
pub mod probe_stats;
pub mod rng;
pub mod state;
pub mod testbed;
pub mod testbeds;
pub mod vec_env;

pub use env::{Env, Step};
pub use error::{Error, Result};
pub use level::Level;
pub use state::{Outcome, OutcomeKind};
pub use testbed::{GoalId, Knobs, ProxyId, Split, Testbed};
pub use vec_env::VecEnv;

/// The README's Rust example, compiled and run as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
