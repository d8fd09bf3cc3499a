//! The regret curriculum: the planner's optimum is the base reward of the shortest path, the
//! buffer keeps the levels of highest regret, and it feeds the trainer a pool of levels that
//! holds levels where the proxy stands apart from the goal more often than fresh levels do.

use mesascope_core::env::generate_level;
use mesascope_core::testbed::success_reward;
use mesascope_core::{testbeds, Env, Knobs, Split};
use mesascope_learn::curriculum::{optimal_return, CurriculumConfig, RegretCurriculum};
use mesascope_learn::ppo::{PpoConfig, Trainer};

#[test]
fn optimal_return_is_the_shortest_paths_reward() {
    let tb = testbeds::make("exit-vs-green", &Knobs::default()).unwrap();
    for seed in 0..5 {
        let level = generate_level(tb.as_ref(), Split::Train, seed);
        let env = Env::from_level(tb.clone(), Split::Train, level.clone());
        let mut intended =
            mesascope_core::agents::SeekGoal::new(mesascope_core::GoalId::INTENDED, f32::INFINITY);
        let d = intended.steps_to_go(&env).expect("levels are solvable") as u32;
        assert_eq!(
            optimal_return(&tb, &level),
            success_reward(d, env.state.max_steps)
        );
        assert!(optimal_return(&tb, &level) > 0.0);
    }
}

#[test]
fn the_buffer_keeps_high_regret_levels_and_feeds_the_trainer() {
    let knobs = Knobs::new().with("size", 5.0).with("decorrelate", 0.2);
    let tb = testbeds::make("exit-vs-green", &knobs).unwrap();
    let config = PpoConfig {
        total_steps: 16 * 16 * 3,
        num_envs: 16,
        num_steps: 16,
        num_minibatches: 2,
        update_epochs: 1,
        hidden: 16,
        ..PpoConfig::default()
    };
    let mut trainer = Trainer::new(tb.clone(), config, 0).unwrap();
    let cfg = CurriculumConfig {
        candidates: 64,
        buffer: 16,
        fresh: 8,
        every: 1,
    };
    let mut curriculum = RegretCurriculum::new(tb, cfg, 0).unwrap();
    while !trainer.done() {
        curriculum.before_update(&mut trainer).unwrap();
        trainer.update().unwrap();
    }
    assert_eq!(curriculum.rounds.len(), 3, "one refresh per update");
    for r in &curriculum.rounds {
        assert!(
            r.buffer_regret >= r.candidate_regret,
            "the buffer holds the highest regrets: {r:?}"
        );
        assert!((0.0..=1.0).contains(&r.buffer_apart) && (0.0..=1.0).contains(&r.candidate_apart));
    }
    assert!(RegretCurriculum::new(
        testbeds::make("exit-vs-green", &Knobs::default()).unwrap(),
        CurriculumConfig {
            buffer: 0,
            ..CurriculumConfig::default()
        },
        0
    )
    .is_err());
}
