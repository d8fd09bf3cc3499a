//! In-context linear regression: a transformer whose forward pass may run gradient descent
//! (von Oswald et al. 2023, "Transformers learn in-context by gradient descent").
//!
//! A task is a weight vector `w ~ N(0, I_d)`, `n` context points `(x_i, y_i = w·x_i + noise)`
//! and a query `x_q`. Each point is a token `z_i = (x_i, y_i)` in R^{d+1}; the query token is
//! `(x_q, 0)`. A linear self-attention (LSA) layer adds to every token
//!
//! ```text
//!   Δz_j = W_PV (1/n) Σ_i z_i (z_i^T W_KQ z_j)        (i over the context only)
//! ```
//!
//! and the prediction is minus the last entry of the query token after the last layer. With
//! `W_KQ = [[I_d, 0], [0, 0]]` and `W_PV = [[0, 0], [0, -η]]` one layer is exactly one step of
//! gradient descent of size η from `w = 0` on the in-context loss `(1/2n) Σ (w·x_i - y_i)^2`:
//! the query's last entry becomes `-(η/n) Σ y_i x_i·x_q = -w_1·x_q`, and each context token's
//! last entry becomes its residual `y_i - w_1·x_i`, so K such layers are K steps.
//!
//! In row form (tokens as rows of `Z`), a layer is `Z ← Z + Z A (Z_c^T Z_c) B / n` with
//! `A = W_KQ^T`, `B = W_PV^T` and `Z_c` the context rows; this module stores `A` and `B`.
//!
//! Training uses burn (autodiff, Adam) in f32; evaluation, the constructed weights and the GD
//! baselines run in f64 here, on the same formula, so comparisons are exact up to f64 rounding.

use crate::{LearnError, Result};
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use mesascope_core::rng::{mix, Rng};
use serde::{Deserialize, Serialize};

/// Settings of the in-context regression lab.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IclConfig {
    /// Input dimension d.
    pub dim: usize,
    /// Context points per task n.
    pub context: usize,
    /// LSA layers K (compared with K steps of gradient descent).
    pub layers: usize,
    /// Adam steps and tasks per step.
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Inputs are uniform on [-input_range, input_range].
    pub input_range: f64,
    /// Standard deviation of the label noise.
    pub noise: f64,
    /// Out-of-distribution inputs are uniform on [-s r, s r] for this s.
    pub ood_scale: f64,
    /// Held-out tasks for the final comparison, and for tuning GD's step size.
    pub eval_tasks: usize,
    pub tune_tasks: usize,
    /// Evaluate the validation loss every this many steps (the training curve).
    pub log_every: usize,
    pub seed: u64,
}

impl Default for IclConfig {
    fn default() -> Self {
        IclConfig {
            dim: 10,
            context: 10,
            layers: 1,
            steps: 1500,
            batch: 1024,
            lr: 1e-2,
            input_range: 0.5,
            noise: 0.0,
            ood_scale: 2.0,
            eval_tasks: 10_000,
            tune_tasks: 2_000,
            log_every: 50,
            seed: 0,
        }
    }
}

impl IclConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LearnError::Config(m));
        if self.dim == 0 || self.dim > 256 {
            return bad(format!("dimension must be in 1..=256, found {}", self.dim));
        }
        if self.context == 0 || self.context > 1024 {
            return bad(format!(
                "context points must be in 1..=1024, found {}",
                self.context
            ));
        }
        if self.layers == 0 || self.layers > 16 {
            return bad(format!("layers must be in 1..=16, found {}", self.layers));
        }
        if self.steps == 0 || self.batch == 0 || self.eval_tasks == 0 || self.tune_tasks == 0 {
            return bad("steps, batch, eval tasks and tune tasks must be positive".into());
        }
        if self.log_every == 0 {
            return bad("log_every must be positive".into());
        }
        for (name, v) in [
            ("learning rate", self.lr),
            ("input range", self.input_range),
            ("OOD scale", self.ood_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a positive number, found {v}"));
            }
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad(format!("noise must be >= 0, found {}", self.noise));
        }
        Ok(())
    }
}

/// A set of tasks: for task t, `x[t]` holds n context inputs then the query input (d each),
/// `y[t]` the n context labels then the query's label.
#[derive(Clone, Debug)]
pub struct Tasks {
    pub dim: usize,
    pub context: usize,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

fn normal(rng: &mut Rng) -> f64 {
    // Box-Muller, one normal per pair of uniforms; 1 - u keeps the log finite.
    let u1 = 1.0 - rng.unit();
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Tasks {
    /// `count` tasks with inputs uniform on [-range, range].
    pub fn sample(
        dim: usize,
        context: usize,
        count: usize,
        range: f64,
        noise: f64,
        rng: &mut Rng,
    ) -> Tasks {
        let pts = context + 1;
        let mut x = Vec::with_capacity(count * pts * dim);
        let mut y = Vec::with_capacity(count * pts);
        let mut w = vec![0.0; dim];
        for _ in 0..count {
            w.iter_mut().for_each(|v| *v = normal(rng));
            for _ in 0..pts {
                let mut dot = 0.0;
                for wk in &w {
                    let xv = range * (2.0 * rng.unit() - 1.0);
                    dot += wk * xv;
                    x.push(xv);
                }
                let eps = if noise > 0.0 {
                    noise * normal(rng)
                } else {
                    0.0
                };
                // The query's label is noisy too: the loss is measured against what a user sees.
                y.push(dot + eps);
            }
        }
        Tasks { dim, context, x, y }
    }

    pub fn len(&self) -> usize {
        self.y.len() / (self.context + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    fn xs(&self, t: usize) -> &[f64] {
        let s = (self.context + 1) * self.dim;
        &self.x[t * s..(t + 1) * s]
    }

    fn ys(&self, t: usize) -> &[f64] {
        let s = self.context + 1;
        &self.y[t * s..(t + 1) * s]
    }

    /// The query's label of task t.
    pub fn target(&self, t: usize) -> f64 {
        self.ys(t)[self.context]
    }

    /// The tokens of task t as rows `(x_i, y_i)`, the query's label replaced by 0.
    fn tokens(&self, t: usize) -> Vec<f64> {
        let (d, n) = (self.dim, self.context);
        let (xs, ys) = (self.xs(t), self.ys(t));
        let mut z = Vec::with_capacity((n + 1) * (d + 1));
        for i in 0..=n {
            z.extend_from_slice(&xs[i * d..(i + 1) * d]);
            z.push(if i < n { ys[i] } else { 0.0 });
        }
        z
    }
}

/// LSA weights in f64: per layer `A = W_KQ^T` and `B = W_PV^T`, each (d+1)x(d+1), row-major.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LsaWeights {
    pub dim: usize,
    pub layers: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Row-major `a (r x k) * b (k x c)`.
fn matmul(a: &[f64], b: &[f64], r: usize, k: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for l in 0..k {
            let av = a[i * k + l];
            if av == 0.0 {
                continue;
            }
            for j in 0..c {
                out[i * c + j] += av * b[l * c + j];
            }
        }
    }
    out
}

impl LsaWeights {
    /// The hand-constructed weights: every layer is one GD step of size `eta` (see the module
    /// documentation).
    pub fn gradient_descent(dim: usize, eta: f64, layers: usize) -> LsaWeights {
        let e = dim + 1;
        let mut a = vec![0.0; e * e];
        for k in 0..dim {
            a[k * e + k] = 1.0;
        }
        let mut b = vec![0.0; e * e];
        b[e * e - 1] = -eta;
        LsaWeights {
            dim,
            layers: vec![(a, b); layers],
        }
    }

    /// The prediction for task t and its sensitivity `∂ŷ/∂x_q`. Queries are never keys, so
    /// each layer maps the query token linearly, `z_q ← z_q (I + M_l)` with
    /// `M_l = A_l C_l B_l / n`, `C_l = Z_c^T Z_c`; the sensitivity is therefore exact.
    pub fn predict(&self, tasks: &Tasks, t: usize) -> (f64, Vec<f64>) {
        let (d, n) = (self.dim, tasks.context);
        let e = d + 1;
        let mut z = tasks.tokens(t);
        // Product of the query's maps, (I + M_1)(I + M_2)...
        let mut p = vec![0.0; e * e];
        for k in 0..e {
            p[k * e + k] = 1.0;
        }
        for (a, b) in &self.layers {
            let zc = &z[..n * e];
            let mut c = vec![0.0; e * e];
            for i in 0..n {
                let row = &zc[i * e..(i + 1) * e];
                for r in 0..e {
                    for s in 0..e {
                        c[r * e + s] += row[r] * row[s];
                    }
                }
            }
            let mut m = matmul(&matmul(a, &c, e, e, e), b, e, e, e);
            m.iter_mut().for_each(|v| *v /= n as f64);
            let dz = matmul(&z, &m, n + 1, e, e);
            z.iter_mut().zip(&dz).for_each(|(v, dv)| *v += dv);
            let pm = matmul(&p, &m, e, e, e);
            p.iter_mut().zip(&pm).for_each(|(v, dv)| *v += dv);
        }
        let y_hat = -z[n * e + d];
        let sens = (0..d).map(|k| -p[k * e + d]).collect();
        (y_hat, sens)
    }
}

/// `steps` steps of gradient descent of size `eta` from `w = 0` on task t's in-context loss
/// `(1/2n) Σ (w·x_i - y_i)^2`: the final weights, which are also the sensitivity of `w·x_q`.
pub fn gd_weights(tasks: &Tasks, t: usize, eta: f64, steps: usize) -> Vec<f64> {
    let (d, n) = (tasks.dim, tasks.context);
    let (xs, ys) = (tasks.xs(t), tasks.ys(t));
    let mut w = vec![0.0; d];
    for _ in 0..steps {
        let mut grad = vec![0.0; d];
        for i in 0..n {
            let xi = &xs[i * d..(i + 1) * d];
            let r: f64 = xi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() - ys[i];
            grad.iter_mut()
                .zip(xi)
                .for_each(|(g, x)| *g += r * x / n as f64);
        }
        w.iter_mut().zip(&grad).for_each(|(v, g)| *v -= eta * g);
    }
    w
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// GD's prediction for task t.
pub fn gd_predict(tasks: &Tasks, t: usize, eta: f64, steps: usize) -> f64 {
    let w = gd_weights(tasks, t, eta, steps);
    let d = tasks.dim;
    dot(&w, &tasks.xs(t)[tasks.context * d..])
}

/// Mean of `(ŷ - y)^2 / 2` over the tasks.
fn mean_loss(tasks: &Tasks, mut predict: impl FnMut(usize) -> f64) -> f64 {
    let n = tasks.len();
    (0..n)
        .map(|t| 0.5 * (predict(t) - tasks.target(t)).powi(2))
        .sum::<f64>()
        / n as f64
}

/// The step size that minimises the mean loss of `steps` GD steps on `tasks`: a grid over
/// (0, eta_max], then golden-section search around the best grid point.
pub fn tune_eta(tasks: &Tasks, steps: usize) -> f64 {
    // Beyond 2 / (largest curvature) GD diverges; the in-context Hessian's scale is E[x^2].
    let ex2 = dot(&tasks.x, &tasks.x) / tasks.x.len() as f64;
    let eta_max = 4.0 / ex2.max(1e-12);
    let loss = |eta: f64| mean_loss(tasks, |t| gd_predict(tasks, t, eta, steps));
    let grid = 40;
    let (mut best, mut best_loss) = (0.0, f64::INFINITY);
    for k in 1..=grid {
        let eta = eta_max * k as f64 / grid as f64;
        let l = loss(eta);
        if l < best_loss {
            (best, best_loss) = (eta, l);
        }
    }
    let h = eta_max / grid as f64;
    let (mut lo, mut hi) = ((best - h).max(0.0), best + h);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut dd) = (hi - g * (hi - lo), lo + g * (hi - lo));
    let (mut fc, mut fd) = (loss(c), loss(dd));
    for _ in 0..40 {
        if fc < fd {
            (hi, dd, fd) = (dd, c, fc);
            c = hi - g * (hi - lo);
            fc = loss(c);
        } else {
            (lo, c, fc) = (c, dd, fd);
            dd = lo + g * (hi - lo);
            fd = loss(dd);
        }
    }
    (lo + hi) / 2.0
}

/// One LSA layer's trainable matrices, `A = W_KQ^T` and `B = W_PV^T`.
#[derive(Module, Debug)]
pub struct LsaLayer {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
}

/// The LSA transformer in burn (for training).
#[derive(Module, Debug)]
pub struct LsaNet {
    pub layers: Vec<LsaLayer>,
}

impl LsaNet {
    /// Small random weights (a random start, not the GD solution).
    pub fn init(dim: usize, layers: usize, std: f64, rng: &mut Rng, device: &Device) -> LsaNet {
        let e = dim + 1;
        let mut mat = || {
            let v: Vec<f32> = (0..e * e).map(|_| (std * normal(rng)) as f32).collect();
            Param::from_tensor(Tensor::from_data(TensorData::new(v, [e, e]), device))
        };
        LsaNet {
            layers: (0..layers)
                .map(|_| LsaLayer { a: mat(), b: mat() })
                .collect(),
        }
    }

    /// Predictions `[B]` for tokens `[B, n+1, d+1]` (query label 0).
    pub fn forward(&self, z: Tensor<3>, context: usize) -> Tensor<1> {
        let [bsz, t, e] = z.dims();
        let mut z = z;
        for l in &self.layers {
            let zc = z.clone().slice([0..bsz, 0..context, 0..e]);
            let c = zc.clone().swap_dims(1, 2).matmul(zc);
            let za = z
                .clone()
                .reshape([bsz * t, e])
                .matmul(l.a.val())
                .reshape([bsz, t, e]);
            let dz = za
                .matmul(c)
                .reshape([bsz * t, e])
                .matmul(l.b.val())
                .reshape([bsz, t, e])
                / context as f32;
            z = z + dz;
        }
        -z.slice([0..bsz, context..context + 1, e - 1..e])
            .reshape([bsz])
    }

    /// The weights in f64.
    pub fn weights(&self, dim: usize) -> LsaWeights {
        let v = |p: &Param<Tensor<2>>| -> Vec<f64> {
            p.val()
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap_or_default()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        LsaWeights {
            dim,
            layers: self.layers.iter().map(|l| (v(&l.a), v(&l.b))).collect(),
        }
    }
}

/// The tokens of `tasks` as a `[B, n+1, d+1]` tensor.
pub fn token_tensor(tasks: &Tasks, device: &Device) -> Tensor<3> {
    let (d, n) = (tasks.dim, tasks.context);
    let mut v = Vec::with_capacity(tasks.len() * (n + 1) * (d + 1));
    for t in 0..tasks.len() {
        v.extend(tasks.tokens(t).into_iter().map(|x| x as f32));
    }
    Tensor::from_data(TensorData::new(v, [tasks.len(), n + 1, d + 1]), device)
}

/// Model against GD on one distribution of held-out tasks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub tasks: usize,
    pub input_range: f64,
    /// Mean `(ŷ - y)^2 / 2` of the trained model, of GD (tuned η, K steps), of predicting 0.
    pub model_loss: f64,
    pub gd_loss: f64,
    pub zero_loss: f64,
    /// `model_loss / gd_loss - 1`.
    pub loss_gap: f64,
    /// Mean cosine and mean L2 distance between the sensitivities `∂ŷ/∂x_q` of model and GD.
    pub model_cos: f64,
    pub sensitivity_l2: f64,
    /// Mean `|ŷ_model - ŷ_GD|`.
    pub prediction_diff: f64,
}

/// Compares `weights` with `steps` GD steps of size `eta` on `tasks`.
pub fn compare(
    weights: &LsaWeights,
    tasks: &Tasks,
    eta: f64,
    steps: usize,
    range: f64,
) -> Comparison {
    let n = tasks.len();
    let d = tasks.dim;
    let (mut lm, mut lg, mut l0, mut cos, mut l2, mut pd) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for t in 0..n {
        let (y_m, s_m) = weights.predict(tasks, t);
        let w = gd_weights(tasks, t, eta, steps);
        let y_g = dot(&w, &tasks.xs(t)[tasks.context * d..]);
        let y = tasks.target(t);
        lm += 0.5 * (y_m - y).powi(2);
        lg += 0.5 * (y_g - y).powi(2);
        l0 += 0.5 * y * y;
        let denom = (dot(&s_m, &s_m) * dot(&w, &w)).sqrt();
        cos += if denom > 0.0 {
            dot(&s_m, &w) / denom
        } else {
            0.0
        };
        l2 += s_m
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        pd += (y_m - y_g).abs();
    }
    let k = n as f64;
    Comparison {
        tasks: n,
        input_range: range,
        model_loss: lm / k,
        gd_loss: lg / k,
        zero_loss: l0 / k,
        loss_gap: lm / lg - 1.0,
        model_cos: cos / k,
        sensitivity_l2: l2 / k,
        prediction_diff: pd / k,
    }
}

/// The verdict's thresholds (documented in docs/transformers.md).
pub const MAX_LOSS_GAP: f64 = 0.02;
pub const MIN_MODEL_COS: f64 = 0.99;

/// Does the trained forward pass implement gradient descent?
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IclVerdict {
    /// Loss within MAX_LOSS_GAP of tuned GD and sensitivities aligned (cos >= MIN_MODEL_COS),
    /// in distribution and under scaled inputs.
    ImplementsGd,
    /// Matches GD in distribution, but the alignment breaks under scaled inputs.
    GdInDistributionOnly,
    /// Neither: another algorithm, or training did not converge.
    NotGd,
}

impl IclVerdict {
    pub fn decide(in_dist: &Comparison, ood: &Comparison) -> IclVerdict {
        let close =
            |c: &Comparison| c.loss_gap.abs() <= MAX_LOSS_GAP && c.model_cos >= MIN_MODEL_COS;
        if !close(in_dist) {
            IclVerdict::NotGd
        } else if ood.model_cos >= MIN_MODEL_COS {
            IclVerdict::ImplementsGd
        } else {
            IclVerdict::GdInDistributionOnly
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            IclVerdict::ImplementsGd => "the forward pass implements gradient descent",
            IclVerdict::GdInDistributionOnly => {
                "matches gradient descent in distribution only (alignment breaks under scaled inputs)"
            }
            IclVerdict::NotGd => "the forward pass does not match gradient descent",
        }
    }
}

/// One point of the training curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurvePoint {
    pub step: usize,
    /// Loss on the step's batch, and on fixed validation tasks.
    pub train_loss: f64,
    pub val_loss: f64,
}

/// Everything `mesascope icl` measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IclReport {
    pub schema_version: u32,
    pub config: IclConfig,
    /// Tuned GD step size for K steps (K = layers).
    pub gd_eta: f64,
    /// Validation loss of K GD steps with the tuned η (the curve's reference line).
    pub gd_val_loss: f64,
    pub curve: Vec<CurvePoint>,
    pub in_distribution: Comparison,
    pub out_of_distribution: Comparison,
    /// Largest |ŷ_constructed - ŷ_GD| over the held-out tasks for the hand-constructed weights
    /// with the tuned η (0 up to rounding: the construction is exact).
    pub constructed_max_diff: f64,
    pub verdict: IclVerdict,
    pub thresholds: Thresholds,
    pub train_seconds: f64,
    pub final_weights: LsaWeights,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Thresholds {
    pub max_loss_gap: f64,
    pub min_model_cos: f64,
}

/// Tunes GD, trains the LSA with Adam, and compares them on held-out tasks. `progress` is called
/// after every training step with (step, batch loss).
pub fn run(config: &IclConfig, progress: &mut dyn FnMut(usize, f64)) -> Result<IclReport> {
    config.validate()?;
    let c = config;
    let (d, n, k) = (c.dim, c.context, c.layers);
    let sample = |count: usize, range: f64, stream: u64| {
        Tasks::sample(
            d,
            n,
            count,
            range,
            c.noise,
            &mut Rng::new(mix(&[c.seed, stream])),
        )
    };
    let tune = sample(c.tune_tasks, c.input_range, 1);
    let val = sample(c.tune_tasks.min(1000), c.input_range, 2);
    let test = sample(c.eval_tasks, c.input_range, 3);
    let ood = sample(c.eval_tasks, c.input_range * c.ood_scale, 4);
    let eta = tune_eta(&tune, k);
    let gd_val_loss = mean_loss(&val, |t| gd_predict(&val, t, eta, k));

    let device = crate::device().autodiff();
    let mut rng = Rng::new(mix(&[c.seed, 5]));
    let mut net = LsaNet::init(d, k, 0.1, &mut rng, &device);
    let mut optim = AdamConfig::new().init();
    let start = std::time::Instant::now();
    let mut curve = Vec::new();
    for step in 1..=c.steps {
        let batch = Tasks::sample(d, n, c.batch, c.input_range, c.noise, &mut rng);
        let target: Vec<f32> = (0..batch.len()).map(|t| batch.target(t) as f32).collect();
        let target = Tensor::<1>::from_data(TensorData::new(target, [batch.len()]), &device);
        let pred = net.forward(token_tensor(&batch, &device), n);
        let loss = (pred - target).square().mean() * 0.5;
        let loss_value = loss.clone().detach().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            return Err(LearnError::Config(format!(
                "the training loss became non-finite at step {step}; try a lower learning rate"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        // Cosine decay to 0: the last steps average out the batch noise.
        let lr =
            c.lr * 0.5 * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / c.steps as f64).cos());
        net = optim.step(lr, net, grads);
        if step % c.log_every == 0 || step == c.steps || step == 1 {
            let w = net.weights(d);
            curve.push(CurvePoint {
                step,
                train_loss: loss_value,
                val_loss: mean_loss(&val, |t| w.predict(&val, t).0),
            });
        }
        progress(step, loss_value);
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let weights = net.weights(d);
    let in_distribution = compare(&weights, &test, eta, k, c.input_range);
    let out_of_distribution = compare(&weights, &ood, eta, k, c.input_range * c.ood_scale);
    let constructed = LsaWeights::gradient_descent(d, eta, k);
    let constructed_max_diff = (0..test.len())
        .map(|t| (constructed.predict(&test, t).0 - gd_predict(&test, t, eta, k)).abs())
        .fold(0.0, f64::max);
    Ok(IclReport {
        schema_version: 1,
        config: c.clone(),
        gd_eta: eta,
        gd_val_loss,
        curve,
        verdict: IclVerdict::decide(&in_distribution, &out_of_distribution),
        in_distribution,
        out_of_distribution,
        constructed_max_diff,
        thresholds: Thresholds {
            max_loss_gap: MAX_LOSS_GAP,
            min_model_cos: MIN_MODEL_COS,
        },
        train_seconds,
        final_weights: weights,
    })
}
