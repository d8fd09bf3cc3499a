//! `mesascope.lm`: language models (GGUF files, Hugging Face folders) from Python, on the
//! `mesascope-lm` crate. Each kind of bad input raises its own exception class, all subclasses of
//! `LmError` (itself a `ValueError`).

use mesascope_lm::defection::{probe_layer, LayerResiduals, ProbeMethod, ProbeSettings};
use mesascope_lm::testing::{write_tiny_model, TinyFormat};
use mesascope_lm::{GenerateOptions, Hooks, LmError as E, Model, Positions};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray3};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

create_exception!(
    _core,
    LmError,
    PyValueError,
    "A language model could not be loaded or run."
);
create_exception!(
    _core,
    ModelFileError,
    LmError,
    "A model file is missing, truncated or corrupt."
);
create_exception!(
    _core,
    UnsupportedModelError,
    LmError,
    "An architecture or tensor type mesascope does not run."
);
create_exception!(
    _core,
    ModelConfigError,
    LmError,
    "A model's configuration disagrees with its tensors, or is invalid."
);
create_exception!(
    _core,
    TokenizerError,
    LmError,
    "The model has no usable tokenizer or chat template."
);
create_exception!(
    _core,
    ContextLengthError,
    LmError,
    "A prompt longer than the model's context."
);
create_exception!(
    _core,
    ActivationsError,
    LmError,
    "Activations a probe cannot be fitted or scored on: no pairs, one-sided sets, mismatched shapes, NaN."
);
create_exception!(
    _core,
    HookError,
    LmError,
    "A hook point that does not exist, or a hook vector of the wrong width."
);

fn lm_err(e: E) -> PyErr {
    let msg = e.to_string();
    match e {
        E::Io { .. } | E::CorruptGguf { .. } | E::CorruptSafetensors { .. } => {
            ModelFileError::new_err(msg)
        }
        E::UnsupportedArchitecture { .. } | E::UnsupportedQuantization { .. } => {
            UnsupportedModelError::new_err(msg)
        }
        E::BadConfig { .. } | E::ShapeMismatch { .. } | E::MissingTensor { .. } => {
            ModelConfigError::new_err(msg)
        }
        E::MissingTokenizer { .. } | E::Tokenizer(_) => TokenizerError::new_err(msg),
        E::ContextOverflow { .. } => ContextLengthError::new_err(msg),
        E::UnknownHook { .. } => HookError::new_err(msg),
        E::InvalidArgument(_) | E::Compute(_) => LmError::new_err(msg),
    }
}

/// A prompt: text, or token ids.
#[derive(FromPyObject)]
enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// A loaded language model (see `mesascope.lm.load`).
#[pyclass(module = "mesascope._core", frozen)]
pub struct LanguageModel {
    model: Model,
}

impl LanguageModel {
    fn tokens(&self, prompt: Prompt, chat: bool) -> PyResult<Vec<u32>> {
        match prompt {
            Prompt::Text(t) => self.model.prompt_tokens(&t, chat).map_err(lm_err),
            Prompt::Tokens(ids) => Ok(ids),
        }
    }
}

#[pymethods]
impl LanguageModel {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let model = py.detach(|| Model::load(&path)).map_err(lm_err)?;
        Ok(LanguageModel { model })
    }

    /// The model's shape, storage types, hook names and memory, as a dict.
    #[getter]
    fn info(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let text = serde_json::to_string(&self.model.info())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        crate::json_to_py(py, &text)
    }

    /// Token ids of `text` (templated as one user message when `chat`).
    #[pyo3(signature = (text, chat=false, add_bos=true))]
    fn tokenize(&self, text: &str, chat: bool, add_bos: bool) -> PyResult<Vec<u32>> {
        if chat {
            self.model.prompt_tokens(text, true).map_err(lm_err)
        } else {
            self.model.tokenizer().encode(text, add_bos).map_err(lm_err)
        }
    }

    fn detokenize(&self, ids: Vec<u32>) -> PyResult<String> {
        self.model.tokenizer().decode(&ids).map_err(lm_err)
    }

    /// The chat prompt text for a list of `{"role", "content"}` messages.
    fn chat_prompt(&self, messages: Vec<(String, String)>) -> PyResult<String> {
        let template = self.model.tokenizer().chat.as_ref().ok_or_else(|| {
            TokenizerError::new_err("the model has no chat template mesascope recognizes")
        })?;
        let messages: Vec<_> = messages
            .iter()
            .map(|(r, c)| mesascope_lm::Message::new(r, c))
            .collect();
        Ok(template.apply(&messages))
    }

    /// Next-token logits at every position of the prompt, `[T, vocab]` float32.
    #[pyo3(signature = (prompt, chat=false))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        prompt: Prompt,
        chat: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tokens = self.tokens(prompt, chat)?;
        let logits = py
            .detach(|| self.model.logits(&tokens, &mut Hooks::none()))
            .map_err(lm_err)?;
        Ok(PyArray1::from_vec(py, logits.data)
            .reshape([logits.rows, logits.vocab])?
            .into_any())
    }

    /// Activations at hook points: point name -> `[n_prompts, d_model]` (positions="last") or
    /// `[total_tokens, d_model]`, the prompts' tokens in order (positions="all").
    #[pyo3(signature = (prompts, points, positions="last", chat=false))]
    fn activations<'py>(
        &self,
        py: Python<'py>,
        prompts: Vec<Prompt>,
        points: Vec<String>,
        positions: &str,
        chat: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let positions = match positions {
            "last" => Positions::Last,
            "all" => Positions::All,
            other => {
                return Err(PyValueError::new_err(format!(
                    "positions must be \"last\" or \"all\", not {other:?}"
                )))
            }
        };
        let hook_points = points
            .iter()
            .map(|p| self.model.hook_point(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(lm_err)?;
        let token_lists = prompts
            .into_iter()
            .map(|p| self.tokens(p, chat))
            .collect::<PyResult<Vec<_>>>()?;
        let per_prompt = py
            .detach(|| {
                self.model
                    .activations(&token_lists, &hook_points, positions)
            })
            .map_err(lm_err)?;
        let d = self.model.config().d_model;
        let out = PyDict::new(py);
        for p in &hook_points {
            let name = p.to_string();
            let rows: Vec<f32> = per_prompt
                .iter()
                .flat_map(|m| m[&name].iter().flatten().copied())
                .collect();
            let n = rows.len() / d;
            out.set_item(&name, PyArray1::from_vec(py, rows).reshape([n, d])?)?;
        }
        Ok(out)
    }

    /// Generates after `prompt`; `stream(piece)` is called with each token's text as it comes.
    #[pyo3(signature = (prompt, max_tokens=128, temperature=0.0, top_p=1.0, seed=0, chat=false, stream=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: Prompt,
        max_tokens: usize,
        temperature: f32,
        top_p: f32,
        seed: u64,
        chat: bool,
        stream: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let tokens = self.tokens(prompt, chat)?;
        let options = GenerateOptions {
            max_tokens,
            temperature,
            top_p,
            seed,
            stop_at_eos: true,
        };
        let generation = match stream {
            None => py.detach(|| {
                self.model
                    .generate(&tokens, &options, &mut Hooks::none(), &mut |_, _| true)
            }),
            Some(callback) => {
                let mut failure: Option<PyErr> = None;
                let g =
                    self.model
                        .generate(&tokens, &options, &mut Hooks::none(), &mut |_, piece| {
                            match callback.call1(py, (piece,)) {
                                Ok(_) => true,
                                Err(e) => {
                                    failure = Some(e);
                                    false
                                }
                            }
                        });
                if let Some(e) = failure {
                    return Err(e);
                }
                g
            }
        }
        .map_err(lm_err)?;
        Ok(generation.text)
    }
}

/// Writes the tiny random-weight Llama model the tests use (`format`: "gguf" or "hf") into `dir`
/// and returns its path.
#[pyfunction]
pub fn lm_write_tiny_model(dir: PathBuf, format: &str) -> PyResult<String> {
    let format = match format {
        "gguf" => TinyFormat::Gguf,
        "hf" | "huggingface" => TinyFormat::HuggingFace,
        other => {
            return Err(PyValueError::new_err(format!(
                "format must be \"gguf\" or \"hf\", not {other:?}"
            )))
        }
    };
    let path = write_tiny_model(&dir, format).map_err(lm_err)?;
    Ok(path.to_string_lossy().into_owned())
}

/// The defection probe's statistics (`mesascope_lm::defection::probe_layer`) on activations from
/// any framework: each array `[layers, rows, width]`; the pairs' sides row for row. Returns the
/// per-layer figures as the probe's `analysis.json` holds them, and each layer's difference-of-
/// means direction.
#[pyfunction]
#[pyo3(signature = (positive, negative, triggered, clean, fpr=0.01, random_directions=1000, shuffles=100, l2=0.01, iterations=300, seed=0))]
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
    l2: f64,
    iterations: usize,
    seed: u64,
) -> PyResult<Py<PyAny>> {
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
    let settings = ProbeSettings {
        fpr,
        random_directions,
        shuffles,
        l2,
        iterations,
        seed,
        layer: None,
        method: ProbeMethod::DifferenceOfMeans,
    };
    settings.validate(n_layers).map_err(lm_err)?;
    let layers = py.detach(|| -> Result<Vec<_>, E> {
        (0..n_layers)
            .map(|l| {
                let r = LayerResiduals {
                    positive: &pos[l],
                    negative: &neg[l],
                    triggered: &trig[l],
                    clean: &clean[l],
                };
                r.check()
                    .map_err(|e| E::InvalidArgument(format!("layer {l}: {e}")))?;
                let (figures, [(direction, _), _]) = probe_layer(&r, &settings, l);
                Ok(serde_json::json!({"figures": figures, "direction": direction}))
            })
            .collect()
    });
    let layers = layers.map_err(|e| ActivationsError::new_err(e.to_string()))?;
    let text = serde_json::to_string(&layers)
        .map_err(|e| LmError::new_err(format!("cannot encode the figures: {e}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("LmError", py.get_type::<LmError>())?;
    m.add("ModelFileError", py.get_type::<ModelFileError>())?;
    m.add(
        "UnsupportedModelError",
        py.get_type::<UnsupportedModelError>(),
    )?;
    m.add("ModelConfigError", py.get_type::<ModelConfigError>())?;
    m.add("TokenizerError", py.get_type::<TokenizerError>())?;
    m.add("ContextLengthError", py.get_type::<ContextLengthError>())?;
    m.add("HookError", py.get_type::<HookError>())?;
    m.add("ActivationsError", py.get_type::<ActivationsError>())?;
    m.add_class::<LanguageModel>()?;
    m.add_function(wrap_pyfunction!(lm_write_tiny_model, m)?)?;
    m.add_function(wrap_pyfunction!(lm_probe_activations, m)?)?;
    Ok(())
}
