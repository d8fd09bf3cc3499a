//! Errors of the core crate: each names what was wrong.

use crate::level::LevelError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message includes the level error's, so it is not also reported as a source.
    #[error("malformed level: {0}")]
    Level(LevelError),
    #[error("{0}")]
    UnknownTestbed(String),
    #[error("{0}")]
    Knob(String),
    #[error("{0}")]
    Split(String),
    /// A level that parses but does not fit its testbed (no goal, goal unreachable, ...).
    #[error("level does not fit testbed {testbed}: {message}")]
    LevelForTestbed { testbed: String, message: String },
    /// A policy misbehaved: wrong shape, non-finite output.
    #[error("policy error: {0}")]
    Policy(String),
    /// Bad arguments to an engine call (buffer sizes, action out of range).
    #[error("{0}")]
    Input(String),
}

impl From<LevelError> for Error {
    fn from(e: LevelError) -> Self {
        Error::Level(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
