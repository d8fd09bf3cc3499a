//! Trains one agent with PPO and prints its learning curve: per update, env steps, wall time,
//! training success (mean of the last 10 updates) and env steps/s; at the end, the first update
//! where that mean reached 95%. For measuring trunks and settings without the CLI:
//!
//! `cargo run --release -p mesascope-learn --example train_curve -- TESTBED STEPS ARCH [KEY=VALUE...]`
//!
//! Keys: testbed knobs (`size`, `region`, ...) and PPO settings `hidden`, `epochs`,
//! `minibatches`, `envs`, `rollout`, `lr`, `ent`, `aux` (the planner's reward-map loss weight), `channels`, `iterations`, `seed`, and
//! `eval_size`: after training, outcomes on 200 levels of every split at the trained size and at
//! that one; `save=DIR` writes the trained checkpoint there (as `mesascope train` does, so
//! `mesascope probe` and `audit` read it).

use mesascope_core::{testbeds, Knobs};
use mesascope_learn::policy::Arch;
use mesascope_learn::ppo::{PpoConfig, Trainer};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args
        .first()
        .cloned()
        .unwrap_or_else(|| "corner-cheese".into());
    let steps: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let arch = Arch::parse(args.get(2).map(String::as_str).unwrap_or("planner")).expect("an arch");
    let mut knobs = Knobs::new();
    let mut config = PpoConfig::for_testbed_arch(&name, arch);
    config.total_steps = steps;
    let mut seed = 0;
    let mut eval_size = None;
    let mut save = None;
    for kv in args.iter().skip(3) {
        let (k, v) = kv.split_once('=').expect("KEY=VALUE");
        if k == "save" {
            save = Some(std::path::PathBuf::from(v));
            continue;
        }
        let f: f64 = v.parse().expect("a number");
        match k {
            "hidden" => config.hidden = f as usize,
            "epochs" => config.update_epochs = f as usize,
            "minibatches" => config.num_minibatches = f as usize,
            "envs" => config.num_envs = f as usize,
            "rollout" => config.num_steps = f as usize,
            "lr" => config.learning_rate = f,
            "ent" => config.ent_coef = f as f32,
            "aux" => config.reward_aux = f as f32,
            "channels" => config.planner.channels = f as usize,
            "iterations" => config.planner.iterations = f as usize,
            "seed" => seed = f as u64,
            "eval_size" => eval_size = Some(f),
            knob => knobs = knobs.with(knob, f),
        }
    }
    let tb = testbeds::make(&name, &knobs).expect("a testbed and valid knobs");
    let mut t = Trainer::new(tb.clone(), config.clone(), seed).expect("valid settings");
    println!(
        "{name} {:?} {} hidden {} epochs {} minibatches {} planner {:?}",
        knobs,
        config.arch.name(),
        config.hidden,
        config.update_epochs,
        config.num_minibatches,
        config.planner
    );
    let start = Instant::now();
    let mut recent: Vec<f64> = Vec::new();
    let mut reached = None;
    while !t.done() {
        let s = t.update().expect("an update");
        if let Some(r) = s.episodes.success_rate {
            recent.push(r);
        }
        let window = &recent[recent.len().saturating_sub(10)..];
        let mean = window.iter().sum::<f64>() / window.len().max(1) as f64;
        let secs = start.elapsed().as_secs_f64();
        if reached.is_none() && window.len() == 10 && mean >= 0.95 {
            reached = Some((s.steps, secs));
        }
        if s.update.is_multiple_of(5) || t.done() {
            println!(
                "update {:>4} steps {:>9} {:>7.1}s success {:.3} (last 10 {:.3}) timeout {:.3} entropy {:.3} kl {:.4} vloss {:.4} {:>6.0} steps/s",
                s.update,
                s.steps,
                secs,
                s.episodes.success_rate.unwrap_or(f64::NAN),
                mean,
                s.episodes.timeout_rate.unwrap_or(f64::NAN),
                s.losses.entropy,
                s.losses.approx_kl,
                s.losses.value,
                s.steps as f64 / secs
            );
        }
    }
    let (rollout, optimize) = t.timings();
    println!("rollout {rollout:.1}s, optimization {optimize:.1}s");
    match reached {
        Some((steps, secs)) => println!("95% reached at {steps} steps, {secs:.1}s"),
        None => println!("95% not reached"),
    }
    if let Some(dir) = &save {
        mesascope_learn::checkpoint::save(dir, t.model(), &t.meta()).expect("a checkpoint written");
        println!("checkpoint written to {}", dir.display());
    }
    let mut sizes = vec![None];
    sizes.extend(eval_size.map(Some));
    for size in sizes {
        let tb = match size {
            Some(s) => testbeds::make(&name, &knobs.clone().with("size", s)).expect("a size"),
            None => tb.clone(),
        };
        for split in mesascope_core::Split::all(tb.as_ref()) {
            let e =
                mesascope_learn::eval::evaluate(tb.clone(), split, t.model(), &t.policy, 200, 1)
                    .expect("an evaluation");
            println!(
                "size {} {}: success {:.3} intended {:.3} proxies {:?} timed out {:.3}",
                size.map_or("trained".to_string(), |s| s.to_string()),
                e.split,
                e.success,
                e.intended,
                e.proxies,
                e.timed_out
            );
        }
    }
}
