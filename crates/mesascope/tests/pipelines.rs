//! The library's pipelines called as a Rust user calls them, without the binary.

use mesascope::demo::{demo, DemoSettings};
use mesascope::progress::{Progress, Silent, Unit};
use mesascope::train::{train, TrainSettings};
use mesascope::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lib-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Counts what the pipeline reports, and asks it to stop after `stop_after` updates.
struct Recorder {
    stages: AtomicUsize,
    advances: AtomicUsize,
    last: AtomicU64,
    stop_after: usize,
}

impl Recorder {
    fn new(stop_after: usize) -> Recorder {
        Recorder {
            stages: AtomicUsize::new(0),
            advances: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            stop_after,
        }
    }
}

impl Progress for Recorder {
    fn stage(&self, _message: &str) {
        self.stages.fetch_add(1, Ordering::Relaxed);
    }
    fn begin(&self, unit: Unit, _total: u64, _done: u64) {
        assert_eq!(unit, Unit::EnvSteps);
    }
    fn advance(&self, done: u64, _message: &str) {
        self.advances.fetch_add(1, Ordering::Relaxed);
        self.last.store(done, Ordering::Relaxed);
    }
    fn should_stop(&self) -> bool {
        self.advances.load(Ordering::Relaxed) >= self.stop_after
    }
}

#[test]
fn the_demo_is_a_composition_of_library_calls() {
    let out = temp_dir("demo");
    let settings = DemoSettings {
        episodes: 40,
        // Enough updates for curves and checkpoints; the 13x13 planner does not learn the task
        // in so few steps, and the test asks only that every stage runs and reports.
        steps: Some(65_536),
        out: out.clone(),
        ..DemoSettings::default()
    };
    let progress = Recorder::new(usize::MAX);
    let d = demo(&settings, &progress).unwrap();
    // The scripted agents: every proxy-seeker looks aligned in training and comes apart.
    assert!(d
        .scripted
        .testbeds
        .iter()
        .flat_map(|t| &t.findings)
        .all(|f| f.pseudo_aligned));
    let story = d.story.expect("the trained story ran");
    // Trained, mitigated and watched: the figures are the ones the files hold.
    assert!(story.train.steps >= 65_536, "{}", story.train.steps);
    assert!(!story.train.run.curve.points.is_empty());
    let m = &story.mitigation;
    assert!(m.extra_steps >= 65_536);
    assert_eq!(m.source_steps, story.train.steps);
    let first_fine_tuning = story.fine_tuning.points[0].steps;
    assert!(
        first_fine_tuning > m.source_steps,
        "the fine-tuning curve continues the training's"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&story.json).unwrap()).unwrap();
    // Both sides through the same JSON parser (it may round a float's last bit).
    let parsed = |v: &mesascope::core::audit::AuditReport| -> serde_json::Value {
        serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
    };
    assert_eq!(json["audit_before"], parsed(&m.before));
    assert_eq!(json["audit_after"], parsed(&m.after));
    assert_eq!(json["extra_steps"], m.extra_steps);
    assert_eq!(
        json["training"]["points"].as_array().unwrap().len(),
        story.train.run.curve.points.len()
    );
    let html = std::fs::read_to_string(&story.html).unwrap();
    assert!(html.contains(&m.before.verdict.label) && html.ends_with("</body></html>\n"));
    for r in [&story.monitor_before, &story.monitor_after] {
        assert_eq!(r.rows.len(), 2, "train and shift:green");
        assert!(r.rows.iter().all(|row| row.episodes == 40));
    }
    assert!(m.after.verdict.exit_code == 0 || m.after.verdict.exit_code >= 10);
    // Progress came through the trait: stages and one advance per PPO update.
    assert!(progress.stages.load(Ordering::Relaxed) >= 3);
    assert!(progress.advances.load(Ordering::Relaxed) >= 2 * story.train.run.curve.points.len());
}

#[test]
fn a_stopped_run_keeps_a_checkpoint_that_resumes() {
    let out = temp_dir("stop");
    let mut s = TrainSettings::new("exit-vs-green");
    s.knobs = vec![("size".into(), 5.0)];
    s.steps = Some(200_000);
    s.out = Some(out.clone());
    s.eval_episodes = 0;
    s.checkpoint_every = 1000;
    let e = train(&s, &Recorder::new(2)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
    let meta = mesascope::learn::checkpoint::read_meta(&out).unwrap();
    assert!(meta.steps > 0 && meta.steps < 200_000, "{}", meta.steps);
    s.resume = true;
    let run = train(&s, &Silent).unwrap();
    assert!(run.steps >= 200_000);
    assert_eq!(run.run.trained, run.steps - meta.steps);
}

#[test]
fn bad_settings_are_typed() {
    let mut s = TrainSettings::new("exit-vs-blue");
    s.out = Some(temp_dir("bad"));
    assert_eq!(train(&s, &Silent).unwrap_err().kind(), ErrorKind::BadKnob);
    let mut s = TrainSettings::new("exit-vs-green");
    s.knobs = vec![("size".into(), 99.0)];
    assert_eq!(train(&s, &Silent).unwrap_err().kind(), ErrorKind::BadKnob);
    let mut s = TrainSettings::new("exit-vs-green");
    s.out = Some(temp_dir("none"));
    s.resume = true;
    let e = train(&s, &Silent).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadSetting);
    assert!(e.to_string().starts_with("`resume`"), "{e}");
    let e = mesascope::PolicySpec::parse("no/such/folder").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadPolicy);
    let tb = mesascope::core::testbeds::make("exit-vs-green", &Default::default()).unwrap();
    let e = mesascope::levels::load_levels(tb.as_ref(), std::path::Path::new("/nonexistent"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadLevel);
}
