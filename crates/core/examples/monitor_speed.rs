//! The runtime monitor's overhead per step: `Monitor::observe` on shifted levels of every
//! testbed at size 11 (where the testbed has the knob), a proxy-seeker acting, the monitor's
//! planner tables built once per level as part of `begin`. Measured with the testbed's own
//! candidates (its declared goals and no goal), and with two more: open cells drawn per level as
//! undeclared candidate places, five candidates in all. Run with
//! `cargo run --release -p mesascope-core --example monitor_speed`.

use mesascope_core::agents::reference_agent;
use mesascope_core::grid::Pos;
use mesascope_core::monitor::{Monitor, MonitorConfig};
use mesascope_core::rng::Rng;
use mesascope_core::{testbeds, Env, Knobs, ProxyId, Split};
use std::time::{Duration, Instant};

fn main() {
    for name in testbeds::NAMES {
        let mut knobs = Knobs::new();
        if name != &"absent-supervisor" {
            knobs.set("size", 11.0);
        }
        let tb = testbeds::make(name, &knobs).expect("a testbed");
        let proxy = tb.proxies()[0].name;
        for extra_places in [0, 2] {
            let mut agent = reference_agent(tb.as_ref(), proxy, 2.0).expect("the proxy-seeker");
            let mut monitor = Monitor::new(MonitorConfig::default()).expect("default settings");
            let mut probs = vec![0f32; 4];
            let (mut spent, mut steps) = (Duration::ZERO, 0u64);
            for seed in 0..2000 {
                let mut env = Env::new(tb.clone(), Split::Shift(ProxyId(0)), seed);
                let mut rng = Rng::new(seed);
                let open: Vec<Pos> = (0..env.state.grid.cells.len())
                    .filter(|&p| env.state.grid.get(p).walkable())
                    .collect();
                let places: Vec<Pos> = (0..extra_places)
                    .map(|_| open[rng.below(open.len())])
                    .collect();
                agent.begin(&env).expect("begin");
                let t = Instant::now();
                monitor.begin_with_places(&env, &places).expect("begin");
                spent += t.elapsed();
                while !env.done() {
                    agent.probs(&env, &mut probs).expect("probs");
                    let a = rng.categorical(&probs);
                    let t = Instant::now();
                    monitor.observe(&env, a);
                    spent += t.elapsed();
                    steps += 1;
                    env.step(a);
                }
            }
            println!(
                "{name}: {:.2} us per step ({} candidates, planning included), {steps} steps",
                spent.as_secs_f64() * 1e6 / steps as f64,
                tb.goals().len() + extra_places + 1
            );
        }
    }
}
