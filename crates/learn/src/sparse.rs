//! The sparse first layer of `embed-mlp`, outside burn: its input (the active feature rows of a
//! batch), its forward pass, its hand-written backward pass, and the lazy Adam that trains it.
//!
//! The layer is `out = x W + b` for `x` the 0/1 feature vector of a sample, computed as the sum
//! of the rows of `W` whose features are active. Its gradients, given `G = dL/d out` (`[N, hidden]`),
//! are the dense layer's: `dL/dW = x^T G` (each sample's row of `G` added to every row of `W` it
//! used) and `dL/db = sum over samples of G`.

use crate::policy::ActorCritic;
use rayon::prelude::*;

/// Adam's settings, shared by burn's Adam on the rest of the network and [`SparseAdam`] on
/// this layer: CleanRL's epsilon 1e-5, the usual betas.
pub const ADAM_BETA_1: f32 = 0.9;
pub const ADAM_BETA_2: f32 = 0.999;
pub const ADAM_EPSILON: f32 = 1e-5;

/// The sparse first layer of `embed-mlp`: one row per (position, feature) pair; a sample's
/// pre-activation is the bias plus the sum of the rows of its active features. It runs in plain
/// Rust rather than as a burn op: burn's gather + sum over `[N, L, hidden]` was ~100x slower on
/// this CPU than these loops, and the layer's gradient is a scatter-add of the output gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct CellEmbedding {
    pub rows: usize,
    pub hidden: usize,
    /// `[rows, hidden]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl CellEmbedding {
    /// `out[n] = bias + sum of weight rows of sample n`, `out: [N, hidden]`.
    pub fn forward(&self, cells: &CellBatch, out: &mut Vec<f32>) {
        // Samples are independent, so splitting them over threads changes no result.
        const BLOCK: usize = 64;
        let h = self.hidden;
        out.clear();
        out.resize(cells.len() * h, 0.0);
        out.par_chunks_mut(BLOCK * h)
            .enumerate()
            .for_each(|(b, block)| {
                for (j, o) in block.chunks_exact_mut(h).enumerate() {
                    o.copy_from_slice(&self.bias);
                    for &r in cells.sample(b * BLOCK + j) {
                        let row = &self.weight[r as usize * h..(r as usize + 1) * h];
                        for (a, b) in o.iter_mut().zip(row) {
                            *a += b;
                        }
                    }
                }
            });
    }

    /// Accumulates the gradients of weight and bias given the output gradient `[N, hidden]`.
    pub fn backward(&self, cells: &CellBatch, grad_out: &[f32], dw: &mut [f32], db: &mut [f32]) {
        let h = self.hidden;
        for g in grad_out.chunks_exact(h) {
            for (a, b) in db.iter_mut().zip(g) {
                *a += b;
            }
        }
        // A scatter-add: threads take disjoint bands of the table's rows, so none writes where
        // another does, and each sums its samples in the same order whatever the thread count.
        let bands = rayon::current_num_threads().max(1);
        let rows_per_band = self.rows.div_ceil(bands).max(1);
        dw.par_chunks_mut(rows_per_band * h)
            .enumerate()
            .for_each(|(b, table)| {
                let first = b * rows_per_band;
                let end = first + table.len() / h;
                for (n, g) in grad_out.chunks_exact(h).enumerate() {
                    for &r in cells.sample(n) {
                        let r = r as usize;
                        if (first..end).contains(&r) {
                            let row = &mut table[(r - first) * h..(r - first + 1) * h];
                            for (a, b) in row.iter_mut().zip(g) {
                                *a += b;
                            }
                        }
                    }
                }
            });
    }
}

/// Active feature rows of a batch of observations, CSR-style.
#[derive(Clone, Debug, Default)]
pub struct CellBatch {
    pub rows: Vec<u32>,
    /// `offsets[n]..offsets[n + 1]` are sample n's rows.
    pub offsets: Vec<usize>,
}

impl CellBatch {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sample(&self, n: usize) -> &[u32] {
        &self.rows[self.offsets[n]..self.offsets[n + 1]]
    }
}

/// Adam for the sparse layer ([`ADAM_BETA_1`], [`ADAM_BETA_2`], [`ADAM_EPSILON`], as burn's Adam
/// on the rest), with its gradient buffers. It is lazy, as embedding optimizers usually are: a
/// step updates only the rows some sample of the minibatch used (and the bias), so its cost
/// follows the features present, not the ~800k-entry table. On rows used at every step it is
/// exactly Adam.
#[derive(Clone, Debug)]
pub struct SparseAdam {
    /// `dL/dW` (`[rows, hidden]`; only the current minibatch's rows are meaningful) and `dL/db`.
    pub grad_w: Vec<f32>,
    pub grad_b: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    m_b: Vec<f32>,
    v_b: Vec<f32>,
    /// Rows used by the current minibatch, and a flag per row.
    touched: Vec<u32>,
    is_touched: Vec<bool>,
    /// Steps taken.
    t: i32,
}

impl SparseAdam {
    /// Zero moments for `layer`'s weights and bias.
    pub fn new(layer: &CellEmbedding) -> SparseAdam {
        let (w, b) = (layer.weight.len(), layer.bias.len());
        SparseAdam {
            grad_w: vec![0.0; w],
            grad_b: vec![0.0; b],
            m: vec![0.0; w],
            v: vec![0.0; w],
            m_b: vec![0.0; b],
            v_b: vec![0.0; b],
            touched: Vec::new(),
            is_touched: vec![false; layer.rows],
            t: 0,
        }
    }

    /// For a network's sparse layer, if it has one.
    pub fn for_model(model: &ActorCritic) -> Option<SparseAdam> {
        model.embed.as_ref().map(SparseAdam::new)
    }

    /// The gradients of a minibatch: records the rows `cells` uses, zeroes their gradients and
    /// the bias's, and back-propagates `grad_out` (`[N, hidden]`, the gradient of the layer's
    /// output) into them.
    pub fn gradients(&mut self, layer: &CellEmbedding, cells: &CellBatch, grad_out: &[f32]) {
        self.touch(cells, layer.hidden);
        layer.backward(cells, grad_out, &mut self.grad_w, &mut self.grad_b);
    }

    fn touch(&mut self, cells: &CellBatch, hidden: usize) {
        for &r in &self.touched {
            self.is_touched[r as usize] = false;
        }
        self.touched.clear();
        for &r in &cells.rows {
            if !self.is_touched[r as usize] {
                self.is_touched[r as usize] = true;
                self.touched.push(r);
            }
        }
        for &r in &self.touched {
            let r = r as usize;
            self.grad_w[r * hidden..(r + 1) * hidden].fill(0.0);
        }
        self.grad_b.fill(0.0);
    }

    /// The squared L2 norm of the current gradients, for global-norm clipping.
    pub fn grad_sq(&self) -> f64 {
        let h = self.grad_b.len();
        let sq = |xs: &[f32]| xs.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
        self.touched
            .iter()
            .map(|&r| sq(&self.grad_w[r as usize * h..(r as usize + 1) * h]))
            .sum::<f64>()
            + sq(&self.grad_b)
    }

    /// One Adam step of `layer` with learning rate `lr` on the current gradients times `scale`
    /// (the global-norm clipping factor).
    pub fn step(&mut self, layer: &mut CellEmbedding, lr: f32, scale: f32) {
        self.t += 1;
        let adam = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            adam_update(w, g, m, v, lr, scale, self.t)
        };
        let h = layer.hidden;
        for &r in &self.touched {
            let span = r as usize * h..(r as usize + 1) * h;
            adam(
                &mut layer.weight[span.clone()],
                &self.grad_w[span.clone()],
                &mut self.m[span.clone()],
                &mut self.v[span],
            );
        }
        adam(&mut layer.bias, &self.grad_b, &mut self.m_b, &mut self.v_b);
    }
}

/// One Adam update of the weights `w` from their gradients `g` times `scale`, with moments
/// `m` and `v`, at step `t` (from 1).
fn adam_update(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    scale: f32,
    t: i32,
) {
    const B1: f32 = ADAM_BETA_1;
    const B2: f32 = ADAM_BETA_2;
    let c1 = 1.0 - B1.powi(t);
    let c2 = 1.0 - B2.powi(t);
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        let g = g * scale;
        *m = B1 * *m + (1.0 - B1) * g;
        *v = B2 * *v + (1.0 - B2) * g * g;
        *w -= lr * (*m / c1) / ((*v / c2).sqrt() + ADAM_EPSILON);
    }
}

/// Adam over one flat vector of weights outside burn (the planner's), with its gradient buffer;
/// the same update as [`SparseAdam`] on rows used at every step.
#[derive(Clone, Debug)]
pub struct FlatAdam {
    pub grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl FlatAdam {
    pub fn new(len: usize) -> FlatAdam {
        FlatAdam {
            grad: vec![0.0; len],
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// The squared L2 norm of the current gradient, for global-norm clipping.
    pub fn grad_sq(&self) -> f64 {
        self.grad.iter().map(|&g| g as f64 * g as f64).sum()
    }

    /// One step of `weights` on the current gradient times `scale`.
    pub fn step(&mut self, weights: &mut [f32], lr: f32, scale: f32) {
        self.t += 1;
        adam_update(
            weights,
            &self.grad,
            &mut self.m,
            &mut self.v,
            lr,
            scale,
            self.t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{to_vec1, to_vec2, Dense};
    use burn::module::Param;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Tensor, TensorData};
    use mesascope_core::rng::Rng;

    fn uniform(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.unit() as f32 - 0.5).collect()
    }

    fn layer(rows: usize, hidden: usize, seed: u64) -> CellEmbedding {
        let mut rng = Rng::new(seed);
        CellEmbedding {
            rows,
            hidden,
            weight: uniform(rows * hidden, &mut rng),
            bias: uniform(hidden, &mut rng),
        }
    }

    fn batch(samples: &[&[u32]]) -> CellBatch {
        let mut b = CellBatch {
            rows: Vec::new(),
            offsets: vec![0],
        };
        for s in samples {
            b.rows.extend_from_slice(s);
            b.offsets.push(b.rows.len());
        }
        b
    }

    /// The 0/1 (or count) feature matrix `[N, rows]` the sparse layer stands for.
    fn dense_input(cells: &CellBatch, rows: usize) -> Vec<f32> {
        let mut x = vec![0f32; cells.len() * rows];
        for n in 0..cells.len() {
            for &r in cells.sample(n) {
                x[n * rows + r as usize] += 1.0;
            }
        }
        x
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn forward_and_backward_match_autodiff_of_the_dense_layer() {
        let (rows, h) = (7, 5);
        let e = layer(rows, h, 1);
        // Samples with several rows, none, one, and a row used twice by one sample.
        let cells = batch(&[&[0, 3, 6], &[], &[3], &[1, 2, 3, 4], &[6, 0, 6]]);
        let n = cells.len();
        let mut out = Vec::new();
        e.forward(&cells, &mut out);
        // A loss that is not linear in the output: L = sum(c * out^2) / 2, dL/dout = c * out.
        let c = uniform(n * h, &mut Rng::new(2));
        let grad_out: Vec<f32> = out.iter().zip(&c).map(|(o, c)| c * o).collect();
        let (mut dw, mut db) = (vec![0f32; rows * h], vec![0f32; h]);
        e.backward(&cells, &grad_out, &mut dw, &mut db);

        let dev = crate::device().autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(dense_input(&cells, rows), [n, rows]), &dev);
        let w = Tensor::<2>::from_data(TensorData::new(e.weight.clone(), [rows, h]), &dev)
            .require_grad();
        let b = Tensor::<1>::from_data(TensorData::new(e.bias.clone(), [h]), &dev).require_grad();
        let dense_out = x.matmul(w.clone()) + b.clone().unsqueeze_dim::<2>(0);
        assert_close(&out, &to_vec2(dense_out.clone()), 1e-6, "output");
        let ct = Tensor::<2>::from_data(TensorData::new(c, [n, h]), &dev);
        let loss = (dense_out.square() * ct).sum() * 0.5;
        let grads = loss.backward();
        let gw = to_vec2(w.grad(&grads).expect("W is a leaf that needs a gradient"));
        let gb = to_vec1(b.grad(&grads).expect("b is a leaf that needs a gradient"));
        assert_close(&dw, &gw, 1e-5, "dL/dW");
        assert_close(&db, &gb, 1e-5, "dL/db");
        // Rows no sample uses get no gradient.
        assert!(dw[5 * h..6 * h].iter().all(|&g| g == 0.0));
    }

    #[test]
    fn backward_does_not_depend_on_the_thread_count() {
        let (rows, h) = (50, 4);
        let e = layer(rows, h, 3);
        let mut rng = Rng::new(4);
        let samples: Vec<Vec<u32>> = (0..40)
            .map(|_| (0..6).map(|_| rng.below(rows) as u32).collect())
            .collect();
        let cells = batch(&samples.iter().map(|s| s.as_slice()).collect::<Vec<_>>());
        let grad_out = uniform(cells.len() * h, &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                let (mut dw, mut db) = (vec![0f32; rows * h], vec![0f32; h]);
                e.backward(&cells, &grad_out, &mut dw, &mut db);
                (dw, db)
            })
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
    }

    #[test]
    fn lazy_adam_is_burns_adam_on_rows_used_at_every_step() {
        let (rows, h) = (6, 3);
        let mut e = layer(rows, h, 5);
        let untouched = e.weight[h..2 * h].to_vec();
        let mut adam = SparseAdam::new(&e);
        let dev = crate::device().autodiff();
        let mut dense = Dense {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(e.weight.clone(), [rows, h]),
                &dev,
            )),
            bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(e.bias.clone(), [h]),
                &dev,
            )),
        };
        let mut optim = AdamConfig::new()
            .with_beta_1(ADAM_BETA_1)
            .with_beta_2(ADAM_BETA_2)
            .with_epsilon(ADAM_EPSILON)
            .init();
        // Rows 0, 2, 3 and 5 in every minibatch; row 1 (and 4) never.
        let cells = batch(&[&[0, 2], &[2, 5], &[3]]);
        let mut rng = Rng::new(6);
        let (lr, scale) = (0.01, 0.5);
        for _ in 0..4 {
            let grad_out = uniform(cells.len() * h, &mut rng);
            adam.gradients(&e, &cells, &grad_out);
            adam.step(&mut e, lr, scale);
            let scaled = |g: &[f32]| g.iter().map(|&g| g * scale).collect::<Vec<f32>>();
            let mut grads = GradientsParams::new();
            grads.register(
                dense.weight.id,
                Tensor::<2>::from_data(TensorData::new(scaled(&adam.grad_w), [rows, h]), &dev),
            );
            grads.register(
                dense.bias.id,
                Tensor::<1>::from_data(TensorData::new(scaled(&adam.grad_b), [h]), &dev),
            );
            dense = optim.step(lr as f64, dense, grads);
        }
        assert_close(&e.weight, &to_vec2(dense.weight.val()), 1e-6, "weight");
        assert_close(&e.bias, &to_vec1(dense.bias.val()), 1e-6, "bias");
        assert_eq!(e.weight[h..2 * h], untouched[..]);
        // Each step moves a used weight by up to about lr.
        let start = layer(rows, h, 5).weight;
        let moved = e.weight.iter().zip(&start).map(|(a, b)| (a - b).abs());
        assert!(moved.fold(0f32, f32::max) > 0.5 * lr);
    }
}
