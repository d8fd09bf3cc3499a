//! The trained half of `mesascope demo`: train a neural agent on exit-vs-green, whose exit is
//! always green in training; audit it (pseudo-aligned: it follows green under shift); mitigate
//! by fine-tuning on decorrelated levels; audit again (robustly aligned); watch both agents with
//! the runtime monitor. Each step is the same library call as its own command (`train`, `audit`,
//! `mitigate`, `monitor`), so what the demo shows is what a user gets from them. The whole story
//! goes into one HTML page and its JSON (`report.html`, `report.json`).

use crate::args::{KnobArgs, MitigateArgs, MitigationMethod, TrainArgs};
use crate::audit::PolicySpec;
use crate::demo::{write_atomic, DemoReport};
use crate::mitigate::{compare, mitigate, Mitigation};
use crate::monitor::{evaluate, table_text, MonitorReport};
use crate::report::{self, Curve};
use anyhow::{Context, Result};
use mesascope_core::monitor::MonitorConfig;
use mesascope_core::testbeds::{self, exit_vs_green};
use mesascope_core::Knobs;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything the trained story produced, for the report.
pub struct Story {
    pub testbed: &'static str,
    pub seed: u64,
    pub agent: PathBuf,
    pub mitigated: PathBuf,
    pub training: Curve,
    pub fine_tuning: Curve,
    pub mitigation: Mitigation,
    pub decorrelate: f64,
    pub monitor_before: MonitorReport,
    pub monitor_after: MonitorReport,
    /// Wall seconds of each stage: train, audit + mitigate + audit, monitor.
    pub stages: Vec<(&'static str, f64)>,
}

/// Runs the story into `out` (its `agent` and `agent-diversify` folders are replaced), writes
/// `out/report.html` and `out/report.json` (with the scripted agents' table `scripted`), and
/// returns what it prints.
pub fn run(
    out: &Path,
    steps: Option<u64>,
    seed: u64,
    quiet: bool,
    scripted: &DemoReport,
    monitor_episodes: usize,
) -> Result<String> {
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
        "demo 1/4: training a PPO agent on {testbed} (its exit is always green in training) ..."
    ));
    let t = Instant::now();
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
    let mut stages = vec![("train", t.elapsed().as_secs_f64())];
    say("demo 2/4 and 3/4: audit, fine-tune on decorrelated levels, audit again ...");
    let t = Instant::now();
    let decorrelate = 0.3;
    let m = mitigate(&MitigateArgs {
        policy: agent.clone(),
        env: testbed.into(),
        method: MitigationMethod::Diversify,
        decorrelate: Some(decorrelate),
        steps,
        seed,
        episodes: 500,
        out: Some(mitigated.clone()),
        sweep: false,
        shares: None,
        seeds: 3,
        quiet,
    })?;
    stages.push(("audit, mitigate, audit", t.elapsed().as_secs_f64()));
    say("demo 4/4: the runtime monitor on both agents ...");
    let t = Instant::now();
    let tb = testbeds::make(testbed, &Knobs::default())?;
    let fallback = PolicySpec::parse("scripted:intended")?;
    let watch = |dir: &Path| {
        evaluate(
            &tb,
            &PolicySpec::Checkpoint(dir.to_path_buf()),
            &fallback,
            MonitorConfig::default(),
            monitor_episodes,
            seed,
        )
    };
    let (monitor_before, monitor_after) = (watch(&agent)?, watch(&mitigated)?);
    stages.push(("monitor", t.elapsed().as_secs_f64()));

    let story = Story {
        testbed,
        seed,
        training: Curve::read(&agent.join("metrics.jsonl"), 0)?,
        fine_tuning: Curve::read(&mitigated.join("metrics.jsonl"), m.source_steps)?,
        agent,
        mitigated,
        mitigation: m,
        decorrelate,
        monitor_before,
        monitor_after,
        stages,
    };
    let (html_path, json_path) = (out.join("report.html"), out.join("report.json"));
    write_atomic(&json_path, &report::json(&story, scripted)?)?;
    write_atomic(&html_path, report::page(&story, scripted).as_bytes())?;

    let m = &story.mitigation;
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
        "3. mitigate (diversify: {:.0}% decorrelated levels, {} extra env steps in {:.0} s), audit again: {} (exit code {})\n",
        100.0 * decorrelate,
        m.extra_steps,
        m.wall,
        m.after.verdict.label,
        m.after.verdict.exit_code
    );
    s.push_str(&compare(&m.before, &m.after));
    let _ = writeln!(
        s,
        "\n4. runtime monitor ({monitor_episodes} episodes per distribution; at the alarm the scripted intended agent takes over)\n\nthe trained agent:"
    );
    s.push_str(&table_text(&story.monitor_before));
    let _ = writeln!(s, "\nafter mitigation:");
    s.push_str(&table_text(&story.monitor_after));
    let _ = writeln!(
        s,
        "\nreport: {} (and {})",
        html_path.display(),
        json_path.display()
    );
    let _ = writeln!(
        s,
        "audits: {} (before) and {} (after); checkpoints: {} and {}",
        story.mitigated.join("audit-before.json").display(),
        story.mitigated.join("audit.html").display(),
        story.agent.display(),
        story.mitigated.display()
    );
    let _ = writeln!(s, "trained story in {:.0} s", start.elapsed().as_secs_f64());
    Ok(s)
}
