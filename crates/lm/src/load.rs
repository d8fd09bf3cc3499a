//! Reading a checkpoint: a GGUF file (weights kept in their quantized types) or a Hugging Face
//! folder (`config.json`, `model.safetensors` or its shards, `tokenizer.json`). Every tensor's shape
//! is checked against the configuration before the model is built.

use crate::config::{llama3_freq_factors, Config, RopeLayout, SUPPORTED_ARCHITECTURES};
use crate::error::{candle_message, io_error, LmError, Result};
use crate::model::{Block, Linear, Matrix, Weights};
use crate::quant::{BlockType, QuantMatrix};
use crate::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a loader hands to the model: shape, weights, tokenizer, and a summary of the storage.
pub(crate) struct Loaded {
    pub config: Config,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    pub format: &'static str,
    /// Tensor storage types and how many tensors use each.
    pub storage_types: BTreeMap<String, usize>,
    pub weight_bytes: usize,
}

/// A tensor in the checkpoint's own storage type (quantized blocks, or plain floats).
enum Stored {
    /// Q4_1, Q8_0, F16 or BF16, as the file stores them.
    Blocks(QuantMatrix),
    Quantized(QTensor),
    Dense(Tensor),
}

impl Stored {
    fn dims(&self) -> Vec<usize> {
        match self {
            Stored::Blocks(m) => vec![m.rows, m.cols],
            Stored::Quantized(q) => q.shape().dims().to_vec(),
            Stored::Dense(t) => t.dims().to_vec(),
        }
    }
    fn into_f32(self) -> Result<Tensor> {
        Ok(match self {
            Stored::Blocks(m) => {
                let mut data = vec![0f32; m.rows * m.cols];
                for (r, row) in data.chunks_exact_mut(m.cols).enumerate() {
                    m.dequantize_row(r, row);
                }
                Tensor::from_vec(data, (m.rows, m.cols), &Device::Cpu)?
            }
            Stored::Quantized(q) => q.dequantize(&Device::Cpu)?,
            Stored::Dense(t) => t.to_dtype(DType::F32)?,
        })
    }
    fn into_matrix(self) -> Result<Matrix> {
        Ok(match self {
            Stored::Blocks(m) => Matrix::Blocks(m),
            Stored::Quantized(q) => Matrix::Candle(QMatMul::from_arc(Arc::new(q))?),
            Stored::Dense(t) => Matrix::Candle(QMatMul::Tensor(t.to_dtype(DType::F32)?)),
        })
    }
}

/// The tensors of a checkpoint by the roles the model gives them.
trait Checkpoint {
    /// The tensor's name in this format.
    fn name(&self, role: Role) -> String;
    fn contains(&self, name: &str) -> bool;
    fn read(&mut self, name: &str) -> Result<Stored>;
}

/// What a tensor is to the model (its name differs by format).
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Embedding,
    FinalNorm,
    Unembedding,
    AttnNorm(usize),
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    QBias(usize),
    KBias(usize),
    VBias(usize),
    MlpNorm(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
}

fn read_checked(ckpt: &mut dyn Checkpoint, role: Role, expected: &[usize]) -> Result<Stored> {
    let name = ckpt.name(role);
    if !ckpt.contains(&name) {
        return Err(LmError::MissingTensor { tensor: name });
    }
    let t = ckpt.read(&name)?;
    if t.dims() != expected {
        return Err(LmError::ShapeMismatch {
            tensor: name,
            expected: expected.to_vec(),
            found: t.dims(),
        });
    }
    Ok(t)
}

fn build_weights(c: &Config, ckpt: &mut dyn Checkpoint) -> Result<Weights> {
    let (d, hd) = (c.d_model, c.head_dim);
    let (q_out, kv_out) = (c.n_heads * hd, c.n_kv_heads * hd);
    let vector = |ckpt: &mut dyn Checkpoint, role, n| -> Result<Vec<f32>> {
        Ok(read_checked(ckpt, role, &[n])?
            .into_f32()?
            .to_vec1::<f32>()?)
    };
    let linear = |ckpt: &mut dyn Checkpoint,
                  role,
                  bias: Option<Role>,
                  out: usize,
                  inp: usize|
     -> Result<Linear> {
        let weight = read_checked(ckpt, role, &[out, inp])?.into_matrix()?;
        let bias = match bias {
            Some(b) => Some(
                read_checked(ckpt, b, &[out])?
                    .into_f32()?
                    .to_vec1::<f32>()?,
            ),
            None => None,
        };
        Ok(Linear { weight, bias })
    };
    let embedding = Arc::new(
        match read_checked(ckpt, Role::Embedding, &[c.vocab_size, d])? {
            Stored::Blocks(m) => Matrix::Blocks(m),
            // Kept in its blocks even where candle would expand it: only looked-up rows are expanded.
            Stored::Quantized(q) => Matrix::Candle(QMatMul::QTensor(Arc::new(q))),
            Stored::Dense(t) => Matrix::Candle(QMatMul::Tensor(t.to_dtype(DType::F32)?)),
        },
    );
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let bias = |r: Role| c.qkv_bias.then_some(r);
        blocks.push(Block {
            attn_norm: vector(ckpt, Role::AttnNorm(i), d)?,
            q: linear(ckpt, Role::Q(i), bias(Role::QBias(i)), q_out, d)?,
            k: linear(ckpt, Role::K(i), bias(Role::KBias(i)), kv_out, d)?,
            v: linear(ckpt, Role::V(i), bias(Role::VBias(i)), kv_out, d)?,
            o: linear(ckpt, Role::O(i), None, d, q_out)?,
            mlp_norm: vector(ckpt, Role::MlpNorm(i), d)?,
            gate: linear(ckpt, Role::Gate(i), None, c.d_mlp, d)?,
            up: linear(ckpt, Role::Up(i), None, c.d_mlp, d)?,
            down: linear(ckpt, Role::Down(i), None, d, c.d_mlp)?,
        });
    }
    let final_norm = vector(ckpt, Role::FinalNorm, d)?;
    let unembedding = if c.tied_embeddings {
        Arc::clone(&embedding)
    } else {
        Arc::new(linear(ckpt, Role::Unembedding, None, c.vocab_size, d)?.weight)
    };
    Ok(Weights {
        embedding,
        blocks,
        final_norm,
        unembedding,
    })
}

// ---------------------------------------------------------------------------------------------
// GGUF

struct GgufCheckpoint {
    path: PathBuf,
    file_size: u64,
    content: Content,
    reader: std::io::BufReader<std::fs::File>,
}

impl Checkpoint for GgufCheckpoint {
    fn name(&self, role: Role) -> String {
        match role {
            Role::Embedding => "token_embd.weight".into(),
            Role::FinalNorm => "output_norm.weight".into(),
            Role::Unembedding => "output.weight".into(),
            Role::AttnNorm(i) => format!("blk.{i}.attn_norm.weight"),
            Role::Q(i) => format!("blk.{i}.attn_q.weight"),
            Role::K(i) => format!("blk.{i}.attn_k.weight"),
            Role::V(i) => format!("blk.{i}.attn_v.weight"),
            Role::O(i) => format!("blk.{i}.attn_output.weight"),
            Role::QBias(i) => format!("blk.{i}.attn_q.bias"),
            Role::KBias(i) => format!("blk.{i}.attn_k.bias"),
            Role::VBias(i) => format!("blk.{i}.attn_v.bias"),
            Role::MlpNorm(i) => format!("blk.{i}.ffn_norm.weight"),
            Role::Gate(i) => format!("blk.{i}.ffn_gate.weight"),
            Role::Up(i) => format!("blk.{i}.ffn_up.weight"),
            Role::Down(i) => format!("blk.{i}.ffn_down.weight"),
        }
    }
    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    fn read(&mut self, name: &str) -> Result<Stored> {
        let info = &self.content.tensor_infos[name];
        if let Some((kind, rows, cols)) =
            blocks_of(BlockType::of(info.ggml_dtype), info.shape.dims())
        {
            // Read straight into the matrix's own buffer: no second copy of the weights.
            let size = (rows * cols / kind.weights()).saturating_mul(kind.bytes());
            let start = self.content.tensor_data_offset.saturating_add(info.offset);
            let corrupt = |reason: String| LmError::CorruptGguf {
                path: self.path.clone(),
                reason: format!("tensor `{name}`: {reason}"),
            };
            if cols % kind.weights() != 0 || start.saturating_add(size as u64) > self.file_size {
                return Err(corrupt(format!(
                    "{size} bytes at offset {start} do not fit in the file's {} bytes",
                    self.file_size
                )));
            }
            let mut data = vec![0u8; size];
            self.reader
                .seek(SeekFrom::Start(start))
                .map_err(|e| corrupt(e.to_string()))?;
            self.reader
                .read_exact(&mut data)
                .map_err(|e| corrupt(e.to_string()))?;
            let m = QuantMatrix::from_bytes(kind, data, rows, cols)
                .ok_or_else(|| corrupt("inconsistent size".into()))?;
            return Ok(Stored::Blocks(m));
        }
        let corrupt = |e: candle_core::Error| LmError::CorruptGguf {
            path: self.path.clone(),
            reason: format!("tensor `{name}`: {}", candle_message(&e)),
        };
        let q = self
            .content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(corrupt)?;
        Ok(Stored::Quantized(q))
    }
}

/// The block type a 2-D tensor is kept in, with its shape. F16 and BF16 rows that do not fill whole
/// blocks of 32 are left to candle (widened to f32); quantized types always do.
fn blocks_of(kind: Option<BlockType>, dims: &[usize]) -> Option<(BlockType, usize, usize)> {
    match (kind?, dims) {
        (BlockType::F16 | BlockType::BF16, &[_, cols]) if cols % 32 != 0 => None,
        (kind, &[rows, cols]) => Some((kind, rows, cols)),
        _ => None,
    }
}

fn gguf_dtype_name(t: GgmlDType) -> String {
    format!("{t:?}").replace('K', "_K")
}

pub(crate) fn load_gguf(path: &Path) -> Result<Loaded> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let file_size = file.metadata().map_err(io_error(path))?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let content = Content::read(&mut reader).map_err(|e| {
        let reason = candle_message(&e);
        if let Some(id) = reason.strip_prefix("unknown dtype for tensor ") {
            LmError::UnsupportedQuantization {
                tensor: "(a tensor of the file)".into(),
                dtype: format!("ggml type {id}"),
            }
        } else {
            LmError::CorruptGguf {
                path: path.to_path_buf(),
                reason,
            }
        }
    })?;
    let bad = |reason: String| LmError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let meta = |key: &str| content.metadata.get(key);
    let arch = meta("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| bad("no general.architecture".into()))?;
    let rope_layout = match arch.as_str() {
        "llama" | "mistral" => RopeLayout::Interleaved,
        "qwen2" => RopeLayout::Halves,
        _ => {
            return Err(LmError::UnsupportedArchitecture {
                architecture: arch,
                supported: SUPPORTED_ARCHITECTURES.into(),
            })
        }
    };
    let number = |key: &str| -> Option<f64> {
        match meta(&format!("{arch}.{key}"))? {
            Value::U8(x) => Some(*x as f64),
            Value::U16(x) => Some(*x as f64),
            Value::U32(x) => Some(*x as f64),
            Value::U64(x) => Some(*x as f64),
            Value::I32(x) => Some(*x as f64),
            Value::I64(x) => Some(*x as f64),
            Value::F32(x) => Some(*x as f64),
            Value::F64(x) => Some(*x),
            _ => None,
        }
    };
    let required = |key: &str| -> Result<usize> {
        number(key)
            .filter(|x| *x >= 0.0 && x.fract() == 0.0)
            .map(|x| x as usize)
            .ok_or_else(|| bad(format!("missing or invalid metadata {arch}.{key}")))
    };
    let n_heads = required("attention.head_count")?;
    let d_model = required("embedding_length")?;
    let head_dim = number("attention.key_length")
        .or(number("rope.dimension_count"))
        .map(|x| x as usize)
        .unwrap_or(if n_heads > 0 { d_model / n_heads } else { 0 });
    let vocab_size = content
        .tensor_infos
        .get("token_embd.weight")
        .map(|t| t.shape.dims().first().copied().unwrap_or(0))
        .ok_or_else(|| LmError::MissingTensor {
            tensor: "token_embd.weight".into(),
        })?;
    let mut storage_types = BTreeMap::new();
    for info in content.tensor_infos.values() {
        *storage_types
            .entry(gguf_dtype_name(info.ggml_dtype))
            .or_insert(0) += 1;
    }
    let mut config = Config {
        architecture: arch.clone(),
        n_layers: required("block_count")?,
        d_model,
        n_heads,
        n_kv_heads: number("attention.head_count_kv")
            .map(|x| x as usize)
            .unwrap_or(n_heads),
        head_dim,
        d_mlp: required("feed_forward_length")?,
        vocab_size,
        context_length: required("context_length")?,
        rope_theta: number("rope.freq_base").unwrap_or(10_000.0) as f32,
        rope_layout,
        rope_freq_factors: None,
        rms_norm_eps: number("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f32,
        tied_embeddings: !content.tensor_infos.contains_key("output.weight"),
        qkv_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
    };
    let tokenizer = Tokenizer::from_gguf(&content)?;
    let mut ckpt = GgufCheckpoint {
        path: path.to_path_buf(),
        file_size,
        content,
        reader,
    };
    if ckpt.contains("rope_freqs.weight") {
        let factors = ckpt
            .read("rope_freqs.weight")?
            .into_f32()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        config.rope_freq_factors = Some(factors);
    }
    config.check(path)?;
    let weight_bytes = ckpt
        .content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size())
        .sum();
    let weights = build_weights(&config, &mut ckpt)?;
    Ok(Loaded {
        config,
        weights,
        tokenizer,
        format: "gguf",
        storage_types,
        weight_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Hugging Face folder

struct SafetensorsCheckpoint {
    /// Each file's memory map, and which file holds each tensor.
    maps: Vec<(PathBuf, memmap2::Mmap)>,
    location: BTreeMap<String, usize>,
    storage_types: BTreeMap<String, usize>,
    weight_bytes: usize,
}

impl SafetensorsCheckpoint {
    fn open(folder: &Path) -> Result<SafetensorsCheckpoint> {
        let single = folder.join("model.safetensors");
        let index = folder.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(io_error(&index))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| LmError::BadConfig {
                    path: index.clone(),
                    reason: e.to_string(),
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| LmError::BadConfig {
                    path: index.clone(),
                    reason: "no weight_map".into(),
                })?;
            let names: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
            names.into_iter().map(|f| folder.join(f)).collect()
        } else {
            return Err(LmError::MissingTensor {
                tensor: format!(
                    "(no model.safetensors or model.safetensors.index.json in {})",
                    folder.display()
                ),
            });
        };
        let mut ckpt = SafetensorsCheckpoint {
            maps: vec![],
            location: BTreeMap::new(),
            storage_types: BTreeMap::new(),
            weight_bytes: 0,
        };
        for file in files {
            let f = std::fs::File::open(&file).map_err(io_error(&file))?;
            // SAFETY: the map is read only; a file changed underneath would give wrong numbers,
            // as with any reader, not unsoundness in this process's own memory.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io_error(&file))?;
            let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| {
                LmError::CorruptSafetensors {
                    path: file.clone(),
                    reason: e.to_string(),
                }
            })?;
            let i = ckpt.maps.len();
            for (name, view) in st.tensors() {
                *ckpt
                    .storage_types
                    .entry(format!("{:?}", view.dtype()))
                    .or_insert(0) += 1;
                ckpt.weight_bytes += view.data().len();
                ckpt.location.insert(name, i);
            }
            ckpt.maps.push((file, map));
        }
        Ok(ckpt)
    }
}

/// A tensor's name in a Hugging Face Llama checkpoint.
pub(crate) fn hf_name(role: Role) -> String {
    match role {
        Role::Embedding => "model.embed_tokens.weight".into(),
        Role::FinalNorm => "model.norm.weight".into(),
        Role::Unembedding => "lm_head.weight".into(),
        Role::AttnNorm(i) => format!("model.layers.{i}.input_layernorm.weight"),
        Role::Q(i) => format!("model.layers.{i}.self_attn.q_proj.weight"),
        Role::K(i) => format!("model.layers.{i}.self_attn.k_proj.weight"),
        Role::V(i) => format!("model.layers.{i}.self_attn.v_proj.weight"),
        Role::O(i) => format!("model.layers.{i}.self_attn.o_proj.weight"),
        Role::QBias(i) => format!("model.layers.{i}.self_attn.q_proj.bias"),
        Role::KBias(i) => format!("model.layers.{i}.self_attn.k_proj.bias"),
        Role::VBias(i) => format!("model.layers.{i}.self_attn.v_proj.bias"),
        Role::MlpNorm(i) => format!("model.layers.{i}.post_attention_layernorm.weight"),
        Role::Gate(i) => format!("model.layers.{i}.mlp.gate_proj.weight"),
        Role::Up(i) => format!("model.layers.{i}.mlp.up_proj.weight"),
        Role::Down(i) => format!("model.layers.{i}.mlp.down_proj.weight"),
    }
}

impl Checkpoint for SafetensorsCheckpoint {
    fn name(&self, role: Role) -> String {
        hf_name(role)
    }
    fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }
    fn read(&mut self, name: &str) -> Result<Stored> {
        let (file, map) = &self.maps[self.location[name]];
        let corrupt = |reason: String| LmError::CorruptSafetensors {
            path: file.clone(),
            reason,
        };
        let st = safetensors::SafeTensors::deserialize(map).map_err(|e| corrupt(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| corrupt(e.to_string()))?;
        let (dtype, kind) = match view.dtype() {
            safetensors::Dtype::F32 => (DType::F32, None),
            safetensors::Dtype::F16 => (DType::F16, Some(BlockType::F16)),
            safetensors::Dtype::BF16 => (DType::BF16, Some(BlockType::BF16)),
            other => {
                return Err(LmError::UnsupportedQuantization {
                    tensor: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        // Half-precision matrices stay 2 bytes a weight; vectors and f32 become tensors.
        if let Some((kind, rows, cols)) = blocks_of(kind, view.shape()) {
            let m = QuantMatrix::from_bytes(kind, view.data().to_vec(), rows, cols)
                .ok_or_else(|| corrupt(format!("tensor `{name}` has the wrong size")))?;
            return Ok(Stored::Blocks(m));
        }
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)?;
        Ok(Stored::Dense(t))
    }
}

pub(crate) fn load_hf_folder(folder: &Path) -> Result<Loaded> {
    let config_path = folder.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
    let bad = |reason: String| LmError::BadConfig {
        path: config_path.clone(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let arch = v
        .get("model_type")
        .and_then(|x| x.as_str())
        .unwrap_or("")
        .to_string();
    if !["llama", "mistral", "qwen2"].contains(&arch.as_str()) {
        return Err(LmError::UnsupportedArchitecture {
            architecture: if arch.is_empty() {
                "(config.json has no model_type)".into()
            } else {
                arch
            },
            supported: SUPPORTED_ARCHITECTURES.into(),
        });
    }
    let num = |key: &str| v.get(key).and_then(|x| x.as_f64());
    let int = |key: &str| -> Result<usize> {
        v.get(key)
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .ok_or_else(|| bad(format!("missing or invalid `{key}`")))
    };
    let n_heads = int("num_attention_heads")?;
    let d_model = int("hidden_size")?;
    let head_dim = match v.get("head_dim").and_then(|x| x.as_u64()) {
        Some(h) => h as usize,
        None if n_heads > 0 => d_model / n_heads,
        None => 0,
    };
    let rope_theta = num("rope_theta").unwrap_or(10_000.0) as f32;
    let rope_freq_factors = match v.get("rope_scaling").filter(|s| !s.is_null()) {
        None => None,
        Some(s) => {
            let kind = s
                .get("rope_type")
                .or(s.get("type"))
                .and_then(|x| x.as_str())
                .unwrap_or("");
            if kind != "llama3" {
                return Err(bad(format!(
                    "rope_scaling of type `{kind}` is not supported (llama3 is)"
                )));
            }
            let f = |k: &str| {
                s.get(k)
                    .and_then(|x| x.as_f64())
                    .ok_or_else(|| bad(format!("rope_scaling has no `{k}`")))
            };
            Some(llama3_freq_factors(
                head_dim,
                rope_theta,
                f("factor")? as f32,
                f("low_freq_factor")? as f32,
                f("high_freq_factor")? as f32,
                f("original_max_position_embeddings")? as f32,
            ))
        }
    };
    let qkv_bias = arch == "qwen2"
        || v.get("attention_bias")
            .and_then(|x| x.as_bool())
            .unwrap_or(false);
    let config = Config {
        architecture: arch,
        n_layers: int("num_hidden_layers")?,
        d_model,
        n_heads,
        n_kv_heads: v
            .get("num_key_value_heads")
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .unwrap_or(n_heads),
        head_dim,
        d_mlp: int("intermediate_size")?,
        vocab_size: int("vocab_size")?,
        context_length: int("max_position_embeddings")?,
        rope_theta,
        rope_layout: RopeLayout::Halves,
        rope_freq_factors,
        rms_norm_eps: num("rms_norm_eps").unwrap_or(1e-6) as f32,
        tied_embeddings: v
            .get("tie_word_embeddings")
            .and_then(|x| x.as_bool())
            .unwrap_or(false),
        qkv_bias,
    };
    config.check(&config_path)?;

    let tokenizer_path = folder.join("tokenizer.json");
    let tokenizer_json = std::fs::read(&tokenizer_path).map_err(|_| LmError::MissingTokenizer {
        reason: format!("{} does not exist", tokenizer_path.display()),
    })?;
    let tokenizer_config_path = folder.join("tokenizer_config.json");
    let tokenizer_config: Option<serde_json::Value> =
        match std::fs::read_to_string(&tokenizer_config_path) {
            Ok(t) => Some(serde_json::from_str(&t).map_err(|e| LmError::BadConfig {
                path: tokenizer_config_path.clone(),
                reason: e.to_string(),
            })?),
            Err(_) => None,
        };
    let tokenizer = Tokenizer::from_hf_files(&tokenizer_json, tokenizer_config.as_ref(), &v)?;

    let mut ckpt = SafetensorsCheckpoint::open(folder)?;
    let weights = build_weights(&config, &mut ckpt)?;
    Ok(Loaded {
        config,
        weights,
        tokenizer,
        format: "huggingface",
        storage_types: std::mem::take(&mut ckpt.storage_types),
        weight_bytes: ckpt.weight_bytes,
    })
}
