//! The planner's value propagation four ways, side by side on one machine and one thread:
//! samples/s of the forward pass and of forward + backward, on batches of corner-cheese levels
//! at 7x7, 15x15 and 25x25, with maps that make values travel through the maze.
//!
//! - `Rust`: the trunk as it runs ([`Planner::forward`] / [`Planner::backward`]): per-cell
//!   embedding, maps, the recurrence as whole-grid sweeps over contiguous rows (stopped at its
//!   fixpoint) and readout; the backward pass evaluates the recurrence again only where a
//!   neighbour changed, logging each change, and follows each read value's chain of maxima.
//! - `frontier`: the maps and that logged evaluation alone, forward only
//!   ([`Planner::value_by_frontier`]).
//! - `burn, same recurrence`: only the recurrence `v = max(v, base + prop * max of the 4
//!   neighbours)`, as burn tensor ops on `[N, H, W]` (pad, four slices, maxima, multiply-add)
//!   on the `flex` backend, for the same number of steps, backward by autodiff.
//! - `burn conv (VIN)`: Tamar et al.'s form of one step, a 3x3 convolution of the value map
//!   into 8 action channels plus the reward term, then the maximum over channels, for the same
//!   number of steps.
//!
//! `cargo run --release -p mesascope-learn --example planner_kernels [BATCH]`

use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};
use mesascope_core::grid::Object;
use mesascope_core::rng::Rng;
use mesascope_core::{obs, testbeds, Env, Knobs, Split};
use mesascope_learn::policy::{GridBatch, Planner, PlannerShape};
use std::time::Instant;

fn levels(size: usize, n: usize) -> GridBatch {
    let knobs = Knobs::new().with("size", size as f64).with("region", 3.0);
    let tb = testbeds::make("corner-cheese", &knobs).expect("a valid size");
    let mut batch = GridBatch::default();
    for seed in 0..n as u64 {
        let env = Env::new(tb.clone(), Split::Train, seed);
        let mut o = vec![0u8; obs::u8_len(&env.state.grid)];
        obs::encode_u8(&env.state, &mut o);
        batch.push(&o, env.state.grid.height, env.state.grid.width);
    }
    batch
}

fn random(shape: [usize; 3], lo: f32, hi: f32, rng: &mut Rng, dev: &Device) -> Tensor<3> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| lo + (hi - lo) * rng.unit() as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// `k` steps of the recurrence in burn ops; `v`, `base`, `prop`: `[N, H, W]`.
fn burn_recurrence(mut v: Tensor<3>, base: Tensor<3>, prop: Tensor<3>, k: usize) -> Tensor<3> {
    let [n, h, w] = v.dims();
    for _ in 0..k {
        let p = v.clone().pad([(1, 1), (1, 1)], PadMode::Constant(0.0));
        let up = p.clone().slice([0..n, 0..h, 1..w + 1]);
        let down = p.clone().slice([0..n, 2..h + 2, 1..w + 1]);
        let left = p.clone().slice([0..n, 1..h + 1, 0..w]);
        let right = p.slice([0..n, 1..h + 1, 2..w + 2]);
        let m = up.max_pair(right).max_pair(down.max_pair(left));
        v = v.max_pair(base.clone() + prop.clone() * m);
    }
    v
}

/// `k` VIN steps: `q = conv3x3(v) + w_r r`, `v = max over the action channels of q`.
fn burn_vin(v0: Tensor<3>, reward: Tensor<3>, kernel: Tensor<4>, k: usize) -> Tensor<3> {
    let [n, h, w] = v0.dims();
    let a = kernel.dims()[0];
    let r = reward.reshape([n, 1, h, w]);
    let mut v = v0.reshape([n, 1, h, w]);
    for _ in 0..k {
        let q = conv2d(
            v,
            kernel.clone(),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ) + r.clone().repeat_dim(1, a);
        v = q.max_dim(1);
    }
    v.reshape([n, h, w])
}

/// A planner whose reward map is high at the cheese and whose propagation is low at walls, so
/// that values travel through the maze as in a trained one (a fresh one's maps are flat).
fn travelling(shape: PlannerShape) -> Planner {
    let mut p = Planner::init(shape, &mut Rng::new(1));
    let c = shape.channels;
    let names = mesascope_learn::planner::tensor_names(&shape);
    let offset = |name: &str| {
        let mut at = 0;
        for (n, s) in &names {
            if *n == name {
                return at;
            }
            at += s.iter().product::<usize>();
        }
        unreachable!("a tensor of the planner")
    };
    let (embed, reward, prop) = (
        offset("trunk.planner.embed"),
        offset("trunk.planner.reward.weight"),
        offset("trunk.planner.propagation.weight"),
    );
    // Embedding, its bias and the context all zero but two entries: the goal square lights
    // channel 0 (reward), walls channel 1 (blocking).
    for w in &mut p.params[embed..reward] {
        *w = 0.0;
    }
    p.params[embed + Object::Goal as usize * c] = 6.0;
    p.params[embed + Object::Wall as usize * c + 1] = 6.0;
    for w in &mut p.params[reward..reward + c] {
        *w = 0.0;
    }
    for w in &mut p.params[prop..prop + c] {
        *w = 0.0;
    }
    p.params[reward] = 1.0;
    p.params[prop + 1] = -2.0;
    p
}

/// The shortest of 5 timed runs, in seconds: on a shared machine the others mostly measure
/// who else was running.
fn best(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn rate(samples: usize, secs: f64) -> String {
    format!("{:>9.0}", samples as f64 / secs)
}

fn main() {
    let batch_n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a thread pool");
    pool.install(|| run(batch_n));
}

fn run(batch_n: usize) {
    let shape = PlannerShape::default();
    let planner = travelling(shape);
    let mut rng = Rng::new(2);
    println!(
        "samples/s on one thread, batch {batch_n}, planner of {} channels; steps: the mean the recurrence takes to its fixpoint, run by every column",
        shape.channels,
    );
    println!(
        "{:>6} {:>6} | {:>9} {:>9} | {:>9} | {:>9} {:>9} | {:>9} {:>9}",
        "size",
        "steps",
        "Rust fwd",
        "fwd+bwd",
        "frontier",
        "burn fwd",
        "fwd+bwd",
        "VIN fwd",
        "fwd+bwd"
    );
    for size in [7, 15, 25] {
        let batch = levels(size, batch_n);
        let mean_steps = planner.maps(&batch).iter().map(|m| m.steps).sum::<usize>() / batch_n;
        let k = mean_steps.max(1);
        // Plain Rust, whole trunk.
        let mut z = Vec::new();
        planner.forward(&batch, &mut z);
        let dz: Vec<f32> = (0..z.len()).map(|_| rng.unit() as f32 - 0.5).collect();
        let mut grad = vec![0f32; planner.params.len()];
        let rust_fwd = best(|| planner.forward(&batch, &mut z));
        let rust_both = best(|| {
            planner.forward(&batch, &mut z);
            planner.backward(&batch, &dz, &mut grad);
        });
        let frontier = best(|| {
            for i in 0..batch_n {
                let _ = planner.value_by_frontier(&batch, i);
            }
        });

        // burn, the recurrence only.
        let dev = mesascope_learn::device();
        let ad = dev.clone().autodiff();
        let dims = [batch_n, size, size];
        let maps = |dev: &Device, rng: &mut Rng| {
            (
                random(dims, 0.0, 0.2, rng, dev),
                random(dims, 0.0, 0.1, rng, dev),
                random(dims, 0.5, 1.0, rng, dev),
            )
        };
        let (v0, base, prop) = maps(&dev, &mut rng);
        let burn_fwd = best(|| {
            let out = burn_recurrence(v0.clone(), base.clone(), prop.clone(), k);
            let _ = out.sum().into_scalar::<f32>();
        });
        let (v0, base, prop) = maps(&ad, &mut rng);
        let (v0, base, prop) = (v0.require_grad(), base.require_grad(), prop.require_grad());
        let burn_both = best(|| {
            let out = burn_recurrence(v0.clone(), base.clone(), prop.clone(), k);
            let grads = out.sum().backward();
            let _ = v0.grad(&grads);
        });

        // burn conv, VIN's step.
        let kernel = |dev: &Device, rng: &mut Rng| {
            let v: Vec<f32> = (0..8 * 9).map(|_| rng.unit() as f32 * 0.2).collect();
            Tensor::<4>::from_data(TensorData::new(v, [8, 1, 3, 3]), dev)
        };
        let (v0, r, kk) = (
            random(dims, 0.0, 0.2, &mut rng, &dev),
            random(dims, -0.1, 0.1, &mut rng, &dev),
            kernel(&dev, &mut rng),
        );
        let vin_fwd = best(|| {
            let out = burn_vin(v0.clone(), r.clone(), kk.clone(), k);
            let _ = out.sum().into_scalar::<f32>();
        });
        let (v0, r, kk) = (
            random(dims, 0.0, 0.2, &mut rng, &ad),
            random(dims, -0.1, 0.1, &mut rng, &ad).require_grad(),
            kernel(&ad, &mut rng).require_grad(),
        );
        let vin_both = best(|| {
            let out = burn_vin(v0.clone(), r.clone(), kk.clone(), k);
            let grads = out.sum().backward();
            let _ = kk.grad(&grads);
        });

        println!(
            "{:>6} {:>6} | {} {} | {} | {} {} | {} {}",
            format!("{size}x{size}"),
            k,
            rate(batch_n, rust_fwd),
            rate(batch_n, rust_both),
            rate(batch_n, frontier),
            rate(batch_n, burn_fwd),
            rate(batch_n, burn_both),
            rate(batch_n, vin_fwd),
            rate(batch_n, vin_both),
        );
    }
}
