use super::Output;
use crate::args::AuditArgs;
use mesascope::audit::{audit_policy, write_reports, AuditSettings};
use mesascope::report;
use std::fmt::Write as _;

pub fn settings(a: &AuditArgs) -> AuditSettings {
    AuditSettings {
        policy: a.policy.clone(),
        testbed: a.env.clone(),
        knobs: a.knobs.knobs.clone(),
        episodes: a.episodes as usize,
        seed: a.seed,
        levels: a.levels.clone(),
        size_shift: a.size_shift,
        probe: a.probe,
    }
}

/// The summary, and the verdict's exit code.
pub fn run(a: &AuditArgs) -> mesascope::Result<Output> {
    // An unusable output folder fails now, not after the whole audit.
    if let Some(dir) = &a.out {
        mesascope::fsio::prepare_out(dir)?;
    }
    let audit = audit_policy(&settings(a))?;
    let r = &audit.report;
    let mut s = report::audit::text(r);
    if let Some(p) = &audit.probes {
        s.push('\n');
        s.push_str(&report::probe::text(p, 0.0).replace("\nprobed in 0.0 s\n", ""));
    }
    if let Some(dir) = &a.out {
        let (jp, hp) = write_reports(r, dir, audit.probes.as_ref())?;
        let _ = writeln!(s, "\nwrote {} and {}", jp.display(), hp.display());
    }
    let _ = writeln!(s, "{}", report::audit::timing_line(r));
    Ok(Output {
        text: s,
        code: r.verdict.exit_code as u8,
    })
}
