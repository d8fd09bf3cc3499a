//! Running a sweep or an audit map on Ray from Rust: Ray is a Python system, so the work goes to
//! the Python package's Ray code (`mesascope._sweep.main`, docs/distributed.md) in a child process,
//! the interpreter named by `MESASCOPE_PYTHON` (default `python3`). The grid is read and checked
//! here first, so a bad grid fails before Python starts; the table the Python side writes has
//! the columns of [`crate::sweep::Row`], and this side draws the figure from it.

use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the work runs on Ray.
#[derive(Clone, Debug, PartialEq)]
pub struct RaySettings {
    /// `local` (Ray started in the Python process with the machine's CPUs), `auto`, or
    /// `HOST:PORT` of a running head.
    pub address: String,
    /// CPUs reserved per trial (or per audit).
    pub cpus_per_trial: u32,
    /// Restarts of a trial whose worker died.
    pub max_failures: u32,
}

/// The Python interpreter that runs Ray: `MESASCOPE_PYTHON`, else `python3`.
pub fn python() -> PathBuf {
    std::env::var_os("MESASCOPE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Checks that the interpreter has the package, Ray Tune and pandas, before any work.
fn check_python(py: &Path) -> Result<()> {
    let needs = "the Ray front end needs the Python package with Ray: pip install mesascope \"ray[tune]\" pandas (set MESASCOPE_PYTHON to the interpreter that has them)";
    let out = Command::new(py)
        .args(["-c", "import mesascope, ray.tune, pandas"])
        .output()
        .map_err(|e| Error::bad_setting(format!("{needs}; cannot run {}: {e}", py.display())))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let last = why.lines().last().unwrap_or("").trim();
        return Err(Error::bad_setting(format!(
            "{needs}; {} says: {last}",
            py.display()
        )));
    }
    Ok(())
}

fn run_python(args: &[String]) -> Result<()> {
    let py = python();
    check_python(&py)?;
    // `python -c` rather than `-m mesascope._sweep`: the package imports that module itself, and
    // running it again as `__main__` makes Python warn.
    let status = Command::new(&py)
        .args([
            "-c",
            "import sys; from mesascope._sweep import main; sys.exit(main(sys.argv[1:]))",
        ])
        .args(args)
        .status()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", py.display())))?;
    match status.code() {
        Some(0) => Ok(()),
        // The Python side printed its error: 2 is bad input, 130 an interruption.
        Some(2) => Err(Error::bad_setting(
            "the Ray run refused its input (see above)",
        )),
        Some(130) => Err(Error::new(
            ErrorKind::Interrupted,
            "the Ray run was interrupted; `resume` continues it",
        )),
        code => Err(Error::failed(format!(
            "the Ray run failed (python exit {})",
            code.map_or("by a signal".into(), |c| c.to_string())
        ))),
    }
}

fn common(ray: &RaySettings) -> Vec<String> {
    vec![
        "--address".into(),
        ray.address.clone(),
        "--cpus".into(),
        ray.cpus_per_trial.to_string(),
        "--max-failures".into(),
        ray.max_failures.to_string(),
    ]
}

/// Runs the grid file `grid` on Ray into `out` (`out/sweep.csv`, `out/sweep.json` and Tune's
/// folder `out/sweep/`), restoring the sweep there when `resume`; then reads the table back
/// and writes the figure (`out/sweep.html`). Returns the table's rows.
pub fn sweep(
    grid: &Path,
    out: &Path,
    resume: bool,
    ray: &RaySettings,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    crate::sweep::read_grid(grid)?;
    crate::fsio::create_out(out)?;
    let mut args = vec![
        "sweep".into(),
        grid.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(common(ray));
    if resume {
        args.push("--resume".into());
    }
    run_python(&args)?;
    let path = out.join("sweep.json");
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| Error::failed(format!("{}: {e}", path.display())))?,
    )
    .map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
    crate::sweep::write_figure(out, &rows)?;
    Ok(rows)
}

/// Audits every policy of `folder` on Ray (`mesascope.audit_many`): `out/verdicts.csv`,
/// `out/index.html` and a report folder per policy.
pub fn audit_many(
    folder: &Path,
    testbed: &str,
    knobs: &[(String, f64)],
    episodes: usize,
    seed: u64,
    out: &Path,
    ray: &RaySettings,
) -> Result<()> {
    crate::audit::policies_in(folder)?;
    mesascope_core::testbeds::make(testbed, &mesascope_core::Knobs::from_pairs(knobs))?;
    let mut args = vec![
        "audit-many".into(),
        folder.display().to_string(),
        "--env".into(),
        testbed.into(),
        "--episodes".into(),
        episodes.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    for (k, v) in knobs {
        args.push("-k".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(common(ray));
    run_python(&args)
}
