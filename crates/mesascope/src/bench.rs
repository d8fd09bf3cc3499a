//! PPO training throughput: the engine's own benchmark is `mesascope_core::bench`; this measures
//! training end to end (rollouts, network, optimizer) at a testbed's default settings.

use crate::error::Result;
use mesascope_core::{testbeds, Knobs};
use mesascope_learn::ppo::{PpoConfig, Trainer};
use std::time::Instant;

pub use crate::report::bench::TrainThroughput;

/// Trains at the testbed's default settings (with `knobs`, and the trunk `arch` when given) for
/// at least `seconds` (and two updates), the first update not counted (it warms up).
pub fn train_throughput(
    testbed: &str,
    knobs: &[(String, f64)],
    arch: Option<&str>,
    seconds: f64,
) -> Result<TrainThroughput> {
    let tb = testbeds::make(testbed, &Knobs::from_pairs(knobs))?;
    let config = PpoConfig::for_testbed_named(testbed, arch)?;
    let (decl, values) = tb.knobs();
    let size = decl
        .iter()
        .zip(&values)
        .find(|(k, _)| k.name == "size")
        .map_or(0, |(_, v)| *v as usize);
    let mut t = Trainer::new(tb, config.clone(), 0)?;
    t.update()?;
    let (start, first) = (Instant::now(), t.steps());
    let mut updates = 0;
    while updates < 2 || start.elapsed().as_secs_f64() < seconds {
        t.update()?;
        updates += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(TrainThroughput {
        testbed: testbed.to_string(),
        size,
        arch: config.arch.name().to_string(),
        num_envs: config.num_envs,
        num_steps: config.num_steps,
        batch: config.batch_size(),
        updates,
        seconds: secs,
        env_steps_per_second: (t.steps() - first) as f64 / secs,
        threads: rayon::current_num_threads(),
    })
}
