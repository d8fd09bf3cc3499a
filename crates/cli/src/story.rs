//! The trained half of `mesascope demo`: train a neural agent on exit-vs-green, whose exit is
//! always green in training; audit it (pseudo-aligned: it follows green under shift); mitigate
//! by fine-tuning on decorrelated levels; audit again (robustly aligned). Each step is the same
//! library call as its own command (`train`, `audit`, `mitigate`), so what the demo shows is what
//! a user gets from them.

use crate::args::{KnobArgs, MitigateArgs, MitigationMethod, TrainArgs};
use crate::mitigate::{compare, diversify};
use anyhow::{Context, Result};
use mesascope_core::testbeds::exit_vs_green;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Runs the story into `out` (its `agent` and `agent-diversify` folders are replaced) and returns
/// what it prints.
pub fn run(out: &Path, steps: Option<u64>, seed: u64, quiet: bool) -> Result<String> {
    let start = Instant::now();
    let testbed = exit_vs_green::NAME;
    let (agent, mitigated) = (out.join("agent"), out.join("agent-diversify"));
    for dir in [&agent, &mitigated] {
        // Only a previous demo's checkpoint folders are removed, never anything else.
        if dir.join(mesascope_learn::checkpoint::META_FILE).exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
    }
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    say(&format!(
        "demo 1/3: training a PPO agent on {testbed} (its exit is always green in training) ..."
    ));
    let trained = crate::train::run(&TrainArgs {
        testbed: testbed.into(),
        steps,
        seed,
        decorrelate: None,
        knobs: KnobArgs { knobs: Vec::new() },
        out: Some(agent.clone()),
        resume: false,
        arch: None,
        envs: None,
        hidden: None,
        checkpoint_every: 20,
        eval_episodes: 0,
        quiet,
    })?;
    say("demo 2/3 and 3/3: audit, fine-tune on decorrelated levels, audit again ...");
    let m = diversify(&MitigateArgs {
        policy: agent.clone(),
        env: testbed.into(),
        method: MitigationMethod::Diversify,
        decorrelate: 0.3,
        steps,
        seed,
        episodes: 500,
        out: Some(mitigated.clone()),
        quiet,
    })?;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nA trained agent on {testbed}: in training the exit is always green; under shift the exit has\nanother colour and a green decoy stands elsewhere.\n"
    );
    if let Some(line) = trained.lines().next() {
        let _ = writeln!(s, "1. {line}");
    }
    let _ = writeln!(
        s,
        "2. audit: {} (exit code {})",
        m.before.verdict.label, m.before.verdict.exit_code
    );
    let _ = writeln!(
        s,
        "3. mitigate (diversify: 30% decorrelated levels, {} extra env steps in {:.0} s), audit again: {} (exit code {})\n",
        m.extra_steps, m.wall, m.after.verdict.label, m.after.verdict.exit_code
    );
    s.push_str(&compare(&m.before, &m.after));
    let _ = writeln!(
        s,
        "\nreports: {} (before) and {} (after, with {})",
        mitigated.join("audit-before.json").display(),
        mitigated.join("audit.html").display(),
        mitigated.join("audit.json").display()
    );
    let _ = writeln!(
        s,
        "checkpoints: {} and {}",
        agent.display(),
        mitigated.display()
    );
    let _ = writeln!(s, "trained story in {:.0} s", start.elapsed().as_secs_f64());
    Ok(s)
}
