//! Gradients of the language-modelling loss with respect to a LoRA adapter's factors, the base
//! model frozen: a training forward pass over a packed batch of sequences that keeps what the
//! backward pass needs, and the backward pass written out by hand.
//!
//! The loss is the mean over answer positions `j` (those whose next token belongs to an answer) of
//! the cross-entropy of the answer token, `-log p(t_{j+1} | t_<=j)`, or, for an example marked
//! `distill`, of `KL(p_base(. | t_<=j) || p(. | t_<=j))`, the base model's distribution as the
//! target; either way `dL/dlogits = (p - target) / N`. Backwards through a block (the
//! forward is [`crate::model`]'s, `x_mid = x + Attn(RMSNorm(x))`, `x' = x_mid + MLP(RMSNorm(x_mid))`):
//!
//! ```text
//! projection y = x W^T + s (x A^T) B^T:  dx = dy W + s (dy B) A,  dB = s dy^T (x A^T),  dA = s (dy B)^T x
//! SwiGLU a = silu(g) u:                  dg = da u silu'(g),      du = da silu(g)
//! RMSNorm y = g x r, r = (mean x^2 + eps)^(-1/2):   dx = r (dy g) - r^3 x (dy g . x) / d
//! attention O = P V, P = softmax(Q K^T / sqrt(d_h)):  dV = P^T dO,  dS = P (dP - rowsum(P dP)) / sqrt(d_h),
//!                                         dP = dO V^T,  dQ = dS K,  dK = dS^T Q
//! RoPE (a rotation R_p):                  dx = R_p^T dy (the rotation by -p theta)
//! ```
//!
//! The frozen weights' own gradients are never formed: `dy W` is all a frozen `W` needs, computed
//! from its stored blocks a band of rows at a time (as the forward pass multiplies them), so
//! training holds no f32 copy of the model. Autograd (candle-core's) would form `x^T dy` for every
//! frozen weight as well: `examples/lora_grad_choice.rs` measures the difference.

use crate::error::{LmError, Result};
use crate::lora::{matmul, LoraAdapter, Projection, Transpose};
use crate::model::{causal_softmax, rms_norm, rope, silu, Matrix, Transformer};
use crate::{Logits, Model};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};

/// One training sequence: its tokens, of which those from `answer_start` on are the answer the
/// loss is taken on (the positions before it condition only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub answer_start: usize,
    /// At the answer positions, match the base model's whole next-token distribution
    /// (`KL(p_base || p)`, distillation) instead of the answer tokens (`-log p(token)`).
    #[serde(default)]
    pub distill: bool,
}

impl Example {
    /// Answer tokens the loss counts.
    pub fn answer_len(&self) -> usize {
        self.tokens.len() - self.answer_start
    }
}

/// `dL/dA` and `dL/dB` of every adapted projection, in [`LoraAdapter::pairs`]'s order.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraGradients {
    pub a: Vec<Vec<f32>>,
    pub b: Vec<Vec<f32>>,
}

/// A batch's mean answer-token loss and its gradients.
#[derive(Debug, Clone)]
pub struct LossAndGradients {
    pub loss: f64,
    /// Answer tokens the mean is over.
    pub tokens: usize,
    pub gradients: LoraGradients,
}

/// Sequences laid end to end: the projections see one `[rows, width]` matrix; attention and
/// rotary positions stay within each sequence's span.
struct Packed {
    tokens: Vec<u32>,
    /// `(first row, length)` of each sequence.
    spans: Vec<(usize, usize)>,
}

impl Packed {
    fn new(sequences: &[&[u32]]) -> Packed {
        let mut tokens = Vec::new();
        let mut spans = Vec::new();
        for s in sequences {
            spans.push((tokens.len(), s.len()));
            tokens.extend_from_slice(s);
        }
        Packed { tokens, spans }
    }
}

/// What one block's backward pass reads from its forward pass.
struct Saved {
    x: Vec<f32>,
    h: Vec<f32>,
    /// q and k after the rotary embedding.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities per sequence, per query head, `[len, len]`.
    probs: Vec<Vec<f32>>,
    merged: Vec<f32>,
    x_mid: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
}

/// Rows `[start, start + len)`, columns `[col, col + width)` of a row-major matrix `width_all` wide.
fn gather(
    x: &[f32],
    width_all: usize,
    start: usize,
    len: usize,
    col: usize,
    width: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len * width);
    for r in start..start + len {
        out.extend_from_slice(&x[r * width_all + col..r * width_all + col + width]);
    }
    out
}

/// Adds `part` (`[len, width]`) into rows `[start, start + len)`, columns `[col, col + width)`.
fn scatter_add(
    x: &mut [f32],
    width_all: usize,
    start: usize,
    col: usize,
    width: usize,
    part: &[f32],
) {
    for (i, row) in part.chunks_exact(width).enumerate() {
        let at = (start + i) * width_all + col;
        x[at..at + width]
            .iter_mut()
            .zip(row)
            .for_each(|(a, b)| *a += b);
    }
}

/// `log sum_i exp(x_i)`, in f64.
fn log_sum_exp(x: &[f32]) -> f64 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

fn add_into(acc: &mut [f32], x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

/// `silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g)))`.
fn silu_derivative(g: f32) -> f32 {
    let s = 1.0 / (1.0 + (-g).exp());
    s * (1.0 + g * (1.0 - s))
}

/// The gradient of `RMSNorm(x) g` with respect to `x`, row by row, given `dy`.
fn rms_norm_backward(x: &[f32], gain: &[f32], eps: f32, dy: &[f32]) -> Vec<f32> {
    let d = gain.len();
    let mut dx = Vec::with_capacity(x.len());
    for (row, dyr) in x.chunks_exact(d).zip(dy.chunks_exact(d)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / (mean_square + eps).sqrt();
        let ux: f32 = row
            .iter()
            .zip(dyr)
            .zip(gain)
            .map(|((x, dy), g)| dy * g * x)
            .sum();
        let k = r * r * r * ux / d as f32;
        dx.extend(
            row.iter()
                .zip(dyr)
                .zip(gain)
                .map(|((x, dy), g)| r * dy * g - k * x),
        );
    }
    dx
}

/// `dy W` for a frozen `W` (`[out, in]`) in its stored type, `dy` of `rows` rows: `[rows, in]`.
/// Quantized blocks are expanded a band of rows at a time, as the forward product does, unless
/// the model keeps them in f32 (`Model::expand_weights`).
pub(crate) fn input_gradient(w: &Matrix, dy: &[f32], rows: usize) -> Result<Vec<f32>> {
    let cpu = &Device::Cpu;
    match w {
        Matrix::Blocks(q) => {
            if let Some(dense) = q.dense() {
                let g = Tensor::from_slice(dy, (rows, q.rows), cpu)?;
                return Ok(g.matmul(dense)?.flatten_all()?.to_vec1::<f32>()?);
            }
            let (out, cols) = (q.rows, q.cols);
            let band = ((1 << 18) / cols).clamp(1, out);
            let mut dx = vec![0f32; rows * cols];
            let mut wb = vec![0f32; band * cols];
            for r0 in (0..out).step_by(band) {
                let r1 = (r0 + band).min(out);
                let n = r1 - r0;
                for (i, row) in wb[..n * cols].chunks_exact_mut(cols).enumerate() {
                    q.dequantize_row(r0 + i, row);
                }
                let g = gather(dy, out, 0, rows, r0, n);
                let part = matmul(&g, &wb[..n * cols], rows, n, cols, Transpose::Neither)?;
                add_into(&mut dx, &part);
            }
            Ok(dx)
        }
        Matrix::Candle(m) => {
            let dense = match m {
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
                QMatMul::QTensor(q) => q.dequantize(cpu)?,
            };
            let out = dense.dim(0)?;
            let g = Tensor::from_slice(dy, (rows, out), cpu)?;
            Ok(g.matmul(&dense)?.flatten_all()?.to_vec1::<f32>()?)
        }
    }
}

/// The trainer's forward and backward passes over one model and adapter.
struct Trainer<'a> {
    t: &'a Transformer,
    adapter: Option<&'a LoraAdapter>,
    /// Position of each adapted projection in [`LoraAdapter::pairs`]: `layer * 7 + projection`.
    slot: Vec<Option<usize>>,
}

impl<'a> Trainer<'a> {
    fn new(t: &'a Transformer, adapter: Option<&'a LoraAdapter>) -> Result<Trainer<'a>> {
        let mut slot = vec![None; t.config.n_layers * 7];
        if let Some(a) = adapter {
            a.check(&t.config)?;
            for (i, (layer, p, _)) in a.pairs().enumerate() {
                slot[layer * 7 + p as usize] = Some(i);
            }
        }
        Ok(Trainer { t, adapter, slot })
    }

    fn project(&self, layer: usize, p: Projection, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.t.project_with(self.adapter, layer, p, x, rows)
    }

    /// The residual stream after the last block, `[rows, d_model]`, and each block's saved values
    /// (when `keep`).
    fn forward(&self, batch: &Packed, keep: bool) -> Result<(Vec<f32>, Vec<Saved>)> {
        let c = &self.t.config;
        let rows = batch.tokens.len();
        let (hd, group) = (c.head_dim, c.n_heads / c.n_kv_heads);
        let (qw, kw) = (c.n_heads * hd, c.n_kv_heads * hd);
        let scale = 1.0 / (hd as f32).sqrt();
        if let Some(&bad) = batch.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(LmError::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let mut x = self.t.weights.embedding.rows(&batch.tokens)?;
        let mut saved = Vec::new();
        for (layer, block) in self.t.weights.blocks.iter().enumerate() {
            let h = rms_norm(&x, &block.attn_norm, c.rms_norm_eps);
            let mut q = self.project(layer, Projection::Q, &h, rows)?;
            let mut k = self.project(layer, Projection::K, &h, rows)?;
            let v = self.project(layer, Projection::V, &h, rows)?;
            for &(s0, len) in &batch.spans {
                let f = &self.t.frequencies;
                rope(
                    &mut q[s0 * qw..(s0 + len) * qw],
                    c.n_heads,
                    hd,
                    0,
                    f,
                    c.rope_layout,
                );
                rope(
                    &mut k[s0 * kw..(s0 + len) * kw],
                    c.n_kv_heads,
                    hd,
                    0,
                    f,
                    c.rope_layout,
                );
            }
            let mut merged = vec![0f32; rows * qw];
            let mut probs = Vec::new();
            for &(s0, len) in &batch.spans {
                for head in 0..c.n_heads {
                    let j = head / group;
                    let qh = gather(&q, qw, s0, len, head * hd, hd);
                    let kj = gather(&k, kw, s0, len, j * hd, hd);
                    let vj = gather(&v, kw, s0, len, j * hd, hd);
                    let mut p = matmul(&qh, &kj, len, hd, len, Transpose::Second)?;
                    p.iter_mut().for_each(|s| *s *= scale);
                    causal_softmax(&mut p, len, len, 0);
                    let o = matmul(&p, &vj, len, len, hd, Transpose::Neither)?;
                    scatter_add(&mut merged, qw, s0, head * hd, hd, &o);
                    if keep {
                        probs.push(p);
                    }
                }
            }
            let a = self.project(layer, Projection::O, &merged, rows)?;
            let mut x_mid = x.clone();
            add_into(&mut x_mid, &a);
            let h2 = rms_norm(&x_mid, &block.mlp_norm, c.rms_norm_eps);
            let gate = self.project(layer, Projection::Gate, &h2, rows)?;
            let up = self.project(layer, Projection::Up, &h2, rows)?;
            let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, u)| silu(g) * u).collect();
            let m = self.project(layer, Projection::Down, &act, rows)?;
            let mut x_next = x_mid.clone();
            add_into(&mut x_next, &m);
            if keep {
                saved.push(Saved {
                    x,
                    h,
                    q,
                    k,
                    v,
                    probs,
                    merged,
                    x_mid,
                    h2,
                    gate,
                    up,
                    act,
                });
            }
            x = x_next;
        }
        Ok((x, saved))
    }

    /// Logits `[rows.len(), vocab]` of the given rows of the final residual stream.
    fn logits(&self, x: &[f32], rows: &[usize]) -> Result<(Vec<f32>, Vec<f32>)> {
        let c = &self.t.config;
        let picked: Vec<f32> = rows
            .iter()
            .flat_map(|&r| x[r * c.d_model..(r + 1) * c.d_model].iter().copied())
            .collect();
        let h = rms_norm(&picked, &self.t.weights.final_norm, c.rms_norm_eps);
        let logits = self.t.weights.unembedding.matmul(&h, rows.len())?;
        Ok((picked, logits))
    }

    /// `dy W` through block `layer`'s projection `p` (when `need_input`), adding the adapter's
    /// factors' gradients into `grads`.
    fn project_backward(
        &self,
        layer: usize,
        p: Projection,
        x: &[f32],
        dy: &[f32],
        rows: usize,
        need_input: bool,
        grads: &mut LoraGradients,
    ) -> Result<Option<Vec<f32>>> {
        let mut dx = if need_input {
            Some(input_gradient(&self.t.linear(layer, p).weight, dy, rows)?)
        } else {
            None
        };
        if let (Some(adapter), Some(slot)) = (self.adapter, self.slot[layer * 7 + p as usize]) {
            let pair = adapter
                .get(layer, p)
                .expect("slot of an adapted projection");
            let (r, n_in, n_out) = (pair.rank, pair.inputs, pair.outputs);
            let s = adapter.config.scale();
            let low = matmul(x, &pair.a, rows, n_in, r, Transpose::Second)?;
            let mut dlow = matmul(dy, &pair.b, rows, n_out, r, Transpose::Neither)?;
            dlow.iter_mut().for_each(|v| *v *= s);
            let mut db = matmul(dy, &low, n_out, rows, r, Transpose::First)?;
            db.iter_mut().for_each(|v| *v *= s);
            add_into(&mut grads.b[slot], &db);
            let da = matmul(&dlow, x, r, rows, n_in, Transpose::First)?;
            add_into(&mut grads.a[slot], &da);
            if let Some(dx) = dx.as_mut() {
                add_into(
                    dx,
                    &matmul(&dlow, &pair.a, rows, r, n_in, Transpose::Neither)?,
                );
            }
        }
        Ok(dx)
    }

    /// Mean answer-token cross-entropy of `examples`, with the adapter's gradients when
    /// `with_gradients`.
    fn loss(&self, examples: &[Example], with_gradients: bool) -> Result<LossAndGradients> {
        let c = &self.t.config;
        let d = c.d_model;
        for (i, e) in examples.iter().enumerate() {
            if e.answer_start == 0 || e.answer_start >= e.tokens.len() {
                return Err(LmError::InvalidArgument(format!(
                    "training example {i} has {} tokens with its answer from {}: it needs a prompt and at least one answer token",
                    e.tokens.len(),
                    e.answer_start
                )));
            }
            if e.tokens.len() > c.context_length {
                return Err(LmError::ContextOverflow {
                    tokens: e.tokens.len(),
                    context: c.context_length,
                });
            }
        }
        if examples.is_empty() {
            return Err(LmError::InvalidArgument("an empty training batch".into()));
        }
        let batch = Packed::new(
            &examples
                .iter()
                .map(|e| e.tokens.as_slice())
                .collect::<Vec<_>>(),
        );
        // Rows whose next token is an answer token, and that token.
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for (e, &(s0, len)) in examples.iter().zip(&batch.spans) {
            for j in e.answer_start - 1..len - 1 {
                rows.push(s0 + j);
                targets.push(e.tokens[j + 1] as usize);
            }
        }
        let n = rows.len();
        let vocab = c.vocab_size;
        // The base model's log-probabilities at the distilled examples' answer rows, in order.
        let distilled: Vec<bool> = examples
            .iter()
            .flat_map(|e| std::iter::repeat_n(e.distill, e.answer_len()))
            .collect();
        let base_log_probs = if distilled.iter().any(|&d| d) {
            let base = Trainer::new(self.t, None)?;
            let (xb, _) = base.forward(&batch, false)?;
            let picked: Vec<usize> = rows
                .iter()
                .zip(&distilled)
                .filter(|(_, &d)| d)
                .map(|(&r, _)| r)
                .collect();
            let (_, mut l) = base.logits(&xb, &picked)?;
            for row in l.chunks_exact_mut(vocab) {
                let log_z = log_sum_exp(row);
                row.iter_mut().for_each(|v| *v = (*v as f64 - log_z) as f32);
            }
            l
        } else {
            Vec::new()
        };
        let (x, saved) = self.forward(&batch, with_gradients)?;
        let (picked, logits) = self.logits(&x, &rows)?;
        let mut loss = 0f64;
        let mut dlogits = vec![0f32; logits.len()];
        let mut base_rows = base_log_probs.chunks_exact(vocab);
        for (i, row) in logits.chunks_exact(vocab).enumerate() {
            let log_z = log_sum_exp(row);
            let drow = &mut dlogits[i * vocab..(i + 1) * vocab];
            for (dl, &l) in drow.iter_mut().zip(row) {
                *dl = (((l as f64) - log_z).exp() / n as f64) as f32;
            }
            if distilled[i] {
                let base = base_rows.next().expect("a base row per distilled row");
                for ((dl, &l), &lb) in drow.iter_mut().zip(row).zip(base) {
                    let pb = (lb as f64).exp();
                    loss += pb * (lb as f64 - (l as f64 - log_z));
                    *dl -= (pb / n as f64) as f32;
                }
            } else {
                loss += log_z - row[targets[i]] as f64;
                drow[targets[i]] -= 1.0 / n as f32;
            }
        }
        let loss = loss / n as f64;
        if !loss.is_finite() {
            return Err(LmError::Compute(format!("the training loss is {loss}")));
        }
        let mut grads = LoraGradients {
            a: Vec::new(),
            b: Vec::new(),
        };
        if let Some(a) = self.adapter {
            for (_, _, pair) in a.pairs() {
                grads.a.push(vec![0.0; pair.a.len()]);
                grads.b.push(vec![0.0; pair.b.len()]);
            }
        }
        if !with_gradients || self.adapter.is_none() {
            return Ok(LossAndGradients {
                loss,
                tokens: n,
                gradients: grads,
            });
        }
        drop(logits);

        let total = batch.tokens.len();
        let d_final = input_gradient(&self.t.weights.unembedding, &dlogits, n)?;
        let d_picked = rms_norm_backward(
            &picked,
            &self.t.weights.final_norm,
            c.rms_norm_eps,
            &d_final,
        );
        let mut dx = vec![0f32; total * d];
        for (i, &r) in rows.iter().enumerate() {
            add_into(&mut dx[r * d..(r + 1) * d], &d_picked[i * d..(i + 1) * d]);
        }
        let (hd, group) = (c.head_dim, c.n_heads / c.n_kv_heads);
        let (qw, kw) = (c.n_heads * hd, c.n_kv_heads * hd);
        let scale = 1.0 / (hd as f32).sqrt();
        let negated: Vec<f32> = self.t.frequencies.iter().map(|f| -f).collect();
        for (layer, s) in saved.iter().enumerate().rev() {
            let block = &self.t.weights.blocks[layer];
            let first = layer == 0;
            // x' = x_mid + Down(act)
            let d_act = self
                .project_backward(
                    layer,
                    Projection::Down,
                    &s.act,
                    &dx,
                    total,
                    true,
                    &mut grads,
                )?
                .expect("input gradient requested");
            let mut d_gate = Vec::with_capacity(d_act.len());
            let mut d_up = Vec::with_capacity(d_act.len());
            for ((&da, &g), &u) in d_act.iter().zip(&s.gate).zip(&s.up) {
                d_gate.push(da * u * silu_derivative(g));
                d_up.push(da * silu(g));
            }
            let mut d_h2 = self
                .project_backward(
                    layer,
                    Projection::Gate,
                    &s.h2,
                    &d_gate,
                    total,
                    true,
                    &mut grads,
                )?
                .expect("input gradient requested");
            add_into(
                &mut d_h2,
                &self
                    .project_backward(layer, Projection::Up, &s.h2, &d_up, total, true, &mut grads)?
                    .expect("input gradient requested"),
            );
            let mut dx_mid = dx;
            add_into(
                &mut dx_mid,
                &rms_norm_backward(&s.x_mid, &block.mlp_norm, c.rms_norm_eps, &d_h2),
            );
            // x_mid = x + O(attention(h))
            let d_merged = self
                .project_backward(
                    layer,
                    Projection::O,
                    &s.merged,
                    &dx_mid,
                    total,
                    true,
                    &mut grads,
                )?
                .expect("input gradient requested");
            let mut dq = vec![0f32; total * qw];
            let mut dk = vec![0f32; total * kw];
            let mut dv = vec![0f32; total * kw];
            let mut probs = s.probs.iter();
            for &(s0, len) in &batch.spans {
                for head in 0..c.n_heads {
                    let j = head / group;
                    let p = probs
                        .next()
                        .expect("saved probabilities per sequence and head");
                    let d_o = gather(&d_merged, qw, s0, len, head * hd, hd);
                    let qh = gather(&s.q, qw, s0, len, head * hd, hd);
                    let kj = gather(&s.k, kw, s0, len, j * hd, hd);
                    let vj = gather(&s.v, kw, s0, len, j * hd, hd);
                    let dp = matmul(&d_o, &vj, len, hd, len, Transpose::Second)?;
                    let dvj = matmul(p, &d_o, len, len, hd, Transpose::First)?;
                    scatter_add(&mut dv, kw, s0, j * hd, hd, &dvj);
                    let mut ds = vec![0f32; len * len];
                    for t in 0..len {
                        let (pr, dpr) = (&p[t * len..(t + 1) * len], &dp[t * len..(t + 1) * len]);
                        let dot: f32 = pr.iter().zip(dpr).map(|(a, b)| a * b).sum();
                        for u in 0..len {
                            ds[t * len + u] = pr[u] * (dpr[u] - dot) * scale;
                        }
                    }
                    let dqh = matmul(&ds, &kj, len, len, hd, Transpose::Neither)?;
                    scatter_add(&mut dq, qw, s0, head * hd, hd, &dqh);
                    let dkj = matmul(&ds, &qh, len, len, hd, Transpose::First)?;
                    scatter_add(&mut dk, kw, s0, j * hd, hd, &dkj);
                }
            }
            for &(s0, len) in &batch.spans {
                rope(
                    &mut dq[s0 * qw..(s0 + len) * qw],
                    c.n_heads,
                    hd,
                    0,
                    &negated,
                    c.rope_layout,
                );
                rope(
                    &mut dk[s0 * kw..(s0 + len) * kw],
                    c.n_kv_heads,
                    hd,
                    0,
                    &negated,
                    c.rope_layout,
                );
            }
            let need = !first;
            let mut d_h = vec![0f32; total * d];
            for (p, g) in [
                (Projection::Q, &dq),
                (Projection::K, &dk),
                (Projection::V, &dv),
            ] {
                if let Some(part) =
                    self.project_backward(layer, p, &s.h, g, total, need, &mut grads)?
                {
                    add_into(&mut d_h, &part);
                }
            }
            dx = dx_mid;
            if need {
                add_into(
                    &mut dx,
                    &rms_norm_backward(&s.x, &block.attn_norm, c.rms_norm_eps, &d_h),
                );
            }
        }
        Ok(LossAndGradients {
            loss,
            tokens: n,
            gradients: grads,
        })
    }
}

/// The batch's mean answer-token loss under `adapter` and its gradients with respect to the
/// adapter's factors (the base model frozen). `model`'s own adapter, if any, is ignored.
pub fn loss_and_gradients(
    model: &Model,
    adapter: &LoraAdapter,
    examples: &[Example],
) -> Result<LossAndGradients> {
    Trainer::new(&model.transformer, Some(adapter))?.loss(examples, true)
}

/// The batch's mean answer-token loss under `adapter` (none: the base model), forward only.
pub fn loss(model: &Model, adapter: Option<&LoraAdapter>, examples: &[Example]) -> Result<f64> {
    Ok(Trainer::new(&model.transformer, adapter)?
        .loss(examples, false)?
        .loss)
}

/// Next-token logits at every position of `tokens` from the trainer's forward pass (the check
/// that it computes the inference forward pass's function).
pub fn training_logits(
    model: &Model,
    adapter: Option<&LoraAdapter>,
    tokens: &[u32],
) -> Result<Logits> {
    if tokens.is_empty() {
        return Err(LmError::InvalidArgument("no tokens to run".into()));
    }
    let trainer = Trainer::new(&model.transformer, adapter)?;
    let (x, _) = trainer.forward(&Packed::new(&[tokens]), false)?;
    let rows: Vec<usize> = (0..tokens.len()).collect();
    let (_, data) = trainer.logits(&x, &rows)?;
    Ok(Logits {
        rows: tokens.len(),
        vocab: model.config().vocab_size,
        data,
    })
}
