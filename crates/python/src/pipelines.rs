//! The library's pipelines from Python: `train`, `mitigate` and `monitor`, each taking the
//! library's settings as keyword arguments, running with the GIL released, reporting progress to
//! an optional callable, and stopping cleanly on Ctrl-C (a training run writes its checkpoint
//! first, then `KeyboardInterrupt` is raised). Results cross as JSON, so Python sees the same
//! figures the JSON files hold.

use crate::{json_to_py, knob_pairs, lib_err};
use mesascope::core::monitor::{Evidence, MonitorConfig};
use mesascope::mitigate::{Method, MitigateSettings};
use mesascope::monitor::MonitorSettings;
use mesascope::progress::{Progress, Unit};
use mesascope::train::{Curriculum, TrainSettings};
use mesascope::{report, Error};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Progress for Python: calls `callback(done, total, message)` (`done` and `total` are `None`
/// for a stage's message), and checks for Ctrl-C between units of work.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    total: Mutex<Option<u64>>,
    interrupted: AtomicBool,
}

impl PyProgress {
    fn new(callback: Option<Py<PyAny>>) -> PyProgress {
        PyProgress {
            callback,
            total: Mutex::new(None),
            interrupted: AtomicBool::new(false),
        }
    }

    fn call(&self, done: Option<u64>, message: &str) {
        let Some(cb) = &self.callback else { return };
        let total = *self.total.lock().unwrap_or_else(|p| p.into_inner());
        Python::attach(|py| {
            // A failing callback must not lose the run: its error is shown, the work goes on.
            if let Err(e) = cb.call1(py, (done, done.and(total), message)) {
                e.print(py);
            }
        });
    }
}

impl Progress for PyProgress {
    fn stage(&self, message: &str) {
        self.call(None, message);
    }
    fn begin(&self, _unit: Unit, total: u64, done: u64) {
        *self.total.lock().unwrap_or_else(|p| p.into_inner()) = Some(total);
        self.call(Some(done), "");
    }
    fn advance(&self, done: u64, message: &str) {
        self.call(Some(done), message);
    }
    fn should_stop(&self) -> bool {
        if !self.interrupted.load(Ordering::Relaxed)
            && Python::attach(|py| py.check_signals()).is_err()
        {
            self.interrupted.store(true, Ordering::Relaxed);
        }
        self.interrupted.load(Ordering::Relaxed)
    }
}

fn to_py(py: Python<'_>, value: serde_json::Value) -> PyResult<Py<PyAny>> {
    json_to_py(py, &value.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> PyResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| lib_err(Error::from(e)))
}

/// Trains a policy with PPO (`mesascope train`); returns the run's figures and its summary text.
#[pyfunction]
#[pyo3(signature = (testbed, steps=None, seed=None, out=None, resume=false, decorrelate=None, arch=None, num_envs=None, hidden=None, checkpoint_every=20, eval_episodes=500, progress=None, knobs=None, channels=None, iterations=None, curriculum="uniform"))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    testbed: String,
    steps: Option<u64>,
    seed: Option<u64>,
    out: Option<PathBuf>,
    resume: bool,
    decorrelate: Option<f64>,
    arch: Option<String>,
    num_envs: Option<usize>,
    hidden: Option<usize>,
    checkpoint_every: u32,
    eval_episodes: usize,
    progress: Option<Py<PyAny>>,
    knobs: Option<HashMap<String, f64>>,
    channels: Option<usize>,
    iterations: Option<usize>,
    curriculum: &str,
) -> PyResult<(Py<PyAny>, String)> {
    if checkpoint_every == 0 {
        return Err(lib_err(Error::bad_setting(
            "`checkpoint_every` must be positive",
        )));
    }
    let settings = TrainSettings {
        testbed,
        knobs: knob_pairs(knobs),
        decorrelate,
        steps,
        seed,
        out,
        resume,
        arch,
        channels,
        iterations,
        num_envs,
        hidden,
        checkpoint_every,
        eval_episodes,
        curriculum: Curriculum::parse(curriculum).map_err(lib_err)?,
    };
    let progress = PyProgress::new(progress);
    let run = py
        .detach(|| mesascope::train::train(&settings, &progress))
        .map_err(lib_err)?;
    let r = &run.run;
    let value = serde_json::json!({
        "testbed": run.testbed,
        "arch": run.arch,
        "out": run.out,
        "steps": run.steps,
        "trained": r.trained,
        "seconds": r.wall,
        "env_steps_per_second": r.trained as f64 / r.wall.max(1e-9),
        "threads": run.threads,
        "last_update": json(&r.last)?,
        "reached_target": json(&r.reached)?,
        "curve": json(&r.curve.points)?,
        "evaluation": json(&run.evals)?,
    });
    Ok((to_py(py, value)?, report::train::text(&run)))
}

/// Audits a checkpoint, fine-tunes it on decorrelated levels and audits it again
/// (`mesascope mitigate`); returns both audits, the run's figures and the summary text.
#[pyfunction]
#[pyo3(signature = (policy, testbed, method="diversify", decorrelate=None, steps=None, seed=0, episodes=500, out=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn mitigate(
    py: Python<'_>,
    policy: PathBuf,
    testbed: String,
    method: &str,
    decorrelate: Option<f64>,
    steps: Option<u64>,
    seed: u64,
    episodes: usize,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Py<PyAny>, String)> {
    let settings = MitigateSettings {
        method: Method::parse(method).map_err(lib_err)?,
        decorrelate,
        steps,
        seed,
        episodes,
        out,
        ..MitigateSettings::new(policy, testbed)
    };
    let progress = PyProgress::new(progress);
    let m = py
        .detach(|| mesascope::mitigate::mitigate(&settings, &progress))
        .map_err(lib_err)?;
    let value = serde_json::json!({
        "source": m.source,
        "testbed": m.testbed,
        "method": m.method,
        "decorrelate": m.decorrelate,
        "extra_steps": m.extra_steps,
        "source_steps": m.source_steps,
        "seconds": m.wall,
        "out": m.out,
        "exit_code": m.after.verdict.exit_code,
        "before": json(&m.before)?,
        "after": json(&m.after)?,
        "curve": json(&m.curve.points)?,
    });
    Ok((to_py(py, value)?, report::mitigation::text(&m)))
}

/// Plays a policy under the runtime monitor on every distribution (`mesascope monitor`);
/// returns the report and its text.
#[pyfunction]
#[pyo3(signature = (policy, testbed, fallback="scripted:intended", episodes=200, seed=0, threshold=None, beta=None, reach=Some(3), evidence="policy", knobs=None))]
#[allow(clippy::too_many_arguments)]
pub fn monitor(
    py: Python<'_>,
    policy: String,
    testbed: String,
    fallback: &str,
    episodes: usize,
    seed: u64,
    threshold: Option<f64>,
    beta: Option<f64>,
    reach: Option<u32>,
    evidence: &str,
    knobs: Option<HashMap<String, f64>>,
) -> PyResult<(Py<PyAny>, String)> {
    let defaults = MonitorConfig::default();
    let evidence = match evidence {
        "policy" => Evidence::Policy,
        "actions" => Evidence::Actions,
        other => {
            return Err(lib_err(Error::bad_setting(format!(
                "`evidence` is 'policy' or 'actions', not '{other}'"
            ))))
        }
    };
    let settings = MonitorSettings {
        fallback: fallback.to_string(),
        knobs: knob_pairs(knobs),
        config: MonitorConfig {
            threshold: threshold.unwrap_or(defaults.threshold),
            beta: beta.unwrap_or(defaults.beta),
            reach,
            evidence,
        },
        episodes,
        seed,
        ..MonitorSettings::new(policy, testbed)
    };
    let report = py
        .detach(|| mesascope::monitor::monitor(&settings))
        .map_err(lib_err)?;
    Ok((to_py(py, json(&report)?)?, report::monitor::text(&report)))
}

/// The checked cells of a sweep's grid (`mesascope.expand_grid`): from the TOML file `path`, or
/// from `json`, a JSON object with the grid file's keys. The library reads and checks grids for
/// the command line and for Python alike (`mesascope::sweep`).
#[pyfunction]
#[pyo3(signature = (path=None, json=None))]
pub fn sweep_grid(
    py: Python<'_>,
    path: Option<PathBuf>,
    json: Option<&str>,
) -> PyResult<Py<PyAny>> {
    let cells = match (path, json) {
        (Some(p), None) => mesascope::sweep::read_grid(&p),
        (None, Some(j)) => mesascope::sweep::grid_from_json(j),
        _ => Err(Error::bad_setting(
            "a grid is a TOML file or a JSON object, one of them",
        )),
    }
    .map_err(lib_err)?;
    let text = serde_json::to_string(&cells).map_err(|e| lib_err(e.into()))?;
    json_to_py(py, &text)
}
