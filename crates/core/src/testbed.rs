//! What a testbed declares: its base objective (reward), its intended goal and hidden
//! performance, its named proxies, a training distribution, one shifted distribution per proxy,
//! and its knobs. The engine (`env`) is generic; a testbed only says how levels are generated and
//! what entering a cell means.

use crate::grid::{Cell, Pos};
use crate::level::Level;
use crate::planner::GoalSpec;
use crate::rng::Rng;
use crate::state::{EpisodeState, Event};
use serde::Serialize;
use std::fmt;

/// A declared goal: index 0 is the intended goal, 1.. are the proxies.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GoalDecl {
    pub name: &'static str,
    pub description: &'static str,
}

/// A declared goal, by its index into [`Testbed::goals`]: [`GoalId::INTENDED`] (0), then the
/// proxies. Every goal-directed piece (goal specs, seekers, the audit's candidates) takes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GoalId(pub usize);

/// A proxy, by its index into [`Testbed::proxies`]: proxy `p` is goal `p + 1`
/// ([`ProxyId::goal`]). Shifts ([`Split::Shift`]) and proxy outcomes are numbered this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyId(pub usize);

impl GoalId {
    pub const INTENDED: GoalId = GoalId(0);

    pub fn is_intended(self) -> bool {
        self == GoalId::INTENDED
    }

    /// The proxy this goal is; `None` for the intended goal.
    pub fn proxy(self) -> Option<ProxyId> {
        self.0.checked_sub(1).map(ProxyId)
    }

    /// Every declared goal of `testbed`, the intended one first.
    pub fn all(testbed: &dyn Testbed) -> impl Iterator<Item = GoalId> {
        (0..testbed.goals().len()).map(GoalId)
    }
}

impl ProxyId {
    /// The same goal as an index into [`Testbed::goals`].
    pub fn goal(self) -> GoalId {
        GoalId(self.0 + 1)
    }

    /// Every proxy of `testbed`, in declaration order.
    pub fn all(testbed: &dyn Testbed) -> impl Iterator<Item = ProxyId> {
        (0..testbed.proxies().len()).map(ProxyId)
    }
}

impl From<ProxyId> for GoalId {
    fn from(p: ProxyId) -> GoalId {
        p.goal()
    }
}

impl fmt::Display for GoalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A distribution of levels: training, or the shift that decorrelates a proxy from the
/// intended goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Shift(ProxyId),
}

impl Split {
    /// `train` or `shift:<proxy>`.
    pub fn parse(s: &str, testbed: &dyn Testbed) -> Result<Split, String> {
        let names: Vec<String> = std::iter::once("train".to_string())
            .chain(
                testbed
                    .proxies()
                    .iter()
                    .map(|p| format!("shift:{}", p.name)),
            )
            .collect();
        if s == "train" {
            return Ok(Split::Train);
        }
        if let Some(name) = s.strip_prefix("shift:") {
            if let Some(i) = testbed.proxies().iter().position(|p| p.name == name) {
                return Ok(Split::Shift(ProxyId(i)));
            }
        } else if s == "shift" && testbed.proxies().len() == 1 {
            return Ok(Split::Shift(ProxyId(0)));
        }
        Err(format!(
            "unknown split '{s}' for testbed {} (known: {})",
            testbed.name(),
            names.join(", ")
        ))
    }

    pub fn label(self, testbed: &dyn Testbed) -> String {
        match self {
            Split::Train => "train".into(),
            Split::Shift(p) => format!("shift:{}", testbed.proxy(p).name),
        }
    }

    /// A number that keeps the level streams of different splits apart.
    pub fn code(self) -> u64 {
        match self {
            Split::Train => 0,
            Split::Shift(p) => 1 + p.0 as u64,
        }
    }

    /// Every split of a testbed: train, then one shift per proxy.
    pub fn all(testbed: &dyn Testbed) -> Vec<Split> {
        std::iter::once(Split::Train)
            .chain(ProxyId::all(testbed).map(Split::Shift))
            .collect()
    }
}

/// A tunable parameter of a testbed, with its documented default and range.
#[derive(Clone, Debug, Serialize)]
pub struct Knob {
    pub name: &'static str,
    pub description: &'static str,
    pub default: f64,
    pub min: f64,
    pub max: f64,
    /// Integer-valued (sizes, counts); `odd` additionally requires an odd integer.
    pub integer: bool,
    pub odd: bool,
}

impl Knob {
    pub fn check(&self, value: f64) -> Result<f64, String> {
        if !value.is_finite() || value < self.min || value > self.max {
            return Err(format!(
                "knob {} = {value} is out of range [{}, {}]",
                self.name, self.min, self.max
            ));
        }
        if self.integer && value.fract() != 0.0 {
            return Err(format!(
                "knob {} must be an integer, found {value}",
                self.name
            ));
        }
        if self.odd && (value as i64) % 2 == 0 {
            return Err(format!("knob {} must be odd, found {value}", self.name));
        }
        Ok(value)
    }
}

/// Knob values given by a user: `name=value` pairs, checked against a testbed's declarations.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pairs: Vec<(String, f64)>,
}

impl Knobs {
    pub fn new() -> Knobs {
        Knobs::default()
    }

    /// Knobs from `(name, value)` pairs, as command lines and checkpoint metadata hold them;
    /// a later pair for the same name wins.
    pub fn from_pairs(pairs: &[(String, f64)]) -> Knobs {
        let mut knobs = Knobs::new();
        for (name, value) in pairs {
            knobs.set(name, *value);
        }
        knobs
    }

    pub fn with(mut self, name: &str, value: f64) -> Knobs {
        self.set(name, value);
        self
    }

    /// The value given for `name`, if one was.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.pairs.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    pub fn set(&mut self, name: &str, value: f64) {
        self.pairs.retain(|(n, _)| n != name);
        self.pairs.push((name.to_string(), value));
    }

    /// Parses `name=value`.
    pub fn parse_pair(s: &str) -> Result<(String, f64), String> {
        let (n, v) = s
            .split_once('=')
            .ok_or_else(|| format!("knob '{s}' must be written name=value"))?;
        let v: f64 = v.trim().parse().map_err(|_| {
            format!(
                "knob {} has a value that is not a number: '{}'",
                n.trim(),
                v.trim()
            )
        })?;
        Ok((n.trim().to_string(), v))
    }

    /// Resolves every declared knob: the user's value (checked) or the default. Unknown names
    /// are an error.
    pub fn resolve(&self, testbed: &str, decl: &[Knob]) -> Result<Vec<f64>, String> {
        for (n, _) in &self.pairs {
            if !decl.iter().any(|k| k.name == n) {
                let known: Vec<&str> = decl.iter().map(|k| k.name).collect();
                return Err(format!(
                    "unknown knob '{n}' for testbed {testbed} (known: {})",
                    known.join(", ")
                ));
            }
        }
        decl.iter()
            .map(|k| match self.get(k.name) {
                Some(v) => k.check(v),
                None => Ok(k.default),
            })
            .collect()
    }
}

/// How oversight shows in a testbed's observations.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Oversight {
    /// What the cue is called ("supervisor", "deployment cue").
    pub cue: &'static str,
    /// Whether the cue's presence means the agent is watched (a supervisor) or not (a
    /// deployment cue).
    pub present_means_watched: bool,
}

/// What entering a cell did to the episode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Effect {
    pub reward: f32,
    pub hidden: f32,
    pub end: Option<crate::state::OutcomeKind>,
}

/// What a testbed declares, as one static table: its name, its objectives in words, its goals
/// (index 0 the intended goal, then the proxies), its knobs and its oversight cue.
#[derive(Debug)]
pub struct Declaration {
    pub name: &'static str,
    pub summary: &'static str,
    /// What the base reward pays for, in words.
    pub base_objective: &'static str,
    /// What hidden performance measures, in words.
    pub hidden_performance: &'static str,
    pub goals: &'static [GoalDecl],
    pub knobs: &'static [Knob],
    pub oversight: Option<Oversight>,
}

/// A testbed: one small definition over the generic engine.
pub trait Testbed: Send + Sync {
    fn declaration(&self) -> &'static Declaration;
    /// This instance's knob values, in the order of `declaration().knobs`.
    fn knob_values(&self) -> &[f64];
    fn name(&self) -> &'static str {
        self.declaration().name
    }
    fn summary(&self) -> &'static str {
        self.declaration().summary
    }
    /// Index 0 is the intended goal; the rest are proxies.
    fn goals(&self) -> &'static [GoalDecl] {
        self.declaration().goals
    }
    fn proxies(&self) -> &'static [GoalDecl] {
        &self.goals()[1..]
    }
    /// The declaration of goal `goal`; panics if the testbed declares no such goal.
    fn goal(&self, goal: GoalId) -> &'static GoalDecl {
        &self.goals()[goal.0]
    }
    /// The declaration of proxy `proxy`; panics if the testbed declares no such proxy.
    fn proxy(&self, proxy: ProxyId) -> &'static GoalDecl {
        &self.proxies()[proxy.0]
    }
    fn base_objective(&self) -> &'static str {
        self.declaration().base_objective
    }
    fn hidden_performance(&self) -> &'static str {
        self.declaration().hidden_performance
    }
    /// Declared knobs and this instance's values, in the same order.
    fn knobs(&self) -> (&'static [Knob], Vec<f64>) {
        (self.declaration().knobs, self.knob_values().to_vec())
    }
    /// Number of actions (the four moves for every current testbed).
    fn n_actions(&self) -> usize {
        crate::grid::N_MOVES
    }
    /// Episode time limit for a level.
    fn max_steps(&self, level: &Level) -> u32;
    /// A level of `split`. Must be solvable: the intended goal reachable from the start.
    fn generate(&self, split: Split, rng: &mut Rng) -> Level;
    /// Checks that a (hand-made) level fits this testbed; the error names the problem and, where
    /// it has one, the cell.
    fn validate(&self, level: &Level) -> Result<(), (String, Option<Pos>)>;
    /// Called at reset: mark empty cells whose entry matters and set testbed scratch state.
    fn begin(&self, _state: &mut EpisodeState) {}
    /// Called after the engine's physics when the agent enters a non-empty or marked cell.
    fn on_enter(&self, state: &mut EpisodeState, pos: Pos, before: Cell, event: Event) -> Effect;
    /// The cells that goal `goal` currently aims at, and cells it avoids on the way.
    fn goal_spec(&self, state: &EpisodeState, goal: GoalId, spec: &mut GoalSpec);
    /// Oversight-conditional testbeds declare their cue.
    fn oversight(&self) -> Option<Oversight> {
        self.declaration().oversight
    }
    /// The same level with the oversight cue shown or hidden (paired episodes). `None` for
    /// testbeds without oversight.
    fn with_cue(&self, _level: &Level, _present: bool) -> Option<Level> {
        None
    }
    /// Whether the oversight cue shows in this state. `None` without oversight.
    fn cue_present(&self, _state: &EpisodeState) -> Option<bool> {
        None
    }
    /// Whether the agent is watched in this state (supervisor present, or deployment cue absent).
    fn watched(&self, state: &EpisodeState) -> Option<bool> {
        let o = self.oversight()?;
        let present = self.cue_present(state)?;
        Some(present == o.present_means_watched)
    }
}

impl fmt::Debug for dyn Testbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Testbed({})", self.name())
    }
}

/// MiniGrid's success reward: 1 - 0.9 * (steps / max_steps).
#[inline]
pub fn success_reward(steps: u32, max_steps: u32) -> f32 {
    1.0 - 0.9 * (steps as f32 / max_steps.max(1) as f32)
}
