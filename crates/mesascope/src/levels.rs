//! Hand-made levels from a folder: every `*.level` file, parsed and checked against a testbed,
//! as one more distribution for an audit.

use crate::error::{Context, Error, Result};
use mesascope_core::audit::LevelSet;
use mesascope_core::level::Level;
use mesascope_core::{testbeds, Testbed};
use std::path::Path;

/// Every `*.level` file in `dir`, in name order, parsed and checked against the testbed.
pub fn load_levels(tb: &dyn Testbed, dir: &Path) -> Result<LevelSet> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::bad_level(format!("cannot read levels folder {shown}: {e}")))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "level"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::bad_level(format!(
            "levels folder {shown} holds no .level files (write one with `mesascope show {} > {shown}/my.level`)",
            tb.name()
        )));
    }
    let mut levels = Vec::new();
    for p in paths {
        let file = p.display();
        let text = read_level_text(&p)?;
        let header = Level::parse(&text)
            .map_err(mesascope_core::Error::from)
            .with_context(|| format!("level file {file}"))?;
        if let Some(h) = header.testbed.filter(|h| h != tb.name()) {
            return Err(Error::bad_level(format!(
                "level file {file} says 'testbed: {h}' but the audit is on {}",
                tb.name()
            )));
        }
        let level =
            testbeds::parse_level(tb, &text).with_context(|| format!("level file {file}"))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        levels.push((name, level));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.to_string());
    Ok(LevelSet { name, levels })
}

/// The text of level file `path`, read with the size cap of `docs/limits.md` (a bad level when it
/// cannot be read, is too large or is not UTF-8).
pub fn read_level_text(path: &Path) -> Result<String> {
    mesascope_core::level::read_level_file(path)
        .map_err(|e| Error::foreign(crate::error::ErrorKind::BadLevel, &e))
}
