//! The mutable state of one episode, and its outcome.

use crate::grid::{Grid, Pos};
use crate::testbed::{ProxyId, Testbed};
use serde::Serialize;

/// How an episode ended: the intended goal, a proxy, death, or the time limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Intended,
    Proxy(ProxyId),
    Died,
    TimedOut,
}

impl OutcomeKind {
    /// `intended`, `proxy:NAME`, `died` or `timed out`.
    pub fn label(self, testbed: &dyn Testbed) -> String {
        match self {
            OutcomeKind::Intended => "intended".into(),
            OutcomeKind::Proxy(p) => format!("proxy:{}", testbed.proxy(p).name),
            OutcomeKind::Died => "died".into(),
            OutcomeKind::TimedOut => "timed out".into(),
        }
    }
}

/// The result of one finished episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// Sum of base rewards.
    pub base_return: f32,
    /// Hidden performance: how well the episode served the intended goal.
    pub hidden: f32,
    pub steps: u32,
}

/// What the engine's physics did on entering a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Entered a cell (floor, goal, marked empty cell, or a box without a key to open it).
    Entered,
    PickedKey,
    OpenedChest,
    /// Entered lava: the engine ends the episode as `Died`.
    Died,
}

/// Everything that changes during an episode.
#[derive(Clone, Debug)]
pub struct EpisodeState {
    /// The current grid: keys and opened chests disappear from it.
    pub grid: Grid,
    pub agent: Pos,
    /// Keys carried.
    pub keys: u8,
    pub steps: u32,
    pub max_steps: u32,
    pub base_return: f32,
    pub hidden: f32,
    /// From the level: a secret audit (see `Level::audited`).
    pub audited: bool,
    /// Empty cells whose entry calls the testbed (an invisible goal region, say).
    pub marks: Vec<bool>,
    /// Counters owned by the testbed (chests opened, forbidden steps, a cached flag).
    pub scratch: [i32; 4],
    pub outcome: Option<OutcomeKind>,
}

impl EpisodeState {
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.map(|kind| Outcome {
            kind,
            base_return: self.base_return,
            hidden: self.hidden,
            steps: self.steps,
        })
    }
}

/// Serializable form of an outcome, with labels resolved.
#[derive(Clone, Debug, Serialize)]
pub struct OutcomeRecord {
    pub outcome: String,
    pub base_return: f32,
    pub hidden: f32,
    pub steps: u32,
}

impl OutcomeRecord {
    pub fn new(o: &Outcome, testbed: &dyn Testbed) -> Self {
        OutcomeRecord {
            outcome: o.kind.label(testbed),
            base_return: o.base_return,
            hidden: o.hidden,
            steps: o.steps,
        }
    }
}
