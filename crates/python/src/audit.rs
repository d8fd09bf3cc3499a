//! `mesascope.audit` from Python: any policy the command line accepts (given as its string),
//! or a Python callable from an observation batch to action probabilities, run through the
//! core audit with the GIL released, so the audit's threads take turns calling into Python.

use crate::envs::ObsKind;
use crate::{core_err, json_to_py, lib_err, make_testbed};
use mesascope::audit::write_reports;
use mesascope::levels::load_levels;
use mesascope::PolicySpec;
use mesascope_core::agents::Agent;
use mesascope_core::audit::{audit as run_audit, AuditConfig, Progress};
use mesascope_core::obs;
use mesascope_core::{Env, Error};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A Python callable as a core agent. `adapter` is the package's wrapper around the user's
/// policy: it takes an `[N, ...]` observation batch and returns the checked float32 action
/// probabilities `[N, A]`, or raises a `PolicyError` naming what the policy returned. The audit
/// plays its episodes in lockstep, so the callable sees every live episode's state in one
/// batch; Ctrl-C is checked before each call.
struct PyAgent {
    adapter: Arc<Py<PyAny>>,
    kind: ObsKind,
    label: String,
    /// The first Python exception any copy raised, re-raised as is when the audit stops.
    failure: Arc<Mutex<Option<PyErr>>>,
}

impl PyAgent {
    /// One call per run of states of one grid size: a batch may mix sizes (the heat maps of a
    /// size-shifted audit), and a numpy batch holds one shape.
    fn call(&self, py: Python<'_>, envs: &[&Env], out: &mut [f32]) -> PyResult<()> {
        let a = out.len() / envs.len().max(1);
        let shape = |e: &Env| (e.state.grid.height, e.state.grid.width);
        let mut start = 0;
        while start < envs.len() {
            let end = start
                + envs[start..]
                    .iter()
                    .take_while(|e| shape(e) == shape(envs[start]))
                    .count();
            self.call_one_size(py, &envs[start..end], &mut out[start * a..end * a])?;
            start = end;
        }
        Ok(())
    }

    fn call_one_size(&self, py: Python<'_>, envs: &[&Env], out: &mut [f32]) -> PyResult<()> {
        py.check_signals()?;
        let Some(first) = envs.first() else {
            return Ok(());
        };
        let (h, w) = (first.state.grid.height, first.state.grid.width);
        let mut shape = self.kind.shape(h, w);
        let per: usize = shape.iter().product();
        shape.insert(0, envs.len());
        let obs = match self.kind {
            ObsKind::U8 => {
                let mut v = vec![0u8; envs.len() * per];
                for (e, o) in envs.iter().zip(v.chunks_mut(per)) {
                    obs::encode_u8(&e.state, o);
                }
                PyArray1::from_vec(py, v).reshape(shape)?.into_any()
            }
            ObsKind::Planes => {
                let mut v = vec![0f32; envs.len() * per];
                for (e, o) in envs.iter().zip(v.chunks_mut(per)) {
                    obs::encode_planes(&e.state, o);
                }
                PyArray1::from_vec(py, v).reshape(shape)?.into_any()
            }
        };
        let probs = self.adapter.bind(py).call1((obs,))?;
        let probs: PyReadonlyArray2<f32> = probs.extract().map_err(|_| {
            PyValueError::new_err("the policy adapter must return a float32 [N, A] array")
        })?;
        let p = probs
            .as_slice()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        if p.len() != out.len() {
            return Err(PyValueError::new_err(format!(
                "the policy adapter returned {} probabilities for {} states, the testbed has {} actions",
                p.len(),
                envs.len(),
                out.len() / envs.len()
            )));
        }
        out.copy_from_slice(p);
        Ok(())
    }
}

impl Agent for PyAgent {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> mesascope_core::Result<()> {
        self.probs_batch(&[env], out)
    }

    /// A callable maps observations to actions: one instance serves every episode.
    fn batched(&self) -> bool {
        true
    }

    fn probs_batch(&mut self, envs: &[&Env], out: &mut [f32]) -> mesascope_core::Result<()> {
        Python::attach(|py| self.call(py, envs, out)).map_err(|e| {
            let msg = e.to_string();
            let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
            Error::Policy(msg)
        })
    }
}

/// Any policy, stopped at its next call once `cancel` is set (Ctrl-C).
struct Cancellable {
    inner: Box<dyn Agent>,
    cancel: Arc<AtomicBool>,
}

impl Cancellable {
    fn check(&self) -> mesascope_core::Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Policy("interrupted".into()));
        }
        Ok(())
    }
}

impl Agent for Cancellable {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn begin(&mut self, env: &Env) -> mesascope_core::Result<()> {
        self.check()?;
        self.inner.begin(env)
    }
    fn probs(&mut self, env: &Env, out: &mut [f32]) -> mesascope_core::Result<()> {
        self.check()?;
        self.inner.probs(env, out)
    }
    fn batched(&self) -> bool {
        self.inner.batched()
    }
    fn probs_batch(&mut self, envs: &[&Env], out: &mut [f32]) -> mesascope_core::Result<()> {
        self.check()?;
        self.inner.probs_batch(envs, out)
    }
}

/// Audits `policy` on `testbed`. `policy` is a string the command line accepts
/// (`scripted:NAME[@beta]`, a checkpoint folder, a `.onnx` file) or the adapter of a Python
/// callable. Returns the report (as `audit.json` holds it), its text rendering, the verdict's
/// exit code, and the paths written under `out`.
#[pyfunction]
#[pyo3(signature = (policy, testbed, label, knobs=None, episodes=200, seed=0, obs_kind="u8", levels=None, out=None, progress=None, size_shift=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn audit(
    py: Python<'_>,
    policy: &Bound<'_, PyAny>,
    testbed: &str,
    label: String,
    knobs: Option<HashMap<String, f64>>,
    episodes: usize,
    seed: u64,
    obs_kind: &str,
    levels: Option<PathBuf>,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
    size_shift: Option<i64>,
) -> PyResult<(Py<PyAny>, String, i32, Option<(PathBuf, PathBuf)>)> {
    let tb = make_testbed(testbed, knobs)?;
    let kind = ObsKind::parse(obs_kind)?;
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
    // An unusable output folder fails now, not after the whole audit.
    if let Some(dir) = &out {
        mesascope::fsio::prepare_out(dir).map_err(lib_err)?;
    }
    let mut cfg = AuditConfig::new(label, episodes, seed);
    if let Some(dir) = &levels {
        cfg.levels = Some(load_levels(tb.as_ref(), dir).map_err(lib_err)?);
    }
    cfg.size_shift = size_shift;
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = {
        let (failure, cancel) = (failure.clone(), cancel.clone());
        move |e: PyErr| {
            cancel.store(true, Ordering::Relaxed);
            let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        }
    };
    if let Some(callback) = progress {
        let callback = Arc::new(callback);
        let stop = stop.clone();
        cfg.progress = Some(Progress(Arc::new(
            move |phase: &str, i: usize, n: usize| {
                Python::attach(|py| {
                    if let Err(e) = callback.bind(py).call1((phase, i, n)) {
                        stop(e)
                    }
                })
            },
        )));
    }
    let cancellable = |cancel: &Arc<AtomicBool>| {
        let cancel = cancel.clone();
        let factory = &factory;
        move || -> mesascope_core::Result<Box<dyn Agent>> {
            Ok(Box::new(Cancellable {
                inner: factory()?,
                cancel: cancel.clone(),
            }) as Box<dyn Agent>)
        }
    };
    let wrapped = cancellable(&cancel);
    // The audit runs on its own thread; this one, the only one Python runs signal handlers
    // on, checks for Ctrl-C meanwhile and stops the audit at its next policy call.
    let result = std::thread::scope(|scope| {
        let worker = scope.spawn(|| run_audit(&tb, &wrapped, &cfg));
        while !worker.is_finished() {
            if let Err(e) = py.check_signals() {
                stop(e);
            }
            py.detach(|| std::thread::sleep(std::time::Duration::from_millis(20)));
        }
        worker.join()
    })
    .map_err(|_| PyRuntimeError::new_err("the audit's thread panicked"))?;
    if let Some(raised) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(raised);
    }
    let report = result.map_err(core_err)?;
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
