//! The model with its adapter folded into the weights, written as a Hugging Face folder that
//! `transformers` (and [`Model::load`]) reads without PEFT:
//!
//! ```text
//! W' = W + (alpha / r) B A        for every adapted projection
//! ```
//!
//! The folder holds `config.json`, `model.safetensors` (every weight dequantized to F32, or BF16,
//! under Hugging Face's names and in its rotary row order: a GGUF Llama's q and k rows, which
//! llama.cpp's converter interleaved, are permuted back), `tokenizer.json` (the tokenizer the
//! model runs with), `tokenizer_config.json` (special tokens and the chat template's Jinja source)
//! and `generation_config.json`. It is written beside its destination and renamed into place, as
//! adapters are.

use crate::config::Config;
use crate::error::{io_error, LmError, Result};
use crate::load::{hf_name, Role};
use crate::lora::{permute_rope_rows, refuse_file, rope_heads, write_file};
use crate::lora::{write_folder_atomically, Projection};
use crate::model::{Linear, Matrix};
use crate::Model;
use serde::Serialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// The files of a merged export, as Hugging Face names them.
pub const MERGED_CONFIG: &str = "config.json";
pub const MERGED_WEIGHTS: &str = "model.safetensors";
pub const MERGED_TOKENIZER: &str = "tokenizer.json";
pub const MERGED_TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const MERGED_GENERATION_CONFIG: &str = "generation_config.json";
const MERGED_FILES: [&str; 5] = [
    MERGED_CONFIG,
    MERGED_WEIGHTS,
    MERGED_TOKENIZER,
    MERGED_TOKENIZER_CONFIG,
    MERGED_GENERATION_CONFIG,
];

/// The weights' type in `model.safetensors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergedDtype {
    /// 4 bytes a weight: the merged weights exactly as this crate computes with them.
    #[default]
    F32,
    /// 2 bytes a weight, rounded to nearest even (half the size, logits move by about 1e-2).
    BF16,
}

impl MergedDtype {
    /// `f32` or `bf16`.
    pub fn parse(name: &str) -> Option<MergedDtype> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(MergedDtype::F32),
            "bf16" | "bfloat16" => Some(MergedDtype::BF16),
            _ => None,
        }
    }

    /// `torch_dtype` in `config.json`.
    pub fn torch_name(self) -> &'static str {
        match self {
            MergedDtype::F32 => "float32",
            MergedDtype::BF16 => "bfloat16",
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        match self {
            MergedDtype::F32 => safetensors::Dtype::F32,
            MergedDtype::BF16 => safetensors::Dtype::BF16,
        }
    }

    fn size(self) -> usize {
        match self {
            MergedDtype::F32 => 4,
            MergedDtype::BF16 => 2,
        }
    }

    fn bytes(self, values: &[f32]) -> Vec<u8> {
        match self {
            MergedDtype::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            MergedDtype::BF16 => values
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
        }
    }
}

/// What [`Model::save_merged`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MergedExport {
    pub dir: PathBuf,
    pub dtype: MergedDtype,
    /// Tensors in `model.safetensors`.
    pub tensors: usize,
    /// Projections whose adapter update was folded in (0 without an adapter).
    pub merged_projections: usize,
    /// Bytes of `model.safetensors`.
    pub weight_bytes: u64,
    /// Bytes of the whole folder.
    pub total_bytes: u64,
}

/// Checks that `dir` can receive a merged export before any work: a file there is refused, and
/// so is a folder holding anything but a previous export's files (a folder of the export's files
/// is replaced as a whole, as adapter folders are).
pub fn check_merged_destination(dir: &Path) -> Result<()> {
    refuse_file(dir)?;
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    for entry in entries {
        let name = entry.map_err(io_error(dir))?.file_name();
        if !MERGED_FILES.iter().any(|f| name == *f) {
            return Err(LmError::InvalidArgument(format!(
                "{} holds {:?}, which is not a file of a merged model ({}): give a new or empty folder, or a previous merged export to replace",
                dir.display(),
                name,
                MERGED_FILES.join(", ")
            )));
        }
    }
    Ok(())
}

/// One tensor of `model.safetensors`, computed when the writer asks for its bytes, so that only
/// one merged matrix is in memory at a time. A failure is kept in `failure` (the writer's
/// interface has no error) and the export is abandoned after the write.
struct LazyTensor<'a> {
    name: String,
    shape: Vec<usize>,
    dtype: MergedDtype,
    compute: Box<dyn Fn() -> Result<Vec<f32>> + 'a>,
    failure: &'a RefCell<Option<LmError>>,
}

impl safetensors::View for LazyTensor<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let n: usize = self.shape.iter().product();
        let values = if self.failure.borrow().is_some() {
            Err(None)
        } else {
            match (self.compute)() {
                Ok(v) if v.len() == n => Ok(v),
                Ok(v) => Err(Some(LmError::ShapeMismatch {
                    tensor: self.name.clone(),
                    expected: self.shape.clone(),
                    found: vec![v.len()],
                })),
                Err(e) => Err(Some(e)),
            }
        };
        match values {
            Ok(v) => Cow::Owned(self.dtype.bytes(&v)),
            Err(e) => {
                if let Some(e) = e {
                    *self.failure.borrow_mut() = Some(e);
                }
                Cow::Owned(vec![0u8; self.data_len()])
            }
        }
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

fn projection_roles(layer: usize, p: Projection) -> (Role, Option<Role>) {
    match p {
        Projection::Q => (Role::Q(layer), Some(Role::QBias(layer))),
        Projection::K => (Role::K(layer), Some(Role::KBias(layer))),
        Projection::V => (Role::V(layer), Some(Role::VBias(layer))),
        Projection::O => (Role::O(layer), None),
        Projection::Gate => (Role::Gate(layer), None),
        Projection::Up => (Role::Up(layer), None),
        Projection::Down => (Role::Down(layer), None),
    }
}

/// A number written as its shortest f32 decimal (`1e-5`, not `9.999999747378752e-6`), so that
/// the loader's f32 reads back the same value.
fn json_f32(x: f32) -> serde_json::Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// One id as a number, several as a list, none as null (Hugging Face's forms).
fn json_ids(ids: &[u32]) -> serde_json::Value {
    match ids {
        [] => serde_json::Value::Null,
        [one] => serde_json::json!(one),
        many => serde_json::json!(many),
    }
}

fn pretty(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| LmError::InvalidArgument(format!("JSON: {e}")))
}

impl Model {
    /// Why this model cannot be written as a Hugging Face folder, if it cannot.
    fn export_obstacle(&self) -> Option<String> {
        let c = self.config();
        if c.rope_freq_factors.is_some() {
            return Some(
                "its rotary embedding has per-frequency scaling factors (Llama 3.1's rope_freqs), which config.json's rope_scaling cannot be rebuilt from".into(),
            );
        }
        if !["llama", "mistral", "qwen2"].contains(&c.architecture.as_str()) {
            return Some(format!(
                "its architecture `{}` has no Hugging Face class here",
                c.architecture
            ));
        }
        None
    }

    /// Writes the model with its current adapter folded into the weights (`W + (alpha/r) B A`
    /// for every adapted projection; without an adapter, the model as it is) as the Hugging Face
    /// folder `dir`: `config.json`, `model.safetensors` (`dtype`), `tokenizer.json`,
    /// `tokenizer_config.json` and `generation_config.json`. The folder loads with
    /// [`Model::load`] and `transformers`' `LlamaForCausalLM`, with no adapter.
    ///
    /// `dir` is written beside its destination and renamed into place; an existing export there
    /// is replaced as a whole. A file at `dir`, a folder holding other files, the source model's
    /// own folder and a model whose configuration Hugging Face cannot express (Llama 3.1's rope
    /// scaling factors) are refused before anything is written.
    pub fn save_merged(&self, dir: &Path, dtype: MergedDtype) -> Result<MergedExport> {
        if let Some(why) = self.export_obstacle() {
            return Err(LmError::InvalidArgument(format!(
                "{} cannot be exported as a Hugging Face folder: {why}",
                self.path.display()
            )));
        }
        check_merged_destination(dir)?;
        if let (Ok(a), Ok(b)) = (dir.canonicalize(), self.path.canonicalize()) {
            if a == b {
                return Err(LmError::InvalidArgument(format!(
                    "{} is the model being exported: write the merged model to another folder",
                    dir.display()
                )));
            }
        }
        let config = pretty(&self.hf_config(dtype))?;
        let tokenizer_json = self.tokenizer_json()?;
        let tokenizer_config = pretty(&self.tokenizer_config())?;
        let generation_config = pretty(&serde_json::json!({
            "bos_token_id": self.tokenizer.declared_bos,
            "eos_token_id": json_ids(&self.tokenizer.eos),
        }))?;

        let failure = RefCell::new(None);
        let mut tensors = self.lazy_tensors(dtype, &failure);
        let count = tensors.len();
        let merged_projections = self.adapter().map_or(0, |a| a.pairs().count());
        // The writer sorts by name; the order of computing does not matter.
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        write_folder_atomically(dir, |tmp| {
            write_file(&tmp.join(MERGED_CONFIG), &config)?;
            write_file(&tmp.join(MERGED_TOKENIZER), &tokenizer_json)?;
            write_file(&tmp.join(MERGED_TOKENIZER_CONFIG), &tokenizer_config)?;
            write_file(&tmp.join(MERGED_GENERATION_CONFIG), &generation_config)?;
            let weights = tmp.join(MERGED_WEIGHTS);
            let metadata = std::collections::HashMap::from([("format".into(), "pt".into())]);
            let named = tensors.into_iter().map(|t| (t.name.clone(), t));
            safetensors::serialize_to_file(named, Some(metadata), &weights).map_err(
                |e| match e {
                    safetensors::SafeTensorError::IoError(io) => io_error(&weights)(io),
                    other => {
                        LmError::InvalidArgument(format!("writing {}: {other}", weights.display()))
                    }
                },
            )?;
            if let Some(e) = failure.borrow_mut().take() {
                return Err(e);
            }
            // The writer's temporary file is private (0600); the export gets the permissions
            // of the other files, which the user's umask set.
            let config_path = tmp.join(MERGED_CONFIG);
            let permissions = std::fs::metadata(&config_path)
                .map_err(io_error(&config_path))?
                .permissions();
            std::fs::set_permissions(&weights, permissions).map_err(io_error(&weights))
        })?;
        let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
        Ok(MergedExport {
            dir: dir.to_path_buf(),
            dtype,
            tensors: count,
            merged_projections,
            weight_bytes: size(MERGED_WEIGHTS),
            total_bytes: MERGED_FILES.iter().map(|f| size(f)).sum(),
        })
    }

    /// Every tensor of the Hugging Face checkpoint, each computed when written.
    fn lazy_tensors<'a>(
        &'a self,
        dtype: MergedDtype,
        failure: &'a RefCell<Option<LmError>>,
    ) -> Vec<LazyTensor<'a>> {
        let c = self.config();
        let w = &self.transformer.weights;
        let mut out: Vec<LazyTensor<'a>> = Vec::new();
        let mut push =
            |role: Role, shape: Vec<usize>, compute: Box<dyn Fn() -> Result<Vec<f32>> + 'a>| {
                out.push(LazyTensor {
                    name: hf_name(role),
                    shape,
                    dtype,
                    compute,
                    failure,
                })
            };
        let vector = |v: &'a Vec<f32>| -> Box<dyn Fn() -> Result<Vec<f32>> + 'a> {
            Box::new(move || Ok(v.clone()))
        };
        push(
            Role::Embedding,
            vec![c.vocab_size, c.d_model],
            Box::new(move || w.embedding.to_f32()),
        );
        if !c.tied_embeddings {
            push(
                Role::Unembedding,
                vec![c.vocab_size, c.d_model],
                Box::new(move || w.unembedding.to_f32()),
            );
        }
        push(Role::FinalNorm, vec![c.d_model], vector(&w.final_norm));
        for (layer, block) in w.blocks.iter().enumerate() {
            push(
                Role::AttnNorm(layer),
                vec![c.d_model],
                vector(&block.attn_norm),
            );
            push(
                Role::MlpNorm(layer),
                vec![c.d_model],
                vector(&block.mlp_norm),
            );
            for p in Projection::ALL {
                let (weight_role, bias_role) = projection_roles(layer, p);
                let (outputs, inputs) = p.shape(c);
                push(
                    weight_role,
                    vec![outputs, inputs],
                    Box::new(move || self.merged_weight(layer, p)),
                );
                let linear: &'a Linear = self.transformer.linear(layer, p);
                if let (Some(role), Some(bias)) = (bias_role, &linear.bias) {
                    push(
                        role,
                        vec![outputs],
                        Box::new(move || Ok(to_hf_rows(c, p, bias.clone(), 1))),
                    );
                }
            }
        }
        out
    }

    /// Block `layer`'s projection `p` as Hugging Face stores it: `W + (alpha/r) B A`, its rows in
    /// Hugging Face's rotary order.
    fn merged_weight(&self, layer: usize, p: Projection) -> Result<Vec<f32>> {
        let c = self.config();
        let (outputs, inputs) = p.shape(c);
        let matrix: &Matrix = &self.transformer.linear(layer, p).weight;
        let mut w = matrix.to_f32()?;
        if w.len() != outputs * inputs {
            return Err(LmError::ShapeMismatch {
                tensor: hf_name(projection_roles(layer, p).0),
                expected: vec![outputs, inputs],
                found: vec![w.len()],
            });
        }
        if let Some(adapter) = self.adapter() {
            if let Some(pair) = adapter.get(layer, p) {
                let delta = crate::lora::matmul(
                    &pair.b,
                    &pair.a,
                    outputs,
                    pair.rank,
                    inputs,
                    crate::lora::Transpose::Neither,
                )?;
                let scale = adapter.config.scale();
                w.iter_mut()
                    .zip(&delta)
                    .for_each(|(wi, di)| *wi += scale * di);
            }
        }
        Ok(to_hf_rows(c, p, w, inputs))
    }

    /// `config.json` for `transformers`' class of the architecture.
    fn hf_config(&self, dtype: MergedDtype) -> serde_json::Value {
        let c = self.config();
        let t = &self.tokenizer;
        let class = match c.architecture.as_str() {
            "mistral" => "MistralForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            _ => "LlamaForCausalLM",
        };
        let mut v = serde_json::json!({
            "architectures": [class],
            "model_type": c.architecture,
            "hidden_size": c.d_model,
            "intermediate_size": c.d_mlp,
            "num_attention_heads": c.n_heads,
            "num_key_value_heads": c.n_kv_heads,
            "num_hidden_layers": c.n_layers,
            "head_dim": c.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": json_f32(c.rms_norm_eps),
            "rope_theta": json_f32(c.rope_theta),
            "rope_scaling": null,
            "vocab_size": c.vocab_size,
            "max_position_embeddings": c.context_length,
            "tie_word_embeddings": c.tied_embeddings,
            "bos_token_id": t.declared_bos,
            "eos_token_id": json_ids(&t.eos),
            "torch_dtype": dtype.torch_name(),
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
        });
        let extra = match c.architecture.as_str() {
            "llama" => serde_json::json!({
                "attention_bias": c.qkv_bias,
                "mlp_bias": false,
                "pretraining_tp": 1,
            }),
            "mistral" => serde_json::json!({ "sliding_window": null }),
            _ => serde_json::json!({ "use_sliding_window": false, "sliding_window": null }),
        };
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    }

    /// The tokenizer the model runs with, as `tokenizer.json`. Where the model prepends a
    /// beginning-of-sequence token and the tokenizer has no post-processor doing it (a GGUF
    /// vocabulary), one is added, so that `transformers` prepends it too (mesascope encodes
    /// without the post-processor and prepends it itself).
    fn tokenizer_json(&self) -> Result<Vec<u8>> {
        let t = &self.tokenizer;
        let tokenizer_err = |e: String| LmError::Tokenizer(e);
        let mut inner = t.inner.clone();
        if let (Some(bos), None) = (t.bos, inner.get_post_processor()) {
            if let Some(text) = t.id_to_token(bos) {
                let template = tokenizers::processors::template::TemplateProcessing::builder()
                    .try_single(format!("{text} $A"))
                    .map_err(tokenizer_err)?
                    .try_pair(format!("{text} $A {text} $B"))
                    .map_err(tokenizer_err)?
                    .special_tokens(vec![(text.clone(), bos)])
                    .build()
                    .map_err(|e| LmError::Tokenizer(e.to_string()))?;
                inner.with_post_processor(Some(template));
            }
        }
        inner
            .to_string(false)
            .map(String::into_bytes)
            .map_err(|e| LmError::Tokenizer(e.to_string()))
    }

    /// `tokenizer_config.json`: the special tokens and the chat template, as `transformers` and
    /// this crate's loader read them.
    fn tokenizer_config(&self) -> serde_json::Value {
        let t = &self.tokenizer;
        let text = |id: Option<u32>| id.and_then(|i| t.id_to_token(i));
        // The end of an assistant turn where the chat format names one in the vocabulary (what
        // chat models' own configurations name), else the first end-of-sequence token.
        let eos = t
            .chat
            .as_ref()
            .and_then(|c| t.token_to_id(c.end_of_turn()))
            .filter(|id| t.eos.contains(id))
            .or(t.eos.first().copied());
        let mut v = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": t.bos.is_some(),
            "add_eos_token": false,
            "bos_token": text(t.declared_bos),
            "eos_token": text(eos),
            "model_max_length": self.config().context_length,
            "clean_up_tokenization_spaces": false,
        });
        if let (Some(source), Some(map)) = (&t.chat_source, v.as_object_mut()) {
            map.insert("chat_template".into(), source.clone().into());
        }
        v
    }
}

/// `rows` (of `cols` each) of projection `p` reordered from the model's rotary layout to Hugging
/// Face's (only q and k of an interleaved GGUF Llama change).
fn to_hf_rows(c: &Config, p: Projection, rows: Vec<f32>, cols: usize) -> Vec<f32> {
    match rope_heads(p, c) {
        Some(heads) => permute_rope_rows(&rows, heads, cols, false),
        None => rows,
    }
}
