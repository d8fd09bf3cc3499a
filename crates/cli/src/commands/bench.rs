//! `mesascope bench`: engine throughput per testbed (`mesascope_core::bench`, shared with
//! `cargo bench -p mesascope-core`), or PPO training throughput with `--train`.

use crate::args::BenchArgs;
use mesascope::core::bench::{self, BenchConfig};
use mesascope::core::testbeds;
use mesascope::fsio::json_bytes;
use mesascope::Error;
use std::io::IsTerminal;

fn json<T: serde::Serialize>(v: &T) -> mesascope::Result<String> {
    Ok(String::from_utf8_lossy(&json_bytes(v)?).into_owned())
}

pub fn run(a: &BenchArgs) -> mesascope::Result<String> {
    if a.train {
        let name = a.testbed.as_deref().unwrap_or("exit-vs-green");
        let archs: Vec<Option<&str>> = if a.arch.is_empty() {
            vec![None]
        } else {
            a.arch.iter().map(|s| Some(s.as_str())).collect()
        };
        let sizes: Vec<Vec<(String, f64)>> = if a.sizes.is_empty() {
            vec![vec![]]
        } else {
            a.sizes
                .iter()
                .map(|&n| vec![("size".to_string(), n as f64)])
                .collect()
        };
        let mut all = Vec::new();
        for knobs in &sizes {
            for arch in &archs {
                all.push(mesascope::bench::train_throughput(
                    name, knobs, *arch, a.seconds,
                )?);
            }
        }
        return if a.json {
            if all.len() == 1 {
                json(&all[0])
            } else {
                json(&all)
            }
        } else {
            Ok(all.iter().map(mesascope::report::bench::text).collect())
        };
    }
    let names: Vec<&str> = match &a.testbed {
        None => testbeds::NAMES.to_vec(),
        Some(t) => match testbeds::NAMES.iter().find(|&&n| n == t) {
            Some(&n) => vec![n],
            None => {
                return Err(Error::new(
                    mesascope::ErrorKind::BadKnob,
                    format!(
                        "unknown testbed '{t}' (known: {})",
                        testbeds::NAMES.join(", ")
                    ),
                ))
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
        json(&report)
    } else {
        Ok(bench::render(&report))
    }
}
