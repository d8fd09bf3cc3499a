//! Errors and exit codes: 2 for bad input or usage (as clap does), 1 for anything else.

use std::fmt;

/// The user gave something unusable (a name, a file, a value). Exits with code 2.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// An [`InputError`] as an `anyhow::Error`.
pub fn input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}

/// Exit code for bad input or usage.
pub const EXIT_INPUT: i32 = 2;
/// Exit code for any other failure.
pub const EXIT_FAILURE: i32 = 1;

/// The error and its causes, joined by `: `, skipping a cause whose text the message already
/// ends with (core errors both display their source and report it as `source()`).
pub fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s.is_empty() || out.ends_with(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// 2 when the error (or any error it wraps) is bad input, else 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    use mesascope_core::Error as E;
    let bad_input = e.chain().any(|c| {
        c.is::<InputError>()
            || c.is::<mesascope_core::level::LevelError>()
            || c.downcast_ref::<E>()
                .is_some_and(|e| !matches!(e, E::Policy(_)))
    });
    if bad_input {
        EXIT_INPUT
    } else {
        EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes() {
        assert_eq!(exit_code(&input("no")), 2);
        let core: anyhow::Error = mesascope_core::Error::Knob("k".into()).into();
        assert_eq!(exit_code(&core.context("while doing x")), 2);
        let policy: anyhow::Error = mesascope_core::Error::Policy("nan".into()).into();
        assert_eq!(exit_code(&policy), 1);
        let io: anyhow::Error = std::io::Error::other("disk").into();
        assert_eq!(exit_code(&io), 1);
        let r: anyhow::Result<()> = Err(input("bad")).context("outer");
        let e = r.unwrap_err();
        assert_eq!(exit_code(&e), 2);
        assert_eq!(message(&e), "outer: bad");
        let lvl = mesascope_core::Level::parse("######\n##Zq##\n######\n").unwrap_err();
        let e = anyhow::Error::from(mesascope_core::Error::from(lvl)).context("level file x");
        let m = message(&e);
        assert_eq!(m.matches("line 2, column 3").count(), 1, "{m}");
    }
}
