//! How long work tells a front end how it goes, and learns that it should stop. The library
//! prints nothing: the CLI implements [`Progress`] with a progress bar on stderr, Python with
//! a callback and Ctrl-C, a Ray trial with Tune's reporting; [`Silent`] shows nothing.

/// What a counted task counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Environment steps of PPO training.
    EnvSteps,
    /// Optimizer steps of a transformer lab.
    TrainingSteps,
    /// Generations of a language model (a monitor's calibration).
    Generations,
}

/// Receives a pipeline's progress. Every method has a default that does nothing.
pub trait Progress: Sync {
    /// A stage of a pipeline begins, in words (`auditing runs/x ...`).
    fn stage(&self, _message: &str) {}
    /// A counted task begins: `total` units, `done` of them already done (a resumed run).
    fn begin(&self, _unit: Unit, _total: u64, _done: u64) {}
    /// `done` units are done; `message` says how it goes (a rate, a loss), or is empty.
    fn advance(&self, _done: u64, _message: &str) {}
    /// The counted task is over.
    fn end(&self) {}
    /// Asked between units of work (PPO updates): `true` stops the work cleanly, with what it
    /// has written complete (a training run writes its checkpoint first).
    fn should_stop(&self) -> bool {
        false
    }
}

/// Shows nothing and never stops the work.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}
