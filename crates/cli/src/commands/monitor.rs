use crate::args::{EvidenceArg, MonitorArgs};
use mesascope::core::monitor::{Evidence, MonitorConfig};
use mesascope::fsio::write_json;
use mesascope::monitor::{monitor, MonitorSettings};

pub fn settings(a: &MonitorArgs) -> MonitorSettings {
    MonitorSettings {
        policy: a.policy.clone(),
        fallback: a.fallback.clone(),
        testbed: a.env.clone(),
        knobs: a.knobs.knobs.clone(),
        config: MonitorConfig {
            threshold: a.threshold,
            beta: a.beta,
            reach: a.reach.0,
            evidence: match a.evidence {
                EvidenceArg::Policy => Evidence::Policy,
                EvidenceArg::Actions => Evidence::Actions,
            },
        },
        episodes: a.episodes as usize,
        seed: a.seed,
    }
}

pub fn run(a: &MonitorArgs) -> mesascope::Result<String> {
    let report = monitor(&settings(a))?;
    if let Some(path) = &a.json {
        write_json(path, &report)?;
    }
    Ok(mesascope::report::monitor::text(&report))
}
