//! Bounds on every size a file or an argument can set, checked before anything of that size is
//! allocated, so that a hostile or mistyped number is a clear error rather than an allocation
//! that takes the machine down. docs/limits.md lists them with their reasons.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Level files are a few kilobytes (a 64x64 grid is 8 KiB of text); comments may add some.
pub const MAX_LEVEL_FILE_BYTES: u64 = 1 << 20;
/// Cells per side of a level. Generated levels are at most 31x31; 64 leaves room for hand-made
/// ones while keeping an audit's planning work (cells x states visited) bounded.
pub const MAX_LEVEL_SIDE: usize = 64;
/// Environments of one vector environment (PPO uses 256 by default).
pub const MAX_VEC_ENVS: usize = 65_536;
/// Levels of a level pool (`num_levels`), all generated up front (a few KiB each at most).
pub const MAX_LEVEL_POOL: usize = 100_000;
/// Actions of a policy (the testbeds have 4 or 5).
pub const MAX_ACTIONS: usize = 64;
/// Elements of any one tensor an ONNX model may declare at load (256 Mi f32 values: 1 GiB).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;

/// `value` if it is at most `max`, else an input error naming `what` and the limit.
pub fn check(what: &str, value: u64, max: u64) -> Result<()> {
    if value > max {
        return Err(Error::Input(format!(
            "{what} is {value}, more than the limit of {max} (docs/limits.md)"
        )));
    }
    Ok(())
}

/// Reads a text file of at most `max` bytes, refusing a longer one (or an endless one such as
/// `/dev/zero`) after reading one byte past the limit rather than exhausting memory.
pub fn read_capped(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > max {
        return Err(Error::Input(format!(
            "{what} {} is larger than the limit of {max} bytes (docs/limits.md)",
            path.display()
        )));
    }
    Ok(bytes)
}
