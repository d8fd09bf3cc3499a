//! The trained half of the demo: train a neural agent on exit-vs-green, whose exit is always green
//! in training; audit it (pseudo-aligned: it follows green under shift); mitigate by fine-tuning
//! on decorrelated levels; audit again (robustly aligned); watch both agents with the runtime
//! monitor. Each step is the library call a user makes on its own (`train::train`,
//! `mitigate::mitigate`, `monitor::evaluate`), so what the demo shows is what a user gets from
//! them. The whole story goes into one HTML page and its JSON (`report.html`, `report.json`).

use crate::error::{Context, Result};
use crate::fsio::write_atomic;
use crate::mitigate::{mitigate, Method, MitigateSettings};
use crate::monitor::evaluate;
use crate::policy::PolicySpec;
use crate::progress::Progress;
use crate::report;
use crate::report::demo::{DemoReport, Story};
use crate::train::{train, TrainSettings};
use mesascope_core::monitor::MonitorConfig;
use mesascope_core::testbeds::{self, exit_vs_green};
use mesascope_core::Knobs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The share of decorrelated levels the story's mitigation fine-tunes on.
pub const DECORRELATE: f64 = 0.3;

/// The trained story's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct StorySettings {
    /// Folder of the checkpoints and reports.
    pub out: PathBuf,
    /// Env steps of the training, and again of the mitigation; default the testbed's.
    pub steps: Option<u64>,
    pub seed: u64,
    /// Episodes per distribution the monitor plays.
    pub monitor_episodes: usize,
}

/// Runs the story into `s.out` (its `agent` and `agent-diversify` folders are replaced), writes
/// `report.html` and `report.json` there (with the scripted agents' table), and returns it.
pub fn run_story(
    s: &StorySettings,
    scripted: &DemoReport,
    progress: &dyn Progress,
) -> Result<Story> {
    let testbed = exit_vs_green::NAME;
    let (agent, mitigated) = (s.out.join("agent"), s.out.join("agent-diversify"));
    for dir in [&agent, &mitigated] {
        // Only a previous demo's checkpoint folders are removed, never anything else.
        if mesascope_learn::checkpoint::exists(dir) {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
    }
    progress.stage(&format!(
        "demo 1/4: training a PPO agent on {testbed} (its exit is always green in training) ..."
    ));
    let t = Instant::now();
    let mut training = TrainSettings::new(testbed);
    training.steps = s.steps;
    training.seed = Some(s.seed);
    training.out = Some(agent.clone());
    training.eval_episodes = 0;
    let trained = train(&training, progress)?;
    let mut stages = vec![("train", t.elapsed().as_secs_f64())];
    progress.stage("demo 2/4 and 3/4: audit, fine-tune on decorrelated levels, audit again ...");
    let t = Instant::now();
    let m = mitigate(
        &MitigateSettings {
            method: Method::Diversify,
            decorrelate: Some(DECORRELATE),
            steps: s.steps,
            seed: s.seed,
            episodes: 500,
            out: Some(mitigated.clone()),
            ..MitigateSettings::new(agent.clone(), testbed)
        },
        progress,
    )?;
    stages.push(("audit, mitigate, audit", t.elapsed().as_secs_f64()));
    progress.stage("demo 4/4: the runtime monitor on both agents ...");
    let t = Instant::now();
    let tb = testbeds::make(testbed, &Knobs::default())?;
    let fallback = PolicySpec::parse("scripted:intended")?;
    let watch = |dir: &Path| {
        evaluate(
            &tb,
            &PolicySpec::Checkpoint(dir.to_path_buf()),
            &fallback,
            MonitorConfig::default(),
            s.monitor_episodes,
            s.seed,
        )
    };
    let (monitor_before, monitor_after) = (watch(&agent)?, watch(&mitigated)?);
    stages.push(("monitor", t.elapsed().as_secs_f64()));

    let story = Story {
        testbed,
        seed: s.seed,
        fine_tuning: m.curve.clone().after(m.source_steps),
        train: trained,
        agent,
        mitigated,
        mitigation: m,
        decorrelate: DECORRELATE,
        monitor_before,
        monitor_after,
        monitor_episodes: s.monitor_episodes,
        stages,
        html: s.out.join("report.html"),
        json: s.out.join("report.json"),
    };
    write_atomic(&story.json, &report::demo::json(&story, scripted)?)?;
    write_atomic(&story.html, report::demo::page(&story, scripted).as_bytes())?;
    Ok(story)
}
