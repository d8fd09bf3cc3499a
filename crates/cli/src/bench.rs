//! `mesascope bench`: engine throughput per testbed (the measuring code is
//! `mesascope_core::bench`, shared with `cargo bench -p mesascope-core`).

use crate::args::BenchArgs;
use crate::error::input;
use anyhow::Result;
use mesascope_core::bench::{self, BenchConfig};
use mesascope_core::testbeds;
use std::io::IsTerminal;

/// `mesascope bench`.
pub fn run(a: &BenchArgs) -> Result<String> {
    if a.train {
        return train_throughput(a);
    }
    let names: Vec<&str> = match &a.testbed {
        None => testbeds::NAMES.to_vec(),
        Some(t) => match testbeds::NAMES.iter().find(|&&n| n == t) {
            Some(&n) => vec![n],
            None => {
                return Err(input(format!(
                    "unknown testbed '{t}' (known: {})",
                    testbeds::NAMES.join(", ")
                )))
            }
        },
    };
    let cfg = BenchConfig {
        seconds: a.seconds,
        single_envs: a.single_envs as usize,
        batch_envs: a.envs as usize,
        seed: 0,
    };
    // Progress on a terminal only: about five measurements of `seconds` per testbed.
    let show = std::io::stderr().is_terminal();
    let total = names.len();
    let mut done = 0;
    let report = bench::run(&names, &cfg, |name| {
        done += 1;
        if show {
            eprintln!(
                "measuring {name} ({done}/{total}, about {:.1} s) ...",
                5.25 * cfg.seconds
            );
        }
    })?;
    if a.json {
        Ok(serde_json::to_string_pretty(&report)? + "\n")
    } else {
        Ok(bench::render(&report))
    }
}

/// PPO training throughput: default settings of the testbed, updates until `seconds` have passed
/// (at least two, the first one not counted: it includes warming up).
fn train_throughput(a: &BenchArgs) -> Result<String> {
    use mesascope_learn::ppo::{PpoConfig, Trainer};
    let name = a.testbed.as_deref().unwrap_or("exit-vs-green");
    let tb = testbeds::make(name, &mesascope_core::Knobs::new())?;
    let config = PpoConfig::for_testbed(name);
    let mut t = Trainer::new(tb, config.clone(), 0).map_err(crate::train::learn_err)?;
    t.update().map_err(crate::train::learn_err)?;
    let (start, first) = (std::time::Instant::now(), t.steps());
    let mut updates = 0;
    while updates < 2 || start.elapsed().as_secs_f64() < a.seconds {
        t.update().map_err(crate::train::learn_err)?;
        updates += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let sps = (t.steps() - first) as f64 / secs;
    let report = serde_json::json!({
        "testbed": name,
        "arch": config.arch.name(),
        "num_envs": config.num_envs,
        "batch": config.batch_size(),
        "updates": updates,
        "seconds": secs,
        "env_steps_per_second": sps,
        "threads": rayon::current_num_threads(),
    });
    if a.json {
        Ok(serde_json::to_string_pretty(&report)? + "\n")
    } else {
        Ok(format!(
            "PPO training on {name} ({}, {} envs x {} steps, {} threads): {:.0} env steps/s end to end over {updates} updates ({secs:.1} s)\n",
            config.arch.name(),
            config.num_envs,
            config.num_steps,
            rayon::current_num_threads(),
            sps
        ))
    }
}
