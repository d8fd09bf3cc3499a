use crate::args::{AuditManyArgs, RayArgs, SweepArgs};
use crate::progress::Terminal;
use mesascope::audit::{audit_many, policies_in, AuditManySettings};
use mesascope::ray::RaySettings;
use mesascope::report;
use mesascope::sweep::{read_grid, sweep, SweepSettings};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn ray_settings(a: &RayArgs) -> Option<RaySettings> {
    a.ray.as_ref().map(|address| RaySettings {
        address: address.clone(),
        cpus_per_trial: a.cpus_per_trial,
        max_failures: a.max_failures,
    })
}

fn default_out(prefix: &str, path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    PathBuf::from("runs").join(format!("{prefix}{stem}"))
}

/// The table's figures as text, and where the files are.
pub fn summary(out: &Path, rows: &[serde_json::Map<String, serde_json::Value>]) -> String {
    let mut s = report::sweep::text(&report::sweep::points(rows));
    let failed = rows
        .iter()
        .filter(|r| r.get("verdict").is_none_or(|v| v.is_null()))
        .count();
    if failed > 0 {
        let _ = writeln!(
            s,
            "\n{failed} trial(s) did not finish (see the `error` column)"
        );
    }
    let _ = writeln!(
        s,
        "\nwrote {} (sweep.csv, sweep.json, sweep.html)",
        out.display()
    );
    s
}

pub fn run(a: &SweepArgs) -> mesascope::Result<String> {
    let out = a.out.clone().unwrap_or_else(|| default_out("", &a.grid));
    if let Some(ray) = ray_settings(&a.ray) {
        let rows = mesascope::ray::sweep(&a.grid, &out, a.resume, &ray)?;
        return Ok(summary(&out, &rows));
    }
    let s = SweepSettings {
        cells: read_grid(&a.grid)?,
        out,
        resume: a.resume,
    };
    run_settings(&s, a.quiet)
}

/// Runs a sweep in this process (also `mitigate --sweep`) and summarizes it.
pub fn run_settings(s: &SweepSettings, quiet: bool) -> mesascope::Result<String> {
    let done = sweep(s, &Terminal::new(quiet))?;
    let table: Vec<serde_json::Map<String, serde_json::Value>> = done
        .rows
        .iter()
        .map(|r| r.columns().into_iter().collect())
        .collect();
    let mut text = summary(&done.out, &table);
    let _ = writeln!(
        text,
        "{} trials, {} run now, in {:.0} s",
        done.rows.len(),
        done.ran,
        done.seconds
    );
    Ok(text)
}

pub fn audit_many_run(a: &AuditManyArgs) -> mesascope::Result<String> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out("audit-many-", &a.folder));
    if let Some(ray) = ray_settings(&a.ray) {
        mesascope::ray::audit_many(
            &a.folder,
            &a.env,
            &a.knobs.knobs,
            a.episodes as usize,
            a.seed,
            &out,
            &ray,
        )?;
        return Ok(format!(
            "wrote {} (verdicts.csv, index.html, a report per policy)\n",
            out.display()
        ));
    }
    let s = AuditManySettings {
        policies: policies_in(&a.folder)?,
        testbed: a.env.clone(),
        knobs: a.knobs.knobs.clone(),
        episodes: a.episodes as usize,
        seed: a.seed,
        out: out.clone(),
    };
    let lines = audit_many(&s, &Terminal::new(a.quiet))?;
    let mut text = String::new();
    for l in &lines {
        let _ = writeln!(
            text,
            "{}  {}  (exit {})",
            l.policy.display(),
            l.report.verdict.label,
            l.report.verdict.exit_code
        );
    }
    let _ = writeln!(
        text,
        "\nwrote {} (verdicts.csv, index.html, a report per policy)",
        out.display()
    );
    Ok(text)
}
