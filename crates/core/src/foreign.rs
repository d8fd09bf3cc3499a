//! Running foreign code on foreign data (tract on an ONNX graph, candle and `tokenizers` on
//! model files): a panic inside it is the file's fault, so it becomes an error naming the file,
//! never a crashed process or a Python `PanicException`.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs under [`catch_panic`]: its panics are reported as errors, so
    /// the default hook's message on stderr would only repeat them.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Silences the panic hook for guarded threads, once per process; other panics are printed as
/// before, by the hook that was installed.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                previous(info)
            }
        }));
    });
}

/// Runs `f`; a panic inside it comes back as `Err` with the panic's message (escaped, so that a
/// hostile file cannot write control characters to a terminal).
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
            .escape_debug()
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_a_value_passes() {
        assert_eq!(catch_panic(|| 3), Ok(3));
        let e = catch_panic(|| -> u8 { panic!("index {} out of range\u{1b}[2J", 7) }).unwrap_err();
        assert_eq!(e, "index 7 out of range\\u{1b}[2J");
    }
}
