//! `mesascope show`: a level (generated from a seed, or a hand-made file), its goals and the
//! shortest path to each, and optionally a reference agent's rollout.
//!
//! The output is itself a level file: every line but the level's header and grid is a `;`
//! comment, so `mesascope show TESTBED > my.level` gives a level to edit and load back with
//! `--level my.level`.

use crate::args::ShowArgs;
use crate::error::input;
use crate::text::{num, prefix_lines, table, Align};
use anyhow::{Context, Result};
use mesascope_core::agents::{self, Episode};
use mesascope_core::env::generate_level;
use mesascope_core::grid::{Pos, MOVE_NAMES};
use mesascope_core::level::Level;
use mesascope_core::rng::Rng;
use mesascope_core::{testbeds, Env, Knobs, Split, Testbed};
use std::fmt::Write as _;
use std::sync::Arc;

/// Where the level of a `show` comes from, resolved.
pub struct Resolved {
    pub testbed: Arc<dyn Testbed>,
    pub split: Split,
    pub level: Level,
    /// A one-line description of the source (`split train, seed 3` or `level file x.level`).
    pub source: String,
}

fn known_testbeds() -> String {
    testbeds::NAMES.join(", ")
}

/// Builds the testbed, split and level that the arguments name.
pub fn resolve(a: &ShowArgs) -> Result<Resolved> {
    let knobs = Knobs::from_pairs(&a.knobs.knobs);
    let Some(path) = &a.level else {
        let name = a.testbed.as_deref().ok_or_else(|| {
            input(format!(
                "name a testbed (mesascope show TESTBED) or a level file (--level FILE); known testbeds: {}",
                known_testbeds()
            ))
        })?;
        let testbed = testbeds::make(name, &knobs)?;
        let split_name = a.split.as_deref().unwrap_or("train");
        let split = Split::parse(split_name, testbed.as_ref()).map_err(input)?;
        let level = generate_level(testbed.as_ref(), split, a.seed);
        return Ok(Resolved {
            source: format!("split {}, seed {}", split.label(testbed.as_ref()), a.seed),
            testbed,
            split,
            level,
        });
    };
    let shown = path.display();
    let text = mesascope_core::level::read_level_file(path)?;
    let file = Level::parse(&text)
        .map_err(mesascope_core::Error::from)
        .with_context(|| format!("level file {shown}"))?;
    // The testbed: the positional name or --env (they must agree), else the file's header.
    let flag = match (&a.testbed, &a.env) {
        (Some(p), Some(e)) if p != e => {
            return Err(input(format!(
                "two testbeds named: '{p}' and --env '{e}'; give one"
            )))
        }
        (p, e) => p.clone().or_else(|| e.clone()),
    };
    let name = match (flag, file.testbed) {
        (Some(f), Some(h)) if f != h => {
            return Err(input(format!(
                "level file {shown} says 'testbed: {h}' but the command line says '{f}'; \
                 fix the header or the command line"
            )))
        }
        (Some(f), _) => f,
        (None, Some(h)) => h,
        (None, None) => {
            return Err(input(format!(
                "level file {shown} has no 'testbed:' header; name its testbed with --env TESTBED \
                 (known: {})",
                known_testbeds()
            )))
        }
    };
    let testbed = testbeds::make(&name, &knobs)?;
    let level = testbeds::parse_level(testbed.as_ref(), &text)
        .with_context(|| format!("level file {shown}"))?;
    Ok(Resolved {
        source: format!("level file {shown}"),
        testbed,
        split: Split::Train,
        level,
    })
}

fn knobs_label(pairs: &[(String, f64)]) -> String {
    if pairs.is_empty() {
        "default knobs".into()
    } else {
        let v: Vec<String> = pairs
            .iter()
            .map(|(n, v)| format!("{n}={}", num(*v)))
            .collect();
        format!("knobs {}", v.join(" "))
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

/// `mesascope show`.
pub fn run(a: &ShowArgs) -> Result<String> {
    let r = resolve(a)?;
    let tb = r.testbed.as_ref();
    let env = Env::from_level(r.testbed.clone(), r.split, r.level.clone());
    let mut head = String::new();
    let _ = writeln!(
        head,
        "{}: {} ({}); {}x{}, time limit {} steps",
        tb.name(),
        r.source,
        knobs_label(&a.knobs.knobs),
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
    if a.agent.is_some() || a.policy.is_some() {
        out.push('\n');
        out.push_str(&prefix_lines(&rollout(&r, a)?, "; "));
    }
    Ok(out)
}

/// The policy at `path` (a checkpoint folder or an ONNX file), checked against the level's
/// testbed and shape.
fn load_policy(r: &Resolved, path: &std::path::Path) -> Result<Box<dyn agents::Agent>> {
    let g = &r.level.grid;
    if path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
    {
        let policy = mesascope_onnx::OnnxPolicy::load(path, r.testbed.as_ref(), g.height, g.width)?;
        return Ok(Box::new(mesascope_onnx::OnnxAgent::new(
            std::sync::Arc::new(policy),
        )));
    }
    let agent =
        mesascope_learn::agent::PolicyAgent::load_for(path, r.testbed.as_ref(), g.height, g.width)
            .map_err(|e| {
                crate::train::learn_err(e).context(format!("policy {}", path.display()))
            })?;
    Ok(Box::new(agent))
}

/// Runs the agent and describes its episode (uncommented text).
fn rollout(r: &Resolved, a: &ShowArgs) -> Result<String> {
    let tb = r.testbed.as_ref();
    let beta = a.beta.unwrap_or(f32::INFINITY);
    let (mut agent, label) = match (&a.agent, &a.policy) {
        (_, Some(dir)) => (
            load_policy(r, dir)?,
            format!("policy {} (actions sampled)", dir.display()),
        ),
        (Some(name), None) => (
            agents::reference_agent(tb, name, beta)?,
            format!(
                "agent {name} (beta {})",
                if beta.is_infinite() {
                    "inf".to_string()
                } else {
                    num(beta as f64)
                }
            ),
        ),
        (None, None) => return Err(input("name an --agent or a --policy to roll out")),
    };
    let mut env = Env::from_level(r.testbed.clone(), r.split, r.level.clone());
    let mut rng = Rng::new(a.seed);
    let ep: Episode = agents::run_episode(&mut env, agent.as_mut(), &mut rng)?;
    let mut s = String::new();
    let _ = writeln!(s, "{label}, random seed {}", a.seed);
    if a.frames {
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
    Ok(s)
}
