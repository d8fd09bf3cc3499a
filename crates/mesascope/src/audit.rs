//! The audit of a policy named by a string (`scripted:`, a checkpoint folder, an ONNX file) on a
//! testbed: the core audit (`mesascope_core::audit`), optionally the probes, and the reports
//! (`audit.json`, `audit.html`). The verdict's exit code lets a pipeline gate on it.

use crate::error::Result;
use crate::fsio::{json_bytes, write_atomic};
use crate::levels::load_levels;
use crate::policy::PolicySpec;
use crate::probe::{run_probe, ProbeSettings};
use crate::report;
use mesascope_core::audit::{audit, AuditConfig, AuditReport};
use mesascope_core::{testbeds, Knobs};
use mesascope_learn::probe::ProbeReport;
use std::path::{Path, PathBuf};

/// What to audit, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditSettings {
    /// The policy: `scripted:<name>[@beta]`, a checkpoint folder or an ONNX file.
    pub policy: String,
    pub testbed: String,
    /// Knob overrides of the testbed.
    pub knobs: Vec<(String, f64)>,
    /// Episodes per distribution (and paired episodes for the oversight test). Default 200.
    pub episodes: usize,
    /// The same seed gives the same report. Default 0.
    pub seed: u64,
    /// A folder of hand-made `*.level` files: one more distribution.
    pub levels: Option<PathBuf>,
    /// Also run the probes (a network policy) with their defaults.
    pub probe: bool,
}

impl AuditSettings {
    pub fn new(policy: impl Into<String>, testbed: impl Into<String>) -> AuditSettings {
        AuditSettings {
            policy: policy.into(),
            testbed: testbed.into(),
            knobs: Vec::new(),
            episodes: 200,
            seed: 0,
            levels: None,
            probe: false,
        }
    }
}

/// An audit's findings: the core report, and the probes when asked for.
#[derive(Clone, Debug)]
pub struct Audit {
    pub report: AuditReport,
    pub probes: Option<ProbeReport>,
}

/// Runs the core audit the settings describe.
pub fn run_audit(s: &AuditSettings) -> Result<AuditReport> {
    let spec = PolicySpec::parse(&s.policy)?;
    let tb = testbeds::make(&s.testbed, &Knobs::from_pairs(&s.knobs))?;
    let factory = spec.factory(&tb)?;
    let mut cfg = AuditConfig::new(spec.label(), s.episodes, s.seed);
    if let Some(dir) = &s.levels {
        cfg.levels = Some(load_levels(tb.as_ref(), dir)?);
    }
    Ok(audit(&tb, &*factory, &cfg)?)
}

/// The audit, and the probes when the settings ask for them.
pub fn audit_policy(s: &AuditSettings) -> Result<Audit> {
    let report = run_audit(s)?;
    let probes = if s.probe {
        let mut p = ProbeSettings::new(s.policy.clone(), s.testbed.clone());
        p.knobs = s.knobs.clone();
        p.config.episodes = s.episodes;
        p.config.seed = s.seed;
        Some(run_probe(&p)?)
    } else {
        None
    };
    Ok(Audit { report, probes })
}

/// Writes `audit.json` and `audit.html` into `dir` (created if missing), each atomically;
/// returns their paths. The probes, when given, are a `probe` key and a section of the page.
pub fn write_reports(
    report: &AuditReport,
    dir: &Path,
    probes: Option<&ProbeReport>,
) -> Result<(PathBuf, PathBuf)> {
    crate::fsio::create_out(dir)?;
    let mut value = serde_json::to_value(report)?;
    if let (Some(p), Some(obj)) = (probes, value.as_object_mut()) {
        obj.insert("probe".into(), serde_json::to_value(p)?);
    }
    let (jp, hp) = (dir.join("audit.json"), dir.join("audit.html"));
    write_atomic(&jp, &json_bytes(&value)?)?;
    write_atomic(&hp, report::audit::page(report, probes).as_bytes())?;
    Ok((jp, hp))
}
