//! Errors of the learning crate: each names what was wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// An engine error (unknown testbed, bad knob, misbehaving policy).
    #[error(transparent)]
    Core(#[from] mesascope_core::Error),
    /// A training or network setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// A checkpoint that cannot be used: corrupt, truncated, of another testbed or architecture.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LearnError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LearnError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = LearnError> = std::result::Result<T, E>;
