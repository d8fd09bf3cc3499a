use super::Output;
use crate::args::MitigateArgs;
use crate::progress::Terminal;
use mesascope::mitigate::{mitigate, MitigateSettings};
use mesascope::report;
use mesascope::sweep::{sweep, SweepSettings, DEFAULT_SHARES};
use std::fmt::Write as _;

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
        let s = SweepSettings {
            mitigation: settings(a),
            shares: a.shares.clone().unwrap_or_else(|| DEFAULT_SHARES.to_vec()),
            seeds: a.seeds,
        };
        let r = sweep(&s, &progress)?;
        let mut text = report::sweep::text(&r);
        let _ = writeln!(
            text,
            "\nwrote {} (sweep.json, sweep.html, a checkpoint per run)",
            s.out_dir().display()
        );
        return Ok(text.into());
    }
    let m = mitigate(&settings(a), &progress)?;
    Ok(Output {
        text: report::mitigation::text(&m),
        code: m.after.verdict.exit_code as u8,
    })
}
