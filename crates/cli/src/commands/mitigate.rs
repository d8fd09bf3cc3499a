use super::Output;
use crate::args::MitigateArgs;
use crate::progress::Terminal;
use mesascope::mitigate::{mitigate, MitigateSettings};
use mesascope::report;
use mesascope::sweep::{mitigation_grid, SweepSettings, DEFAULT_SHARES};
use std::path::PathBuf;

pub fn settings(a: &MitigateArgs) -> MitigateSettings {
    MitigateSettings {
        policy: a.policy.clone(),
        testbed: a.env.clone(),
        method: a.method.into(),
        decorrelate: a.decorrelate,
        steps: a.steps,
        seed: a.seed,
        episodes: a.episodes as usize,
        out: a.out.clone(),
    }
}

/// The summary, and the verdict after (0 for a sweep).
pub fn run(a: &MitigateArgs) -> mesascope::Result<Output> {
    let progress = Terminal::new(a.quiet);
    if a.sweep {
        let m = settings(a);
        let s = SweepSettings {
            cells: mitigation_grid(&m, a.shares.as_deref().unwrap_or(&DEFAULT_SHARES), a.seeds)?,
            out: default_out(&m),
            resume: a.resume,
        };
        return Ok(super::sweep::run_settings(&s, a.quiet)?.into());
    }
    let m = mitigate(&settings(a), &progress)?;
    Ok(Output {
        text: report::mitigation::text(&m),
        code: m.after.verdict.exit_code as u8,
    })
}

/// `--out`, else `runs/<checkpoint folder name>-sweep`.
fn default_out(m: &MitigateSettings) -> PathBuf {
    m.out
        .clone()
        .unwrap_or_else(|| mesascope::mitigate::default_out(&m.policy, "sweep"))
}
