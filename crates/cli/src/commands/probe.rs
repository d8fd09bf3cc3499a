use crate::args::ProbeArgs;
use mesascope::learn::probe::ProbeConfig;
use mesascope::probe::{run_probe, write_reports, ProbeSettings};
use std::fmt::Write as _;
use std::time::Instant;

pub fn settings(a: &ProbeArgs) -> ProbeSettings {
    ProbeSettings {
        policy: a.policy.clone(),
        testbed: a.env.clone(),
        knobs: a.knobs.knobs.clone(),
        config: ProbeConfig {
            levels: a.levels as usize,
            layer: a.layer,
            scale: a.scale,
            episodes: a.episodes as usize,
            per_state: !a.mean_vector,
            controls: a.controls as usize,
            seed: a.seed,
            ..ProbeConfig::default()
        },
    }
}

pub fn run(a: &ProbeArgs) -> mesascope::Result<String> {
    if let Some(dir) = &a.out {
        mesascope::fsio::prepare_out(dir)?;
    }
    let start = Instant::now();
    let report = run_probe(&settings(a))?;
    let mut s = mesascope::report::probe::text(&report, start.elapsed().as_secs_f64());
    if let Some(dir) = &a.out {
        write_reports(&report, dir)?;
        let _ = writeln!(s, "wrote {} (probe.json, probe.html)", dir.display());
    }
    Ok(s)
}
