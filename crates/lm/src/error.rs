//! What can go wrong when loading or running a language model. Every bad file or argument ends here,
//! with the problem named, never in a panic.

use std::path::PathBuf;

/// The language-model crate's error.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable GGUF file (truncated or corrupt): {reason}")]
    CorruptGguf { path: PathBuf, reason: String },
    #[error("{path} is not a readable safetensors file (truncated or corrupt): {reason}")]
    CorruptSafetensors { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("unsupported architecture `{architecture}` (supported: {supported})")]
    UnsupportedArchitecture {
        architecture: String,
        supported: String,
    },
    #[error("tensor `{tensor}` has the unsupported type {dtype} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)")]
    UnsupportedQuantization { tensor: String, dtype: String },
    #[error(
        "tensor `{tensor}` has shape {found:?} but the model's configuration implies {expected:?}"
    )]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("the checkpoint has no tensor `{tensor}`")]
    MissingTensor { tensor: String },
    #[error("no tokenizer: {reason}")]
    MissingTokenizer { reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the sequence would be {tokens} tokens long, over the model's context of {context}")]
    ContextOverflow { tokens: usize, context: usize },
    #[error("unknown hook point `{name}`; valid names: {valid}")]
    UnknownHook { name: String, valid: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("tensor computation failed: {0}")]
    Compute(String),
}

impl From<candle_core::Error> for LmError {
    fn from(e: candle_core::Error) -> Self {
        LmError::Compute(candle_message(&e))
    }
}

/// A candle error's message without the backtrace candle appends when `RUST_BACKTRACE` is set.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub type Result<T> = std::result::Result<T, LmError>;

pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LmError + '_ {
    move |source| LmError::Io {
        path: path.to_path_buf(),
        source,
    }
}
