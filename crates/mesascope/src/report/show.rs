//! A shown level as text that is itself a level file: every line but the level's header and grid
//! is a `;` comment, so the text saved as `my.level` loads back as a level.

use super::text::{knob_pairs, num, prefix_lines, table, Align};
use mesascope_core::agents::{self, Episode};
use mesascope_core::grid::{Pos, MOVE_NAMES};
use mesascope_core::level::Level;
use mesascope_core::{Env, Split, Testbed};
use std::fmt::Write as _;
use std::sync::Arc;

/// A level to show, and the rollout on it when one was asked for.
pub struct Shown {
    pub resolved: Resolved,
    /// The knobs set (for the header).
    pub knobs: Vec<(String, f64)>,
    pub rollout: Option<Rollout>,
}

/// An agent's episode on the shown level.
pub struct Rollout {
    /// `agent NAME (beta B)` or `policy PATH (actions sampled)`.
    pub label: String,
    pub seed: u64,
    pub episode: Episode,
    pub frames: bool,
}

/// Where the level of a `show` comes from, resolved.
pub struct Resolved {
    pub testbed: Arc<dyn Testbed>,
    pub split: Split,
    pub level: Level,
    /// A one-line description of the source (`split train, seed 3` or `level file x.level`).
    pub source: String,
}

fn knobs_label(pairs: &[(String, f64)]) -> String {
    if pairs.is_empty() {
        "default knobs".into()
    } else {
        format!("knobs {}", knob_pairs(pairs, " "))
    }
}

fn oversight_line(env: &Env) -> Option<String> {
    let tb = env.testbed();
    let o = tb.oversight()?;
    let shown = tb.cue_present(&env.state)?;
    let watched = env.watched()?;
    Some(format!(
        "oversight: the {} is {} -> {}",
        o.cue,
        if shown { "shown" } else { "not shown" },
        if watched { "watched" } else { "not watched" }
    ))
}

/// The level's rows with the path drawn over them: start `@@`, visited `::`, end `**`.
pub fn render_path(level: &Level, positions: &[Pos]) -> String {
    let rows = level.render_rows(None);
    let mut grid: Vec<Vec<char>> = rows.lines().map(|l| l.chars().collect()).collect();
    let w = level.grid.width;
    let mut put = |p: Pos, g: [char; 2]| {
        let (r, c) = (p / w, p % w);
        if let Some(row) = grid.get_mut(r) {
            if 2 * c + 1 < row.len() {
                row[2 * c] = g[0];
                row[2 * c + 1] = g[1];
            }
        }
    };
    let start = level.agent;
    let end = positions.last().copied().unwrap_or(start);
    for &p in positions {
        if p != start && p != end {
            put(p, [':', ':']);
        }
    }
    if end != start {
        put(end, ['*', '*']);
    }
    let mut s = String::new();
    for row in grid {
        s.extend(row);
        s.push('\n');
    }
    s
}

/// The rows of the current state of `env` (agent drawn where it stands).
pub fn render_state(env: &Env) -> String {
    Level {
        grid: env.state.grid.clone(),
        agent: env.state.agent,
        audited: env.state.audited,
    }
    .render_rows(None)
}

fn action_name(a: u8) -> String {
    MOVE_NAMES
        .get(a as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("action {a}"))
}

/// The shown level as text that is itself a level file: every line but the level's header and
/// grid is a `;` comment.
pub fn text(shown: &Shown) -> String {
    let r = &shown.resolved;
    let tb = r.testbed.as_ref();
    let env = Env::from_level(r.testbed.clone(), r.split, r.level.clone());
    let mut head = String::new();
    let _ = writeln!(
        head,
        "{}: {} ({}); {}x{}, time limit {} steps",
        tb.name(),
        r.source,
        knobs_label(&shown.knobs),
        r.level.grid.height,
        r.level.grid.width,
        env.state.max_steps
    );
    if let Some(line) = oversight_line(&env) {
        let _ = writeln!(head, "{line}");
    }
    if r.level.audited {
        let _ = writeln!(
            head,
            "audited: the base reward follows the intended goal whatever the cue shows"
        );
    }
    let _ = writeln!(head, "goals (shortest path from the start):");
    let lens = agents::goal_path_lengths(&env);
    let rows: Vec<Vec<String>> = tb
        .goals()
        .iter()
        .zip(&lens)
        .enumerate()
        .map(|(i, (g, len))| {
            vec![
                g.name.to_string(),
                if i == 0 { "intended" } else { "proxy" }.to_string(),
                match len {
                    Some(n) => format!("{n} steps"),
                    None => "unreachable".into(),
                },
                g.description.to_string(),
            ]
        })
        .collect();
    head.push_str(&table(
        &rows,
        &[Align::Left, Align::Left, Align::Right, Align::Left],
        "  ",
    ));
    let mut out = prefix_lines(&head, "; ");
    out.push_str(&r.level.to_ascii(Some(tb.name())));
    if let Some(rollout) = &shown.rollout {
        out.push('\n');
        out.push_str(&prefix_lines(&rollout_text(r, rollout), "; "));
    }
    out
}

/// The rollout described (uncommented text).
fn rollout_text(r: &Resolved, rollout: &Rollout) -> String {
    let tb = r.testbed.as_ref();
    let ep = &rollout.episode;
    let mut s = String::new();
    let _ = writeln!(s, "{}, random seed {}", rollout.label, rollout.seed);
    if rollout.frames {
        let mut replay = Env::from_level(r.testbed.clone(), r.split, r.level.clone());
        let watched = |e: &Env| match e.watched() {
            Some(true) => "  (watched)",
            Some(false) => "  (not watched)",
            None => "",
        };
        let _ = writeln!(s, "step 0/{}{}", ep.actions.len(), watched(&replay));
        s.push_str(&prefix_lines(&render_state(&replay), "  "));
        for (t, &act) in ep.actions.iter().enumerate() {
            let st = replay.step(act as usize);
            let _ = writeln!(
                s,
                "step {}/{}: {}, reward {}{}",
                t + 1,
                ep.actions.len(),
                action_name(act),
                num(st.reward as f64),
                watched(&replay)
            );
            s.push_str(&prefix_lines(&render_state(&replay), "  "));
        }
    } else {
        let _ = writeln!(s, "path (@@ start, :: visited, ** end):");
        s.push_str(&prefix_lines(&render_path(&r.level, &ep.positions), "  "));
        let acts: Vec<String> = ep.actions.iter().map(|&x| action_name(x)).collect();
        let _ = writeln!(s, "actions: {}", acts.join(" "));
    }
    let o = &ep.outcome;
    let rows = vec![
        vec!["base return".to_string(), format!("{:.4}", o.base_return)],
        vec!["hidden performance".to_string(), format!("{:.4}", o.hidden)],
        vec!["steps".to_string(), format!("{}", o.steps)],
        vec!["outcome".to_string(), o.kind.label(tb)],
    ];
    s.push_str(&table(&rows, &[Align::Left, Align::Left], ""));
    s
}
