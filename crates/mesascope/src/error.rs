//! The library's one error type. Each error says what kind of problem it is, so that every
//! front end answers it alike: the CLI maps kinds to exit codes (2 for bad input, 1 for a
//! failure), Python to exception classes. Messages name the problem in the library's terms
//! (a folder, a file, a setting), never a front end's flag: a setting is written between
//! backticks (`` `decorrelate` ``), which the CLI turns into its flag (`--decorrelate`) and
//! Python reads as its keyword argument.

use std::fmt;

/// What kind of problem an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A policy that cannot be used: an unknown spec, a checkpoint or ONNX file that is corrupt,
    /// of another testbed, or of another level shape.
    BadPolicy,
    /// A level file or folder that cannot be used.
    BadLevel,
    /// An unknown testbed, a knob it does not declare, or a knob value out of its range.
    BadKnob,
    /// Any other setting that cannot work: a split, a count or share out of range, settings that
    /// contradict each other or the files they name.
    BadSetting,
    /// An output folder or file that cannot be created or written, found before any work.
    BadOutput,
    /// Reading or writing a file failed during the work.
    Io,
    /// A policy misbehaved while it ran: non-finite logits, a wrong shape, an action out of range.
    PolicyFailed,
    /// The front end asked the work to stop (Ctrl-C); what was written is complete.
    Interrupted,
    /// Anything else that went wrong.
    Failed,
}

impl ErrorKind {
    /// Whether the user gave something unusable (the CLI's exit code 2).
    pub fn is_bad_input(self) -> bool {
        matches!(
            self,
            ErrorKind::BadPolicy
                | ErrorKind::BadLevel
                | ErrorKind::BadKnob
                | ErrorKind::BadSetting
                | ErrorKind::BadOutput
        )
    }
}

/// An error: its kind and a message that carries its context (`level file x: line 2 ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_policy(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadPolicy, message)
    }
    pub fn bad_level(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadLevel, message)
    }
    pub fn bad_setting(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadSetting, message)
    }
    pub fn bad_output(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadOutput, message)
    }
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Failed, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error as another kind (a core `Input` error from an ONNX loader is a bad policy).
    pub fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    /// The error with `context` before its message (`context: message`).
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// An error of another library with its causes, joined by `: `, skipping a cause whose text
    /// the message already ends with (some errors both print their source and report it).
    pub fn foreign(kind: ErrorKind, e: &dyn std::error::Error) -> Error {
        let mut message = String::new();
        let mut cause: Option<&dyn std::error::Error> = Some(e);
        while let Some(c) = cause {
            let s = c.to_string();
            if !s.is_empty() && !message.ends_with(&s) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&s);
            }
            cause = c.source();
        }
        Error::new(kind, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<mesascope_core::Error> for Error {
    fn from(e: mesascope_core::Error) -> Error {
        use mesascope_core::Error as E;
        let kind = match &e {
            E::Level(_) | E::LevelForTestbed { .. } => ErrorKind::BadLevel,
            E::UnknownTestbed(_) | E::Knob(_) => ErrorKind::BadKnob,
            E::Split(_) | E::Input(_) => ErrorKind::BadSetting,
            E::Policy(_) => ErrorKind::PolicyFailed,
        };
        Error::foreign(kind, &e)
    }
}

impl From<mesascope_core::level::LevelError> for Error {
    fn from(e: mesascope_core::level::LevelError) -> Error {
        Error::from(mesascope_core::Error::from(e))
    }
}

impl From<mesascope_learn::LearnError> for Error {
    fn from(e: mesascope_learn::LearnError) -> Error {
        use mesascope_learn::LearnError as E;
        match e {
            E::Core(c) => c.into(),
            // A checkpoint that cannot be used is a policy the user named.
            E::Checkpoint(_) => Error::foreign(ErrorKind::BadPolicy, &e),
            E::Config(_) => Error::foreign(ErrorKind::BadSetting, &e),
            E::Io { .. } => Error::foreign(ErrorKind::Io, &e),
        }
    }
}

impl From<mesascope_lm::LmError> for Error {
    fn from(e: mesascope_lm::LmError) -> Error {
        use mesascope_lm::LmError as E;
        let kind = match &e {
            E::Compute(_) => ErrorKind::Failed,
            // A model file (missing, corrupt, unsupported), a setting or a prompt that cannot be
            // used: the user's input.
            _ => ErrorKind::BadSetting,
        };
        Error::foreign(kind, &e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::foreign(ErrorKind::Io, &e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::foreign(ErrorKind::Failed, &e)
    }
}

impl From<std::fmt::Error> for Error {
    fn from(e: std::fmt::Error) -> Error {
        Error::foreign(ErrorKind::Failed, &e)
    }
}

/// Context for results whose error becomes an [`Error`], keeping its kind.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let core: Error = mesascope_core::Error::Knob("k".into()).into();
        assert_eq!(core.kind(), ErrorKind::BadKnob);
        assert!(core.kind().is_bad_input());
        let policy: Error = mesascope_core::Error::Policy("nan".into()).into();
        assert_eq!(policy.kind(), ErrorKind::PolicyFailed);
        assert!(!policy.kind().is_bad_input());
        let io: Error = std::io::Error::other("disk").into();
        assert_eq!(io.kind(), ErrorKind::Io);
        let r: Result<()> = Err(Error::bad_setting("bad")).context("outer");
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadSetting);
        assert_eq!(e.to_string(), "outer: bad");
        let lvl = mesascope_core::Level::parse("######\n##Zq##\n######\n").unwrap_err();
        let e = Error::from(mesascope_core::Error::from(lvl)).context("level file x");
        assert_eq!(e.kind(), ErrorKind::BadLevel);
        let m = e.to_string();
        assert_eq!(m.matches("line 2, column 3").count(), 1, "{m}");
        let ck: Error = mesascope_learn::LearnError::Checkpoint("torn".into()).into();
        assert_eq!(ck.kind(), ErrorKind::BadPolicy);
    }
}
