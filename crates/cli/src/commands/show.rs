use crate::args::ShowArgs;
use mesascope::show::{show, ShowSettings};

pub fn settings(a: &ShowArgs) -> ShowSettings {
    ShowSettings {
        testbed: a.testbed.clone(),
        level: a.level.clone(),
        env: a.env.clone(),
        split: a.split.clone(),
        seed: a.seed,
        knobs: a.knobs.knobs.clone(),
        agent: a.agent.clone(),
        policy: a.policy.clone(),
        beta: a.beta,
        frames: a.frames,
    }
}

pub fn run(a: &ShowArgs) -> mesascope::Result<String> {
    Ok(mesascope::report::show::text(&show(&settings(a))?))
}
