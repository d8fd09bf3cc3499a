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
