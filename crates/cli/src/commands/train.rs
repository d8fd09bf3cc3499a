use crate::args::TrainArgs;
use crate::progress::Terminal;
use mesascope::train::{train, Curriculum, TrainSettings};

pub fn settings(a: &TrainArgs) -> mesascope::Result<TrainSettings> {
    Ok(TrainSettings {
        testbed: a.testbed.clone(),
        knobs: a.knobs.knobs.clone(),
        decorrelate: a.decorrelate,
        steps: a.steps,
        seed: a.seed,
        out: a.out.clone(),
        resume: a.resume,
        arch: a.arch.clone(),
        channels: a.channels.map(|n| n as usize),
        iterations: a.iterations.map(|n| n as usize),
        num_envs: a.envs.map(|n| n as usize),
        hidden: a.hidden.map(|n| n as usize),
        checkpoint_every: a.checkpoint_every,
        eval_episodes: a.eval_episodes as usize,
        curriculum: Curriculum::parse(&a.curriculum)?,
    })
}

pub fn run(a: &TrainArgs) -> mesascope::Result<String> {
    let run = train(&settings(a)?, &Terminal::new(a.quiet))?;
    Ok(mesascope::report::train::text(&run))
}
