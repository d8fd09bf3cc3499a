//! The `planner` trunk: a value-propagation network (Nardelli et al. 2019's MVProp, a variant of
//! Tamar et al. 2016's value iteration network) whose weights are shared across positions, so
//! it runs on grids of any size. Per sample, with `C` channels and cells `p` of the grid:
//!
//! ```text
//! e(p)   = b_e + sum of E[f] over the features f of cell p       (a 1x1 convolution over one-hot planes)
//! g      = max over p of relu(e(p))                              (global max pooling: what shows anywhere)
//! h(p)   = relu(e(p) + g W_g)                                    (each cell in the context of the whole grid)
//! rbar(p) = sigmoid(h(p) . w_r + b_r)                            (the reward map)
//! prop(p) = sigmoid(h(p) . w_p + b_p)                            (the propagation map: near 0 where blocked)
//! v^0    = rbar
//! v^k(p) = max(v^(k-1)(p), (1 - prop(p)) rbar(p) + prop(p) max_{n in N(p)} v^(k-1)(n))
//! z      = [ln(v^K + 1e-3), rbar, prop at the agent and its 4 neighbours (up, right, down, left)], g, h(agent)
//! logits = dense heads on z + beta [ln(v^K + 1e-3) at the up, right, down, left neighbours]
//! ```
//!
//! A cell's features are its object, colour and state (MiniGrid's codes) and, for cells one
//! step from an edge of the grid, which edges (top, right, bottom, left): the grid's corners
//! and sides mean the same at every size, and without them a corner (corner-cheese's proxy,
//! which ends an episode unrewarded) would look like any other open cell. `N(p)` are the 4
//! neighbours (the agent's moves); off the grid counts as 0. The recurrence is
//! value iteration with learned rewards and per-cell discounts: a reward of 1 reached through `d`
//! cells of propagation `gamma` is worth `gamma^d`, so the log-values around the agent tell the
//! distance to what the network treats as rewarding, whatever the grid's size. `v^k` only grows,
//! so it stops after `K` = at most `iterations` steps, earlier where an iteration changes no
//! cell (then it is the fixpoint, and further steps would change nothing).
//!
//! The readout `z` has the same width on every grid; the dense layers and heads after it run in
//! burn. This part runs in plain Rust with a hand-written backward pass, as the sparse layer of
//! `embed-mlp` does: the recurrence is a few operations per cell per step, which burn runs as
//! one graph node each (`examples/planner_kernels.rs` measures the two side by side,
//! docs/training.md). The forward pass sweeps the whole grid each step. The backward pass
//! evaluates the recurrence again where a neighbour changed, logging each change (which
//! neighbour a value came from, at which step), and sends the gradient of each read value down
//! its chain of maxima: a few dozen cells per sample, not steps x cells.

use crate::policy::{cell_features, CELL_FEATURES};

/// Rows of the embedding: the cell features of `embed-mlp`, then 4 "one step from the top /
/// right / bottom / left edge" features.
pub const PLANNER_FEATURES: usize = CELL_FEATURES + 4;
/// A feature slot left empty.
const NO_FEATURE: u8 = u8::MAX;
use mesascope_core::grid::Object;
use mesascope_core::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The planner's size: channels of the cell embedding and the most propagation steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannerShape {
    pub channels: usize,
    pub iterations: usize,
}

impl Default for PlannerShape {
    /// 16 channels; up to 256 steps (a path of 256 cells: more than any 25x25 maze needs; the
    /// recurrence stops at its fixpoint, usually after the longest path the values travel).
    fn default() -> PlannerShape {
        PlannerShape {
            channels: 16,
            iterations: 256,
        }
    }
}

/// The planner's weights learn at this multiple of the network's learning rate. They are few
/// and shared by every cell, and a map has to move by several units before the sigmoid above
/// it saturates: at the network's rate (1e-3 by Adam's steps) that took thousands of updates.
pub const LEARNING_RATE_SCALE: f32 = 10.0;

/// Most channels and steps a planner may have.
pub const MAX_CHANNELS: usize = 256;
pub const MAX_ITERATIONS: usize = 4096;

impl PlannerShape {
    pub fn validate(&self) -> Result<(), String> {
        if self.channels == 0 {
            return Err("the planner needs at least one channel (channels is 0)".into());
        }
        if self.iterations == 0 {
            return Err("the planner needs at least one propagation step (iterations is 0)".into());
        }
        if self.channels > MAX_CHANNELS || self.iterations > MAX_ITERATIONS {
            return Err(format!(
                "the planner's channels ({}) and iterations ({}) must be at most {MAX_CHANNELS} and {MAX_ITERATIONS}",
                self.channels, self.iterations
            ));
        }
        Ok(())
    }

    /// Width of the readout `z`.
    pub fn readout_width(&self) -> usize {
        READ_CELLS * READ_MAPS + 2 * self.channels
    }
}

/// The agent's cell and its 4 neighbours, each read in 3 maps (log-value, reward, propagation).
const READ_CELLS: usize = 5;
/// Columns of the readout holding the log-values of the cells the 4 moves lead to (up, right,
/// down, left): the policy's logits get them times a learned scale, so that from the first
/// update the network prefers the neighbour it values most and the policy gradient reaches the
/// value map directly (as MVProp's actor does).
pub const MOVE_LOG_VALUES: [usize; 4] = [3, 6, 9, 12];
const READ_MAPS: usize = 3;
const LOG_EPS: f32 = 1e-3;

/// Observations of grids of any size: u8 MiniGrid cells `[H][W][3]` one after another.
#[derive(Clone, Debug, Default)]
pub struct GridBatch {
    pub bytes: Vec<u8>,
    /// Per sample: offset into `bytes`, height, width.
    pub grids: Vec<(usize, usize, usize)>,
}

impl GridBatch {
    /// `obs` holds `n` observations of `height x width`.
    pub fn uniform(obs: &[u8], height: usize, width: usize) -> GridBatch {
        let len = height * width * 3;
        let n = obs.len().checked_div(len).unwrap_or(0);
        GridBatch {
            bytes: obs[..n * len].to_vec(),
            grids: (0..n).map(|i| (i * len, height, width)).collect(),
        }
    }

    /// Appends one observation.
    pub fn push(&mut self, obs: &[u8], height: usize, width: usize) {
        self.grids.push((self.bytes.len(), height, width));
        self.bytes.extend_from_slice(&obs[..height * width * 3]);
    }

    pub fn len(&self) -> usize {
        self.grids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grids.is_empty()
    }

    /// Samples `range`, as a batch of its own.
    pub fn slice(&self, range: std::ops::Range<usize>) -> GridBatch {
        let mut b = GridBatch::default();
        for &(o, h, w) in &self.grids[range] {
            b.push(&self.bytes[o..], h, w);
        }
        b
    }

    fn sample(&self, i: usize) -> Sample<'_> {
        let (o, height, width) = self.grids[i];
        Sample {
            cells: &self.bytes[o..o + height * width * 3],
            height,
            width,
        }
    }
}

struct Sample<'a> {
    cells: &'a [u8],
    height: usize,
    width: usize,
}

/// Where each parameter lives in [`Planner::params`].
#[derive(Clone, Copy, Debug)]
struct Layout {
    c: usize,
}

impl Layout {
    fn embed(&self) -> std::ops::Range<usize> {
        0..PLANNER_FEATURES * self.c
    }
    fn embed_bias(&self) -> std::ops::Range<usize> {
        let s = self.embed().end;
        s..s + self.c
    }
    fn context(&self) -> std::ops::Range<usize> {
        let s = self.embed_bias().end;
        s..s + self.c * self.c
    }
    fn reward(&self) -> std::ops::Range<usize> {
        let s = self.context().end;
        s..s + self.c
    }
    fn reward_bias(&self) -> usize {
        self.reward().end
    }
    fn propagation(&self) -> std::ops::Range<usize> {
        let s = self.reward_bias() + 1;
        s..s + self.c
    }
    fn propagation_bias(&self) -> usize {
        self.propagation().end
    }
    fn len(&self) -> usize {
        self.propagation_bias() + 1
    }
}

/// The planner's parameters, one flat vector (so one Adam and one gradient buffer serve them).
#[derive(Clone, Debug, PartialEq)]
pub struct Planner {
    pub shape: PlannerShape,
    pub params: Vec<f32>,
}

/// Names and shapes of the planner's tensors in a checkpoint, in [`Planner::params`] order.
pub fn tensor_names(shape: &PlannerShape) -> Vec<(&'static str, Vec<usize>)> {
    let c = shape.channels;
    vec![
        ("trunk.planner.embed", vec![PLANNER_FEATURES, c]),
        ("trunk.planner.embed_bias", vec![c]),
        ("trunk.planner.context", vec![c, c]),
        ("trunk.planner.reward.weight", vec![c]),
        ("trunk.planner.reward.bias", vec![1]),
        ("trunk.planner.propagation.weight", vec![c]),
        ("trunk.planner.propagation.bias", vec![1]),
    ]
}

/// The maps one sample's forward pass computes, `[H * W]` each, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Maps {
    /// The cells' hidden pre-activations `e(p) + g W_g` (`h` before its ReLU), `[H * W][C]`:
    /// the spatial layer the reward and propagation maps are read from.
    pub hidden: Vec<f32>,
    pub reward: Vec<f32>,
    pub propagation: Vec<f32>,
    pub value: Vec<f32>,
    /// Propagation steps taken (`K`).
    pub steps: usize,
}

/// An intervention on one sample's forward pass, for steering and retargeting: deltas added
/// to the cells' hidden pre-activations `e(p) + g W_g` (`[H * W * C]`, as [`Maps::hidden`]),
/// so that the maps and the agent's `h` are read from the edited cells, and to the reward map
/// (`[H * W]`; the edited map is clamped to [0, 1], the sigmoid's range, so that values stay
/// rewards). The global pooling `g` is left as it was: it reads the embedding before the edit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapEdit {
    pub hidden: Option<Vec<f32>>,
    pub reward: Option<Vec<f32>>,
}

impl MapEdit {
    /// Whether the deltas fit a grid of `cells` cells and `channels` channels.
    pub fn check(&self, cells: usize, channels: usize) -> Result<(), String> {
        for (name, delta, len) in [
            ("hidden", &self.hidden, cells * channels),
            ("reward", &self.reward, cells),
        ] {
            if let Some(d) = delta {
                if d.len() != len || d.iter().any(|x| !x.is_finite()) {
                    return Err(format!(
                        "an edit of the planner's {name} map needs {len} finite values on this grid, found {}",
                        d.len()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A supervised label for the reward map ([`Planner::backward_with_labels`]): the move taken
/// (0-3: up, right, down, left, the order of the readout's neighbours) and whether it was
/// rewarded, with the loss's weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RewardLabel {
    pub action: usize,
    pub rewarded: bool,
    pub weight: f32,
}

/// Buffers of one sample's forward pass; reused from sample to sample on a thread.
#[derive(Default)]
struct Work {
    /// Per cell `[cells][C]`: the embedding `e` and the context's pre-activation `e + g W_g`.
    e: Vec<f32>,
    pre: Vec<f32>,
    /// Global max pool and the cell each channel's maximum came from.
    g: Vec<f32>,
    g_cell: Vec<usize>,
    ctx: Vec<f32>,
    /// Each cell's feature rows ([`NO_FEATURE`] where a slot is empty).
    features: Vec<[u8; 5]>,
    /// On the grid padded by one ring of zeros, `(H + 2) x (W + 2)`.
    reward: Vec<f32>,
    prop: Vec<f32>,
    /// `(1 - prop) * reward`.
    base: Vec<f32>,
    /// Whether a padded index is a cell of the grid (not the ring).
    inside: Vec<bool>,
    /// The values, `v^K` once the recurrence is done, and a second grid for sweeps.
    value: Vec<f32>,
    next_value: Vec<f32>,
    /// Every change of a value, in step order; `last[i]` is cell i's latest (or [`NONE`]).
    log: Vec<Change>,
    last: Vec<u32>,
    /// The cells to evaluate at the current step and the next, and the step each cell was
    /// last queued for.
    frontier: Vec<u32>,
    next: Vec<u32>,
    queued: Vec<u32>,
    /// The current step's new values: (cell, value, neighbour taken from, its value).
    updates: Vec<(u32, f32, u32, f32)>,
    steps: usize,
    agent: usize,
    width: usize,
    height: usize,
}

impl Work {
    fn padded(&self) -> usize {
        (self.height + 2) * (self.width + 2)
    }

    /// Padded index of cell `p` (row-major on the grid).
    fn pad(&self, p: usize) -> usize {
        (p / self.width + 1) * (self.width + 2) + p % self.width + 1
    }

    /// The agent's padded index and its 4 neighbours' (up, right, down, left).
    fn read_cells(&self) -> [usize; READ_CELLS] {
        let a = self.pad(self.agent);
        let w = self.width + 2;
        [a, a - w, a + 1, a + w, a - 1]
    }

    fn value(&self) -> &[f32] {
        &self.value
    }

    fn interior(&self, i: usize) -> bool {
        self.inside[i]
    }
}

/// One step's change of one cell's value at `step`, taken from neighbour `from` whose value at
/// `step - 1` was `m`; `prev` is the cell's change before (or [`NONE`]).
#[derive(Clone, Copy, Debug)]
struct Change {
    step: u32,
    from: u32,
    m: f32,
    prev: u32,
}

const NONE: u32 = u32::MAX;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Planner {
    /// Fresh weights: He-scaled embedding (three active rows per cell) and context; the maps'
    /// weights small, so that they start nearly flat, the reward low (sigmoid(-4) = 0.018) and
    /// propagation high (sigmoid(3) = 0.95): no cell looks better than another until training
    /// says which, and then a reward of 0.5 is seen 60 cells away above the background.
    pub fn init(shape: PlannerShape, rng: &mut Rng) -> Planner {
        let lay = Layout { c: shape.channels };
        let c = shape.channels;
        let mut params = vec![0.0; lay.len()];
        let normal = |n: usize, std: f32, rng: &mut Rng| crate::policy::normal_vec(n, std, rng);
        params[lay.embed()].copy_from_slice(&normal(
            PLANNER_FEATURES * c,
            (2.0f32 / 3.0).sqrt(),
            rng,
        ));
        params[lay.context()].copy_from_slice(&normal(c * c, 0.5 / (c as f32).sqrt(), rng));
        params[lay.reward()].copy_from_slice(&normal(c, 0.1 / (c as f32).sqrt(), rng));
        params[lay.propagation()].copy_from_slice(&normal(c, 0.1 / (c as f32).sqrt(), rng));
        params[lay.reward_bias()] = -4.0;
        params[lay.propagation_bias()] = 3.0;
        Planner { shape, params }
    }

    fn layout(&self) -> Layout {
        Layout {
            c: self.shape.channels,
        }
    }

    /// The tensors of [`tensor_names`], as slices of the parameters.
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>, &[f32])> {
        let mut out = Vec::new();
        let mut at = 0;
        for (name, shape) in tensor_names(&self.shape) {
            let n: usize = shape.iter().product();
            out.push((name, shape, &self.params[at..at + n]));
            at += n;
        }
        out
    }

    pub fn readout_width(&self) -> usize {
        self.shape.readout_width()
    }

    /// The readout `z` of every sample, `[N, readout_width]` row-major.
    pub fn forward(&self, batch: &GridBatch, out: &mut Vec<f32>) {
        self.forward_edited(batch, &[], out)
    }

    /// [`Planner::forward`] with sample `i` edited by `edits[i]` (samples beyond `edits` are
    /// not; check each edit's size with [`MapEdit::check`] first: a wrong size is a bug).
    pub fn forward_edited(&self, batch: &GridBatch, edits: &[MapEdit], out: &mut Vec<f32>) {
        const BLOCK: usize = 16;
        let d = self.readout_width();
        out.clear();
        out.resize(batch.len() * d, 0.0);
        out.par_chunks_mut(BLOCK * d).enumerate().for_each_init(
            Work::default,
            |work, (b, block)| {
                for (j, z) in block.chunks_exact_mut(d).enumerate() {
                    let i = b * BLOCK + j;
                    self.prepare(batch.sample(i), edits.get(i), work);
                    self.sweep(work);
                    self.readout(work, z);
                }
            },
        );
    }

    /// Each sample's reward, propagation and value maps (for probes and pictures).
    pub fn maps(&self, batch: &GridBatch) -> Vec<Maps> {
        self.maps_edited(batch, &[])
    }

    /// [`Planner::maps`] with the edits of [`Planner::forward_edited`].
    pub fn maps_edited(&self, batch: &GridBatch, edits: &[MapEdit]) -> Vec<Maps> {
        (0..batch.len())
            .into_par_iter()
            .map_init(Work::default, |work, i| {
                self.prepare(batch.sample(i), edits.get(i), work);
                self.sweep(work);
                let cells = work.width * work.height;
                let unpad = |m: &[f32]| (0..cells).map(|p| m[work.pad(p)]).collect::<Vec<f32>>();
                Maps {
                    hidden: work.pre.clone(),
                    reward: unpad(&work.reward),
                    propagation: unpad(&work.prop),
                    value: unpad(work.value()),
                    steps: work.steps,
                }
            })
            .collect()
    }

    /// The gradient of the parameters given the gradient of the readout, `dz: [N, readout_width]`,
    /// summed over the samples into `grad` (overwritten). Samples go in fixed blocks whose sums
    /// are added in order, so the result does not depend on the thread count.
    pub fn backward(&self, batch: &GridBatch, dz: &[f32], grad: &mut [f32]) {
        self.backward_with_labels(batch, dz, &[], grad)
    }

    /// [`Planner::backward`] plus the gradient of a supervised loss on the reward map: for
    /// sample `i` with `labels[i]`, `weight` times the binary cross-entropy between the reward
    /// map at the cell its move enters and whether that move was rewarded (its gradient with
    /// respect to the map's logit there is `weight (rbar - y)`).
    pub fn backward_with_labels(
        &self,
        batch: &GridBatch,
        dz: &[f32],
        labels: &[Option<RewardLabel>],
        grad: &mut [f32],
    ) {
        const BLOCK: usize = 32;
        let d = self.readout_width();
        let n = batch.len();
        let partial: Vec<Vec<f32>> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map_init(
                || (Work::default(), Grads::default()),
                |(work, scratch), b| {
                    let mut g = vec![0f32; self.params.len()];
                    for i in b * BLOCK..((b + 1) * BLOCK).min(n) {
                        self.run(batch.sample(i), work);
                        let label = labels.get(i).copied().flatten();
                        self.backward_one(work, &dz[i * d..(i + 1) * d], label, scratch, &mut g);
                    }
                    g
                },
            )
            .collect();
        grad.fill(0.0);
        for p in &partial {
            for (a, b) in grad.iter_mut().zip(p) {
                *a += b;
            }
        }
    }

    /// One sample's forward pass into `work`, with the log of its value changes (for the
    /// backward pass).
    fn run(&self, s: Sample<'_>, work: &mut Work) {
        self.prepare(s, None, work);
        self.propagate(work);
    }

    /// The embedding, pooling, context and maps of one sample, into `work`, with `edit`'s
    /// deltas added.
    fn prepare(&self, s: Sample<'_>, edit: Option<&MapEdit>, work: &mut Work) {
        let lay = self.layout();
        let c = lay.c;
        let p = &self.params;
        let (h, w) = (s.height, s.width);
        let cells = h * w;
        work.height = h;
        work.width = w;
        work.agent = (0..cells)
            .find(|&q| s.cells[3 * q] == Object::Agent as u8)
            .unwrap_or(0);
        // e(p): the bias plus the rows of the cell's features.
        work.e.clear();
        work.e.resize(cells * c, 0.0);
        work.features.clear();
        let embed = &p[lay.embed()];
        for (q, e) in work.e.chunks_exact_mut(c).enumerate() {
            e.copy_from_slice(&p[lay.embed_bias()]);
            let cell = mesascope_core::grid::Cell {
                object: s.cells[3 * q],
                colour: s.cells[3 * q + 1],
                state: s.cells[3 * q + 2],
            };
            let (o, col, st) = cell_features(cell);
            let (row, column) = (q / w, q % w);
            let edge = |near: bool, k: usize| {
                if near {
                    (CELL_FEATURES + k) as u8
                } else {
                    NO_FEATURE
                }
            };
            // One slot per axis (NO_FEATURE is the largest value, so `min` keeps a set one).
            let vertical = edge(row == 1, 0).min(edge(row + 2 == h, 2));
            let horizontal = edge(column + 2 == w, 1).min(edge(column == 1, 3));
            let f = [o as u8, col as u8, st as u8, vertical, horizontal];
            work.features.push(f);
            for &f in f.iter().filter(|&&f| f != NO_FEATURE) {
                let f = f as usize;
                for (a, b) in e.iter_mut().zip(&embed[f * c..(f + 1) * c]) {
                    *a += b;
                }
            }
        }
        // g: max over cells of relu(e), and where each channel's maximum is.
        work.g.clear();
        work.g.resize(c, 0.0);
        work.g_cell.clear();
        work.g_cell.resize(c, usize::MAX);
        for (q, e) in work.e.chunks_exact(c).enumerate() {
            for ((&x, g), at) in e.iter().zip(&mut work.g).zip(&mut work.g_cell) {
                if x > *g {
                    *g = x;
                    *at = q;
                }
            }
        }
        // The context g W_g, the same for every cell.
        work.ctx.clear();
        work.ctx.resize(c, 0.0);
        let wg = &p[lay.context()];
        for j in 0..c {
            let gj = work.g[j];
            if gj != 0.0 {
                for (a, b) in work.ctx.iter_mut().zip(&wg[j * c..(j + 1) * c]) {
                    *a += gj * b;
                }
            }
        }
        let n = work.padded();
        work.reward.clear();
        work.reward.resize(n, 0.0);
        work.prop.clear();
        work.prop.resize(n, 0.0);
        work.base.clear();
        work.base.resize(n, 0.0);
        work.inside.clear();
        work.inside.resize(n, false);
        work.pre.clear();
        work.pre.resize(cells * c, 0.0);
        let (wr, br) = (&p[lay.reward()], p[lay.reward_bias()]);
        let (wp, bp) = (&p[lay.propagation()], p[lay.propagation_bias()]);
        let hidden_delta = edit.and_then(|e| e.hidden.as_deref());
        let reward_delta = edit.and_then(|e| e.reward.as_deref());
        for q in 0..cells {
            let pre = &mut work.pre[q * c..(q + 1) * c];
            let (mut lr, mut lp) = (br, bp);
            for j in 0..c {
                pre[j] = work.e[q * c + j] + work.ctx[j];
                if let Some(d) = hidden_delta {
                    pre[j] += d[q * c + j];
                }
                let hj = pre[j].max(0.0);
                lr += hj * wr[j];
                lp += hj * wp[j];
            }
            let i = work.pad(q);
            work.inside[i] = true;
            let (mut r, pr) = (sigmoid(lr), sigmoid(lp));
            if let Some(d) = reward_delta {
                r = (r + d[q]).clamp(0.0, 1.0);
            }
            work.reward[i] = r;
            work.prop[i] = pr;
            work.base[i] = (1.0 - pr) * r;
        }
    }

    /// The recurrence on the padded grid (the ring stays 0, so an edge cell's missing
    /// neighbours offer nothing), logging every change for the backward pass. A cell can change
    /// at step k only if a neighbour changed at step k - 1, so each step evaluates only the
    /// neighbours of the last step's changes (all cells at step 1), reading the previous
    /// step's values: the same values as [`Planner::sweep`].
    fn propagate(&self, work: &mut Work) {
        let n = work.padded();
        let wp2 = work.width + 2;
        work.value.clear();
        work.value.extend_from_slice(&work.reward);
        work.log.clear();
        work.last.clear();
        work.last.resize(n, NONE);
        work.queued.clear();
        work.queued.resize(n, 0);
        let mut frontier = std::mem::take(&mut work.frontier);
        frontier.clear();
        frontier.extend((0..n as u32).filter(|&i| work.interior(i as usize)));
        work.frontier = frontier;
        work.steps = 0;
        for step in 1..=self.shape.iterations as u32 {
            work.updates.clear();
            for &i in &work.frontier {
                let i = i as usize;
                let v = &work.value;
                let (u, r, d, l) = (v[i - wp2], v[i + 1], v[i + wp2], v[i - 1]);
                let m = u.max(r).max(d).max(l);
                let cand = work.base[i] + work.prop[i] * m;
                if cand > v[i] {
                    // The first neighbour holding the maximum, in the moves' order.
                    let from = if u == m {
                        i - wp2
                    } else if r == m {
                        i + 1
                    } else if d == m {
                        i + wp2
                    } else {
                        i - 1
                    };
                    work.updates.push((i as u32, cand, from as u32, m));
                }
            }
            if work.updates.is_empty() {
                break;
            }
            work.steps = step as usize;
            work.next.clear();
            for k in 0..work.updates.len() {
                let (i, value, from, m) = work.updates[k];
                work.value[i as usize] = value;
                work.log.push(Change {
                    step,
                    from,
                    m,
                    prev: work.last[i as usize],
                });
                work.last[i as usize] = (work.log.len() - 1) as u32;
                let i = i as usize;
                for q in [i - wp2, i + 1, i + wp2, i - 1] {
                    if work.queued[q] != step && work.interior(q) {
                        work.queued[q] = step;
                        work.next.push(q as u32);
                    }
                }
            }
            std::mem::swap(&mut work.frontier, &mut work.next);
        }
    }

    /// The recurrence as whole-grid sweeps over contiguous rows (vectorized), into
    /// `work.value` and `work.steps`, without the log of changes: the forward pass when no
    /// gradient follows (rollouts, the readout before a backward pass, maps). The same values as
    /// [`Planner::propagate`] (a test checks), and faster on its own at 15x15 and above
    /// (`examples/planner_kernels.rs`).
    fn sweep(&self, work: &mut Work) {
        let (h, w) = (work.height, work.width);
        let wp2 = w + 2;
        let mut old = std::mem::take(&mut work.value);
        old.clear();
        old.extend_from_slice(&work.reward);
        let mut new = std::mem::take(&mut work.next_value);
        new.clear();
        new.extend_from_slice(&old);
        work.steps = 0;
        for _ in 0..self.shape.iterations {
            let mut changed = false;
            for row in 0..h {
                let a = wp2 + 1 + row * wp2;
                let b = a + w;
                let (up, down) = (&old[a - wp2..b - wp2], &old[a + wp2..b + wp2]);
                let (left, right) = (&old[a - 1..b - 1], &old[a + 1..b + 1]);
                let row_cells = old[a..b]
                    .iter()
                    .zip(&mut new[a..b])
                    .zip(work.base[a..b].iter().zip(&work.prop[a..b]));
                let ns = up.iter().zip(right).zip(down.iter().zip(left));
                for (((&o, nv), (&base, &pr)), ((&u, &r), (&d, &l))) in row_cells.zip(ns) {
                    let m = u.max(r).max(d).max(l);
                    let cand = base + pr * m;
                    let v = if cand > o { cand } else { o };
                    changed |= v != o;
                    *nv = v;
                }
            }
            if !changed {
                break;
            }
            work.steps += 1;
            std::mem::swap(&mut old, &mut new);
        }
        work.value = old;
        work.next_value = new;
    }

    /// Sample `i`'s value map and steps by [`Planner::propagate`], the evaluation the backward
    /// pass uses: for tests and `examples/planner_kernels.rs`.
    pub fn value_by_frontier(&self, batch: &GridBatch, i: usize) -> (Vec<f32>, usize) {
        let mut work = Work::default();
        self.run(batch.sample(i), &mut work);
        let cells = work.height * work.width;
        let value = (0..cells).map(|p| work.value[work.pad(p)]).collect();
        (value, work.steps)
    }

    /// `z` of the sample in `work`.
    fn readout(&self, work: &Work, z: &mut [f32]) {
        let c = self.shape.channels;
        let v = work.value();
        for (k, &i) in work.read_cells().iter().enumerate() {
            z[k * READ_MAPS] = (v[i] + LOG_EPS).ln();
            z[k * READ_MAPS + 1] = work.reward[i];
            z[k * READ_MAPS + 2] = work.prop[i];
        }
        let at = READ_CELLS * READ_MAPS;
        z[at..at + c].copy_from_slice(&work.g);
        let pre = &work.pre[work.agent * c..(work.agent + 1) * c];
        for (o, &x) in z[at + c..at + 2 * c].iter_mut().zip(pre) {
            *o = x.max(0.0);
        }
    }

    /// Adds one sample's parameter gradient to `grad`, given `dz`; `work` holds its recorded
    /// forward pass.
    fn backward_one(
        &self,
        work: &Work,
        dz: &[f32],
        label: Option<RewardLabel>,
        s: &mut Grads,
        grad: &mut [f32],
    ) {
        let lay = self.layout();
        let c = lay.c;
        let p = &self.params;
        let n = work.padded();
        let cells = work.height * work.width;
        s.reset(n, cells * c, c);
        // The readout. A value's gradient follows the chain of maxima it came from: at each
        // change, to the cell's base and propagation and to the neighbour it took (at the step
        // before); before its first change a value is the cell's reward.
        let v = work.value();
        let steps = work.steps as u32;
        for (k, &i) in work.read_cells().iter().enumerate() {
            let g = dz[k * READ_MAPS] / (v[i] + LOG_EPS);
            trace(work, s, i, steps, g);
            s.dreward[i] += dz[k * READ_MAPS + 1];
            s.dprop[i] += dz[k * READ_MAPS + 2];
        }
        let at = READ_CELLS * READ_MAPS;
        s.dg.copy_from_slice(&dz[at..at + c]);
        for j in 0..c {
            if work.pre[work.agent * c + j] > 0.0 {
                s.dpre[work.agent * c + j] += dz[at + c + j];
            }
        }
        // v^0 = reward; base = (1 - prop) reward; then the two sigmoids and their linear maps.
        let (wr, wp) = (&p[lay.reward()], &p[lay.propagation()]);
        let (mut d_br, mut d_bp) = (0f32, 0f32);
        // The supervised reward label's cell (off the grid: none), and its logit's gradient.
        let labelled = label.map(|l| {
            let i = work.read_cells()[1 + l.action];
            let y = if l.rewarded { 1.0 } else { 0.0 };
            (i, l.weight * (work.reward[i] - y))
        });
        for q in 0..cells {
            let i = work.pad(q);
            let (r, pr) = (work.reward[i], work.prop[i]);
            let dr = s.dreward[i] + (1.0 - pr) * s.dbase[i];
            let dp = s.dprop[i] - r * s.dbase[i];
            let (mut lr, lp) = (dr * r * (1.0 - r), dp * pr * (1.0 - pr));
            if let Some((at, g)) = labelled {
                if at == i {
                    lr += g;
                }
            }
            if lr == 0.0 && lp == 0.0 {
                continue;
            }
            d_br += lr;
            d_bp += lp;
            let pre = &work.pre[q * c..(q + 1) * c];
            let dpre = &mut s.dpre[q * c..(q + 1) * c];
            for j in 0..c {
                if pre[j] > 0.0 {
                    s.dwr[j] += lr * pre[j];
                    s.dwp[j] += lp * pre[j];
                    dpre[j] += lr * wr[j] + lp * wp[j];
                }
            }
        }
        grad[lay.reward_bias()] += d_br;
        grad[lay.propagation_bias()] += d_bp;
        for (a, b) in grad[lay.reward()].iter_mut().zip(&s.dwr) {
            *a += b;
        }
        for (a, b) in grad[lay.propagation()].iter_mut().zip(&s.dwp) {
            *a += b;
        }
        // pre = e + g W_g: the context's gradient is the sum over cells.
        s.dctx.fill(0.0);
        for d in s.dpre.chunks_exact(c) {
            for (a, b) in s.dctx.iter_mut().zip(d) {
                *a += b;
            }
        }
        let wg = &p[lay.context()];
        let gwg = &mut grad[lay.context()];
        for j in 0..c {
            let gj = work.g[j];
            let row = &wg[j * c..(j + 1) * c];
            let mut dgj = 0f32;
            for k in 0..c {
                gwg[j * c + k] += gj * s.dctx[k];
                dgj += row[k] * s.dctx[k];
            }
            s.dg[j] += dgj;
        }
        // g = max over cells of relu(e): each channel's gradient goes to the cell it came from.
        for j in 0..c {
            let q = work.g_cell[j];
            if q != usize::MAX {
                s.dpre[q * c + j] += s.dg[j];
            }
        }
        // de(p) = dpre(p), into the bias and the rows of the cell's features.
        let eb = lay.embed_bias();
        let e0 = lay.embed().start;
        for q in 0..cells {
            let d = &s.dpre[q * c..(q + 1) * c];
            if d.iter().all(|&x| x == 0.0) {
                continue;
            }
            for (a, b) in grad[eb.clone()].iter_mut().zip(d) {
                *a += b;
            }
            for &f in work.features[q].iter().filter(|&&f| f != NO_FEATURE) {
                let f = f as usize;
                for (a, b) in grad[e0 + f * c..e0 + (f + 1) * c].iter_mut().zip(d) {
                    *a += b;
                }
            }
        }
    }
}

/// Adds gradient `g` of `v^t(i)` to the maps it was computed from, down its chain of maxima.
fn trace(work: &Work, s: &mut Grads, mut i: usize, mut t: u32, mut g: f32) {
    while g != 0.0 && work.interior(i) {
        // The cell's latest change at or before step t.
        let mut e = work.last[i];
        while e != NONE && work.log[e as usize].step > t {
            e = work.log[e as usize].prev;
        }
        if e == NONE {
            s.dreward[i] += g;
            return;
        }
        let ch = work.log[e as usize];
        s.dbase[i] += g;
        s.dprop[i] += ch.m * g;
        g *= work.prop[i];
        t = ch.step - 1;
        i = ch.from as usize;
    }
}

/// Gradient buffers of one sample's backward pass, reused from sample to sample.
#[derive(Default)]
struct Grads {
    /// Padded grids: the gradient of the reward, propagation and base maps.
    dreward: Vec<f32>,
    dprop: Vec<f32>,
    dbase: Vec<f32>,
    /// `[cells][C]`: the gradient of `e + g W_g` (then of `e`).
    dpre: Vec<f32>,
    dg: Vec<f32>,
    dctx: Vec<f32>,
    dwr: Vec<f32>,
    dwp: Vec<f32>,
}

impl Grads {
    fn reset(&mut self, padded: usize, cell_channels: usize, c: usize) {
        for (b, n) in [
            (&mut self.dreward, padded),
            (&mut self.dprop, padded),
            (&mut self.dbase, padded),
            (&mut self.dpre, cell_channels),
            (&mut self.dg, c),
            (&mut self.dctx, c),
            (&mut self.dwr, c),
            (&mut self.dwp, c),
        ] {
            b.clear();
            b.resize(n, 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesascope_core::{obs, testbeds, Env, Knobs, Split};

    /// Observations of `n` training levels of exit-vs-green at `size`.
    fn levels(size: usize, n: u64) -> GridBatch {
        let knobs = Knobs::new().with("size", size as f64);
        let tb = testbeds::make("exit-vs-green", &knobs).expect("a valid size");
        let mut batch = GridBatch::default();
        for seed in 0..n {
            let env = Env::new(tb.clone(), Split::Train, seed);
            let mut o = vec![0u8; obs::u8_len(&env.state.grid)];
            obs::encode_u8(&env.state, &mut o);
            batch.push(&o, env.state.grid.height, env.state.grid.width);
        }
        batch
    }

    fn planner(channels: usize, iterations: usize, seed: u64) -> Planner {
        Planner::init(
            PlannerShape {
                channels,
                iterations,
            },
            &mut Rng::new(seed),
        )
    }

    /// `sum(z * dz)`, whose gradient is `backward(dz)`.
    fn loss(p: &Planner, batch: &GridBatch, dz: &[f32]) -> f64 {
        let mut z = Vec::new();
        p.forward(batch, &mut z);
        z.iter().zip(dz).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// A planner whose maps make values travel: the goal rewarding, walls blocking, empty
    /// cells passing them on, plus noise of `seed`. Channel 0 feeds the reward map, channel 1
    /// the propagation map.
    fn planted(seed: u64) -> Planner {
        let mut p = planner(4, 64, seed);
        let c = 4;
        let lay = p.layout();
        let mut rng = Rng::new(seed);
        for w in p.params.iter_mut() {
            *w = (rng.unit() as f32 - 0.5) * 0.2;
        }
        let row = |o: Object| lay.embed().start + o as usize * c;
        p.params[row(Object::Goal)] = 3.0;
        p.params[row(Object::Wall)] = -1.0;
        p.params[row(Object::Wall) + 1] = -3.0;
        p.params[row(Object::Empty) + 1] = 3.0;
        p.params[lay.embed_bias().start] += 1.0;
        p.params[lay.embed_bias().start + 1] += 1.0;
        p.params[lay.reward().start] = 2.0;
        p.params[lay.propagation().start + 1] = 2.0;
        p
    }

    /// The smallest |pre-activation| over a batch: finite differences of step `eps` are exact
    /// only where no ReLU input lies within `eps` of its kink.
    fn margin(p: &Planner, batch: &GridBatch) -> f32 {
        let mut work = Work::default();
        (0..batch.len())
            .flat_map(|i| {
                p.run(batch.sample(i), &mut work);
                work.pre.clone()
            })
            .map(f32::abs)
            .fold(f32::INFINITY, f32::min)
    }

    /// The backward pass's `grad` against central finite differences of `loss` along `trials`
    /// random directions of the parameters.
    fn assert_directional_derivatives(
        p: &Planner,
        grad: &[f32],
        eps: f32,
        trials: usize,
        rng: &mut Rng,
        loss: impl Fn(&Planner) -> f64,
    ) {
        for trial in 0..trials {
            let u: Vec<f32> = (0..p.params.len())
                .map(|_| rng.unit() as f32 - 0.5)
                .collect();
            let shifted = |sign: f32| {
                let mut q = p.clone();
                for (w, du) in q.params.iter_mut().zip(&u) {
                    *w += sign * eps * du;
                }
                loss(&q)
            };
            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
            let analytic: f64 = grad
                .iter()
                .zip(&u)
                .map(|(&g, &d)| g as f64 * d as f64)
                .sum();
            assert!(
                (numeric - analytic).abs() <= 0.01 * analytic.abs().max(numeric.abs()) + 1e-3,
                "direction {trial}: finite differences {numeric}, backward {analytic}"
            );
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let batch = levels(7, 3);
        let eps = 1e-3f32;
        // The first planted planner whose ReLU inputs all stay clear of their kinks.
        let p = (0..)
            .map(planted)
            .find(|p| margin(p, &batch) > 20.0 * eps)
            .expect("some seed");
        let steps = p.maps(&batch).iter().map(|m| m.steps).max().unwrap();
        assert!(steps >= 4, "values travel through the maze ({steps} steps)");
        let mut rng = Rng::new(2);
        let d = p.readout_width();
        let dz: Vec<f32> = (0..batch.len() * d)
            .map(|_| rng.unit() as f32 - 0.5)
            .collect();
        let mut grad = vec![0f32; p.params.len()];
        p.backward(&batch, &dz, &mut grad);
        assert_directional_derivatives(&p, &grad, eps, 4, &mut rng, |q| loss(q, &batch, &dz));
    }

    #[test]
    fn the_reward_labels_gradient_matches_finite_differences() {
        let batch = levels(7, 3);
        let eps = 1e-3f32;
        let p = (0..)
            .map(planted)
            .find(|p| margin(p, &batch) > 20.0 * eps)
            .expect("some seed");
        let labels: Vec<Option<RewardLabel>> = (0..batch.len())
            .map(|i| {
                Some(RewardLabel {
                    action: i % 4,
                    rewarded: i % 2 == 0,
                    weight: 0.7,
                })
            })
            .collect();
        // The entered cell of each sample, unpadded.
        let entered = |i: usize| {
            let (o, _, w) = batch.grids[i];
            let cells = &batch.bytes[o..];
            let a = (0..)
                .find(|&q| cells[3 * q] == Object::Agent as u8)
                .unwrap();
            [a - w, a + 1, a + w, a - 1][i % 4]
        };
        let bce = |q: &Planner| -> f64 {
            q.maps(&batch)
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let r = m.reward[entered(i)] as f64;
                    let y = if i % 2 == 0 { 1.0 } else { 0.0 };
                    -0.7 * (y * r.ln() + (1.0 - y) * (1.0 - r).ln())
                })
                .sum()
        };
        let dz = vec![0f32; batch.len() * p.readout_width()];
        let mut grad = vec![0f32; p.params.len()];
        p.backward_with_labels(&batch, &dz, &labels, &mut grad);
        assert!(grad.iter().any(|&g| g != 0.0));
        let mut rng = Rng::new(5);
        assert_directional_derivatives(&p, &grad, eps, 3, &mut rng, bce);
    }

    #[test]
    fn one_network_reads_every_size_with_the_same_readout_width() {
        let p = planner(8, 256, 3);
        for size in [5, 9, 15, 25] {
            let batch = levels(size, 2);
            let mut z = Vec::new();
            p.forward(&batch, &mut z);
            assert_eq!(z.len(), 2 * p.readout_width(), "size {size}");
            assert!(z.iter().all(|v| v.is_finite()), "size {size}");
            let maps = p.maps(&batch);
            assert_eq!(maps[0].value.len(), size * size);
            // Values only grow from the reward map, and stay within the largest reward.
            let m = &maps[0];
            let top = m.reward.iter().copied().fold(0f32, f32::max);
            for (v, r) in m.value.iter().zip(&m.reward) {
                assert!(
                    v >= r && *v <= top + 1e-6,
                    "size {size}: value {v}, reward {r}"
                );
            }
        }
    }

    #[test]
    fn the_recurrence_stops_at_its_fixpoint() {
        let batch = levels(9, 4);
        let p = planner(8, 4096, 4);
        let steps = p.maps(&batch).iter().map(|m| m.steps).max().unwrap();
        assert!(steps > 1 && steps < 4096, "{steps}");
        let capped = |iterations: usize| {
            let mut q = p.clone();
            q.shape.iterations = iterations;
            let mut z = Vec::new();
            q.forward(&batch, &mut z);
            z
        };
        // Stopping where no value changes is the same as running on.
        assert_eq!(capped(steps), capped(4096));
        let mut one = p.clone();
        one.shape.iterations = 1;
        let values = |q: &Planner| {
            q.maps(&batch)
                .into_iter()
                .map(|m| m.value)
                .collect::<Vec<_>>()
        };
        assert_ne!(values(&one), values(&p), "one step is not the fixpoint");
    }

    #[test]
    fn the_frontier_gives_the_values_of_whole_grid_sweeps() {
        let batch = levels(15, 6);
        for p in [planted(0), planted(1), planner(8, 256, 9)] {
            for (i, m) in p.maps(&batch).iter().enumerate() {
                let (value, steps) = p.value_by_frontier(&batch, i);
                assert_eq!(m.value, value, "level {i}");
                assert_eq!(m.steps, steps, "level {i}");
            }
        }
        let steps = planted(0).maps(&batch).iter().map(|m| m.steps).max();
        assert!(steps > Some(10), "values travel far: {steps:?}");
    }

    #[test]
    fn a_mixed_batch_reads_each_grid_as_alone() {
        let (small, large) = (levels(5, 1), levels(11, 1));
        let mut mixed = small.clone();
        mixed.push(&large.bytes, 11, 11);
        let p = planner(6, 256, 5);
        let run = |b: &GridBatch| {
            let mut z = Vec::new();
            p.forward(b, &mut z);
            z
        };
        let (a, b, both) = (run(&small), run(&large), run(&mixed));
        assert_eq!(both, [a, b].concat());
    }

    #[test]
    fn backward_does_not_depend_on_the_thread_count() {
        let batch = levels(7, 70);
        let p = planner(4, 64, 6);
        let mut rng = Rng::new(7);
        let dz: Vec<f32> = (0..batch.len() * p.readout_width())
            .map(|_| rng.unit() as f32 - 0.5)
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                let mut g = vec![0f32; p.params.len()];
                p.backward(&batch, &dz, &mut g);
                g
            })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn an_edit_of_the_hidden_layer_or_the_reward_map_is_what_the_maps_read() {
        let batch = levels(9, 2);
        let p = planted(0);
        let plain = p.maps(&batch);
        let cells = 81;
        // Adding a map's own hidden layer's difference to another grid gives that grid's
        // reward and propagation maps (the embedding is per cell; g, the pooling, is not
        // edited and is the same here: same testbed, same objects).
        let other = p.maps(&levels(9, 1));
        let delta: Vec<f32> = other[0]
            .hidden
            .iter()
            .zip(&plain[1].hidden)
            .map(|(a, b)| a - b)
            .collect();
        let edit = MapEdit {
            hidden: Some(delta),
            reward: None,
        };
        assert!(edit.check(cells, 4).is_ok());
        let edited = p.maps_edited(&batch, &[MapEdit::default(), edit]);
        assert_eq!(edited[0], plain[0], "an empty edit changes nothing");
        for (a, b) in edited[1].hidden.iter().zip(&other[0].hidden) {
            assert!((a - b).abs() < 1e-5);
        }
        // The reward map: a cell raised to 1, the rest clamped at 0; values follow.
        let mut d = vec![-1f32; cells];
        d[40] = 1.0;
        let edit = MapEdit {
            hidden: None,
            reward: Some(d),
        };
        let m = &p.maps_edited(&batch, std::slice::from_ref(&edit))[0];
        assert_eq!(m.reward[40], 1.0);
        assert!(m
            .reward
            .iter()
            .enumerate()
            .all(|(i, &r)| i == 40 || r == 0.0));
        assert_eq!(m.value[40], 1.0);
        let mut z = Vec::new();
        p.forward_edited(&batch, &[edit], &mut z);
        let mut z0 = Vec::new();
        p.forward(&batch, &mut z0);
        let d = p.readout_width();
        assert_ne!(z[..d], z0[..d]);
        assert_eq!(z[d..], z0[d..], "the second sample is not edited");
        // Wrong sizes are named.
        let e = MapEdit {
            hidden: None,
            reward: Some(vec![0.0; 3]),
        }
        .check(cells, 4)
        .unwrap_err();
        assert!(e.contains("reward") && e.contains("81"), "{e}");
    }

    #[test]
    fn zero_channels_or_iterations_are_refused() {
        for (channels, iterations, word) in [(0, 10, "channel"), (8, 0, "iterations")] {
            let e = PlannerShape {
                channels,
                iterations,
            }
            .validate()
            .unwrap_err();
            assert!(e.contains(word), "{e}");
        }
        assert!(PlannerShape {
            channels: MAX_CHANNELS + 1,
            iterations: 1
        }
        .validate()
        .is_err());
        assert!(PlannerShape::default().validate().is_ok());
    }
}
