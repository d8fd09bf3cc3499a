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

/// The file in an output folder that a run holds an exclusive lock on while it writes there.
pub const LOCK_FILE: &str = ".mesascope.lock";

/// An exclusive lock on an output folder, released when dropped (or when the process ends, however
/// it ends: the operating system drops the lock with the file).
#[derive(Debug)]
pub struct OutLock {
    _file: std::fs::File,
}

/// Creates the output folder `dir` and takes its lock, so that two runs never write one folder:
/// the second gets a bad-output error naming the folder and the process that holds it.
pub fn lock_out(dir: &Path) -> Result<OutLock> {
    use std::io::{Read, Seek, Write};
    create_out(dir)?;
    let path = dir.join(LOCK_FILE);
    let cannot = |e: std::io::Error| {
        Error::bad_output(format!("cannot lock output folder {}: {e}", dir.display()))
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(cannot)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (process {holder})")
            };
            return Err(Error::bad_output(format!(
                "output folder {} is being written by another mesascope run{by}; wait for it to end or choose another `out`",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(cannot(e)),
    }
    // Who holds it, for the second run's message.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    Ok(OutLock { _file: file })
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

    #[test]
    fn a_locked_output_folder_refuses_a_second_writer_until_released() {
        let dir = std::env::temp_dir().join(format!("mesascope-lock-{}", std::process::id()));
        let first = lock_out(&dir).unwrap();
        let e = lock_out(&dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadOutput);
        let pid = std::process::id().to_string();
        assert!(e.to_string().contains("another mesascope run"), "{e}");
        assert!(e.to_string().contains(&pid), "{e}");
        drop(first);
        let again = lock_out(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
