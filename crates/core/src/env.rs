//! One environment: reset and step over any testbed. The physics is the engine's (moves, keys,
//! chests, lava); what a cell means for reward and outcome is the testbed's.

use crate::grid::{Cell, Object, Pos};
use crate::level::Level;
use crate::rng::{mix, Rng};
use crate::state::{EpisodeState, Event, Outcome, OutcomeKind};
use crate::testbed::{Split, Testbed};
use std::sync::Arc;

/// The result of one step, Gymnasium style.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Step {
    pub reward: f32,
    /// The episode reached a goal, a proxy, or death.
    pub terminated: bool,
    /// The episode hit its time limit.
    pub truncated: bool,
}

impl Step {
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// The level a seed addresses: the same on every machine.
pub fn generate_level(testbed: &dyn Testbed, split: Split, seed: u64) -> Level {
    let mut rng = Rng::new(mix(&[seed, split.code()]));
    testbed.generate(split, &mut rng)
}

/// A single environment.
#[derive(Clone)]
pub struct Env {
    testbed: Arc<dyn Testbed>,
    pub split: Split,
    /// The level the current episode started from.
    pub level: Level,
    pub state: EpisodeState,
    offsets: [isize; 4],
}

impl Env {
    /// An environment on `split`, reset to the level of `seed`.
    pub fn new(testbed: Arc<dyn Testbed>, split: Split, seed: u64) -> Env {
        let level = generate_level(testbed.as_ref(), split, seed);
        Env::from_level(testbed, split, level)
    }

    /// An environment reset to a given level (which the caller has validated).
    pub fn from_level(testbed: Arc<dyn Testbed>, split: Split, level: Level) -> Env {
        let state = start_state(testbed.as_ref(), &level);
        let offsets = level.grid.move_offsets();
        let mut env = Env {
            testbed,
            split,
            level,
            state,
            offsets,
        };
        env.testbed.begin(&mut env.state);
        env
    }

    pub fn testbed(&self) -> &dyn Testbed {
        self.testbed.as_ref()
    }

    pub fn testbed_arc(&self) -> &Arc<dyn Testbed> {
        &self.testbed
    }

    pub fn n_actions(&self) -> usize {
        self.testbed.n_actions()
    }

    /// Starts a new episode on the level of `seed` in this environment's split.
    pub fn reset(&mut self, seed: u64) {
        let level = generate_level(self.testbed.as_ref(), self.split, seed);
        self.reset_to(&level);
    }

    /// Starts a new episode on `level`, reusing this environment's buffers (no allocation when
    /// the level has the size of the last one).
    pub fn reset_to(&mut self, level: &Level) {
        if level.grid.width != self.level.grid.width || level.grid.height != self.level.grid.height
        {
            self.offsets = level.grid.move_offsets();
            self.state.marks = vec![false; level.grid.len()];
        } else {
            self.state.marks.fill(false);
        }
        self.level.clone_from(level);
        let s = &mut self.state;
        s.grid.clone_from(&level.grid);
        s.agent = level.agent;
        s.keys = 0;
        s.steps = 0;
        s.max_steps = self.testbed.max_steps(level);
        s.base_return = 0.0;
        s.hidden = 0.0;
        s.audited = level.audited;
        s.scratch = [0; 4];
        s.outcome = None;
        self.testbed.begin(&mut self.state);
    }

    /// Advances one step. `action` must be below `n_actions()`; the batch engine checks this for
    /// user input, so here it is a debug assertion (an out-of-range action leaves the agent in
    /// place). Stepping a finished episode does nothing.
    #[inline]
    pub fn step(&mut self, action: usize) -> Step {
        debug_assert!(action < self.n_actions());
        let s = &mut self.state;
        if s.outcome.is_some() {
            return Step {
                reward: 0.0,
                terminated: s.outcome != Some(OutcomeKind::TimedOut),
                truncated: s.outcome == Some(OutcomeKind::TimedOut),
            };
        }
        s.steps += 1;
        let mut reward = 0.0;
        if let Some(&off) = self.offsets.get(action) {
            let target = (s.agent as isize + off) as Pos;
            let cell = s.grid.cells[target];
            let walk = cell.walkable();
            // A select rather than a branch: whether a random move hits a wall is a coin flip.
            s.agent = if walk { target } else { s.agent };
            if walk & ((cell.object != Object::Empty as u8) | s.marks[target]) {
                reward = self.enter(target, cell);
            }
        }
        let s = &mut self.state;
        let terminated = s.outcome.is_some();
        let truncated = !terminated && s.steps >= s.max_steps;
        if truncated {
            s.outcome = Some(OutcomeKind::TimedOut);
        }
        Step {
            reward,
            terminated,
            truncated,
        }
    }

    #[cold]
    fn enter(&mut self, pos: Pos, cell: Cell) -> f32 {
        let s = &mut self.state;
        let event = match cell.object() {
            Object::Key => {
                s.keys = s.keys.saturating_add(1);
                s.grid.cells[pos] = Cell::EMPTY;
                Event::PickedKey
            }
            Object::Box if s.keys > 0 => {
                s.keys -= 1;
                s.grid.cells[pos] = Cell::EMPTY;
                Event::OpenedChest
            }
            Object::Lava => Event::Died,
            _ => Event::Entered,
        };
        let effect = self.testbed.on_enter(s, pos, cell, event);
        s.base_return += effect.reward;
        s.hidden += effect.hidden;
        if event == Event::Died {
            s.outcome = Some(OutcomeKind::Died);
        } else if effect.end.is_some() {
            s.outcome = effect.end;
        }
        effect.reward
    }

    /// The outcome once the episode has ended.
    pub fn outcome(&self) -> Option<Outcome> {
        self.state.outcome()
    }

    pub fn done(&self) -> bool {
        self.state.outcome.is_some()
    }

    /// Whether the agent is watched now (oversight testbeds only).
    pub fn watched(&self) -> Option<bool> {
        self.testbed.watched(&self.state)
    }
}

fn start_state(testbed: &dyn Testbed, level: &Level) -> EpisodeState {
    EpisodeState {
        grid: level.grid.clone(),
        agent: level.agent,
        keys: 0,
        steps: 0,
        max_steps: testbed.max_steps(level),
        base_return: 0.0,
        hidden: 0.0,
        audited: level.audited,
        marks: vec![false; level.grid.len()],
        scratch: [0; 4],
        outcome: None,
    }
}
