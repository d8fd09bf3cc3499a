//! `cargo bench -p mesascope-core`: engine throughput for every testbed, the same figures as
//! `mesascope bench` (both call `mesascope_core::bench`).
//!
//! Options after `--`: `--seconds S` (per measurement, default 1), `--envs N` (all-cores batch,
//! default 4096), `--testbed NAME`. Run as a test (`cargo test --benches`, no `--bench` flag) it
//! does a tiny smoke run instead.

use mesascope_core::bench::{self, BenchConfig};
use mesascope_core::testbeds::NAMES;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let is_bench = args.iter().any(|a| a == "--bench");
    let mut cfg = BenchConfig::default();
    if !is_bench {
        cfg.seconds = 0.01;
        cfg.single_envs = 16;
        cfg.batch_envs = 64;
    }
    let mut names: Vec<&str> = NAMES.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = |it: &mut std::slice::Iter<String>| it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--seconds" => match value(&mut it).parse() {
                Ok(s) => cfg.seconds = s,
                Err(_) => return usage("--seconds needs a number"),
            },
            "--envs" => match value(&mut it).parse() {
                Ok(n) => cfg.batch_envs = n,
                Err(_) => return usage("--envs needs a positive integer"),
            },
            "--testbed" => {
                let t = value(&mut it);
                match NAMES.iter().find(|&&n| n == t) {
                    Some(&n) => names = vec![n],
                    None => {
                        return usage(&format!(
                            "unknown testbed '{t}' (known: {})",
                            NAMES.join(", ")
                        ))
                    }
                }
            }
            _ => {} // cargo's own flags (--bench, filters)
        }
    }
    match bench::run(&names, &cfg, |n| eprintln!("measuring {n} ...")) {
        Ok(report) => {
            print!("{}", bench::render(&report));
            ExitCode::SUCCESS
        }
        Err(e) => usage(&e.to_string()),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}
