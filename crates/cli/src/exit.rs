//! Library errors as the command line shows them: the message with each setting the library
//! names (`` `decorrelate` ``) turned into its flag (`--decorrelate`), and an exit code (2 for bad
//! input or usage, as clap's own; 130 when interrupted; 1 for any other failure).

use mesascope::{Error, ErrorKind};

/// Exit code for bad input or usage.
pub const EXIT_INPUT: u8 = 2;
/// Exit code for any other failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code after Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The library's setting names and the flags that set them.
const FLAGS: &[(&str, &str)] = &[
    ("agent", "--agent"),
    ("decorrelate", "--decorrelate"),
    ("env", "--env"),
    ("episodes", "--episodes"),
    ("level", "--level"),
    ("method", "--method"),
    ("out", "--out"),
    ("policy", "--policy"),
    ("resume", "--resume"),
    ("seed", "--seed"),
    ("seeds", "--seeds"),
    ("shares", "--shares"),
    ("steps", "--steps"),
];

pub fn code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::Interrupted => EXIT_INTERRUPTED,
        k if k.is_bad_input() => EXIT_INPUT,
        _ => EXIT_FAILURE,
    }
}

/// The message with settings named as flags.
pub fn message(e: &Error) -> String {
    let mut m = e.to_string();
    for (setting, flag) in FLAGS {
        m = m.replace(&format!("`{setting}`"), flag);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_flags_and_kinds_codes() {
        let e = Error::bad_setting("`decorrelate` must be in (0, 1], found 2");
        assert_eq!(message(&e), "--decorrelate must be in (0, 1], found 2");
        assert_eq!(code(&e), EXIT_INPUT);
        // Backticks around anything else are left alone.
        let e = Error::bad_level("write one with `mesascope show x`");
        assert_eq!(message(&e), "write one with `mesascope show x`");
        let e: Error = mesascope::core::Error::Policy("nan".into()).into();
        assert_eq!(code(&e), EXIT_FAILURE);
        assert_eq!(
            code(&Error::new(ErrorKind::Interrupted, "stop")),
            EXIT_INTERRUPTED
        );
    }
}
