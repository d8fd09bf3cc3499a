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
//! sequence; the quantized matrix products are candle's, the rest is here.

use crate::config::{Config, RopeLayout};
use crate::error::{LmError, Result};
use crate::hooks::{HookPoint, Hooks, Site};
use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Tensor};

/// `y = x W^T + b`, with `W` kept in its stored (often quantized) type.
pub(crate) struct Linear {
    pub weight: QMatMul,
    pub bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
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
    pub embedding: QMatMul,
    pub blocks: Vec<Block>,
    pub final_norm: Vec<f32>,
    /// The unembedding `W_U`, `[vocab, d_model]`; shares `E`'s storage when the model ties them.
    pub unembedding: QMatMul,
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
}

/// Which positions' logits a forward pass computes (the unembedding of a long prompt is costly and
/// generation needs only the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    All,
    Last,
}

pub(crate) struct Transformer {
    pub config: Config,
    pub weights: Weights,
    /// `theta_i`, one per pair of head dimensions.
    frequencies: Vec<f32>,
}

fn to_rows(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.flatten_all()?.to_vec1::<f32>()?)
}

fn from_rows(data: Vec<f32>, rows: usize, cols: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(data, (rows, cols), &Device::Cpu)?)
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
fn rope(
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
fn causal_softmax(scores: &mut [f32], rows: usize, keys: usize, start: usize) {
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

    /// Grouped-query causal self-attention of `h` (`[rows, d_model]`, normalized), appending this
    /// chunk's keys and values to the layer's cache.
    fn attention(
        &self,
        block: &Block,
        h: &Tensor,
        cache: &mut LayerCache,
        start: usize,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (rows, hd) = (h.dim(0)?, c.head_dim);
        let group = c.n_heads / c.n_kv_heads;
        let keys = start + rows;

        let mut q = to_rows(&block.q.forward(h)?)?;
        let mut k = to_rows(&block.k.forward(h)?)?;
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
        let heads_first = |x: Tensor, heads: usize| -> Result<Tensor> {
            Ok(x.reshape((rows, heads, hd))?
                .transpose(0, 1)?
                .contiguous()?)
        };
        // Query head `g` of group `j` reads key/value head `j`: `[kv_heads, group * rows, head_dim]`.
        let q = heads_first(
            Tensor::from_vec(q, (rows, c.n_heads * hd), &Device::Cpu)?,
            c.n_heads,
        )?
        .reshape((c.n_kv_heads, group * rows, hd))?;
        let k = heads_first(
            Tensor::from_vec(k, (rows, c.n_kv_heads * hd), &Device::Cpu)?,
            c.n_kv_heads,
        )?;
        let v = heads_first(block.v.forward(h)?, c.n_kv_heads)?;
        cache.k.slice_set(&k, 1, start)?;
        cache.v.slice_set(&v, 1, start)?;
        let k_all = cache.k.narrow(1, 0, keys)?;
        let v_all = cache.v.narrow(1, 0, keys)?;

        // softmax(q k^T / sqrt(d_head) + causal mask) v
        let scores = (q.matmul(&k_all.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let mut probs = to_rows(&scores)?;
        causal_softmax(&mut probs, rows, keys, start);
        let probs = Tensor::from_vec(probs, (c.n_kv_heads, group * rows, keys), &Device::Cpu)?;
        let heads = probs.matmul(&v_all.contiguous()?)?;
        let merged = heads
            .reshape((c.n_heads, rows, hd))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((rows, c.n_heads * hd))?;
        block.o.forward(&merged)
    }

    /// `MLP(h) = W_down (silu(W_gate h) * W_up h)`.
    fn mlp(&self, block: &Block, h: &Tensor) -> Result<Tensor> {
        let gate = block.gate.forward(h)?.silu()?;
        let up = block.up.forward(h)?;
        block.down.forward(&(gate * up)?)
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
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = to_rows(&self.weights.embedding.embedding(&ids)?)?;
        for (layer, block) in self.weights.blocks.iter().enumerate() {
            let at = |site| HookPoint { layer, site };
            x = self.hook(hooks, at(Site::ResidPre), x, start);

            let h = from_rows(rms_norm(&x, &block.attn_norm, c.rms_norm_eps), rows, d)?;
            let a = to_rows(&self.attention(block, &h, &mut cache.layers[layer], start)?)?;
            let a = self.hook(hooks, at(Site::AttnOut), a, start);
            x.iter_mut().zip(&a).for_each(|(xi, ai)| *xi += ai);

            let h = from_rows(rms_norm(&x, &block.mlp_norm, c.rms_norm_eps), rows, d)?;
            let m = to_rows(&self.mlp(block, &h)?)?;
            let m = self.hook(hooks, at(Site::MlpOut), m, start);
            x.iter_mut().zip(&m).for_each(|(xi, mi)| *xi += mi);

            x = self.hook(hooks, at(Site::ResidPost), x, start);
        }
        cache.len += rows;
        let x = match logits_for {
            LogitsFor::All => x,
            LogitsFor::Last => x[(rows - 1) * d..].to_vec(),
        };
        let n = x.len() / d;
        let h = from_rows(rms_norm(&x, &self.weights.final_norm, c.rms_norm_eps), n, d)?;
        Ok(self.weights.unembedding.forward(&h)?)
    }
}
