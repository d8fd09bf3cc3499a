//! The compiled part of the `mesascope` Python package (`mesascope._core`): the engine's single
//! and batched environments over numpy buffers, the planner and the scripted reference agents,
//! and the audit of any policy, Python callables included. The Gymnasium classes and the
//! checks of what a Python policy returns live in the pure-Python part (`python/mesascope`).

mod audit;
mod envs;
mod lm;
mod lm_detect;
mod onnx;
mod pipelines;

use mesascope_core::{testbeds, Knobs, Split, Testbed};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyOSError, PyValueError};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

create_exception!(
    _core,
    PolicyError,
    PyValueError,
    "A policy returned something unusable: wrong shape or type, an action out of range, non-finite logits."
);
create_exception!(
    _core,
    AuditError,
    PyException,
    "An audit or another pipeline failed for a reason other than bad input or a misbehaving policy."
);
create_exception!(
    _core,
    BadPolicyError,
    PyValueError,
    "A policy that cannot be used: an unknown policy string, a checkpoint or ONNX file that is corrupt, of another testbed or of another level shape."
);
create_exception!(
    _core,
    LevelError,
    PyValueError,
    "A level file or folder that cannot be used."
);
create_exception!(
    _core,
    KnobError,
    PyValueError,
    "An unknown testbed, a knob it does not declare, or a knob value out of its range."
);
create_exception!(
    _core,
    SettingError,
    PyValueError,
    "A setting that cannot work: a split, a count or share out of range, settings that contradict each other or the files they name."
);
create_exception!(
    _core,
    MesascopeIOError,
    PyOSError,
    "An output folder that cannot be written, or a file that could not be read or written."
);

/// Core errors as Python exceptions, by the library's kinds: a misbehaving policy is a
/// `PolicyError`, an unknown testbed or knob a `KnobError`, a level a `LevelError`, anything
/// else bad input (a `SettingError`, a `ValueError`).
pub(crate) fn core_err(e: mesascope_core::Error) -> PyErr {
    lib_err(e.into())
}

/// The library's errors as Python exceptions, one class per kind.
pub(crate) fn lib_err(e: mesascope::Error) -> PyErr {
    use mesascope::ErrorKind as K;
    let msg = e.to_string();
    match e.kind() {
        K::BadPolicy => BadPolicyError::new_err(msg),
        K::BadLevel => LevelError::new_err(msg),
        K::BadKnob => KnobError::new_err(msg),
        K::BadSetting => SettingError::new_err(msg),
        K::BadOutput | K::Io => MesascopeIOError::new_err(msg),
        K::PolicyFailed => PolicyError::new_err(msg),
        K::Interrupted => PyKeyboardInterrupt::new_err(msg),
        K::Failed => AuditError::new_err(msg),
    }
}

/// Keyword knobs as the library's pairs, sorted by name: knob errors name the first bad knob,
/// so the same call reports the same knob.
pub(crate) fn knob_pairs(knobs: Option<HashMap<String, f64>>) -> Vec<(String, f64)> {
    let mut pairs: Vec<(String, f64)> = knobs.unwrap_or_default().into_iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

pub(crate) fn make_testbed(
    name: &str,
    knobs: Option<HashMap<String, f64>>,
) -> PyResult<Arc<dyn Testbed>> {
    testbeds::make(name, &Knobs::from_pairs(&knob_pairs(knobs))).map_err(core_err)
}

pub(crate) fn parse_split(tb: &dyn Testbed, split: &str) -> PyResult<Split> {
    Split::parse(split, tb).map_err(PyValueError::new_err)
}

/// The testbeds' names.
#[pyfunction]
fn testbed_names() -> Vec<String> {
    testbeds::NAMES.iter().map(|s| s.to_string()).collect()
}

/// What a testbed declares: goals (intended first), proxies, splits, knobs with their values,
/// action count, level shape and the observation planes' order.
#[pyfunction]
#[pyo3(signature = (testbed, knobs=None))]
fn describe(
    py: Python<'_>,
    testbed: &str,
    knobs: Option<HashMap<String, f64>>,
) -> PyResult<Py<PyAny>> {
    let tb = make_testbed(testbed, knobs)?;
    let level = mesascope_core::env::generate_level(tb.as_ref(), Split::Train, 0);
    let (decl, values) = tb.knobs();
    let value = serde_json::json!({
        "name": tb.name(),
        "goals": tb.goals().iter().map(|g| g.name).collect::<Vec<_>>(),
        "proxies": tb.proxies().iter().map(|g| g.name).collect::<Vec<_>>(),
        "splits": Split::all(tb.as_ref()).iter().map(|s| s.label(tb.as_ref())).collect::<Vec<_>>(),
        "knobs": decl.iter().zip(values).map(|(k, v)| (k.name.to_string(), v)).collect::<HashMap<_, _>>(),
        "n_actions": tb.n_actions(),
        "height": level.grid.height,
        "width": level.grid.width,
        "plane_names": mesascope_core::obs::plane_names(),
        "oversight_cue": tb.oversight().map(|o| o.cue),
    });
    json_to_py(py, &value.to_string())
}

/// The batch engine's own steps/s (`mesascope bench`'s measurement, in this build) for `n`
/// environments with random actions, all cores: the figure the Python vector environment is
/// compared with.
#[pyfunction]
#[pyo3(signature = (testbed, n, obs="u8", seconds=2.0, seed=0))]
fn rust_step_rate(
    py: Python<'_>,
    testbed: &str,
    n: usize,
    obs: &str,
    seconds: f64,
    seed: u64,
) -> PyResult<f64> {
    use mesascope_core::bench::{step_rate, ObsKind};
    let tb = make_testbed(testbed, None)?;
    let kind = match envs::ObsKind::parse(obs)? {
        envs::ObsKind::U8 => ObsKind::U8,
        envs::ObsKind::Planes => ObsKind::Planes,
    };
    let r = py
        .detach(|| step_rate(&tb, Split::Train, kind, n, true, None, seconds, seed))
        .map_err(core_err)?;
    Ok(r.steps_per_sec)
}

/// Parses JSON text with Python's `json` module: the report and descriptions cross as JSON so
/// that the Python objects match `audit.json` exactly.
pub(crate) fn json_to_py(py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PolicyError", m.py().get_type::<PolicyError>())?;
    m.add("AuditError", m.py().get_type::<AuditError>())?;
    m.add("BadPolicyError", m.py().get_type::<BadPolicyError>())?;
    m.add("LevelError", m.py().get_type::<LevelError>())?;
    m.add("KnobError", m.py().get_type::<KnobError>())?;
    m.add("SettingError", m.py().get_type::<SettingError>())?;
    m.add("MesascopeIOError", m.py().get_type::<MesascopeIOError>())?;
    m.add_function(wrap_pyfunction!(testbed_names, m)?)?;
    m.add_function(wrap_pyfunction!(describe, m)?)?;
    m.add_function(wrap_pyfunction!(rust_step_rate, m)?)?;
    m.add_class::<envs::Env>()?;
    m.add_class::<envs::VecEnv>()?;
    m.add_function(wrap_pyfunction!(audit::audit, m)?)?;
    m.add_class::<onnx::OnnxModel>()?;
    m.add_function(wrap_pyfunction!(pipelines::train, m)?)?;
    m.add_function(wrap_pyfunction!(pipelines::mitigate, m)?)?;
    m.add_function(wrap_pyfunction!(pipelines::monitor, m)?)?;
    m.add_function(wrap_pyfunction!(pipelines::sweep_grid, m)?)?;
    lm::register(m)?;
    Ok(())
}
