//! The cheese vector and retargeting on planner checkpoints, without the CLI (the figures of
//! docs/probes.md; `mesascope probe --cheese-vector --retarget random` runs the same code):
//!
//! `cargo run -p mesascope-learn --example cheese_vector -- CHECKPOINT [KEY=VALUE...]`
//!
//! Keys: testbed knobs (`size`, `region`, ...), `mazes`, `controls`, `scale`, `seed`, `point`
//! (0: the hidden layer, 1: the reward map). Prints both reports as JSON.

use mesascope_core::{testbeds, Knobs};
use mesascope_learn::agent::PolicyAgent;
use mesascope_learn::probe::{cheese_vector, retarget, EditPoint, MapSteeringConfig};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().expect("a checkpoint folder"));
    let mut knobs = Knobs::new();
    let mut cfg = MapSteeringConfig::default();
    for kv in args.iter().skip(1) {
        let (k, v) = kv.split_once('=').expect("KEY=VALUE");
        let f: f64 = v.parse().expect("a number");
        match k {
            "mazes" => cfg.mazes = f as usize,
            "controls" => cfg.controls = f as usize,
            "scale" => cfg.scale = f as f32,
            "seed" => cfg.seed = f as u64,
            "point" => {
                cfg.point = if f == 0.0 {
                    EditPoint::Hidden
                } else {
                    EditPoint::Reward
                }
            }
            knob => knobs = knobs.with(knob, f),
        }
    }
    let tb = testbeds::make("corner-cheese", &knobs).expect("valid knobs");
    let agent = PolicyAgent::load(&dir).expect("a checkpoint");
    let start = Instant::now();
    let c = cheese_vector(&tb, &agent, &cfg).expect("the cheese vector");
    println!("{}", serde_json::to_string_pretty(&c).unwrap());
    println!("cheese vector: {:.1} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let r = retarget(&tb, &agent, &cfg).expect("retargeting");
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    println!("retargeting: {:.1} s", start.elapsed().as_secs_f64());
}
