//! What PPO's optimizer step needs beyond burn: the gradients of a minibatch's shards summed,
//! and the gradient norm clipped globally, over burn's parameters and the sparse layer together
//! (burn's own clipping works per parameter tensor; PPO's, as in CleanRL's
//! `clip_grad_norm_`, over all of them).

use crate::policy::ActorCritic;
use burn::module::ParamId;
use burn::optim::GradientsParams;

/// Scales all gradients together so that their joint L2 norm, the sparse layer's included
/// (`extra_sq`, its squared norm), is at most `max_norm`. Returns the scale (1 when the norm is
/// within bounds or not a number), for the sparse layer's step.
pub fn clip_global_norm(
    grads: &mut GradientsParams,
    model: &ActorCritic,
    max_norm: f32,
    extra_sq: f64,
) -> f32 {
    let ids = model.param_ids();
    let mut sq = extra_sq;
    for &(id, rank) in &ids {
        let s: Option<f32> = match rank {
            1 => grads.get::<1>(id).map(|g| g.square().sum().into_scalar()),
            2 => grads.get::<2>(id).map(|g| g.square().sum().into_scalar()),
            4 => grads.get::<4>(id).map(|g| g.square().sum().into_scalar()),
            _ => None,
        };
        sq += s.unwrap_or(0.0) as f64;
    }
    let norm = sq.sqrt() as f32;
    if norm.is_nan() || norm <= max_norm {
        return 1.0;
    }
    let scale = max_norm / (norm + 1e-6);
    for &(id, rank) in &ids {
        match rank {
            1 => {
                if let Some(g) = grads.remove::<1>(id) {
                    grads.register(id, g * scale);
                }
            }
            2 => {
                if let Some(g) = grads.remove::<2>(id) {
                    grads.register(id, g * scale);
                }
            }
            4 => {
                if let Some(g) = grads.remove::<4>(id) {
                    grads.register(id, g * scale);
                }
            }
            _ => {}
        }
    }
    scale
}

/// Adds `other`'s gradients into `grads`, parameter by parameter.
pub fn add_grads(grads: &mut GradientsParams, mut other: GradientsParams, model: &ActorCritic) {
    fn add<const D: usize>(g: &mut GradientsParams, o: &mut GradientsParams, id: ParamId) {
        match (g.remove::<D>(id), o.remove::<D>(id)) {
            (Some(a), Some(b)) => g.register(id, a + b),
            (Some(a), None) | (None, Some(a)) => g.register(id, a),
            (None, None) => {}
        }
    }
    for (id, rank) in model.param_ids() {
        match rank {
            1 => add::<1>(grads, &mut other, id),
            2 => add::<2>(grads, &mut other, id),
            4 => add::<4>(grads, &mut other, id),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Arch, Input, PolicyConfig};
    use burn::tensor::{Tensor, TensorData};
    use mesascope_core::obs;
    use mesascope_core::rng::Rng;

    fn tiny(arch: Arch) -> ActorCritic {
        let config = PolicyConfig {
            arch,
            height: 3,
            width: 3,
            n_actions: 4,
            hidden: 6,
            planner: (arch == Arch::Planner).then(crate::policy::PlannerShape::default),
        };
        ActorCritic::init(&config, 9, &crate::device().autodiff()).expect("a valid shape")
    }

    /// The gradients of a loss over `model`'s outputs on a random batch drawn with `seed`.
    fn grads_of(model: &ActorCritic, seed: u64) -> GradientsParams {
        let mut rng = Rng::new(seed);
        let n = 5;
        let config = &model.config;
        let input = match config.arch {
            Arch::EmbedMlp | Arch::Planner => Input::Embedded(
                (0..n * model.embedded_width())
                    .map(|_| rng.unit() as f32)
                    .collect(),
            ),
            Arch::Conv => {
                let len = n * obs::PLANES * config.cells();
                let planes = (0..len).map(|_| rng.unit() as f32).collect();
                Input::Planes(Tensor::from_data(
                    TensorData::new(planes, [n, obs::PLANES, config.height, config.width]),
                    model.device(),
                ))
            }
        };
        let fwd = model.forward(input);
        let loss = fwd.logits.square().sum() + fwd.value.sum() * 3.0;
        GradientsParams::from_grads(loss.backward(), &model.net)
    }

    /// Every parameter's gradient, flattened, in `param_ids` order.
    fn flat(grads: &GradientsParams, model: &ActorCritic) -> Vec<Vec<f32>> {
        fn values<const D: usize>(g: Option<Tensor<D>>) -> Vec<f32> {
            g.expect("every parameter has a gradient")
                .into_data()
                .try_into_vec_as::<f32>()
                .expect("f32 gradients")
        }
        model
            .param_ids()
            .into_iter()
            .map(|(id, rank)| match rank {
                1 => values(grads.get::<1>(id)),
                2 => values(grads.get::<2>(id)),
                4 => values(grads.get::<4>(id)),
                r => panic!("unexpected rank {r}"),
            })
            .collect()
    }

    fn sum_sq(gs: &[Vec<f32>]) -> f64 {
        gs.iter().flatten().map(|&g| g as f64 * g as f64).sum()
    }

    #[test]
    fn clipping_scales_every_gradient_to_the_global_norm() {
        for arch in [Arch::EmbedMlp, Arch::Conv, Arch::Planner] {
            let model = tiny(arch);
            let mut grads = grads_of(&model, 10);
            let before = flat(&grads, &model);
            // The sparse layer's share of the norm comes in as its squared norm.
            let extra_sq = 2.25;
            let norm = (sum_sq(&before) + extra_sq).sqrt();
            assert!(
                norm > 2.0,
                "{arch:?}: the test needs a norm to clip, {norm}"
            );
            let max_norm = 0.5;
            let scale = clip_global_norm(&mut grads, &model, max_norm, extra_sq);
            let want = max_norm / (norm as f32 + 1e-6);
            assert!(
                (scale - want).abs() <= 1e-6 * want,
                "{arch:?}: {scale} vs {want}"
            );
            let after = flat(&grads, &model);
            for (b, a) in before.iter().flatten().zip(after.iter().flatten()) {
                assert!(
                    (a - b * scale).abs() <= 1e-6 * b.abs().max(1e-3),
                    "{a} vs {b} * {scale}"
                );
            }
            let clipped = sum_sq(&after) + extra_sq * (scale as f64).powi(2);
            assert!(
                (clipped.sqrt() - max_norm as f64).abs() < 1e-4,
                "{arch:?}: {clipped}"
            );
        }
    }

    #[test]
    fn clipping_leaves_a_small_or_undefined_norm_alone() {
        let model = tiny(Arch::EmbedMlp);
        let mut grads = grads_of(&model, 11);
        let before = flat(&grads, &model);
        assert_eq!(clip_global_norm(&mut grads, &model, 1e9, 0.0), 1.0);
        assert_eq!(flat(&grads, &model), before);
        assert_eq!(clip_global_norm(&mut grads, &model, 0.5, f64::NAN), 1.0);
        assert_eq!(flat(&grads, &model), before);
    }

    #[test]
    fn shard_gradients_add_up() {
        let model = tiny(Arch::EmbedMlp);
        let (mut grads, other) = (grads_of(&model, 12), grads_of(&model, 13));
        let (a, b) = (flat(&grads, &model), flat(&other, &model));
        add_grads(&mut grads, other, &model);
        let sum = flat(&grads, &model);
        for ((s, a), b) in sum
            .iter()
            .flatten()
            .zip(a.iter().flatten())
            .zip(b.iter().flatten())
        {
            assert_eq!(*s, a + b);
        }
    }
}
