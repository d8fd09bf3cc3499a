//! `mesascope.lm`: language models (GGUF files, Hugging Face folders) from Python, on the
//! `mesascope-lm` crate. Each kind of bad input raises its own exception class, all subclasses of
//! `LmError` (itself a `ValueError`).

use mesascope_lm::testing::{write_tiny_model, TinyFormat};
use mesascope_lm::{GenerateOptions, Hooks, LmError as E, Model, Positions};
use numpy::{PyArray1, PyArrayMethods};
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
    ContrastPairsError,
    LmError,
    "Contrast pairs that cannot be used: a malformed, empty or one-sided pair file or list."
);
create_exception!(
    _core,
    PromptSetError,
    LmError,
    "Prompts that cannot be used: an evaluation set that is malformed or one-sided, no prompts, a candidate or trigger that tokenizes to nothing."
);
create_exception!(
    _core,
    ProbeFileError,
    LmError,
    "A probe file that is not one, or was fitted on another model, adapter, layer or width."
);
create_exception!(
    _core,
    AdapterError,
    LmError,
    "A LoRA adapter folder that is missing, corrupt, or made for another model or rank."
);
create_exception!(
    _core,
    ParameterError,
    LmError,
    "A setting out of its range: a layer the model lacks, a false-positive rate outside [0, 1), a count of zero, a budget too small."
);
create_exception!(
    _core,
    HookError,
    LmError,
    "A hook point that does not exist, or a hook vector of the wrong width."
);

pub(crate) fn lm_err(e: E) -> PyErr {
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

/// A loaded language model (see `mesascope.lm.load`), with the LoRA adapter folder it runs with.
#[pyclass(module = "mesascope._core", frozen, subclass)]
pub struct LanguageModel {
    pub(crate) model: Model,
    pub(crate) adapter_dir: Option<PathBuf>,
    /// Hashed once: the monitor checks a probe against it at every call.
    fingerprint: std::sync::OnceLock<mesascope_lm::fingerprint::ModelFingerprint>,
}

impl LanguageModel {
    pub(crate) fn fingerprint(&self) -> PyResult<&mesascope_lm::fingerprint::ModelFingerprint> {
        if let Some(f) = self.fingerprint.get() {
            return Ok(f);
        }
        let f = mesascope_lm::fingerprint::ModelFingerprint::of(&self.model).map_err(lm_err)?;
        Ok(self.fingerprint.get_or_init(|| f))
    }
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
    #[pyo3(signature = (path, adapter=None, expand_weights=false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        adapter: Option<PathBuf>,
        expand_weights: bool,
    ) -> PyResult<Self> {
        let mut model = py.detach(|| Model::load(&path)).map_err(lm_err)?;
        if let Some(dir) = &adapter {
            py.detach(|| model.load_adapter(dir)).map_err(|e| match e {
                E::ContextOverflow { .. } => lm_err(e),
                other => AdapterError::new_err(other.to_string()),
            })?;
        }
        if expand_weights {
            py.detach(|| model.expand_weights()).map_err(lm_err)?;
        }
        Ok(LanguageModel {
            model,
            adapter_dir: adapter,
            fingerprint: std::sync::OnceLock::new(),
        })
    }

    /// The adapter folder the model runs with, or None.
    #[getter]
    fn adapter_path(&self) -> Option<String> {
        self.adapter_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned())
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

    /// Writes the model with its adapter folded into the weights (`W + (alpha/r) B A` for every
    /// adapted projection; without an adapter, the model as it is) as the Hugging Face folder
    /// `path`: config.json, model.safetensors (`dtype` "f32" or "bf16"), tokenizer.json,
    /// tokenizer_config.json (with the chat template) and generation_config.json. It loads with
    /// `mesascope.lm.load(path)` and transformers' `AutoModelForCausalLM.from_pretrained(path)`,
    /// no adapter needed. Written beside `path` and renamed into place: a previous export there
    /// is replaced as a whole; a file, or a folder holding other files, is refused (`LmError`).
    /// Returns what was written: `dir`, `dtype`, `tensors`, `merged_projections`,
    /// `weight_bytes`, `total_bytes`.
    #[pyo3(signature = (path, dtype="f32"))]
    fn save_merged(&self, py: Python<'_>, path: PathBuf, dtype: &str) -> PyResult<Py<PyAny>> {
        let dtype = mesascope_lm::MergedDtype::parse(dtype).ok_or_else(|| {
            LmError::new_err(format!("dtype must be \"f32\" or \"bf16\", not {dtype:?}"))
        })?;
        let export = py
            .detach(|| self.model.save_merged(&path, dtype))
            .map_err(|e| match e {
                E::Io { .. } => crate::MesascopeIOError::new_err(e.to_string()),
                other => lm_err(other),
            })?;
        let text =
            serde_json::to_string(&export).map_err(|e| PyValueError::new_err(e.to_string()))?;
        crate::json_to_py(py, &text)
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
    m.add("ContrastPairsError", py.get_type::<ContrastPairsError>())?;
    m.add("PromptSetError", py.get_type::<PromptSetError>())?;
    m.add("ProbeFileError", py.get_type::<ProbeFileError>())?;
    m.add("AdapterError", py.get_type::<AdapterError>())?;
    m.add("ParameterError", py.get_type::<ParameterError>())?;
    m.add_class::<LanguageModel>()?;
    m.add_function(wrap_pyfunction!(lm_write_tiny_model, m)?)?;
    crate::lm_detect::register(m)?;
    Ok(())
}
