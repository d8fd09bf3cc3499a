//! The `planner` trunk end to end on tiny settings: PPO learns an easy task with it,
//! deterministically; its checkpoints round-trip and act on levels of any size (where the
//! fixed-size trunks refuse them); a configuration that cannot work is an error.

use mesascope_core::agents::run_episode;
use mesascope_core::rng::Rng;
use mesascope_core::{testbeds, Env, Knobs, Split};
use mesascope_learn::agent::PolicyAgent;
use mesascope_learn::checkpoint;
use mesascope_learn::eval::evaluate;
use mesascope_learn::policy::{Arch, PlannerShape, PLANNER_MAP_NAMES};
use mesascope_learn::ppo::{PpoConfig, Trainer};
use mesascope_learn::LearnError;
use std::path::PathBuf;
use std::sync::Arc;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mesascope-planner-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn maze(size: usize) -> Arc<dyn mesascope_core::Testbed> {
    let knobs = Knobs::new()
        .with("size", size as f64)
        .with("distractors", 0.0);
    testbeds::make("exit-vs-green", &knobs).unwrap()
}

/// 5x5 mazes, a narrow planner, short rollouts.
fn tiny() -> PpoConfig {
    PpoConfig {
        total_steps: 64 * 16 * 40,
        num_envs: 64,
        num_steps: 16,
        num_minibatches: 2,
        update_epochs: 2,
        learning_rate: 3e-3,
        hidden: 32,
        arch: Arch::Planner,
        planner: PlannerShape {
            channels: 8,
            iterations: 64,
        },
        // The reward-map loss of `--arch planner` (PpoConfig::with_arch), so that its path is
        // trained and checked for determinism here too.
        reward_aux: mesascope_learn::ppo::PLANNER_REWARD_AUX,
        ..PpoConfig::default()
    }
}

#[test]
fn ppo_trains_the_planner_deterministically() {
    let tb = maze(5);
    let config = tiny();
    let untrained = Trainer::new(tb.clone(), config.clone(), 11).unwrap();
    let before = evaluate(
        tb.clone(),
        Split::Train,
        untrained.model(),
        &untrained.policy,
        256,
        5,
    )
    .unwrap();
    let one_update = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut t = Trainer::new(tb.clone(), config.clone(), 11).unwrap();
            t.update().unwrap();
            t.model().named_params()
        })
    };
    assert_eq!(one_update(1), one_update(2), "same seed, same weights");
    let mut t = Trainer::new(tb.clone(), config.clone(), 11).unwrap();
    while !t.done() {
        t.update().unwrap();
    }
    let after = evaluate(tb.clone(), Split::Train, t.model(), &t.policy, 256, 5).unwrap();
    eprintln!(
        "success {:.3} before, {:.3} after",
        before.success, after.success
    );
    assert!(
        after.success > before.success + 0.2 && after.success > 0.8,
        "success {:.3} before training, {:.3} after",
        before.success,
        after.success
    );
}

#[test]
fn a_planner_checkpoint_round_trips_and_acts_on_any_size() {
    let tb = maze(5);
    let mut config = tiny();
    config.total_steps = 64 * 16;
    let mut t = Trainer::new(tb.clone(), config, 3).unwrap();
    t.update().unwrap();
    let dir = scratch("ck");
    checkpoint::save(&dir, t.model(), &t.meta()).unwrap();
    let ck = checkpoint::load(&dir, &mesascope_learn::device()).unwrap();
    assert_eq!(ck.model.named_params(), t.model().named_params());
    assert_eq!(ck.meta.policy.planner, Some(tiny().planner));

    for size in [5, 7, 11] {
        let big = maze(size);
        let mut agent = PolicyAgent::load_for(&dir, big.as_ref(), size, size).unwrap();
        let mut env = Env::new(big.clone(), Split::Train, 2);
        let ep = run_episode(&mut env, &mut agent, &mut Rng::new(0)).unwrap();
        assert!(ep.outcome.steps > 0, "size {size}");
        // Its maps are named activations, one value per cell.
        use mesascope_core::activations::Activations;
        let names = agent.layer_names();
        for m in PLANNER_MAP_NAMES {
            assert!(names.iter().any(|n| n == m), "{names:?}");
        }
        let acts = agent.activations(&[&env.state]).unwrap();
        assert_eq!(acts.len(), names.len());
        assert_eq!(acts[names.len() - 1][0].len(), size * size, "value map");
    }
    // The fixed-size trunks still refuse another size.
    let mut fixed = tiny();
    fixed.arch = Arch::EmbedMlp;
    fixed.total_steps = 64 * 16;
    let mut e = Trainer::new(tb.clone(), fixed, 3).unwrap();
    e.update().unwrap();
    let edir = scratch("ck-embed");
    checkpoint::save(&edir, e.model(), &e.meta()).unwrap();
    let err = PolicyAgent::load_for(&edir, maze(7).as_ref(), 7, 7)
        .err()
        .unwrap();
    assert!(err.to_string().contains("5x5"), "{err}");

    // Fine-tuning continues on larger levels.
    let mut f = Trainer::fine_tune(maze(7), ck, 1024, 1).unwrap();
    f.update().unwrap();
    assert_eq!((f.policy.height, f.meta().policy.height), (7, 7));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&edir);
}

#[test]
fn a_planner_that_cannot_work_is_refused() {
    let tb = maze(5);
    for (shape, word) in [
        (
            PlannerShape {
                channels: 0,
                iterations: 8,
            },
            "channel",
        ),
        (
            PlannerShape {
                channels: 8,
                iterations: 0,
            },
            "iterations",
        ),
    ] {
        let config = PpoConfig {
            planner: shape,
            ..tiny()
        };
        match Trainer::new(tb.clone(), config, 0) {
            Err(LearnError::Config(m)) => assert!(m.contains(word), "{m}"),
            Err(e) => panic!("wrong error kind: {e}"),
            Ok(_) => panic!("{shape:?} was accepted"),
        }
    }
    assert_eq!(Arch::parse("planner").unwrap(), Arch::Planner);
}
