//! Times the parts of PPO training on exit-vs-green's default levels: rollout (environment steps
//! plus inference) against optimization, per update, for the default settings. Run with
//! `cargo run --release -p mesascope-learn --example timing`.

use mesascope_core::{testbeds, Knobs};
use mesascope_learn::ppo::{PpoConfig, Trainer};
use std::time::Instant;

fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "exit-vs-green".into());
    let tb = testbeds::make(&name, &Knobs::new()).expect("a testbed name");
    let mut config = PpoConfig::for_testbed(&name);
    let arg = |i: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse::<usize>().ok())
    };
    if let Some(h) = arg(2) {
        config.hidden = h;
    }
    if let Some(e) = arg(3) {
        config.update_epochs = e;
    }
    if let Some(m) = arg(4) {
        config.num_minibatches = m;
    }
    let mut t = Trainer::new(tb, config.clone(), 0).expect("default settings are valid");
    t.update().expect("update");
    let start = Instant::now();
    let updates = 5;
    for _ in 0..updates {
        t.update().expect("update");
    }
    let secs = start.elapsed().as_secs_f64();
    let (rollout, optimize) = t.timings();
    println!(
        "{name}: {:.0} env steps/s; per update {:.0} ms, of which rollout {:.0} ms, optimization {:.0} ms",
        (updates * config.batch_size()) as f64 / secs,
        1e3 * secs / updates as f64,
        1e3 * rollout / (updates + 1) as f64,
        1e3 * optimize / (updates + 1) as f64,
    );
}
