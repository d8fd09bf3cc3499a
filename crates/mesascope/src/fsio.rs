//! Writing outputs so that an interrupted run never leaves a torn file: every report, summary
//! and metrics file the library writes goes through here (checkpoints go through
//! `mesascope_learn::checkpoint`, which renames its files into place the same way).

use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// Writes `bytes` to `path` atomically (`mesascope_core::fsio::write_atomic`: a temporary file
/// beside it, synced, then renamed over it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(mesascope_core::fsio::write_atomic(path, bytes)?)
}

/// `value` as pretty JSON with a final newline, the layout of every JSON file mesascope writes.
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &json_bytes(value)?)
}

/// Creates the output folder `dir` (and its parents), so that an unusable one fails before any
/// work.
pub fn create_out(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::bad_output(format!(
            "cannot create output folder {}: {e}",
            dir.display()
        ))
    })
}

/// Creates the output folder and checks that files can be written into it, before any work.
pub fn prepare_out(dir: &Path) -> Result<()> {
    create_out(dir)?;
    let probe = dir.join(".mesascope-write-test");
    std::fs::write(&probe, b"").map_err(|e| {
        Error::bad_output(format!(
            "cannot write to output folder {}: {e}",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("mesascope-fsio-{}", std::process::id()));
        prepare_out(&dir).unwrap();
        let p = dir.join("a.json");
        write_json(&p, &serde_json::json!({"x": 1})).unwrap();
        write_json(&p, &serde_json::json!({"x": 2})).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\n  \"x\": 2\n}\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        // A file where a folder should be: a bad output, named, before any work.
        let e = prepare_out(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadOutput);
        assert!(e.to_string().contains("a.json"), "{e}");
        // A folder that is gone: the write fails as I/O and names the file.
        let e = write_atomic(&dir.join("gone").join("b.json"), b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("b.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
