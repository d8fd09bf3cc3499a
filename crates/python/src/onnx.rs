//! ONNX policies from Python: the command line's loader and checks, callable on numpy batches
//! (batched inference with the GIL released), so a model is a policy like any other callable.

use crate::{core_err, lib_err, make_testbed};
use mesascope_onnx::{Encoding, OnnxPolicy};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// An ONNX model checked against a testbed's contract; `model(obs)` returns `[N, A]` logits.
#[pyclass(module = "mesascope._core")]
pub struct OnnxModel {
    policy: Arc<OnnxPolicy>,
    /// Shape of one observation.
    obs_shape: Vec<usize>,
}

#[pymethods]
impl OnnxModel {
    #[new]
    #[pyo3(signature = (path, testbed, knobs=None))]
    fn new(path: PathBuf, testbed: &str, knobs: Option<HashMap<String, f64>>) -> PyResult<Self> {
        let tb = make_testbed(testbed, knobs)?;
        let policy = mesascope::policy::load_onnx(tb.as_ref(), &path).map_err(lib_err)?;
        let g =
            mesascope_core::env::generate_level(tb.as_ref(), mesascope_core::Split::Train, 0).grid;
        let obs_shape = match policy.encoding() {
            Encoding::Planes => vec![mesascope_core::obs::PLANES, g.height, g.width],
            Encoding::U8 => vec![g.height, g.width, 3],
        };
        Ok(OnnxModel {
            policy: Arc::new(policy),
            obs_shape,
        })
    }

    /// `planes` or `u8`: the observation the model declares.
    #[getter]
    fn obs(&self) -> &'static str {
        match self.policy.encoding() {
            Encoding::Planes => "planes",
            Encoding::U8 => "u8",
        }
    }

    fn __call__<'py>(
        &self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (want_dtype, enc) = match self.policy.encoding() {
            Encoding::Planes => ("float32", Encoding::Planes),
            Encoding::U8 => ("uint8", Encoding::U8),
        };
        let shape_err = |found: String| {
            PyValueError::new_err(format!(
                "the model reads {want_dtype} observations of shape [N, {}]; got {found}",
                self.obs_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let describe = |o: &Bound<'py, PyAny>| -> String {
            match (o.getattr("shape"), o.getattr("dtype")) {
                (Ok(s), Ok(d)) => format!("an array of shape {s} and dtype {d}"),
                _ => format!(
                    "a {}",
                    o.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ),
            }
        };
        let wrong = || shape_err(describe(obs));
        let contiguous = |_| PyValueError::new_err("observations must be C-contiguous");
        let p = &self.policy;
        let (n, logits) = match enc {
            Encoding::Planes => {
                let a = batch::<f32>(obs, &self.obs_shape, wrong)?;
                let n = a.shape()[0];
                let s = a.as_slice().map_err(contiguous)?;
                (n, py.detach(|| p.logits(n, &[], s)))
            }
            Encoding::U8 => {
                let a = batch::<u8>(obs, &self.obs_shape, wrong)?;
                let n = a.shape()[0];
                let s = a.as_slice().map_err(contiguous)?;
                (n, py.detach(|| p.logits(n, s, &[])))
            }
        };
        let logits = logits.map_err(core_err)?;
        Ok(PyArray1::from_vec(py, logits)
            .reshape([n, self.policy.n_actions()])?
            .into_any())
    }
}

/// A `[N, *obs_shape]` batch of either element type, or the caller's error.
fn batch<'py, T: numpy::Element>(
    obs: &Bound<'py, PyAny>,
    obs_shape: &[usize],
    wrong: impl Fn() -> PyErr,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let a: PyReadonlyArrayDyn<T> = obs.extract().map_err(|_| wrong())?;
    if a.shape().len() != 4 || a.shape()[1..] != obs_shape[..] {
        return Err(wrong());
    }
    Ok(a)
}
