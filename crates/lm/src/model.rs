//! The decoder's forward pass, written as the Llama paper's equations:
//!
//! ```text
//! x_0     = E[tokens]
//! a_i     = Attention_i(RMSNorm(x_i))            (blocks.i.attn_out)
//! m_i     = MLP_i(RMSNorm(x_i + a_i))            (blocks.i.mlp_out)
//! x_{i+1} = x_i + a_i + m_i                      (blocks.i.resid_pre = x_i, blocks.i.resid_post = x_{i+1})
//! logits  = W_U RMSNorm(x_L)
//! ```
//!
//! with grouped-query causal attention under rotary position embeddings and a SwiGLU MLP,
//! `MLP(h) = W_down (silu(W_gate h) * W_up h)`. Activations are `[tokens, d_model]` matrices of one
//! sequence; the weight products are `quant.rs`'s (candle's for the rarer block types), the rest is here.

use crate::config::{Config, RopeLayout};
use crate::error::{LmError, Result};
use crate::hooks::{HookPoint, Hooks, Site};
use crate::lora::{LoraAdapter, Projection};
use crate::quant::QuantMatrix;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor};

/// A weight matrix `[out, in]` in its stored type: blocks that `quant.rs` multiplies in f32, or
/// candle's tensors (F32, and the block types `quant.rs` leaves to candle).
pub(crate) enum Matrix {
    Blocks(QuantMatrix),
    Candle(QMatMul),
}

impl Matrix {
    /// `x W^T` for `x` of `rows` rows.
    pub(crate) fn matmul(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        match self {
            Matrix::Blocks(q) => Ok(q.matmul(x, rows)?),
            Matrix::Candle(w) => {
                let cols = x.len() / rows;
                to_rows(&w.forward(&Tensor::from_slice(x, (rows, cols), &Device::Cpu)?)?)
            }
        }
    }

    /// Rows `ids` of the matrix (an embedding lookup).
    pub(crate) fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        match self {
            Matrix::Blocks(q) => {
                let mut out = vec![0f32; ids.len() * q.cols];
                for (row, &id) in out.chunks_exact_mut(q.cols).zip(ids) {
                    q.dequantize_row(id as usize, row);
                }
                Ok(out)
            }
            Matrix::Candle(w) => to_rows(&w.embedding(&Tensor::new(ids, &Device::Cpu)?)?),
        }
    }

    /// The whole matrix as f32, `[out, in]` row-major (quantized blocks expanded).
    pub(crate) fn to_f32(&self) -> Result<Vec<f32>> {
        match self {
            Matrix::Blocks(q) => match q.dense() {
                Some(w) => to_rows(w),
                None => Ok(q.dequantize_all()),
            },
            Matrix::Candle(QMatMul::QTensor(q)) => to_rows(&q.dequantize(&Device::Cpu)?),
            Matrix::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                to_rows(&t.to_dtype(DType::F32)?)
            }
        }
    }

    pub fn memory_bytes(&self) -> usize {
        match self {
            Matrix::Blocks(q) => q.memory_bytes(),
            Matrix::Candle(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Matrix::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
        }
    }
}

/// `y = x W^T + b`.
pub(crate) struct Linear {
    pub weight: Matrix,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut y = self.weight.matmul(x, rows)?;
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(yi, bi)| *yi += bi);
            }
        }
        Ok(y)
    }
}

pub(crate) struct Block {
    pub attn_norm: Vec<f32>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp_norm: Vec<f32>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

pub(crate) struct Weights {
    /// The token embedding `E`, `[vocab, d_model]`.
    pub embedding: std::sync::Arc<Matrix>,
    pub blocks: Vec<Block>,
    pub final_norm: Vec<f32>,
    /// The unembedding `W_U`, `[vocab, d_model]`; shares `E`'s storage when the model ties them.
    pub unembedding: std::sync::Arc<Matrix>,
}

/// One layer's keys and values for the tokens seen so far, in buffers sized once for the whole
/// sequence (`[kv_heads, capacity, head_dim]`) so that decoding allocates nothing per token for them.
struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// The KV cache of one sequence.
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Tokens already processed: the next token's position.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every token after the first `len` (the next forward pass overwrites their keys and
    /// values): a prefix shared by many continuations is computed once.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// Which positions' logits a forward pass computes (the unembedding of a long prompt is costly and
/// generation needs only the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    All,
    Last,
    /// None (`[0, vocab]`): a pass that only reads activations skips the unembedding, which
    /// for a short continuation costs as much as a block.
    Nothing,
}

pub(crate) struct Transformer {
    pub config: Config,
    pub weights: Weights,
    /// `theta_i`, one per pair of head dimensions.
    pub frequencies: Vec<f32>,
    /// Low-rank updates added to the block's projections (the base weights stay as loaded).
    pub adapter: Option<LoraAdapter>,
}

fn to_rows(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.flatten_all()?.to_vec1::<f32>()?)
}

/// `silu(g) = g sigmoid(g)`.
pub(crate) fn silu(g: f32) -> f32 {
    g / (1.0 + (-g).exp())
}

/// `RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g`, row by row.
pub(crate) fn rms_norm(x: &[f32], gain: &[f32], eps: f32) -> Vec<f32> {
    let d = gain.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (mean_square + eps).sqrt();
        out.extend(row.iter().zip(gain).map(|(v, g)| v * inv * g));
    }
    out
}

/// Rotates each head's pairs of dimensions by `position * theta_i` (RoPE), in place. `x` holds
/// `rows` tokens (the first at position `start`) of `heads` heads of `head_dim`.
pub(crate) fn rope(
    x: &mut [f32],
    heads: usize,
    head_dim: usize,
    start: usize,
    frequencies: &[f32],
    layout: RopeLayout,
) {
    let half = head_dim / 2;
    for (r, token) in x.chunks_exact_mut(heads * head_dim).enumerate() {
        let position = (start + r) as f32;
        for head in token.chunks_exact_mut(head_dim) {
            for (i, &theta) in frequencies.iter().enumerate() {
                let (sin, cos) = (position * theta).sin_cos();
                let (a, b) = match layout {
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    RopeLayout::Halves => (i, i + half),
                };
                let (x1, x2) = (head[a], head[b]);
                head[a] = x1 * cos - x2 * sin;
                head[b] = x1 * sin + x2 * cos;
            }
        }
    }
}

/// Softmax over each row of `scores` (`[kv_heads, group * rows, keys]`, query row `r` at sequence
/// position `start + r % rows`), with the causal mask: a query sees keys up to its own position.
pub(crate) fn causal_softmax(scores: &mut [f32], rows: usize, keys: usize, start: usize) {
    for (i, row) in scores.chunks_exact_mut(keys).enumerate() {
        let visible = start + i % rows + 1;
        let (seen, masked) = row.split_at_mut(visible);
        let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in seen.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        for s in seen.iter_mut() {
            *s /= sum;
        }
        masked.fill(0.0);
    }
}

impl Transformer {
    pub fn new(config: Config, weights: Weights) -> Transformer {
        let frequencies = config.rope_frequencies();
        Transformer {
            config,
            weights,
            frequencies,
            adapter: None,
        }
    }

    /// A cache for a sequence of at most `capacity` tokens (capped at the model's context).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        let capacity = capacity.clamp(1, c.context_length);
        let layers = (0..c.n_layers)
            .map(|_| {
                let shape = (c.n_kv_heads, capacity, c.head_dim);
                Ok(LayerCache {
                    k: Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu)?,
                    v: Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
        })
    }

    /// Block `layer`'s projection `p`.
    pub(crate) fn linear(&self, layer: usize, p: Projection) -> &Linear {
        let block = &self.weights.blocks[layer];
        match p {
            Projection::Q => &block.q,
            Projection::K => &block.k,
            Projection::V => &block.v,
            Projection::O => &block.o,
            Projection::Gate => &block.gate,
            Projection::Up => &block.up,
            Projection::Down => &block.down,
        }
    }

    /// `x W^T (+ b) + (alpha / r) (x A^T) B^T`: block `layer`'s projection `p`, with `adapter`'s
    /// update where it has one.
    pub(crate) fn project_with(
        &self,
        adapter: Option<&LoraAdapter>,
        layer: usize,
        p: Projection,
        x: &[f32],
        rows: usize,
    ) -> Result<Vec<f32>> {
        let mut y = self.linear(layer, p).forward(x, rows)?;
        if let Some(adapter) = adapter {
            if let Some(pair) = adapter.get(layer, p) {
                pair.apply(x, rows, &mut y, adapter.config.scale())?;
            }
        }
        Ok(y)
    }

    /// Block `layer`'s projection `p` with the model's adapter, if it has one.
    fn project(&self, layer: usize, p: Projection, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.project_with(self.adapter.as_ref(), layer, p, x, rows)
    }

    /// Grouped-query causal self-attention of `h` (`rows` normalized tokens), appending this
    /// chunk's keys and values to the layer's cache.
    fn attention(
        &self,
        layer: usize,
        h: &[f32],
        rows: usize,
        cache: &mut LayerCache,
        start: usize,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let hd = c.head_dim;
        let group = c.n_heads / c.n_kv_heads;
        let keys = start + rows;

        let mut q = self.project(layer, Projection::Q, h, rows)?;
        let mut k = self.project(layer, Projection::K, h, rows)?;
        let v = self.project(layer, Projection::V, h, rows)?;
        rope(
            &mut q,
            c.n_heads,
            hd,
            start,
            &self.frequencies,
            c.rope_layout,
        );
        rope(
            &mut k,
            c.n_kv_heads,
            hd,
            start,
            &self.frequencies,
            c.rope_layout,
        );
        let heads_first = |x: Vec<f32>, heads: usize| -> Result<Tensor> {
            let t = Tensor::from_vec(x, (rows, heads, hd), &Device::Cpu)?;
            Ok(if rows == 1 {
                t.reshape((heads, 1, hd))?
            } else {
                t.transpose(0, 1)?.contiguous()?
            })
        };
        // Query head `g` of group `j` reads key/value head `j`: `[kv_heads, group * rows, head_dim]`.
        let q = heads_first(q, c.n_heads)?.reshape((c.n_kv_heads, group * rows, hd))?;
        cache
            .k
            .slice_set(&heads_first(k, c.n_kv_heads)?, 1, start)?;
        cache
            .v
            .slice_set(&heads_first(v, c.n_kv_heads)?, 1, start)?;
        let k_all = cache.k.narrow(1, 0, keys)?;
        let v_all = cache.v.narrow(1, 0, keys)?;

        // softmax(q k^T / sqrt(d_head) + causal mask) v
        let scores = (q.matmul(&k_all.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        drop(q);
        let mut probs = to_rows(&scores)?;
        drop(scores);
        causal_softmax(&mut probs, rows, keys, start);
        let probs = Tensor::from_vec(probs, (c.n_kv_heads, group * rows, keys), &Device::Cpu)?;
        let heads = probs.matmul(&v_all)?.reshape((c.n_heads, rows, hd))?;
        let merged = if rows == 1 {
            heads
        } else {
            heads.transpose(0, 1)?.contiguous()?
        };
        self.project(layer, Projection::O, &to_rows(&merged)?, rows)
    }

    /// `MLP(h) = W_down (silu(W_gate h) * W_up h)`.
    fn mlp(&self, layer: usize, h: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut gate = self.project(layer, Projection::Gate, h, rows)?;
        let up = self.project(layer, Projection::Up, h, rows)?;
        for (g, u) in gate.iter_mut().zip(&up) {
            *g = silu(*g) * u;
        }
        self.project(layer, Projection::Down, &gate, rows)
    }

    /// Applies the hooks at `point` to the activation `x` (`rows` tokens from position `start`).
    fn hook(&self, hooks: &mut Hooks, point: HookPoint, x: Vec<f32>, start: usize) -> Vec<f32> {
        let mut x = x;
        if hooks.touches(point) {
            hooks.apply(point, &mut x, self.config.d_model, start);
        }
        x
    }

    /// Runs `tokens` (the continuation of the sequence in `cache`) through the model and returns
    /// the logits, `[rows, vocab]` (rows: every token, or the last).
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
        logits_for: LogitsFor,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (rows, d, start) = (tokens.len(), c.d_model, cache.len);
        if rows == 0 {
            return Err(LmError::InvalidArgument("no tokens to run".into()));
        }
        if start + rows > cache.capacity {
            return Err(LmError::ContextOverflow {
                tokens: start + rows,
                context: cache.capacity,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(LmError::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let mut x = self.weights.embedding.rows(tokens)?;
        for (layer, block) in self.weights.blocks.iter().enumerate() {
            let at = |site| HookPoint { layer, site };
            x = self.hook(hooks, at(Site::ResidPre), x, start);

            let h = rms_norm(&x, &block.attn_norm, c.rms_norm_eps);
            let a = self.attention(layer, &h, rows, &mut cache.layers[layer], start)?;
            let a = self.hook(hooks, at(Site::AttnOut), a, start);
            x.iter_mut().zip(&a).for_each(|(xi, ai)| *xi += ai);

            let h = rms_norm(&x, &block.mlp_norm, c.rms_norm_eps);
            let m = self.mlp(layer, &h, rows)?;
            let m = self.hook(hooks, at(Site::MlpOut), m, start);
            x.iter_mut().zip(&m).for_each(|(xi, mi)| *xi += mi);

            x = self.hook(hooks, at(Site::ResidPost), x, start);
        }
        cache.len += rows;
        let x = match logits_for {
            LogitsFor::All => x,
            LogitsFor::Last => x[(rows - 1) * d..].to_vec(),
            LogitsFor::Nothing => {
                return Ok(Tensor::zeros((0, c.vocab_size), DType::F32, &Device::Cpu)?)
            }
        };
        let n = x.len() / d;
        let h = rms_norm(&x, &self.weights.final_norm, c.rms_norm_eps);
        let logits = self.weights.unembedding.matmul(&h, n)?;
        Ok(Tensor::from_vec(logits, (n, c.vocab_size), &Device::Cpu)?)
    }
}
