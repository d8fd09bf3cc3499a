//! `mesascope mitigate CHECKPOINT --env TESTBED --method diversify|adversarial`: audits a trained
//! policy, fine-tunes it on a training distribution in which the proxy is decorrelated from the
//! intended goal in a share of levels, sampled uniformly (diversify, Langosco et al. 2022's
//! remedy) or through a regret curriculum (adversarial, `mesascope_learn::curriculum`), audits the
//! result on the same distributions, and prints the two side by side. The exit code is the
//! verdict after.
//!
//! The output folder receives the fine-tuned checkpoint, its `metrics.jsonl`, `audit-before.json`,
//! `audit.json` and `audit.html` (after), and `mitigation.json` (settings, extra steps, both
//! verdicts and outcome rates), all written atomically.

use crate::args::{MitigateArgs, MitigationMethod};
use crate::audit::PolicySpec;
use crate::demo::write_atomic;
use crate::error::input;
use crate::html;
use crate::text::{table, Align};
use crate::train::{learn_err, open_metrics, train_loop, LoopSummary};
use anyhow::{Context, Result};
use mesascope_core::audit::{audit, AuditConfig, AuditReport};
use mesascope_core::{testbeds, Knobs, Testbed};
use mesascope_learn::checkpoint::{self, META_FILE};
use mesascope_learn::curriculum::{CurriculumConfig, RegretCurriculum, Round};
use mesascope_learn::ppo::{PpoConfig, Trainer};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Serialize)]
struct Summary<'a> {
    kind: &'static str,
    method: &'static str,
    source: String,
    testbed: &'a str,
    decorrelate: f64,
    /// adversarial: the curriculum's settings and what each refresh found.
    #[serde(skip_serializing_if = "Option::is_none")]
    curriculum: Option<(CurriculumConfig, Vec<Round>)>,
    /// Fine-tuning env steps: the mitigation's extra training.
    extra_steps: u64,
    /// Env steps the source checkpoint had been trained for.
    source_steps: u64,
    seed: u64,
    before: Side,
    after: Side,
}

#[derive(Serialize)]
struct Side {
    verdict: String,
    exit_code: i32,
    /// Per distribution: (name, [(outcome, rate)]).
    outcomes: Vec<(String, Vec<(String, f64)>)>,
}

fn side(r: &AuditReport) -> Side {
    Side {
        verdict: r.verdict.label.clone(),
        exit_code: r.verdict.exit_code,
        outcomes: r
            .distributions
            .iter()
            .map(|d| {
                let rates = d
                    .outcomes
                    .iter()
                    .map(|o| (o.outcome.clone(), o.rate.rate))
                    .collect();
                (d.name.clone(), rates)
            })
            .collect(),
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

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(v)?;
    bytes.push(b'\n');
    Ok(bytes)
}

pub(crate) fn default_out(policy: &Path, suffix: &str) -> PathBuf {
    let name = policy
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    PathBuf::from("runs").join(format!("{name}-{suffix}"))
}

/// A checkpoint to fine-tune, and its testbed as audits see it (no decorrelation).
pub(crate) struct Source {
    dir: PathBuf,
    testbed: String,
    knobs: Knobs,
    pub audited: Arc<dyn Testbed>,
    pub steps: u64,
}

impl Source {
    pub fn load(dir: &Path, env: &str) -> Result<Source> {
        let meta = checkpoint::read_meta(dir)
            .map_err(learn_err)
            .with_context(|| format!("cannot mitigate {}", dir.display()))?;
        if meta.testbed != env {
            return Err(input(format!(
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
        quiet: bool,
        curriculum: Option<CurriculumConfig>,
    ) -> Result<(LoopSummary, Trainer, Vec<Round>)> {
        let ck = checkpoint::load(&self.dir, &mesascope_learn::device())
            .map_err(learn_err)
            .with_context(|| format!("cannot fine-tune {}", self.dir.display()))?;
        let mut knobs = self.knobs.clone();
        knobs.set("decorrelate", p);
        let diversified = testbeds::make(&self.testbed, &knobs)?;
        let mut trainer =
            Trainer::fine_tune(diversified.clone(), ck, steps, seed).map_err(learn_err)?;
        let mut metrics = open_metrics(out, false)?;
        let mut regret = match curriculum {
            Some(c) => Some(RegretCurriculum::new(diversified, c, seed).map_err(learn_err)?),
            None => None,
        };
        let run = train_loop(
            &mut trainer,
            out,
            &mut metrics,
            quiet,
            20,
            &mut |t| match regret.as_mut() {
                Some(r) => r.before_update(t).map_err(learn_err),
                None => Ok(()),
            },
        )?;
        let rounds = regret.map(|r| r.rounds).unwrap_or_default();
        Ok((run, trainer, rounds))
    }
}

/// How the method draws fine-tuning levels: uniformly (diversify) or through a regret
/// curriculum (adversarial).
pub(crate) fn curriculum(method: MitigationMethod) -> Option<CurriculumConfig> {
    match method {
        MitigationMethod::Diversify => None,
        MitigationMethod::Adversarial => Some(CurriculumConfig::default()),
    }
}

/// What a mitigation did: the audits before and after, and the fine-tuning run.
pub struct Mitigation {
    pub before: AuditReport,
    pub after: AuditReport,
    pub extra_steps: u64,
    pub source_steps: u64,
    pub decorrelate: f64,
    pub wall: f64,
    pub out: PathBuf,
}

/// Checks the settings, then audits checkpoint `a.policy`, fine-tunes it on decorrelated
/// levels into `a.out`, audits the result and writes the reports (see the module docs).
pub fn mitigate(a: &MitigateArgs) -> Result<Mitigation> {
    let p = a
        .decorrelate
        .unwrap_or_else(|| a.method.default_decorrelate());
    if !(p > 0.0 && p <= 1.0) {
        return Err(input(format!("--decorrelate must be in (0, 1], found {p}")));
    }
    let curriculum = curriculum(a.method);
    if a.episodes == 0 {
        return Err(input("--episodes must be positive".to_string()));
    }
    let source = Source::load(&a.policy, &a.env)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&a.policy, a.method.name()));
    if out.join(META_FILE).exists() {
        return Err(input(format!(
            "{} already holds a checkpoint; choose another --out",
            out.display()
        )));
    }
    let episodes = a.episodes as usize;
    let progress = |m: &str| {
        if !a.quiet {
            eprintln!("{m}");
        }
    };
    progress(&format!("auditing {} ...", a.policy.display()));
    let before = audit_checkpoint(&source.audited, &a.policy, episodes, a.seed)?;
    progress(&format!("before: {}", before.verdict.label));
    let steps = a
        .steps
        .unwrap_or(PpoConfig::for_testbed(&a.env).total_steps);
    progress(&format!(
        "fine-tuning ({}) for {steps} env steps with decorrelate {p} ...",
        a.method.name()
    ));
    let (run, _, rounds) = source.fine_tune(p, steps, a.seed, &out, a.quiet, curriculum.clone())?;
    let source_steps = source.steps;
    progress(&format!("auditing {} ...", out.display()));
    let after = audit_checkpoint(&source.audited, &out, episodes, a.seed)?;

    let summary = Summary {
        kind: "mesascope-mitigation",
        method: a.method.name(),
        source: a.policy.display().to_string(),
        testbed: &a.env,
        decorrelate: p,
        curriculum: curriculum.map(|c| (c, rounds)),
        extra_steps: run.trained,
        source_steps,
        seed: a.seed,
        before: side(&before),
        after: side(&after),
    };
    write_atomic(&out.join("audit-before.json"), &json(&before)?)?;
    write_atomic(&out.join("audit.json"), &json(&after)?)?;
    write_atomic(&out.join("audit.html"), html::audit_page(&after).as_bytes())?;
    write_atomic(&out.join("mitigation.json"), &json(&summary)?)?;
    Ok(Mitigation {
        before,
        after,
        extra_steps: run.trained,
        source_steps,
        decorrelate: p,
        wall: run.wall,
        out,
    })
}

pub fn run(a: &MitigateArgs) -> Result<(String, i32)> {
    if a.sweep {
        let r = crate::sweep::sweep(a)?;
        let mut s = crate::sweep::render(&r);
        let out = crate::sweep::out_dir(a);
        let _ = writeln!(
            s,
            "\nwrote {} (sweep.json, sweep.html, a checkpoint per run)",
            out.display()
        );
        return Ok((s, 0));
    }
    let m = mitigate(a)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mitigate {} on {}: {} (decorrelate {}), {} extra env steps in {:.0} s (the source had {})\n",
        a.policy.display(),
        a.env,
        a.method.name(),
        m.decorrelate,
        m.extra_steps,
        m.wall,
        m.source_steps
    );
    s.push_str(&compare(&m.before, &m.after));
    let _ = writeln!(
        s,
        "\nverdict before: {} (exit {})\nverdict after:  {} (exit {})",
        m.before.verdict.label,
        m.before.verdict.exit_code,
        m.after.verdict.label,
        m.after.verdict.exit_code
    );
    let _ = writeln!(
        s,
        "wrote {} (checkpoint, audit.json, audit.html, audit-before.json, mitigation.json)",
        m.out.display()
    );
    Ok((s, m.after.verdict.exit_code))
}

/// Outcome rates per distribution, before and after.
pub fn compare(before: &AuditReport, after: &AuditReport) -> String {
    let outcomes: Vec<String> = before.distributions[0]
        .outcomes
        .iter()
        .map(|o| o.outcome.clone())
        .collect();
    let mut header = vec!["distribution".to_string(), "".to_string()];
    header.extend(outcomes.iter().cloned());
    header.push("hidden".into());
    let mut rows = vec![header];
    for (b, a) in before.distributions.iter().zip(&after.distributions) {
        for (when, d) in [("before", b), ("after", a)] {
            let mut row = vec![
                if when == "before" {
                    d.name.clone()
                } else {
                    String::new()
                },
                when.to_string(),
            ];
            for o in &outcomes {
                row.push(format!("{:.1}%", 100.0 * d.rate(o).map_or(0.0, |r| r.rate)));
            }
            row.push(format!("{:.3}", d.hidden.mean));
            rows.push(row);
        }
    }
    let mut align = vec![Align::Left, Align::Left];
    align.extend(std::iter::repeat_n(Align::Right, outcomes.len() + 1));
    table(&rows, &align, "  ")
}
