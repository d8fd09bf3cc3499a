//! `mesascope.audit` from Python: any policy the command line accepts (given as its string),
//! or a Python callable from an observation batch to action probabilities, run through the
//! core audit with the GIL released, so the audit's threads take turns calling into Python.

use crate::envs::ObsKind;
use crate::{core_err, json_to_py, lib_err, make_testbed};
use mesascope::audit::write_reports;
use mesascope::levels::load_levels;
use mesascope::PolicySpec;
use mesascope_core::agents::Agent;
use mesascope_core::audit::{audit as run_audit, AuditConfig};
use mesascope_core::{Env, Error};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A Python callable as a core agent. `adapter` is the package's wrapper around the user's
/// policy: it takes a `[1, ...]` observation batch and returns the checked float32 action
/// probabilities, or raises a `PolicyError` naming what the policy returned.
struct PyAgent {
    adapter: Arc<Py<PyAny>>,
    kind: ObsKind,
    label: String,
    /// The first Python exception any copy raised, re-raised as is when the audit stops.
    failure: Arc<Mutex<Option<PyErr>>>,
}

impl Agent for PyAgent {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> mesascope_core::Result<()> {
        Python::attach(|py| -> PyResult<()> {
            let obs = self.kind.encode(py, &env.state, true)?;
            let probs = self.adapter.bind(py).call1((obs,))?;
            let probs: PyReadonlyArray1<f32> = probs.extract().map_err(|_| {
                PyValueError::new_err("the policy adapter must return a float32 vector")
            })?;
            let p = probs
                .as_slice()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            if p.len() != out.len() {
                return Err(PyValueError::new_err(format!(
                    "the policy adapter returned {} probabilities, the testbed has {} actions",
                    p.len(),
                    out.len()
                )));
            }
            out.copy_from_slice(p);
            Ok(())
        })
        .map_err(|e| {
            let msg = e.to_string();
            let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
            Error::Policy(msg)
        })
    }
}

/// Audits `policy` on `testbed`. `policy` is a string the command line accepts
/// (`scripted:NAME[@beta]`, a checkpoint folder, a `.onnx` file) or the adapter of a Python
/// callable. Returns the report (as `audit.json` holds it), its text rendering, the verdict's
/// exit code, and the paths written under `out`.
#[pyfunction]
#[pyo3(signature = (policy, testbed, label, knobs=None, episodes=200, seed=0, obs="u8", levels=None, out=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn audit(
    py: Python<'_>,
    policy: &Bound<'_, PyAny>,
    testbed: &str,
    label: String,
    knobs: Option<HashMap<String, f64>>,
    episodes: usize,
    seed: u64,
    obs: &str,
    levels: Option<PathBuf>,
    out: Option<PathBuf>,
) -> PyResult<(Py<PyAny>, String, i32, Option<(PathBuf, PathBuf)>)> {
    let tb = make_testbed(testbed, knobs)?;
    let kind = ObsKind::parse(obs)?;
    let failure = Arc::new(Mutex::new(None));
    let factory: mesascope::policy::AgentFactory = if let Ok(spec) = policy.extract::<String>() {
        PolicySpec::parse(&spec)
            .and_then(|s| s.factory(&tb))
            .map_err(lib_err)?
    } else {
        if !policy.is_callable() {
            return Err(PyValueError::new_err(format!(
                "a policy is a callable or a policy string, not {}",
                policy.get_type().name()?
            )));
        }
        let adapter = Arc::new(policy.clone().unbind());
        let (failure, label) = (failure.clone(), label.clone());
        Box::new(move || {
            Ok(Box::new(PyAgent {
                adapter: adapter.clone(),
                kind,
                label: label.clone(),
                failure: failure.clone(),
            }) as Box<dyn Agent>)
        })
    };
    let mut cfg = AuditConfig::new(label, episodes, seed);
    if let Some(dir) = &levels {
        cfg.levels = Some(load_levels(tb.as_ref(), dir).map_err(lib_err)?);
    }
    let result = py.detach(|| run_audit(&tb, &*factory, &cfg));
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let raised = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(raised.unwrap_or_else(|| core_err(e)));
        }
    };
    let written = match &out {
        Some(dir) => Some(write_reports(&report, dir, None).map_err(lib_err)?),
        None => None,
    };
    let json = serde_json::to_string(&report)
        .map_err(|e| PyValueError::new_err(format!("cannot serialize the report: {e}")))?;
    Ok((
        json_to_py(py, &json)?,
        mesascope::report::audit::text(&report),
        report.verdict.exit_code,
        written,
    ))
}
