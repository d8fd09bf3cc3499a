//! `mesascope audit POLICY --env TESTBED`: runs the core audit on a policy, prints a summary,
//! writes `audit.json` and `audit.html`, and returns the verdict's exit code (0 only for robustly
//! aligned), so that an ML pipeline can gate on it.

use crate::args::AuditArgs;
use crate::demo::write_atomic;
use crate::error::input;
use crate::html;
use crate::text::{table, Align};
use anyhow::{Context, Result};
use mesascope_core::agents::{reference_agent, reference_agent_names, Agent};
use mesascope_core::audit::{audit, AuditConfig, AuditReport, LevelSet};
use mesascope_core::level::Level;
use mesascope_core::{testbeds, Knobs, Split, Testbed};
use mesascope_learn::agent::PolicyAgent;
use mesascope_onnx::{OnnxAgent, OnnxPolicy};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

/// What the POLICY argument names; each variant needs only a way to build an [`Agent`]. (Python
/// callables are audited through the Python package, which builds its own agent.)
#[derive(Clone, Debug, PartialEq)]
pub enum PolicySpec {
    /// `scripted:<name>[@beta]`: a reference agent (`intended`, a proxy, `conditional:<proxy>`,
    /// `random`) with Boltzmann rationality `beta` (default `inf`).
    Scripted { name: String, beta: f32 },
    /// A folder written by `mesascope train` (`model.json` + `model.safetensors`).
    Checkpoint(PathBuf),
    /// An ONNX model file (`*.onnx`) meeting the contract of docs/onnx.md.
    Onnx(PathBuf),
}

const POLICY_FORMS: &str =
    "a checkpoint folder written by mesascope train, an ONNX file (*.onnx), or scripted:<name>[@beta], e.g. scripted:intended or scripted:green@2";

impl PolicySpec {
    pub fn parse(s: &str) -> Result<PolicySpec> {
        let Some(rest) = s.strip_prefix("scripted:") else {
            let dir = Path::new(s);
            if dir
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
            {
                if !dir.is_file() {
                    return Err(input(format!("no such ONNX file '{s}'")));
                }
                return Ok(PolicySpec::Onnx(dir.to_path_buf()));
            }
            if dir.join("model.json").is_file() {
                return Ok(PolicySpec::Checkpoint(dir.to_path_buf()));
            }
            let why = if dir.is_dir() {
                format!("folder '{s}' holds no checkpoint (model.json)")
            } else {
                format!("unknown policy '{s}': no such checkpoint folder")
            };
            return Err(input(format!("{why} (accepted: {POLICY_FORMS})")));
        };
        let (name, beta) = match rest.rsplit_once('@') {
            Some((n, b)) => {
                let beta: f32 = b.trim().parse().map_err(|_| {
                    input(format!(
                        "policy '{s}': beta '{b}' is not a number (use inf for a fully rational agent)"
                    ))
                })?;
                if beta.is_nan() || beta < 0.0 {
                    return Err(input(format!("policy '{s}': beta must be >= 0, found {b}")));
                }
                (n, beta)
            }
            None => (rest, f32::INFINITY),
        };
        if name.is_empty() {
            return Err(input(format!(
                "policy '{s}' names no agent (accepted: {POLICY_FORMS})"
            )));
        }
        Ok(PolicySpec::Scripted {
            name: name.to_string(),
            beta,
        })
    }

    pub fn label(&self) -> String {
        match self {
            PolicySpec::Scripted { name, beta } if beta.is_infinite() => format!("scripted:{name}"),
            PolicySpec::Scripted { name, beta } => format!("scripted:{name}@{beta}"),
            PolicySpec::Checkpoint(dir) | PolicySpec::Onnx(dir) => dir.display().to_string(),
        }
    }

    /// Checks the policy against the testbed and returns a factory of fresh instances.
    #[allow(clippy::type_complexity)]
    pub fn factory(
        &self,
        tb: &Arc<dyn Testbed>,
    ) -> Result<Box<dyn Fn() -> mesascope_core::Result<Box<dyn Agent>> + Sync>> {
        match self {
            PolicySpec::Scripted { name, beta } => {
                if let Err(e) = reference_agent(tb.as_ref(), name, *beta) {
                    return Err(input(format!(
                        "{e}; as a policy: scripted:<one of {}>",
                        reference_agent_names(tb.as_ref()).join(", ")
                    )));
                }
                let (tb, name, beta) = (tb.clone(), name.clone(), *beta);
                Ok(Box::new(move || reference_agent(tb.as_ref(), &name, beta)))
            }
            PolicySpec::Checkpoint(dir) => {
                // Checked once against the testbed's level shape; each audit worker then gets a
                // copy of the loaded network.
                let shape = mesascope_core::env::generate_level(tb.as_ref(), Split::Train, 0).grid;
                let agent = PolicyAgent::load_for(dir, tb.as_ref(), shape.height, shape.width)
                    .map_err(|e| {
                        crate::train::learn_err(e).context(format!("policy {}", dir.display()))
                    })?;
                let template = Mutex::new(agent);
                Ok(Box::new(move || {
                    let agent = template
                        .lock()
                        .map_err(|_| mesascope_core::Error::Policy("policy copy failed".into()))?
                        .clone();
                    Ok(Box::new(agent) as Box<dyn Agent>)
                }))
            }
            PolicySpec::Onnx(path) => {
                // Loaded and checked once; every audit worker shares the optimized model.
                let policy = Arc::new(load_onnx(tb.as_ref(), path)?);
                Ok(Box::new(move || {
                    Ok(Box::new(OnnxAgent::new(policy.clone())) as Box<dyn Agent>)
                }))
            }
        }
    }
}

/// ONNX model `path`, checked against `tb` and its level shape.
pub fn load_onnx(tb: &dyn Testbed, path: &Path) -> Result<OnnxPolicy> {
    let g = mesascope_core::env::generate_level(tb, Split::Train, 0).grid;
    Ok(OnnxPolicy::load(path, tb, g.height, g.width)?)
}

/// Every `*.level` file in `dir`, in name order, parsed and checked against the testbed.
pub fn load_levels(tb: &dyn Testbed, dir: &Path) -> Result<LevelSet> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| input(format!("cannot read levels folder {shown}: {e}")))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "level"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(input(format!(
            "levels folder {shown} holds no .level files (write one with `mesascope show {} > {shown}/my.level`)",
            tb.name()
        )));
    }
    let mut levels = Vec::new();
    for p in paths {
        let file = p.display();
        let text = mesascope_core::level::read_level_file(&p)?;
        let header = Level::parse(&text)
            .map_err(mesascope_core::Error::from)
            .with_context(|| format!("level file {file}"))?;
        if let Some(h) = header.testbed.filter(|h| h != tb.name()) {
            return Err(input(format!(
                "level file {file} says 'testbed: {h}' but the audit is on {}",
                tb.name()
            )));
        }
        let level =
            testbeds::parse_level(tb, &text).with_context(|| format!("level file {file}"))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        levels.push((name, level));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.to_string());
    Ok(LevelSet { name, levels })
}

/// Builds and runs the audit the arguments describe.
pub fn run_audit(a: &AuditArgs) -> Result<AuditReport> {
    let spec = PolicySpec::parse(&a.policy)?;
    let tb = testbeds::make(&a.env, &Knobs::from_pairs(&a.knobs.knobs))?;
    let factory = spec.factory(&tb)?;
    let mut cfg = AuditConfig::new(spec.label(), a.episodes as usize, a.seed);
    if let Some(dir) = &a.levels {
        cfg.levels = Some(load_levels(tb.as_ref(), dir)?);
    }
    Ok(audit(&tb, &*factory, &cfg)?)
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// The report as text: verdict, evidence, one row per distribution, oversight, triggers.
pub fn render(r: &AuditReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mesascope audit: {} on {}, {} episodes per distribution, seed {}",
        r.policy, r.testbed, r.episodes, r.seed
    );
    let _ = writeln!(
        s,
        "\nverdict: {} (exit code {})",
        r.verdict.label, r.verdict.exit_code
    );
    for e in &r.verdict.evidence {
        let _ = writeln!(s, "  - {e}");
    }
    let proxies: Vec<&str> = r.goals.iter().skip(1).map(|g| g.name.as_str()).collect();
    let mut head: Vec<String> = vec!["distribution".into(), "intended".into()];
    head.extend(proxies.iter().map(|p| format!("proxy:{p}")));
    head.extend(
        [
            "died",
            "timed out",
            "competent",
            "hidden",
            "steps/shortest",
            "goal inferred (share of episodes)",
        ]
        .map(String::from),
    );
    let mut rows = vec![head];
    for d in &r.distributions {
        let mut row = vec![d.name.clone()];
        row.extend(d.outcomes.iter().map(|o| pct(o.rate.rate)));
        row.push(pct(d.competent.rate));
        row.push(format!("{:.3}", d.hidden.mean));
        row.push(if d.path_efficiency.n > 0 {
            format!("{:.2}", d.path_efficiency.mean)
        } else {
            "-".into()
        });
        row.push(d.inference.shares_text());
        rows.push(row);
    }
    let mut align = vec![Align::Left];
    align.extend(std::iter::repeat_n(Align::Right, rows[0].len() - 2));
    align.push(Align::Left);
    s.push('\n');
    s.push_str(&table(&rows, &align, "  "));
    if let Some(o) = &r.oversight {
        let _ = writeln!(
            s,
            "\noversight ({} toggled on {} paired levels): intended {} watched vs {} unwatched, McNemar p = {:.2e}, mean TV on matched states {:.3}",
            o.cue,
            o.pairs,
            pct(o.intended_watched.rate),
            pct(o.intended_unwatched.rate),
            o.mcnemar_p,
            o.mean_tv
        );
    }
    let top: Vec<String> = r
        .triggers
        .ranked
        .iter()
        .take(3)
        .map(|f| format!("{} ({:.3} nats)", f.family, f.score))
        .collect();
    let _ = writeln!(s, "trigger scan, most divergent: {}", top.join(", "));
    s
}

fn timing_line(r: &AuditReport) -> String {
    let t = &r.timing;
    format!(
        "{:.2} s: policy inference {:.2} s ({:.2} CPU-s over {} threads), analysis {:.2} s \
         (rollouts {:.2} s incl. policy, inverse planning {:.2} s, oversight {:.2} s, triggers {:.2} s, heat maps {:.2} s)",
        t.total_s,
        t.policy_wall_s(),
        t.policy_cpu_s,
        t.threads,
        t.analysis_s(),
        t.rollouts_s,
        t.inference_s,
        t.oversight_s,
        t.triggers_s,
        t.heatmaps_s
    )
}

/// Writes `audit.json` and `audit.html` into `dir` (created if missing), each atomically;
/// returns their paths.
pub fn write_reports(
    report: &AuditReport,
    dir: &Path,
    probes: Option<&mesascope_learn::probe::ProbeReport>,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    let mut value = serde_json::to_value(report)?;
    let mut page = html::audit_page(report);
    if let (Some(p), Some(obj)) = (probes, value.as_object_mut()) {
        obj.insert("probe".into(), serde_json::to_value(p)?);
        let at = page.rfind("</body>").unwrap_or(page.len());
        page.insert_str(at, &crate::probe::section(p));
    }
    let json = serde_json::to_string_pretty(&value)? + "\n";
    let (jp, hp) = (dir.join("audit.json"), dir.join("audit.html"));
    write_atomic(&jp, json.as_bytes())?;
    write_atomic(&hp, page.as_bytes())?;
    Ok((jp, hp))
}

/// `mesascope audit`: the text to print and the exit code of the verdict.
pub fn run(a: &AuditArgs) -> Result<(String, i32)> {
    let report = run_audit(a)?;
    let probes = if a.probe {
        Some(crate::probe::run_probe(&crate::args::ProbeArgs {
            policy: a.policy.clone(),
            env: a.env.clone(),
            episodes: a.episodes,
            seed: a.seed,
            knobs: a.knobs.clone(),
            ..crate::args::ProbeArgs::defaults()
        })?)
    } else {
        None
    };
    let mut s = render(&report);
    if let Some(p) = &probes {
        s.push('\n');
        s.push_str(&crate::probe::render(p, 0.0).replace("\nprobed in 0.0 s\n", ""));
    }
    if let Some(dir) = &a.out {
        let (jp, hp) = write_reports(&report, dir, probes.as_ref())?;
        let _ = writeln!(s, "\nwrote {} and {}", jp.display(), hp.display());
    }
    let _ = writeln!(s, "{}", timing_line(&report));
    Ok((s, report.verdict.exit_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_specs_parse() {
        assert_eq!(
            PolicySpec::parse("scripted:green@2").unwrap(),
            PolicySpec::Scripted {
                name: "green".into(),
                beta: 2.0
            }
        );
        let s = PolicySpec::parse("scripted:conditional:gold").unwrap();
        assert_eq!(s.label(), "scripted:conditional:gold");
        for bad in [
            "green",
            "scripted:",
            "scripted:x@-1",
            "scripted:x@fast",
            "onnx:x",
        ] {
            assert!(PolicySpec::parse(bad).is_err(), "{bad}");
        }
    }
}
