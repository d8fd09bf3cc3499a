//! Showing a level: generated from a seed or read from a hand-made file, its goals, and
//! optionally an agent's rollout on it (a reference agent, a checkpoint or an ONNX policy).
//! `report::show` turns it into text that is itself a level file.

use crate::error::{Context, Error, Result};
use crate::levels::read_level_text;
use crate::policy::PolicySpec;
use crate::report::text::num;
use mesascope_core::agents;
use mesascope_core::env::generate_level;
use mesascope_core::level::Level;
use mesascope_core::rng::Rng;
use mesascope_core::{testbeds, Env, Knobs, Split};
use std::path::PathBuf;

pub use crate::report::show::{Resolved, Rollout, Shown};

/// What to show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShowSettings {
    /// The testbed to generate a level of (or the one a level file belongs to).
    pub testbed: Option<String>,
    /// A hand-made level file instead of a generated level.
    pub level: Option<PathBuf>,
    /// The testbed a level file belongs to (else its `testbed:` header); must agree with
    /// `testbed` when both are given.
    pub env: Option<String>,
    /// `train` or `shift:<proxy>`; default `train`.
    pub split: Option<String>,
    /// Level seed (generated levels), and the agent's random seed.
    pub seed: u64,
    pub knobs: Vec<(String, f64)>,
    /// Roll out a reference agent: `intended`, a proxy, `conditional:<proxy>`, `random`.
    pub agent: Option<String>,
    /// Roll out a trained policy: a checkpoint folder or an ONNX file.
    pub policy: Option<PathBuf>,
    /// The reference agent's Boltzmann rationality; default `inf`.
    pub beta: Option<f32>,
    /// Every frame of the rollout, not only the path.
    pub frames: bool,
}

fn known_testbeds() -> String {
    testbeds::NAMES.join(", ")
}

/// Builds the testbed, split and level that the settings name.
pub fn resolve(a: &ShowSettings) -> Result<Resolved> {
    let knobs = Knobs::from_pairs(&a.knobs);
    let Some(path) = &a.level else {
        let name = a.testbed.as_deref().ok_or_else(|| {
            Error::bad_setting(format!(
                "name a testbed or a level file (`level`); known testbeds: {}",
                known_testbeds()
            ))
        })?;
        let testbed = testbeds::make(name, &knobs)?;
        let split_name = a.split.as_deref().unwrap_or("train");
        let split = Split::parse(split_name, testbed.as_ref()).map_err(Error::bad_setting)?;
        let level = generate_level(testbed.as_ref(), split, a.seed);
        return Ok(Resolved {
            source: format!("split {}, seed {}", split.label(testbed.as_ref()), a.seed),
            testbed,
            split,
            level,
        });
    };
    let shown = path.display();
    let text = read_level_text(path)?;
    let file = Level::parse(&text)
        .map_err(mesascope_core::Error::from)
        .with_context(|| format!("level file {shown}"))?;
    // The testbed: the positional name or --env (they must agree), else the file's header.
    let flag = match (&a.testbed, &a.env) {
        (Some(p), Some(e)) if p != e => {
            return Err(Error::bad_setting(format!(
                "two testbeds named: '{p}' and `env` '{e}'; give one"
            )))
        }
        (p, e) => p.clone().or_else(|| e.clone()),
    };
    let name = match (flag, file.testbed) {
        (Some(f), Some(h)) if f != h => {
            return Err(Error::bad_level(format!(
                "level file {shown} says 'testbed: {h}' but the command line says '{f}'; \
                 fix the header or the command line"
            )))
        }
        (Some(f), _) => f,
        (None, Some(h)) => h,
        (None, None) => {
            return Err(Error::bad_level(format!(
                "level file {shown} has no 'testbed:' header; name its testbed with `env` \
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

/// Resolves the level and plays the agent or policy the settings name on it.
pub fn show(a: &ShowSettings) -> Result<Shown> {
    let resolved = resolve(a)?;
    let rollout = if a.agent.is_some() || a.policy.is_some() {
        Some(rollout(&resolved, a)?)
    } else {
        None
    };
    Ok(Shown {
        resolved,
        knobs: a.knobs.clone(),
        rollout,
    })
}

/// Runs the agent or policy on the resolved level.
fn rollout(r: &Resolved, a: &ShowSettings) -> Result<Rollout> {
    let tb = r.testbed.as_ref();
    let beta = a.beta.unwrap_or(f32::INFINITY);
    let (mut agent, label) = match (&a.agent, &a.policy) {
        (_, Some(path)) => {
            // The policy is checked against the level's own testbed and shape.
            let spec = if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
            {
                PolicySpec::Onnx(path.clone())
            } else {
                PolicySpec::Checkpoint(path.clone())
            };
            let g = &r.level.grid;
            (
                spec.agent_for(&r.testbed, g.height, g.width)?,
                format!("policy {} (actions sampled)", path.display()),
            )
        }
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
        (None, None) => {
            return Err(Error::bad_setting(
                "name an `agent` or a `policy` to roll out",
            ))
        }
    };
    let mut env = Env::from_level(r.testbed.clone(), r.split, r.level.clone());
    let mut rng = Rng::new(a.seed);
    let episode = agents::run_episode(&mut env, agent.as_mut(), &mut rng)?;
    Ok(Rollout {
        label,
        seed: a.seed,
        episode,
        frames: a.frames,
    })
}
