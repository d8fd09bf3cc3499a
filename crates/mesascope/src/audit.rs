//! The audit of a policy named by a string (`scripted:`, a checkpoint folder, an ONNX file) on a
//! testbed: the core audit (`mesascope_core::audit`), optionally the probes, and the reports
//! (`audit.json`, `audit.html`). The verdict's exit code lets a pipeline gate on it.

use crate::error::{Context, Error, Result};
use crate::fsio::{json_bytes, write_atomic};
use crate::levels::load_levels;
use crate::policy::PolicySpec;
use crate::probe::{run_probe, ProbeSettings};
use crate::progress::Progress;
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
    /// Also audit on training levels this many cells longer per side (shorter when negative):
    /// one more distribution, `train@size=N`. Default none.
    pub size_shift: Option<i64>,
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
            size_shift: None,
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
    cfg.size_shift = s.size_shift;
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

/// Every checkpoint folder (one holding `model.json`) and `.onnx` file directly in `folder`, by
/// name.
pub fn policies_in(folder: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        Error::bad_policy(format!(
            "{} is not a folder of checkpoints and .onnx files ({e})",
            folder.display()
        ))
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            (p.is_dir() && p.join(mesascope_learn::checkpoint::META_FILE).is_file())
                || (p.is_file() && p.extension().is_some_and(|x| x == "onnx"))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::bad_policy(format!(
            "{} holds no checkpoint folder (model.json) and no .onnx file",
            folder.display()
        )));
    }
    Ok(found)
}

/// Audits of many policies on one testbed: every setting of [`AuditSettings`] but the policy.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditManySettings {
    pub policies: Vec<PathBuf>,
    pub testbed: String,
    pub knobs: Vec<(String, f64)>,
    pub episodes: usize,
    pub seed: u64,
    /// Receives `NNN-NAME/audit.{json,html}` per policy, `verdicts.csv` and `index.html`.
    pub out: PathBuf,
}

/// One policy's line of the verdict table.
#[derive(Clone, Debug)]
pub struct AuditLine {
    pub policy: PathBuf,
    pub report: AuditReport,
    /// Its `audit.html`.
    pub page: PathBuf,
}

impl AuditLine {
    /// The table's columns: the Python package's `audit_many` DataFrame.
    pub fn columns(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let v = report::table::AuditFigures::of(&self.report)?;
        let mut cols: Vec<(String, serde_json::Value)> = vec![
            ("policy".into(), self.policy.display().to_string().into()),
            ("verdict".into(), v.kind.into()),
            ("proxy".into(), v.proxy.into()),
            ("label".into(), v.label.into()),
            ("exit_code".into(), v.exit_code.into()),
        ];
        cols.extend(v.rates.iter().flat_map(report::table::Rate::columns));
        cols.push(("report".into(), self.page.display().to_string().into()));
        Ok(cols)
    }
}

/// Audits every policy one after another (each audit uses all the cores), writes each report
/// and the verdict table (`verdicts.csv`) and `index.html`, a page linking the reports.
pub fn audit_many(s: &AuditManySettings, progress: &dyn Progress) -> Result<Vec<AuditLine>> {
    if s.policies.is_empty() {
        return Err(Error::bad_policy("no policies to audit"));
    }
    if s.episodes == 0 {
        return Err(Error::bad_setting("`episodes` must be positive"));
    }
    // The testbed and knobs fail here, before any audit.
    testbeds::make(&s.testbed, &Knobs::from_pairs(&s.knobs))?;
    crate::fsio::create_out(&s.out)?;
    let mut lines = Vec::new();
    for (i, policy) in s.policies.iter().enumerate() {
        if progress.should_stop() {
            return Err(Error::new(
                crate::ErrorKind::Interrupted,
                format!("interrupted after {i} of {} audits", s.policies.len()),
            ));
        }
        progress.stage(&format!(
            "audit {}/{}: {} ...",
            i + 1,
            s.policies.len(),
            policy.display()
        ));
        let name = policy
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "policy".into());
        let dir = s.out.join(format!("{i:03}-{name}"));
        let mut a = AuditSettings::new(policy.display().to_string(), s.testbed.clone());
        a.knobs = s.knobs.clone();
        a.episodes = s.episodes;
        a.seed = s.seed;
        let report = run_audit(&a).with_context(|| format!("auditing {}", policy.display()))?;
        let (_, page) = write_reports(&report, &dir, None)?;
        lines.push(AuditLine {
            policy: policy.clone(),
            report,
            page,
        });
    }
    let table = lines
        .iter()
        .map(AuditLine::columns)
        .collect::<Result<Vec<_>>>()?;
    let index: Vec<report::audit::IndexEntry> = lines
        .iter()
        .map(|l| report::audit::IndexEntry {
            name: l
                .policy
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            link: l
                .page
                .strip_prefix(&s.out)
                .unwrap_or(&l.page)
                .display()
                .to_string(),
            label: l.report.verdict.label.clone(),
            exit_code: l.report.verdict.exit_code,
        })
        .collect();
    write_atomic(
        &s.out.join("verdicts.csv"),
        report::table::table_csv(&table).as_bytes(),
    )?;
    write_atomic(
        &s.out.join("index.html"),
        report::audit::index_page(&s.testbed, &index).as_bytes(),
    )?;
    Ok(lines)
}
