//! The in-context regression lab: the constructed weights are gradient descent, the burn model
//! computes what the f64 evaluation computes, and a short training run moves towards GD.

use mesascope_core::rng::Rng;
use mesascope_learn::icl::{
    self, compare, gd_predict, gd_weights, token_tensor, tune_eta, IclConfig, IclVerdict, LsaNet,
    LsaWeights, Tasks,
};

#[test]
fn constructed_weights_are_gradient_descent_to_float_precision() {
    for (d, n, steps) in [(10, 10, 1), (10, 10, 3), (3, 7, 2), (5, 40, 5)] {
        let tasks = Tasks::sample(d, n, 200, 0.5, 0.1, &mut Rng::new(7));
        for eta in [0.5, 4.0] {
            let w = LsaWeights::gradient_descent(d, eta, steps);
            for t in 0..tasks.len() {
                let (y, sens) = w.predict(&tasks, t);
                let y_gd = gd_predict(&tasks, t, eta, steps);
                let w_gd = gd_weights(&tasks, t, eta, steps);
                let scale = 1.0 + y_gd.abs();
                assert!(
                    (y - y_gd).abs() <= 1e-12 * scale,
                    "d={d} n={n} K={steps} eta={eta} task {t}: LSA {y} vs GD {y_gd}"
                );
                for (a, b) in sens.iter().zip(&w_gd) {
                    assert!(
                        (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                        "{sens:?} vs {w_gd:?}"
                    );
                }
            }
        }
    }
    // A wrong step size is not GD: the check above can fail.
    let tasks = Tasks::sample(4, 6, 10, 0.5, 0.0, &mut Rng::new(1));
    let w = LsaWeights::gradient_descent(4, 1.0, 1);
    let gap: f64 = (0..10)
        .map(|t| (w.predict(&tasks, t).0 - gd_predict(&tasks, t, 1.1, 1)).abs())
        .sum();
    assert!(gap > 1e-3, "{gap}");
}

#[test]
fn burn_forward_matches_the_f64_evaluation() {
    let device = mesascope_learn::device();
    let mut rng = Rng::new(3);
    let net = LsaNet::init(6, 2, 0.3, &mut rng, &device);
    let weights = net.weights(6);
    let tasks = Tasks::sample(6, 9, 64, 0.5, 0.0, &mut rng);
    let pred: Vec<f32> = net
        .forward(token_tensor(&tasks, &device), 9)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    for (t, p) in pred.iter().enumerate() {
        let y = weights.predict(&tasks, t).0;
        assert!(
            (*p as f64 - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "task {t}: burn {p} vs f64 {y}"
        );
    }
}

#[test]
fn tuned_step_size_is_a_minimum_and_beats_predicting_zero() {
    let tasks = Tasks::sample(10, 10, 2000, 0.5, 0.0, &mut Rng::new(11));
    let eta = tune_eta(&tasks, 1);
    let loss = |e: f64| {
        (0..tasks.len())
            .map(|t| 0.5 * (gd_predict(&tasks, t, e, 1) - tasks.target(t)).powi(2))
            .sum::<f64>()
            / tasks.len() as f64
    };
    assert!(loss(eta) <= loss(eta * 1.05) && loss(eta) <= loss(eta * 0.95));
    // The setup of von Oswald et al.: one GD step about 0.20, predicting zero about 0.42.
    let zero = loss(0.0);
    assert!((0.38..0.46).contains(&zero), "{zero}");
    assert!((0.17..0.23).contains(&loss(eta)), "{}", loss(eta));
    // The exact GD weights score what the tuned GD scores.
    let c = compare(
        &LsaWeights::gradient_descent(10, eta, 1),
        &tasks,
        eta,
        1,
        0.5,
    );
    assert!(
        c.loss_gap.abs() < 1e-9 && (c.model_cos - 1.0).abs() < 1e-9,
        "{c:?}"
    );
    assert!(c.prediction_diff < 1e-9 && c.sensitivity_l2 < 1e-9);
}

fn tiny() -> IclConfig {
    IclConfig {
        dim: 4,
        context: 10,
        steps: 800,
        batch: 256,
        lr: 1e-2,
        eval_tasks: 1000,
        tune_tasks: 500,
        log_every: 50,
        ..IclConfig::default()
    }
}

#[test]
fn short_training_approaches_gradient_descent_and_is_deterministic() {
    let c = tiny();
    let mut calls = 0;
    let r = icl::run(&c, &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, c.steps);
    let m = &r.in_distribution;
    assert!(m.model_loss < 0.7 * m.zero_loss, "{m:?}");
    assert!(m.loss_gap < 0.1 && m.model_cos > 0.95, "{m:?}");
    assert!(r.constructed_max_diff < 1e-12);
    let first = r.curve.first().unwrap().val_loss;
    let last = r.curve.last().unwrap().val_loss;
    assert!(last < 0.5 * first, "{first} -> {last}");
    let again = icl::run(&c, &mut |_, _| {}).unwrap();
    let strip = |r: &icl::IclReport| {
        let mut r = r.clone();
        r.train_seconds = 0.0;
        serde_json::to_string(&r).unwrap()
    };
    assert_eq!(strip(&r), strip(&again));
}

#[test]
fn verdict_follows_the_thresholds() {
    let base = compare(
        &LsaWeights::gradient_descent(3, 2.0, 1),
        &Tasks::sample(3, 5, 50, 0.5, 0.0, &mut Rng::new(2)),
        2.0,
        1,
        0.5,
    );
    assert_eq!(IclVerdict::decide(&base, &base), IclVerdict::ImplementsGd);
    let mut ood = base.clone();
    ood.model_cos = 0.9;
    assert_eq!(
        IclVerdict::decide(&base, &ood),
        IclVerdict::GdInDistributionOnly
    );
    let mut off = base.clone();
    off.loss_gap = 0.05;
    assert_eq!(IclVerdict::decide(&off, &base), IclVerdict::NotGd);
}

#[test]
fn unusable_settings_are_refused() {
    for c in [
        IclConfig {
            dim: 0,
            ..IclConfig::default()
        },
        IclConfig {
            layers: 0,
            ..IclConfig::default()
        },
        IclConfig {
            context: 0,
            ..IclConfig::default()
        },
        IclConfig {
            steps: 0,
            ..IclConfig::default()
        },
        IclConfig {
            lr: -1.0,
            ..IclConfig::default()
        },
        IclConfig {
            noise: f64::NAN,
            ..IclConfig::default()
        },
    ] {
        let e = icl::run(&c, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, mesascope_learn::LearnError::Config(_)), "{e}");
    }
}
