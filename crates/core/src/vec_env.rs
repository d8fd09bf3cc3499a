//! Batch stepping over many environments with automatic reset, observations written into
//! caller-supplied buffers (no allocation per step), in parallel over all cores.
//!
//! Autoreset follows Gymnasium 1.x's `SAME_STEP` mode: when an episode ends at a step, that
//! step's reward and terminated/truncated flags belong to the ended episode, the environment
//! resets at once, and the observation written is the new episode's first. The ended episode's
//! outcome is kept in `finished(i)` until the environment's next step.
//!
//! Episode `k` of environment `i` plays the level of seed `mix(seed, i, k)`: the same whatever the
//! thread count or batch size. With a level pool (`with_num_levels`, Procgen's `num_levels`), it
//! plays level `mix(seed, i, k) % num_levels` of the pool, whose level `j` is the level of seed
//! `j`: a finite training set, generated once, for generalization studies (and the engine's
//! raw speed without level generation).

use crate::env::{generate_level, Env};
use crate::error::{Error, Result};
use crate::level::Level;
use crate::obs;
use crate::rng::mix;
use crate::state::{EpisodeState, Outcome};
use crate::testbed::{Split, Testbed};
use rayon::prelude::*;
use std::sync::Arc;

/// Where observations go.
pub enum ObsBuf<'a> {
    /// No observation (raw engine speed).
    None,
    /// MiniGrid u8 encoding, `[N][H][W][3]`.
    U8(&'a mut [u8]),
    /// One-hot planes, `[N][C][H][W]`.
    Planes(&'a mut [f32]),
}

/// Per-step outputs, one entry per environment.
pub struct StepBufs<'a> {
    pub rewards: &'a mut [f32],
    pub terminated: &'a mut [bool],
    pub truncated: &'a mut [bool],
}

struct Slot {
    env: Env,
    index: u64,
    episode: u64,
    finished: Option<Outcome>,
    /// The state the last finished episode ended in (kept only with `keep_final_states`).
    last: Option<EpisodeState>,
}

/// Many environments of one testbed and split.
pub struct VecEnv {
    slots: Vec<Slot>,
    seed: u64,
    width: usize,
    height: usize,
    /// Run chunks of environments on rayon's pool (otherwise on the calling thread).
    pub parallel: bool,
    /// Stands in for the observation buffer when none is wanted.
    no_obs: Vec<u8>,
    /// A finite set of levels episodes are drawn from, if any.
    pool: Option<Arc<[Level]>>,
    /// Keep each finished episode's last state, for `write_final` (Gymnasium's `final_obs`).
    keep_final: bool,
}

/// Resets a slot to its next episode's level.
fn next_episode(s: &mut Slot, seed: u64, pool: Option<&[Level]>) {
    let episode_seed = mix(&[seed, s.index, s.episode]);
    match pool {
        Some(levels) => s
            .env
            .reset_to(&levels[(episode_seed % levels.len() as u64) as usize]),
        None => s.env.reset(episode_seed),
    }
}

const MIN_PER_TASK: usize = 64;

impl VecEnv {
    pub fn new(testbed: Arc<dyn Testbed>, split: Split, n: usize, seed: u64) -> Result<VecEnv> {
        if n == 0 {
            return Err(Error::Input(
                "a vector environment needs at least one environment".into(),
            ));
        }
        crate::limits::check(
            "the number of environments",
            n as u64,
            crate::limits::MAX_VEC_ENVS as u64,
        )?;
        let slots: Vec<Slot> = (0..n as u64)
            .map(|i| Slot {
                env: Env::from_level(
                    testbed.clone(),
                    split,
                    generate_level(testbed.as_ref(), split, mix(&[seed, i, 0])),
                ),
                index: i,
                episode: 0,
                finished: None,
                last: None,
            })
            .collect();
        let (width, height) = (
            slots[0].env.level.grid.width,
            slots[0].env.level.grid.height,
        );
        Ok(VecEnv {
            slots,
            seed,
            width,
            height,
            parallel: n >= 2 * MIN_PER_TASK,
            no_obs: vec![0; n],
            pool: None,
            keep_final: false,
        })
    }

    /// Draws every episode from a pool of `num_levels` levels (seeds `0..num_levels` of the
    /// split), generated now, like Procgen's `num_levels`. Restarts every environment.
    pub fn with_num_levels(mut self, num_levels: usize) -> Result<VecEnv> {
        if num_levels == 0 {
            return Err(Error::Input("num_levels must be at least 1".into()));
        }
        crate::limits::check(
            "num_levels",
            num_levels as u64,
            crate::limits::MAX_LEVEL_POOL as u64,
        )?;
        let first = &self.slots[0].env;
        let (tb, split) = (first.testbed_arc().clone(), first.split);
        let levels: Vec<Level> = (0..num_levels as u64)
            .map(|j| generate_level(tb.as_ref(), split, j))
            .collect();
        self.pool = Some(levels.into());
        self.reset(ObsBuf::None)?;
        Ok(self)
    }

    /// One environment per level, environment `i` starting on `levels[i]`; later episodes are
    /// drawn from the same levels (for playing a given set of levels once each, as a curriculum
    /// scores them).
    pub fn from_levels(
        testbed: Arc<dyn Testbed>,
        split: Split,
        levels: Vec<Level>,
        seed: u64,
    ) -> Result<VecEnv> {
        if levels.is_empty() {
            return Err(Error::Input("no levels to play".into()));
        }
        let mut v = VecEnv::new(testbed, split, levels.len(), seed)?;
        for (s, l) in v.slots.iter_mut().zip(&levels) {
            s.env.reset_to(l);
        }
        v.pool = Some(levels.into());
        v.check_shapes()?;
        Ok(v)
    }

    /// Draws every later episode from `levels` (episodes under way finish on their own level):
    /// how a curriculum changes what the learner sees between updates.
    pub fn set_pool(&mut self, levels: Vec<Level>) -> Result<()> {
        if levels.is_empty() {
            return Err(Error::Input("a level pool needs at least one level".into()));
        }
        if let Some(l) = levels
            .iter()
            .find(|l| (l.grid.height, l.grid.width) != (self.height, self.width))
        {
            return Err(Error::Input(format!(
                "a {}x{} level in a pool of {}x{} environments",
                l.grid.height, l.grid.width, self.height, self.width
            )));
        }
        self.pool = Some(levels.into());
        Ok(())
    }

    /// The size of the level pool, if episodes are drawn from one.
    pub fn num_levels(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.len())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn n_actions(&self) -> usize {
        self.slots[0].env.n_actions()
    }

    /// `(height, width)` of every level.
    pub fn shape(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Bytes of one u8 observation.
    pub fn u8_len(&self) -> usize {
        self.width * self.height * 3
    }

    /// Floats of one planes observation.
    pub fn planes_len(&self) -> usize {
        self.width * self.height * obs::PLANES
    }

    pub fn env(&self, i: usize) -> &Env {
        &self.slots[i].env
    }

    /// The outcome of the episode environment `i` finished at the last step, if it did.
    pub fn finished(&self, i: usize) -> Option<Outcome> {
        self.slots[i].finished
    }

    /// Keeps the last state of every episode that ends, so that `write_final` can write the
    /// observation the autoreset replaced (Gymnasium's `final_obs`). Off by default: it clones
    /// a state per finished episode.
    pub fn keep_final_states(&mut self, on: bool) {
        self.keep_final = on;
        if !on {
            self.slots.iter_mut().for_each(|s| s.last = None);
        }
    }

    /// Writes, for each environment whose episode ended at the last step, the observation of the
    /// state it ended in; other environments' entries are left as they were. Needs
    /// `keep_final_states(true)` before the step.
    pub fn write_final(&self, out: ObsBuf) -> Result<()> {
        if !self.keep_final {
            return Err(Error::Input(
                "write_final needs keep_final_states(true) before stepping".into(),
            ));
        }
        self.check_obs(&out)?;
        let k = self.obs_len(&out);
        let ended = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.finished.is_some())
            .filter_map(|(i, s)| s.last.as_ref().map(|st| (i, st)));
        match out {
            ObsBuf::None => {}
            ObsBuf::U8(b) => {
                ended.for_each(|(i, st)| obs::encode_u8(st, &mut b[i * k..(i + 1) * k]))
            }
            ObsBuf::Planes(b) => {
                ended.for_each(|(i, st)| obs::encode_planes(st, &mut b[i * k..(i + 1) * k]))
            }
        }
        Ok(())
    }

    /// Restarts every environment at episode 0 (the levels of `mix(seed, i, 0)`).
    pub fn reset(&mut self, out: ObsBuf) -> Result<()> {
        let seed = self.seed;
        let pool = self.pool.clone();
        for s in &mut self.slots {
            s.episode = 0;
            s.finished = None;
            next_episode(s, seed, pool.as_deref());
        }
        self.check_shapes()?;
        self.write_all(out)
    }

    fn check_shapes(&self) -> Result<()> {
        for s in &self.slots {
            let g = &s.env.level.grid;
            if (g.height, g.width) != (self.height, self.width) {
                return Err(Error::Input(format!(
                    "levels of different sizes in one batch ({}x{} and {}x{})",
                    self.height, self.width, g.height, g.width
                )));
            }
        }
        Ok(())
    }

    fn obs_len(&self, out: &ObsBuf) -> usize {
        match out {
            ObsBuf::None => 0,
            ObsBuf::U8(_) => self.u8_len(),
            ObsBuf::Planes(_) => self.planes_len(),
        }
    }

    fn check_obs(&self, out: &ObsBuf) -> Result<()> {
        let (got, want) = match out {
            ObsBuf::None => return Ok(()),
            ObsBuf::U8(b) => (b.len(), self.u8_len() * self.len()),
            ObsBuf::Planes(b) => (b.len(), self.planes_len() * self.len()),
        };
        if got != want {
            return Err(Error::Input(format!(
                "observation buffer holds {got} elements, {} environments need {want}",
                self.len()
            )));
        }
        Ok(())
    }

    /// Writes every environment's current observation.
    pub fn write_all(&self, out: ObsBuf) -> Result<()> {
        self.check_obs(&out)?;
        let k = self.obs_len(&out);
        match out {
            ObsBuf::None => {}
            ObsBuf::U8(b) => {
                for (s, o) in self.slots.iter().zip(b.chunks_mut(k)) {
                    obs::encode_u8(&s.env.state, o);
                }
            }
            ObsBuf::Planes(b) => {
                for (s, o) in self.slots.iter().zip(b.chunks_mut(k)) {
                    obs::encode_planes(&s.env.state, o);
                }
            }
        }
        Ok(())
    }

    /// Steps every environment with its action, resetting finished ones.
    pub fn step(&mut self, actions: &[u8], out: ObsBuf, bufs: StepBufs) -> Result<()> {
        let n = self.len();
        if actions.len() != n
            || bufs.rewards.len() != n
            || bufs.terminated.len() != n
            || bufs.truncated.len() != n
        {
            return Err(Error::Input(format!(
                "step needs {n} actions, rewards, terminated and truncated flags; got {}, {}, {}, {}",
                actions.len(),
                bufs.rewards.len(),
                bufs.terminated.len(),
                bufs.truncated.len()
            )));
        }
        let na = self.n_actions();
        if let Some(i) = actions.iter().position(|&a| a as usize >= na) {
            return Err(Error::Input(format!(
                "action {} for environment {i} is out of range (the testbed has {na} actions)",
                actions[i]
            )));
        }
        self.check_obs(&out)?;
        let k = self.obs_len(&out).max(1);
        let seed = self.seed;
        let keep_final = self.keep_final;
        let pool = self.pool.clone();
        let pool = pool.as_deref();
        let bad_shape = std::sync::atomic::AtomicBool::new(false);
        // A testbed must give every level the same size; if one does not, report it rather than
        // write a mis-sized observation.
        let per_cell = match &out {
            ObsBuf::None => 0,
            ObsBuf::U8(_) => 3,
            ObsBuf::Planes(_) => obs::PLANES,
        };
        let chunk = if self.parallel {
            (n / (4 * rayon::current_num_threads())).max(MIN_PER_TASK)
        } else {
            n
        };
        let StepBufs {
            rewards,
            terminated,
            truncated,
        } = bufs;
        macro_rules! run {
            ($obs:expr, $enc:expr) => {{
                let work = (
                    self.slots.par_chunks_mut(chunk),
                    actions.par_chunks(chunk),
                    $obs.par_chunks_mut(chunk * k),
                    rewards.par_chunks_mut(chunk),
                    terminated.par_chunks_mut(chunk),
                    truncated.par_chunks_mut(chunk),
                );
                let body = |(slots, acts, o, r, te, tr): (
                    &mut [Slot],
                    &[u8],
                    &mut [_],
                    &mut [f32],
                    &mut [bool],
                    &mut [bool],
                )| {
                    for (j, s) in slots.iter_mut().enumerate() {
                        let st = s.env.step(acts[j] as usize);
                        r[j] = st.reward;
                        te[j] = st.terminated;
                        tr[j] = st.truncated;
                        if st.terminated || st.truncated {
                            s.finished = s.env.outcome();
                            if keep_final {
                                s.last = Some(s.env.state.clone());
                            }
                            s.episode += 1;
                            next_episode(s, seed, pool);
                        } else if s.finished.is_some() {
                            s.finished = None;
                        }
                        if per_cell > 0 {
                            if s.env.state.grid.len() * per_cell == k {
                                $enc(&s.env.state, &mut o[j * k..(j + 1) * k]);
                            } else {
                                bad_shape.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                };
                if self.parallel {
                    work.into_par_iter().for_each(body);
                } else {
                    let (a, b, c, d, e, f) = (
                        &mut self.slots[..],
                        actions,
                        &mut $obs[..],
                        &mut rewards[..],
                        &mut terminated[..],
                        &mut truncated[..],
                    );
                    body((a, b, c, d, e, f));
                }
            }};
        }
        match out {
            ObsBuf::U8(b) => run!(b, obs::encode_u8),
            ObsBuf::Planes(b) => run!(b, obs::encode_planes),
            ObsBuf::None => run!(self.no_obs, |_: &_, _: &mut [u8]| {}),
        }
        if bad_shape.into_inner() {
            return Err(Error::Input(format!(
                "testbed {} generated a level whose size differs from {}x{}",
                self.slots[0].env.testbed().name(),
                self.height,
                self.width
            )));
        }
        Ok(())
    }
}
