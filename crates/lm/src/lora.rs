//! Low-rank adapters (LoRA, Hu et al. 2021) on a block's projections: a frozen weight `W` gains
//! `ΔW = (alpha / r) B A` with `A: [r, in]`, `B: [out, r]`, so that
//!
//! ```text
//! y = x W^T + (alpha / r) (x A^T) B^T
//! ```
//!
//! The quantized base weights are never touched; the adapter is added at inference by
//! [`LoraPair::apply`]. Adapters are saved and loaded in the layout Hugging Face PEFT uses (a folder
//! with `adapter_model.safetensors` and `adapter_config.json`, tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`), so a Python user loads one
//! with `peft.PeftModel.from_pretrained`. PEFT's rows are Hugging Face's: for a GGUF Llama, whose q
//! and k rows llama.cpp's converter permuted (see [`crate::config::RopeLayout`]), `B`'s q and k rows
//! are permuted back when saved and forth when loaded.

use crate::config::{Config, RopeLayout};
use crate::error::{io_error, LmError, Result};
use crate::generate::SplitMix64;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The projections of a Llama block an adapter can target, named as Hugging Face and PEFT name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Projection {
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "v_proj")]
    V,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "down_proj")]
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// PEFT's `target_modules` name.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Q => "q_proj",
            Projection::K => "k_proj",
            Projection::V => "v_proj",
            Projection::O => "o_proj",
            Projection::Gate => "gate_proj",
            Projection::Up => "up_proj",
            Projection::Down => "down_proj",
        }
    }

    pub fn parse(name: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The module's path inside a Hugging Face Llama layer.
    fn module(self) -> &'static str {
        match self {
            Projection::Q => "self_attn.q_proj",
            Projection::K => "self_attn.k_proj",
            Projection::V => "self_attn.v_proj",
            Projection::O => "self_attn.o_proj",
            Projection::Gate => "mlp.gate_proj",
            Projection::Up => "mlp.up_proj",
            Projection::Down => "mlp.down_proj",
        }
    }

    /// `(out, in)` of the projection's weight in a model of configuration `c`.
    pub fn shape(self, c: &Config) -> (usize, usize) {
        let (d, q, kv) = (c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        match self {
            Projection::Q => (q, d),
            Projection::K | Projection::V => (kv, d),
            Projection::O => (d, q),
            Projection::Gate | Projection::Up => (c.d_mlp, d),
            Projection::Down => (d, c.d_mlp),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An adapter's shape: rank `r`, scale `alpha / r`, and the projections it adapts in every block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<Projection>,
}

impl Default for LoraConfig {
    /// Rank 8, alpha 16, every projection of every block.
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: Projection::ALL.to_vec(),
        }
    }
}

/// The largest rank accepted: far above what an adapter needs, low enough that a typo cannot ask
/// for gigabytes.
pub const MAX_RANK: usize = 256;

impl LoraConfig {
    /// `alpha / r`, the factor on `B A`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 || self.rank > MAX_RANK {
            return Err(LmError::InvalidArgument(format!(
                "the LoRA rank must be in 1..={MAX_RANK} (got {})",
                self.rank
            )));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(LmError::InvalidArgument(format!(
                "the LoRA alpha must be positive and finite (got {})",
                self.alpha
            )));
        }
        if self.targets.is_empty() {
            return Err(LmError::InvalidArgument(
                "the adapter targets no projection".into(),
            ));
        }
        Ok(())
    }
}

/// The factors of one adapted projection: `A: [rank, inputs]`, `B: [outputs, rank]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub rank: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl LoraPair {
    /// `y += scale (x A^T) B^T` for `rows` rows of `x` (`[rows, inputs]`) and `y` (`[rows, outputs]`).
    pub fn apply(&self, x: &[f32], rows: usize, y: &mut [f32], scale: f32) -> Result<()> {
        let low = matmul(x, &self.a, rows, self.inputs, self.rank, Transpose::Second)?;
        let delta = matmul(
            &low,
            &self.b,
            rows,
            self.rank,
            self.outputs,
            Transpose::Second,
        )?;
        y.iter_mut()
            .zip(&delta)
            .for_each(|(yi, di)| *yi += scale * di);
        Ok(())
    }
}

/// Which operand of [`matmul`] is stored transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transpose {
    /// `a [m, k] b [k, n]`
    Neither,
    /// `a^T b` with `a` stored `[k, m]`
    First,
    /// `a b^T` with `b` stored `[n, k]`
    Second,
}

/// `[m, n]` products of row-major slices (the low-rank and attention products of the adapter and
/// trainer). Small products run in a plain loop (candle's per-call cost dominates a decoding
/// step's rank-8 products); larger ones in candle's GEMM, which splits rows and columns across
/// threads, never the sum, so the result does not depend on the thread count.
pub(crate) fn matmul(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    transpose: Transpose,
) -> Result<Vec<f32>> {
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    if m * k * n <= 1 << 15 {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for l in 0..k {
                    let (x, y) = match transpose {
                        Transpose::Neither => (a[i * k + l], b[l * n + j]),
                        Transpose::First => (a[l * m + i], b[l * n + j]),
                        Transpose::Second => (a[i * k + l], b[j * k + l]),
                    };
                    s += x * y;
                }
                out[i * n + j] = s;
            }
        }
        return Ok(out);
    }
    use candle_core::{Device, Tensor};
    let cpu = &Device::Cpu;
    let (ta, tb) = match transpose {
        Transpose::Neither => (
            Tensor::from_slice(a, (m, k), cpu)?,
            Tensor::from_slice(b, (k, n), cpu)?,
        ),
        Transpose::First => (
            Tensor::from_slice(a, (k, m), cpu)?.t()?,
            Tensor::from_slice(b, (k, n), cpu)?,
        ),
        Transpose::Second => (
            Tensor::from_slice(a, (m, k), cpu)?,
            Tensor::from_slice(b, (n, k), cpu)?.t()?,
        ),
    };
    Ok(ta.matmul(&tb)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A LoRA adapter for every block of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    pub config: LoraConfig,
    /// The base model's name or path (`base_model_name_or_path` in PEFT's config).
    pub base_model: String,
    pub n_layers: usize,
    /// `layer * 7 + projection`; `None` where the projection is not a target.
    pairs: Vec<Option<LoraPair>>,
}

/// The adapter's weights file and configuration file in its folder, as PEFT names them.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// PEFT's `adapter_config.json`, the fields this crate writes and reads.
#[derive(Debug, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    task_type: Option<String>,
    r: usize,
    lora_alpha: f32,
    target_modules: Vec<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    lora_dropout: f32,
    #[serde(default = "bias_none")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    inference_mode: bool,
}

fn bias_none() -> String {
    "none".into()
}

fn tensor_name(layer: usize, p: Projection, factor: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{factor}.weight",
        p.module()
    )
}

/// Reorders a projection's rows head by head between Hugging Face's rotary layout (each head's
/// first half rotated with its second) and llama.cpp's interleaved one (pairs adjacent), as
/// llama.cpp's converter does for q and k: `to_interleaved` maps Hugging Face rows to GGUF rows,
/// otherwise back.
pub(crate) fn permute_rope_rows(
    data: &[f32],
    heads: usize,
    cols: usize,
    to_interleaved: bool,
) -> Vec<f32> {
    let rows = data.len() / cols;
    let hd = rows / heads;
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let halves = h * hd + j * hd / 2 + i;
                let interleaved = h * hd + 2 * i + j;
                let (src, dst) = if to_interleaved {
                    (halves, interleaved)
                } else {
                    (interleaved, halves)
                };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The heads whose rows a projection's output interleaves for rotary embeddings (q and k), if any.
pub(crate) fn rope_heads(p: Projection, c: &Config) -> Option<usize> {
    match (c.rope_layout, p) {
        (RopeLayout::Interleaved, Projection::Q) => Some(c.n_heads),
        (RopeLayout::Interleaved, Projection::K) => Some(c.n_kv_heads),
        _ => None,
    }
}

impl LoraAdapter {
    /// A fresh adapter as PEFT initializes one: `A` uniform in `±1/sqrt(in)` (Kaiming-uniform with
    /// `a = sqrt(5)`) from `seed`, `B = 0`, so that the adapted model starts equal to the base.
    pub fn new(
        model: &Config,
        config: LoraConfig,
        base_model: &str,
        seed: u64,
    ) -> Result<LoraAdapter> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let mut pairs = Vec::with_capacity(model.n_layers * 7);
        for _ in 0..model.n_layers {
            for p in Projection::ALL {
                if !config.targets.contains(&p) {
                    pairs.push(None);
                    continue;
                }
                let (outputs, inputs) = p.shape(model);
                let bound = 1.0 / (inputs as f64).sqrt();
                let a = (0..config.rank * inputs)
                    .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                    .collect();
                pairs.push(Some(LoraPair {
                    a,
                    b: vec![0.0; outputs * config.rank],
                    rank: config.rank,
                    inputs,
                    outputs,
                }));
            }
        }
        Ok(LoraAdapter {
            config,
            base_model: base_model.to_string(),
            n_layers: model.n_layers,
            pairs,
        })
    }

    /// Fills every `B` with uniform values in `±bound` from `seed`: an adapter whose effect is not
    /// zero (tests of the adapted forward pass and of its gradients start from one).
    pub fn randomize_b(&mut self, seed: u64, bound: f32) {
        let mut rng = SplitMix64::new(seed);
        for pair in self.pairs.iter_mut().flatten() {
            for b in pair.b.iter_mut() {
                *b = ((2.0 * rng.uniform() - 1.0) * bound as f64) as f32;
            }
        }
    }

    pub fn get(&self, layer: usize, p: Projection) -> Option<&LoraPair> {
        self.pairs.get(layer * 7 + p.index())?.as_ref()
    }

    pub fn get_mut(&mut self, layer: usize, p: Projection) -> Option<&mut LoraPair> {
        self.pairs.get_mut(layer * 7 + p.index())?.as_mut()
    }

    /// The adapted projections in a fixed order (layer, then projection): the parameter order of
    /// the optimizer's state.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, Projection, &LoraPair)> {
        self.pairs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|pair| (i / 7, Projection::ALL[i % 7], pair)))
    }

    pub fn pairs_mut(&mut self) -> impl Iterator<Item = &mut LoraPair> {
        self.pairs.iter_mut().flatten()
    }

    /// Trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.pairs().map(|(_, _, p)| p.a.len() + p.b.len()).sum()
    }

    /// Checks the adapter's shapes against a model's configuration.
    pub fn check(&self, model: &Config) -> Result<()> {
        if self.n_layers != model.n_layers {
            return Err(LmError::ShapeMismatch {
                tensor: "LoRA adapter (layers)".into(),
                expected: vec![model.n_layers],
                found: vec![self.n_layers],
            });
        }
        for (layer, p, pair) in self.pairs() {
            let (outputs, inputs) = p.shape(model);
            if (pair.outputs, pair.inputs) != (outputs, inputs) || pair.rank != self.config.rank {
                return Err(LmError::ShapeMismatch {
                    tensor: tensor_name(layer, p, 'B'),
                    expected: vec![outputs, self.config.rank, inputs],
                    found: vec![pair.outputs, pair.rank, pair.inputs],
                });
            }
        }
        Ok(())
    }

    /// Writes the adapter as the folder `dir` in PEFT's layout (rows in Hugging Face's order for
    /// `model`'s rotary layout). The folder is filled beside its destination and renamed into
    /// place, so `dir` is either the old adapter or the whole new one.
    pub fn save(&self, dir: &Path, model: &Config) -> Result<()> {
        self.check(model)?;
        let weights = self.to_safetensors(model)?;
        let config = self.peft_config_json()?;
        write_folder_atomically(dir, |tmp| {
            write_file(&tmp.join(ADAPTER_WEIGHTS), &weights)?;
            write_file(&tmp.join(ADAPTER_CONFIG), config.as_bytes())
        })
    }

    fn peft_config_json(&self) -> Result<String> {
        let config = PeftConfig {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r: self.config.rank,
            lora_alpha: self.config.alpha,
            target_modules: self
                .config
                .targets
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            base_model_name_or_path: Some(self.base_model.clone()),
            lora_dropout: 0.0,
            bias: bias_none(),
            fan_in_fan_out: false,
            inference_mode: true,
        };
        serde_json::to_string_pretty(&config)
            .map_err(|e| LmError::InvalidArgument(format!("adapter config: {e}")))
    }

    /// The adapter's tensors as safetensors bytes (F32), in Hugging Face's row order.
    pub(crate) fn to_safetensors(&self, model: &Config) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (layer, p, pair) in self.pairs() {
            let b = match rope_heads(p, model) {
                Some(heads) => permute_rope_rows(&pair.b, heads, pair.rank, false),
                None => pair.b.clone(),
            };
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            tensors.push((
                tensor_name(layer, p, 'A'),
                vec![pair.rank, pair.inputs],
                bytes(&pair.a),
            ));
            tensors.push((
                tensor_name(layer, p, 'B'),
                vec![pair.outputs, pair.rank],
                bytes(&b),
            ));
        }
        serialize_f32(&tensors)
    }

    /// Reads an adapter folder written here or by PEFT, for `model`. Shapes that do not fit the
    /// model, a rank other than the configuration's, missing or unknown tensors and corrupt files
    /// are errors naming the problem.
    pub fn load(dir: &Path, model: &Config) -> Result<LoraAdapter> {
        let config_path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
        let bad = |reason: String| LmError::BadConfig {
            path: config_path.clone(),
            reason,
        };
        let peft: PeftConfig = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a PEFT adapter configuration: {e}")))?;
        if peft.peft_type != "LORA" {
            return Err(bad(format!(
                "peft_type is `{}`; only LORA adapters are supported",
                peft.peft_type
            )));
        }
        if peft.bias != "none" || peft.fan_in_fan_out {
            return Err(bad(
                "adapters with trained biases or fan_in_fan_out weights are not supported".into(),
            ));
        }
        let mut targets = Vec::new();
        for name in &peft.target_modules {
            let p = Projection::parse(name).ok_or_else(|| {
                bad(format!(
                    "unknown target module `{name}` (supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
                ))
            })?;
            if !targets.contains(&p) {
                targets.push(p);
            }
        }
        targets.sort();
        let config = LoraConfig {
            rank: peft.r,
            alpha: peft.lora_alpha,
            targets,
        };
        config.validate().map_err(|e| bad(e.to_string()))?;

        let weights_path = dir.join(ADAPTER_WEIGHTS);
        let bytes = std::fs::read(&weights_path).map_err(io_error(&weights_path))?;
        let corrupt = |reason: String| LmError::CorruptSafetensors {
            path: weights_path.clone(),
            reason,
        };
        let file =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut seen = 0;
        let mut pairs = Vec::with_capacity(model.n_layers * 7);
        for layer in 0..model.n_layers {
            for p in Projection::ALL {
                if !config.targets.contains(&p) {
                    pairs.push(None);
                    continue;
                }
                let (outputs, inputs) = p.shape(model);
                let read = |factor: char, shape: [usize; 2]| -> Result<Vec<f32>> {
                    let name = tensor_name(layer, p, factor);
                    let view = file.tensor(&name).map_err(|_| LmError::MissingTensor {
                        tensor: format!("{name} (in {})", weights_path.display()),
                    })?;
                    if view.shape() != shape {
                        return Err(LmError::ShapeMismatch {
                            tensor: name,
                            expected: shape.to_vec(),
                            found: view.shape().to_vec(),
                        });
                    }
                    let values = to_f32(view.dtype(), view.data())
                        .ok_or_else(|| corrupt(format!("`{name}` has type {:?}", view.dtype())))?;
                    if values.iter().any(|v| !v.is_finite()) {
                        return Err(corrupt(format!("`{name}` holds a NaN or infinite value")));
                    }
                    Ok(values)
                };
                let a = read('A', [config.rank, inputs])?;
                let b = read('B', [outputs, config.rank])?;
                let b = match rope_heads(p, model) {
                    Some(heads) => permute_rope_rows(&b, heads, config.rank, true),
                    None => b,
                };
                seen += 2;
                pairs.push(Some(LoraPair {
                    a,
                    b,
                    rank: config.rank,
                    inputs,
                    outputs,
                }));
            }
        }
        if file.len() != seen {
            let expected: std::collections::HashSet<String> = (0..model.n_layers)
                .flat_map(|l| {
                    config
                        .targets
                        .iter()
                        .flat_map(move |&p| [tensor_name(l, p, 'A'), tensor_name(l, p, 'B')])
                })
                .collect();
            let extra = file
                .names()
                .into_iter()
                .find(|name| !expected.contains(*name))
                .map(|name| name.to_string())
                .unwrap_or_default();
            return Err(LmError::ShapeMismatch {
                tensor: format!(
                    "{}: `{extra}` is not a tensor of a rank-{} adapter of {} layers",
                    weights_path.display(),
                    config.rank,
                    model.n_layers
                ),
                expected: vec![seen],
                found: vec![file.len()],
            });
        }
        Ok(LoraAdapter {
            config,
            base_model: peft.base_model_name_or_path.unwrap_or_default(),
            n_layers: model.n_layers,
            pairs,
        })
    }
}

/// Values of an F32, F16 or BF16 tensor (PEFT saves in the model's dtype).
fn to_f32(dtype: safetensors::Dtype, data: &[u8]) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    Some(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Safetensors bytes of named F32 tensors (shape, little-endian bytes).
pub(crate) fn serialize_f32(tensors: &[(String, Vec<usize>, Vec<u8>)]) -> Result<Vec<u8>> {
    let invalid = |e: safetensors::SafeTensorError| LmError::InvalidArgument(e.to_string());
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(invalid)
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, None).map_err(invalid)
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io_error(path))?;
    f.write_all(bytes).map_err(io_error(path))?;
    f.sync_all().map_err(io_error(path))
}

/// Writes the folder `dir` as one unit: `fill` writes into a new folder beside it, which then
/// replaces `dir` (the old one is moved aside and removed). A failure leaves `dir` as it was; a
/// file at `dir` is refused, before `fill` runs.
pub(crate) fn write_folder_atomically(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    refuse_file(dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            LmError::InvalidArgument(format!("{} is not a folder name", dir.display()))
        })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.{pid}.partial"));
    let old = parent.join(format!(".{name}.{pid}.old"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io_error(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let existed = dir.exists();
    if existed {
        std::fs::rename(dir, &old).map_err(io_error(dir))?;
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if existed {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io_error(dir)(e));
    }
    if existed {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// An error when `dir` exists and is not a folder (a folder write would replace a file).
pub(crate) fn refuse_file(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(LmError::InvalidArgument(format!(
            "{} is a file, not a folder: give a folder to write",
            dir.display()
        )));
    }
    Ok(())
}
