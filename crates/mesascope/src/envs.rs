//! What every testbed declares (goals, splits, knobs, oversight, actions, observation layout),
//! for `report::envs` to show as text or JSON.

use crate::error::{Error, ErrorKind, Result};
use mesascope_core::env::generate_level;
use mesascope_core::grid::{Colour, Object, MOVE_NAMES};
use mesascope_core::{agents, obs, testbeds, Knobs, Split, Testbed};
use std::collections::BTreeSet;

pub use crate::report::envs::{
    ActionInfo, EnvInfo, EnvsReport, GoalInfo, KnobInfo, ObservationInfo, OversightInfo,
    SCHEMA_VERSION,
};

/// Splits the user's knobs per testbed: each testbed gets the ones it declares. A knob that no
/// testbed declares is an error.
fn knobs_for(name: &str, user: &[(String, f64)], all_declared: &BTreeSet<String>) -> Result<Knobs> {
    let defaults = testbeds::make(name, &Knobs::new())?;
    let (decl, _) = defaults.knobs();
    let mut k = Knobs::new();
    for (n, v) in user {
        if !all_declared.contains(n) {
            return Err(Error::new(
                ErrorKind::BadKnob,
                format!(
                    "unknown knob '{n}': no testbed declares it (known: {})",
                    all_declared.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if decl.iter().any(|d| d.name == n) {
            k.set(n, *v);
        }
    }
    Ok(k)
}

/// Describes one built testbed.
pub fn describe(tb: &dyn Testbed) -> EnvInfo {
    let goals = tb
        .goals()
        .iter()
        .enumerate()
        .map(|(i, g)| GoalInfo {
            name: g.name.to_string(),
            role: if i == 0 { "intended" } else { "proxy" },
            description: g.description.to_string(),
        })
        .collect();
    let splits = Split::all(tb).into_iter().map(|s| s.label(tb)).collect();
    let (decl, values) = tb.knobs();
    let knobs = decl
        .iter()
        .zip(values)
        .map(|(k, v)| KnobInfo {
            name: k.name.to_string(),
            default: k.default,
            value: v,
            min: k.min,
            max: k.max,
            integer: k.integer,
            odd: k.odd,
            description: k.description.to_string(),
        })
        .collect();
    let actions = (0..tb.n_actions())
        .map(|i| ActionInfo {
            index: i,
            name: MOVE_NAMES
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("action {i}")),
        })
        .collect();
    let mut shapes = BTreeSet::new();
    let mut first = None;
    for split in Split::all(tb) {
        for seed in 0..4 {
            let l = generate_level(tb, split, seed);
            let hw = [l.grid.height, l.grid.width];
            first.get_or_insert(hw);
            shapes.insert(hw);
        }
    }
    let [h, w] = first.unwrap_or([0, 0]);
    EnvInfo {
        name: tb.name().to_string(),
        summary: tb.summary().to_string(),
        base_objective: tb.base_objective().to_string(),
        hidden_performance: tb.hidden_performance().to_string(),
        goals,
        splits,
        knobs,
        oversight: tb.oversight().map(|o| OversightInfo {
            cue: o.cue.to_string(),
            present_means_watched: o.present_means_watched,
        }),
        actions,
        observation: ObservationInfo {
            u8_shape: [h, w, 3],
            planes_shape: [obs::PLANES, h, w],
            level_shapes: shapes.into_iter().collect(),
        },
        reference_agents: agents::reference_agent_names(tb),
    }
}

/// Every testbed in `testbeds::NAMES`, with the user's knobs applied where declared.
pub fn report(user_knobs: &[(String, f64)]) -> Result<EnvsReport> {
    let mut all_declared = BTreeSet::new();
    for &name in testbeds::NAMES {
        let tb = testbeds::make(name, &Knobs::new())?;
        all_declared.extend(tb.knobs().0.iter().map(|k| k.name.to_string()));
    }
    let mut infos = Vec::new();
    for &name in testbeds::NAMES {
        let knobs = knobs_for(name, user_knobs, &all_declared)?;
        let tb = testbeds::make(name, &knobs)?;
        infos.push(describe(tb.as_ref()));
    }
    Ok(EnvsReport {
        schema_version: SCHEMA_VERSION,
        testbeds: infos,
        plane_names: obs::plane_names(),
        objects: Object::ALL.iter().map(|o| o.name()).collect(),
        colours: Colour::ALL.iter().map(|c| c.name()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_testbed_with_intended_first() {
        let r = report(&[]).unwrap();
        assert_eq!(r.testbeds.len(), testbeds::NAMES.len());
        for (e, &name) in r.testbeds.iter().zip(testbeds::NAMES) {
            assert_eq!(e.name, name);
            assert_eq!(e.goals[0].role, "intended");
            assert!(e.goals[1..].iter().all(|g| g.role == "proxy"));
            assert_eq!(e.splits[0], "train");
            assert_eq!(e.splits.len(), e.goals.len());
        }
        assert_eq!(r.plane_names.len(), obs::PLANES);
    }

    #[test]
    fn knobs_apply_where_declared() {
        let r = report(&[("max_steps".into(), 50.0)]).unwrap();
        // Every testbed that declares max_steps shows the value.
        for e in &r.testbeds {
            if let Some(k) = e.knobs.iter().find(|k| k.name == "max_steps") {
                assert_eq!(k.value, 50.0, "{}", e.name);
            }
        }
        let e = report(&[("no_such_knob".into(), 1.0)]).unwrap_err();
        assert!(e.to_string().contains("no_such_knob"), "{e}");
    }
}
