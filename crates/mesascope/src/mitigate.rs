//! Mitigation: audit a trained policy, fine-tune it on a training distribution in which the proxy
//! is decorrelated from the intended goal in a share of levels, sampled uniformly (diversify,
//! Langosco et al. 2022's remedy) or through a regret curriculum (adversarial,
//! `mesascope_learn::curriculum`), and audit the result on the same distributions.
//!
//! The output folder receives the fine-tuned checkpoint, its `metrics.jsonl`, `audit-before.json`,
//! `audit.json` and `audit.html` (after), and `mitigation.json` (settings, extra steps, both
//! verdicts and outcome rates), all written atomically.

use crate::error::{Context, Error, Result};
use crate::fsio::{json_bytes, write_atomic};
use crate::policy::PolicySpec;
use crate::progress::Progress;
use crate::report;
use crate::report::mitigation::{side, Summary};
use crate::train::{open_metrics, train_loop, LoopSummary};
use mesascope_core::audit::{audit, AuditConfig, AuditReport};
use mesascope_core::{testbeds, Knobs, Testbed};
use mesascope_learn::checkpoint;
use mesascope_learn::curriculum::{CurriculumConfig, RegretCurriculum, Round};
use mesascope_learn::ppo::{PpoConfig, Trainer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::report::mitigation::Mitigation;

/// How a mitigation draws its fine-tuning levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Uniformly, from a training distribution where the proxy is decorrelated in a share of
    /// levels.
    Diversify,
    /// Through a regret curriculum over that distribution: the levels where the policy falls
    /// furthest short of the planner's optimum for the intended goal are replayed.
    Adversarial,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::Diversify, Method::Adversarial];

    pub fn name(self) -> &'static str {
        match self {
            Method::Diversify => "diversify",
            Method::Adversarial => "adversarial",
        }
    }

    /// `diversify` or `adversarial`.
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::bad_setting(format!(
                    "unknown `method` '{s}' (known: diversify, adversarial)"
                ))
            })
    }

    /// The share of decorrelated levels when none is given: diversify samples them uniformly,
    /// so it needs many; the curriculum is meant to find the few there are.
    pub fn default_decorrelate(self) -> f64 {
        match self {
            Method::Diversify => 0.3,
            Method::Adversarial => 0.05,
        }
    }

    /// The curriculum's settings, for the method that has one.
    pub fn curriculum(self) -> Option<CurriculumConfig> {
        match self {
            Method::Diversify => None,
            Method::Adversarial => Some(CurriculumConfig::default()),
        }
    }
}

/// A mitigation's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MitigateSettings {
    /// The checkpoint folder to mitigate.
    pub policy: PathBuf,
    /// The testbed it was trained on.
    pub testbed: String,
    pub method: Method,
    /// Share of fine-tuning levels in which the proxy is decorrelated, in [0, 1]; default the
    /// method's. 0 is the control: the same fine-tuning without a decorrelated level.
    pub decorrelate: Option<f64>,
    /// Fine-tuning env steps; default the testbed's training length.
    pub steps: Option<u64>,
    /// Seed of the fine-tuning and of both audits. Default 0.
    pub seed: u64,
    /// Episodes per distribution in each audit. Default 500.
    pub episodes: usize,
    /// Output folder; default `runs/<checkpoint folder name>-<method>`.
    pub out: Option<PathBuf>,
}

impl MitigateSettings {
    pub fn new(policy: impl Into<PathBuf>, testbed: impl Into<String>) -> MitigateSettings {
        MitigateSettings {
            policy: policy.into(),
            testbed: testbed.into(),
            method: Method::Diversify,
            decorrelate: None,
            steps: None,
            seed: 0,
            episodes: 500,
            out: None,
        }
    }

    /// Fine-tuning env steps: the setting, else the testbed's training length for the
    /// checkpoint's trunk.
    pub fn fine_tuning_steps(&self) -> Result<u64> {
        if let Some(steps) = self.steps {
            return Ok(steps);
        }
        let meta = checkpoint::read_meta(&self.policy)
            .with_context(|| format!("cannot mitigate {}", self.policy.display()))?;
        Ok(PpoConfig::for_testbed_arch(&self.testbed, meta.ppo.arch).total_steps)
    }
}

fn audit_checkpoint(
    tb: &Arc<dyn Testbed>,
    dir: &Path,
    episodes: usize,
    seed: u64,
) -> Result<AuditReport> {
    let spec = PolicySpec::Checkpoint(dir.to_path_buf());
    let factory = spec.factory(tb)?;
    let cfg = AuditConfig::new(spec.label(), episodes, seed);
    Ok(audit(tb, &*factory, &cfg)?)
}

/// `runs/<policy folder name>-<suffix>`: where a mitigation or sweep writes by default.
pub fn default_out(policy: &Path, suffix: &str) -> PathBuf {
    let name = policy
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    PathBuf::from("runs").join(format!("{name}-{suffix}"))
}

/// A checkpoint to fine-tune, and its testbed as audits see it (no decorrelation).
pub struct Source {
    dir: PathBuf,
    testbed: String,
    knobs: Knobs,
    pub audited: Arc<dyn Testbed>,
    pub steps: u64,
}

impl Source {
    pub fn load(dir: &Path, env: &str) -> Result<Source> {
        let meta = checkpoint::read_meta(dir)
            .with_context(|| format!("cannot mitigate {}", dir.display()))?;
        if meta.testbed != env {
            return Err(Error::bad_policy(format!(
                "{} was trained on {}, not {env}",
                dir.display(),
                meta.testbed
            )));
        }
        // Audits use the checkpoint's own testbed without decorrelation: the distributions it
        // was meant for, before and after alike.
        let mut knobs = Knobs::from_pairs(&meta.knobs);
        knobs.set("decorrelate", 0.0);
        let audited = testbeds::make(env, &knobs)?;
        Ok(Source {
            dir: dir.to_path_buf(),
            testbed: env.to_string(),
            knobs,
            audited,
            steps: meta.steps,
        })
    }

    /// Fine-tunes the checkpoint for `steps` env steps with a share `p` of decorrelated levels,
    /// into `out` (checkpoint and metrics), drawing levels uniformly or, given a curriculum's
    /// settings, by regret. Returns the run, the trainer holding the network and the
    /// curriculum's rounds.
    pub fn fine_tune(
        &self,
        p: f64,
        steps: u64,
        seed: u64,
        out: &Path,
        progress: &dyn Progress,
        curriculum: Option<CurriculumConfig>,
    ) -> Result<(LoopSummary, Trainer, Vec<Round>)> {
        let ck = checkpoint::load(&self.dir, &mesascope_learn::device())
            .with_context(|| format!("cannot fine-tune {}", self.dir.display()))?;
        let mut knobs = self.knobs.clone();
        knobs.set("decorrelate", p);
        let diversified = testbeds::make(&self.testbed, &knobs)?;
        let mut trainer = Trainer::fine_tune(diversified.clone(), ck, steps, seed)?;
        let mut metrics = open_metrics(out, false)?;
        let mut regret = match curriculum {
            Some(c) => Some(RegretCurriculum::new(diversified, c, seed)?),
            None => None,
        };
        let run = train_loop(
            &mut trainer,
            out,
            &mut metrics,
            progress,
            20,
            &mut |t| match regret.as_mut() {
                Some(r) => Ok(r.before_update(t)?),
                None => Ok(()),
            },
        )?;
        let rounds = regret.map(|r| r.rounds).unwrap_or_default();
        Ok((run, trainer, rounds))
    }
}

/// Checks the settings, then audits checkpoint `s.policy`, fine-tunes it on decorrelated
/// levels into the output folder, audits the result and writes the reports (see the module
/// docs).
pub fn mitigate(s: &MitigateSettings, progress: &dyn Progress) -> Result<Mitigation> {
    let p = s
        .decorrelate
        .unwrap_or_else(|| s.method.default_decorrelate());
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::bad_setting(format!(
            "`decorrelate` must be in [0, 1], found {p}"
        )));
    }
    let curriculum = s.method.curriculum();
    if s.episodes == 0 {
        return Err(Error::bad_setting("`episodes` must be positive"));
    }
    let source = Source::load(&s.policy, &s.testbed)?;
    let out = s
        .out
        .clone()
        .unwrap_or_else(|| default_out(&s.policy, s.method.name()));
    if checkpoint::exists(&out) {
        return Err(Error::bad_setting(format!(
            "{} already holds a checkpoint; choose another `out`",
            out.display()
        )));
    }
    let _lock = crate::fsio::lock_out(&out)?;
    progress.stage(&format!("auditing {} ...", s.policy.display()));
    let before = audit_checkpoint(&source.audited, &s.policy, s.episodes, s.seed)?;
    progress.stage(&format!("before: {}", before.verdict.label));
    let steps = s.fine_tuning_steps()?;
    progress.stage(&format!(
        "fine-tuning ({}) for {steps} env steps with decorrelate {p} ...",
        s.method.name()
    ));
    let (run, _, rounds) =
        source.fine_tune(p, steps, s.seed, &out, progress, curriculum.clone())?;
    progress.stage(&format!("auditing {} ...", out.display()));
    let after = audit_checkpoint(&source.audited, &out, s.episodes, s.seed)?;

    let summary = Summary {
        kind: "mesascope-mitigation",
        method: s.method.name(),
        source: s.policy.display().to_string(),
        testbed: &s.testbed,
        decorrelate: p,
        curriculum: curriculum.map(|c| (c, rounds)),
        extra_steps: run.trained,
        source_steps: source.steps,
        seed: s.seed,
        before: side(&before),
        after: side(&after),
    };
    write_atomic(&out.join("audit-before.json"), &json_bytes(&before)?)?;
    write_atomic(&out.join("audit.json"), &json_bytes(&after)?)?;
    write_atomic(
        &out.join("audit.html"),
        report::audit::page(&after, None).as_bytes(),
    )?;
    write_atomic(&out.join("mitigation.json"), &json_bytes(&summary)?)?;
    Ok(Mitigation {
        source: s.policy.clone(),
        testbed: s.testbed.clone(),
        method: s.method.name(),
        before,
        after,
        extra_steps: run.trained,
        source_steps: source.steps,
        decorrelate: p,
        wall: run.wall,
        curve: run.curve,
        out,
    })
}
