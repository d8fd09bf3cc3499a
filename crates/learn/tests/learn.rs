//! The base optimizer end to end on tiny settings: checkpoints round-trip and reject bad files,
//! PPO is deterministic and beats the untrained policy on an easy level distribution.

use mesascope_core::agents::{run_episode, Agent};
use mesascope_core::rng::Rng;
use mesascope_core::{testbeds, Env, Knobs, Split};
use mesascope_learn::agent::PolicyAgent;
use mesascope_learn::checkpoint::{self, WEIGHTS_FILE};
use mesascope_learn::eval::evaluate;
use mesascope_learn::policy::{to_vec2, ActorCritic, Arch, Encoder, PolicyConfig};
use mesascope_learn::ppo::{PpoConfig, Trainer};
use mesascope_learn::LearnError;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mesascope-learn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A small, fast setting: 5x5 mazes (a 3x3 interior) with no obstacles, a narrow network, short
/// rollouts.
fn tiny(arch: Arch) -> (std::sync::Arc<dyn mesascope_core::Testbed>, PpoConfig) {
    let knobs = Knobs::new().with("size", 5.0).with("distractors", 0.0);
    let tb = testbeds::make("exit-vs-green", &knobs).unwrap();
    let config = PpoConfig {
        total_steps: 64 * 16 * 60,
        num_envs: 64,
        num_steps: 16,
        num_minibatches: 2,
        update_epochs: 2,
        learning_rate: 3e-3,
        hidden: 32,
        arch,
        ..PpoConfig::default()
    };
    (tb, config)
}

fn logits_on(
    model: &ActorCritic,
    config: &PolicyConfig,
    tb: &std::sync::Arc<dyn mesascope_core::Testbed>,
) -> Vec<f32> {
    let mut obs = Vec::new();
    for seed in 0..4 {
        let env = Env::new(tb.clone(), Split::Train, seed);
        let mut o = vec![0u8; mesascope_core::obs::u8_len(&env.state.grid)];
        mesascope_core::obs::encode_u8(&env.state, &mut o);
        obs.extend(o);
    }
    let _ = config;
    let model = model.valid();
    let input = model.encode(&mut Encoder::default(), &obs);
    to_vec2(model.forward(input).logits)
}

#[test]
fn checkpoint_round_trip_and_bad_checkpoints() {
    for arch in [Arch::EmbedMlp, Arch::Conv, Arch::Planner] {
        let (tb, mut config) = tiny(arch);
        config.total_steps = 64 * 16;
        let mut t = Trainer::new(tb.clone(), config, 3).unwrap();
        t.update().unwrap();
        let dir = scratch(&format!("ck-{}", arch.name()));
        checkpoint::save(&dir, t.model(), &t.meta()).unwrap();
        let ck = checkpoint::load(&dir, &mesascope_learn::device()).unwrap();
        assert_eq!(ck.meta.steps, t.steps());
        assert_eq!(ck.meta.testbed, "exit-vs-green");
        assert_eq!(
            logits_on(t.model(), &t.policy, &tb),
            logits_on(&ck.model, &ck.meta.policy, &tb),
            "loaded weights give the same logits"
        );
        checkpoint::check_compatible(&ck.meta, "exit-vs-green", &t.policy).unwrap();
        assert!(matches!(
            checkpoint::check_compatible(&ck.meta, "corner-cheese", &t.policy),
            Err(LearnError::Checkpoint(_))
        ));
        let other_arch = PolicyConfig {
            arch: if arch == Arch::Conv {
                Arch::EmbedMlp
            } else {
                Arch::Conv
            },
            ..t.policy.clone()
        };
        assert!(checkpoint::check_compatible(&ck.meta, "exit-vs-green", &other_arch).is_err());

        // The agent acts on an episode with the checkpoint.
        let mut agent = PolicyAgent::load(&dir).unwrap();
        let mut env = Env::new(tb.clone(), Split::Train, 1);
        let ep = run_episode(&mut env, &mut agent, &mut Rng::new(0)).unwrap();
        assert!(ep.outcome.steps > 0);
        assert!(agent.name().contains("policy"));

        // A truncated weights file is refused.
        let w = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
        let e = checkpoint::load(&dir, &mesascope_learn::device())
            .err()
            .unwrap();
        assert!(matches!(e, LearnError::Checkpoint(_)), "{e}");
        // A corrupt metadata file is refused.
        std::fs::write(dir.join(checkpoint::META_FILE), "{ not json").unwrap();
        assert!(matches!(
            checkpoint::load(&dir, &mesascope_learn::device()),
            Err(LearnError::Checkpoint(_))
        ));
        // A folder without a checkpoint is refused.
        assert!(checkpoint::load(&dir.join("missing"), &mesascope_learn::device()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn ppo_is_deterministic_and_learns_an_easy_task() {
    let (tb, config) = tiny(Arch::EmbedMlp);
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

    let mut a = Trainer::new(tb.clone(), config.clone(), 11).unwrap();
    let mut b = Trainer::new(tb.clone(), config.clone(), 11).unwrap();
    a.update().unwrap();
    b.update().unwrap();
    assert_eq!(
        a.model().named_params(),
        b.model().named_params(),
        "same seed, same weights"
    );
    let mut last = None;
    while !a.done() {
        last = Some(a.update().unwrap());
    }
    let last = last.unwrap();
    assert!(last.losses.policy.is_finite() && last.losses.value.is_finite());
    let after = evaluate(tb.clone(), Split::Train, a.model(), &a.policy, 256, 5).unwrap();
    eprintln!(
        "success {:.3} before, {:.3} after",
        before.success, after.success
    );
    assert!(
        after.success > before.success + 0.2 && after.success > 0.85,
        "success {:.3} before training, {:.3} after",
        before.success,
        after.success
    );
}

#[test]
fn same_weights_whatever_the_thread_count() {
    // Minibatch halves, the sparse layer's bands and the environments are all split in ways
    // that do not change any sum's order, so one thread and two give the same bits.
    let (tb, config) = tiny(Arch::EmbedMlp);
    let train = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut t = Trainer::new(tb.clone(), config.clone(), 5).unwrap();
            t.update().unwrap();
            t.update().unwrap();
            t.model().named_params()
        })
    };
    assert_eq!(train(1), train(2));
}

#[test]
fn fine_tuning_continues_a_checkpoint_on_new_knobs_and_refuses_another_shape() {
    let (tb, mut config) = tiny(Arch::EmbedMlp);
    config.total_steps = 64 * 16;
    let mut t = Trainer::new(tb.clone(), config, 4).unwrap();
    t.update().unwrap();
    let dir = scratch("fine-tune");
    checkpoint::save(&dir, t.model(), &t.meta()).unwrap();
    let load = || checkpoint::load(&dir, &mesascope_learn::device()).unwrap();
    let knobs = Knobs::new().with("size", 5.0).with("decorrelate", 0.5);
    let decorrelated = testbeds::make("exit-vs-green", &knobs).unwrap();
    let mut f = Trainer::fine_tune(decorrelated, load(), 2048, 1).unwrap();
    assert_eq!(f.steps(), 0, "a fresh schedule");
    assert_eq!(
        f.model().named_params(),
        load().model.named_params(),
        "starts from the checkpoint's weights"
    );
    while !f.done() {
        f.update().unwrap();
    }
    assert_ne!(f.model().named_params(), load().model.named_params());
    assert!(f.meta().knobs.contains(&("decorrelate".to_string(), 0.5)));
    // 7x7 levels do not fit a network that reads 5x5 grids.
    let bigger = testbeds::make("exit-vs-green", &Knobs::new().with("size", 7.0)).unwrap();
    let e = Trainer::fine_tune(bigger, load(), 2048, 1).err().unwrap();
    assert!(matches!(e, LearnError::Checkpoint(_)), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_errors() {
    let (tb, mut config) = tiny(Arch::EmbedMlp);
    config.total_steps = 0;
    assert!(matches!(
        Trainer::new(tb.clone(), config.clone(), 0),
        Err(LearnError::Config(_))
    ));
    config.total_steps = 10;
    config.learning_rate = f64::NAN;
    assert!(Trainer::new(tb, config, 0).is_err());
    assert!(Arch::parse("transformer").is_err());
}

/// A save cut short at each of its steps (the new pair written beside the old one, then renamed
/// over it, weights first) leaves a folder that loads the old checkpoint or the new one, never
/// neither; `recover` finishes the renames.
#[test]
fn a_save_cut_short_at_any_step_leaves_a_complete_checkpoint() {
    use checkpoint::{META_FILE, PENDING_META_FILE, PENDING_WEIGHTS_FILE};
    let (tb, mut config) = tiny(Arch::EmbedMlp);
    config.total_steps = 64 * 16 * 2;
    let mut t = Trainer::new(tb, config, 5).unwrap();
    t.update().unwrap();
    let old = scratch("torn-old");
    checkpoint::save(&old, t.model(), &t.meta()).unwrap();
    t.update().unwrap();
    let new = scratch("torn-new");
    checkpoint::save(&new, t.model(), &t.meta()).unwrap();
    let (old_steps, new_steps) = (t.steps() / 2, t.steps());
    let steps = |dir: &PathBuf| {
        checkpoint::load(dir, &mesascope_learn::device())
            .unwrap()
            .meta
            .steps
    };
    assert_eq!((steps(&old), steps(&new)), (old_steps, new_steps));

    let copy = |from: &str, to: &str, dir: &PathBuf| {
        std::fs::copy(new.join(from), dir.join(to)).unwrap();
    };
    // (state of the folder, the checkpoint it must load)
    let cases: [(&str, &dyn Fn(&PathBuf), u64); 3] = [
        (
            "new weights written beside the old pair",
            &|d| copy(WEIGHTS_FILE, PENDING_WEIGHTS_FILE, d),
            old_steps,
        ),
        (
            "new pair written beside the old pair (committed)",
            &|d| {
                copy(WEIGHTS_FILE, PENDING_WEIGHTS_FILE, d);
                copy(META_FILE, PENDING_META_FILE, d);
            },
            new_steps,
        ),
        (
            "new weights renamed into place, the new metadata not yet",
            &|d| {
                copy(WEIGHTS_FILE, WEIGHTS_FILE, d);
                copy(META_FILE, PENDING_META_FILE, d);
            },
            new_steps,
        ),
    ];
    for (i, (state, make, expected)) in cases.iter().enumerate() {
        let dir = scratch(&format!("torn-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [WEIGHTS_FILE, META_FILE] {
            std::fs::copy(old.join(f), dir.join(f)).unwrap();
        }
        make(&dir);
        assert!(checkpoint::exists(&dir), "{state}");
        assert_eq!(steps(&dir), *expected, "{state}: load");
        assert_eq!(
            checkpoint::read_meta(&dir).unwrap().steps,
            *expected,
            "{state}: read_meta"
        );
        checkpoint::recover(&dir).unwrap();
        assert_eq!(steps(&dir), *expected, "{state}: after recover");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [META_FILE, WEIGHTS_FILE], "{state}: after recover");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A first save cut short before its renames: only the pending pair exists.
    let dir = scratch("torn-first");
    std::fs::create_dir_all(&dir).unwrap();
    copy(WEIGHTS_FILE, PENDING_WEIGHTS_FILE, &dir);
    copy(META_FILE, PENDING_META_FILE, &dir);
    assert!(checkpoint::exists(&dir));
    assert_eq!(steps(&dir), new_steps);
    for d in [dir, old, new] {
        let _ = std::fs::remove_dir_all(&d);
    }
}
