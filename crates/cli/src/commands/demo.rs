use crate::args::DemoArgs;
use crate::progress::Terminal;
use mesascope::demo::{demo, DemoSettings};
use mesascope::report::demo::{scripted_text, story_text};
use std::fmt::Write as _;

pub fn settings(a: &DemoArgs) -> DemoSettings {
    DemoSettings {
        episodes: a.episodes as usize,
        seed: a.seed,
        json: a.json.clone(),
        scripted_only: a.scripted_only,
        steps: a.steps,
        out: a.out.clone(),
    }
}

pub fn run(a: &DemoArgs) -> mesascope::Result<String> {
    let d = demo(&settings(a), &Terminal::new(a.quiet))?;
    let mut s = scripted_text(&d.scripted);
    if let Some(path) = &a.json {
        let _ = writeln!(s, "wrote {}", path.display());
    }
    let episodes: usize = d
        .scripted
        .testbeds
        .iter()
        .map(|t| t.rows.len() * d.scripted.episodes)
        .sum();
    let _ = writeln!(s, "{episodes} episodes in {:.2} s", d.scripted_seconds);
    if let Some(story) = &d.story {
        s.push_str(&story_text(story));
        let story_seconds: f64 = story.stages.iter().map(|(_, t)| t).sum();
        let _ = writeln!(s, "trained story in {story_seconds:.0} s");
        let _ = writeln!(s, "demo in {:.0} s", d.seconds);
    }
    Ok(s)
}
