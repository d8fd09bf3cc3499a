//! The engine's environments over numpy: `Env` (one episode at a time, what the Gymnasium
//! `Env` wraps) and `VecEnv` (the batch engine, stepping into buffers the Python side owns, with
//! the GIL released).

use crate::{core_err, make_testbed, parse_split};
use mesascope_core::agents::reference_agent;
use mesascope_core::planner::{GoalSpec, Planner, UNREACHABLE};
use mesascope_core::rng::mix;
use mesascope_core::vec_env::{ObsBuf, StepBufs};
use mesascope_core::{obs, GoalId, OutcomeKind, ProxyId, Testbed};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray1, PyReadwriteArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;

/// Which observation the environment writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ObsKind {
    /// MiniGrid's `u8[H][W][3]`.
    U8,
    /// float32 one-hot planes `[C][H][W]`.
    Planes,
}

impl ObsKind {
    pub(crate) fn parse(s: &str) -> PyResult<ObsKind> {
        match s {
            "u8" => Ok(ObsKind::U8),
            "planes" => Ok(ObsKind::Planes),
            _ => Err(PyValueError::new_err(format!(
                "unknown observation kind '{s}' (known: u8, planes)"
            ))),
        }
    }

    /// The shape of one observation of an `h` x `w` level.
    pub(crate) fn shape(self, h: usize, w: usize) -> Vec<usize> {
        match self {
            ObsKind::U8 => vec![h, w, 3],
            ObsKind::Planes => vec![obs::PLANES, h, w],
        }
    }

    /// The observation of `state` as a numpy array of shape `[1, ...]` when `batch`, else `[...]`.
    pub(crate) fn encode<'py>(
        self,
        py: Python<'py>,
        state: &mesascope_core::state::EpisodeState,
        batch: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (h, w) = (state.grid.height, state.grid.width);
        let mut shape = self.shape(h, w);
        if batch {
            shape.insert(0, 1);
        }
        Ok(match self {
            ObsKind::U8 => {
                let mut v = vec![0u8; obs::u8_len(&state.grid)];
                obs::encode_u8(state, &mut v);
                PyArray1::from_vec(py, v).reshape(shape)?.into_any()
            }
            ObsKind::Planes => {
                let mut v = vec![0f32; obs::planes_len(&state.grid)];
                obs::encode_planes(state, &mut v);
                PyArray1::from_vec(py, v).reshape(shape)?.into_any()
            }
        })
    }
}

/// A goal by name (`intended`, a proxy's name) or index (0 = intended).
fn goal_index(tb: &dyn Testbed, goal: &Bound<'_, PyAny>) -> PyResult<usize> {
    let names: Vec<&str> = tb.goals().iter().map(|g| g.name).collect();
    let index = if let Ok(i) = goal.extract::<usize>() {
        (i < names.len()).then_some(i)
    } else {
        let name: String = goal.extract().map_err(|_| {
            PyValueError::new_err("a goal is named by a string or a goal index".to_string())
        })?;
        if name == "intended" {
            Some(0)
        } else {
            names.iter().position(|n| *n == name)
        }
    };
    index.ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown goal {goal} for testbed {} (known: intended, {})",
            tb.name(),
            names.join(", ")
        ))
    })
}

fn action_in_range(action: i64, n: usize) -> PyResult<usize> {
    usize::try_from(action)
        .ok()
        .filter(|&a| a < n)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "action {action} is out of range (the testbed has {n} actions: 0 up, 1 right, 2 down, 3 left)"
            ))
        })
}

/// One environment: episode `k` after `reset(seed=s)` plays the level of `mix(s, 0, k)`, the
/// level environment 0 of a `VecEnv` with seed `s` plays in its episode `k`.
#[pyclass(module = "mesascope._core")]
pub struct Env {
    env: mesascope_core::Env,
    seed: u64,
    episode: u64,
    kind: ObsKind,
}

#[pymethods]
impl Env {
    #[new]
    #[pyo3(signature = (testbed, split="train", seed=0, knobs=None, obs="u8"))]
    fn new(
        testbed: &str,
        split: &str,
        seed: u64,
        knobs: Option<HashMap<String, f64>>,
        obs: &str,
    ) -> PyResult<Env> {
        let tb = make_testbed(testbed, knobs)?;
        let split = parse_split(tb.as_ref(), split)?;
        let kind = ObsKind::parse(obs)?;
        Ok(Env {
            env: mesascope_core::Env::new(tb, split, mix(&[seed, 0, 0])),
            seed,
            episode: 0,
            kind,
        })
    }

    /// Starts the next episode (episode 0 of `seed` when a seed is given); returns its first
    /// observation.
    #[pyo3(signature = (seed=None))]
    fn reset<'py>(&mut self, py: Python<'py>, seed: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(s) = seed {
            self.seed = s;
            self.episode = 0;
        }
        self.env.reset(mix(&[self.seed, 0, self.episode]));
        self.episode += 1;
        self.kind.encode(py, &self.env.state, false)
    }

    /// One step: `(observation, reward, terminated, truncated, info)`; `info` holds the outcome
    /// once the episode ends.
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        action: i64,
    ) -> PyResult<(Bound<'py, PyAny>, f32, bool, bool, Bound<'py, PyDict>)> {
        let a = action_in_range(action, self.env.n_actions())?;
        if self.env.done() {
            return Err(PyValueError::new_err(
                "step() after the episode ended: call reset() first",
            ));
        }
        let st = self.env.step(a);
        let info = PyDict::new(py);
        if let Some(o) = self.env.outcome() {
            outcome_info(&info, &o, self.env.testbed())?;
        }
        Ok((
            self.kind.encode(py, &self.env.state, false)?,
            st.reward,
            st.terminated,
            st.truncated,
            info,
        ))
    }

    /// The current observation.
    fn observation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.kind.encode(py, &self.env.state, false)
    }

    /// The current state as the level format's text (agent drawn where it stands).
    fn render(&self) -> String {
        mesascope::report::show::render_state(&self.env)
    }

    #[getter]
    fn n_actions(&self) -> usize {
        self.env.n_actions()
    }

    /// Shape of one observation.
    #[getter]
    fn obs_shape(&self) -> Vec<usize> {
        let g = &self.env.state.grid;
        self.kind.shape(g.height, g.width)
    }

    #[getter]
    fn testbed(&self) -> &'static str {
        self.env.testbed().name()
    }

    #[getter]
    fn split(&self) -> String {
        self.env.split.label(self.env.testbed())
    }

    /// `(row, column)` of the agent.
    #[getter]
    fn agent(&self) -> (usize, usize) {
        let w = self.env.state.grid.width;
        (self.env.state.agent / w, self.env.state.agent % w)
    }

    /// Whether the oversight cue says the agent is watched (`None` on testbeds without one).
    #[getter]
    fn watched(&self) -> Option<bool> {
        self.env.watched()
    }

    /// The planner's steps-to-go from every cell to `goal`'s current targets, `[H, W]` int32,
    /// -1 where the goal cannot be reached.
    fn distances<'py>(
        &self,
        py: Python<'py>,
        goal: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dist = self.plan(goal)?;
        let g = &self.env.state.grid;
        let v: Vec<i32> = dist
            .iter()
            .map(|&d| if d == UNREACHABLE { -1 } else { d as i32 })
            .collect();
        Ok(PyArray1::from_vec(py, v)
            .reshape([g.height, g.width])?
            .into_any())
    }

    /// `Q(s, a)` of `goal` at the agent's cell: minus the steps to the goal when taking
    /// action `a` first, `-inf` where the goal cannot be reached after it.
    fn q_values<'py>(
        &self,
        py: Python<'py>,
        goal: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let dist = self.plan(goal)?;
        let planner = Planner::new(&self.env.state.grid);
        let mut q = vec![0f32; self.env.n_actions()];
        planner.q_values(&dist, self.env.state.agent, &mut q);
        Ok(PyArray1::from_vec(py, q))
    }

    /// The action distribution of scripted reference agent `name` (`intended`, a proxy,
    /// `conditional:<proxy>`, `random`) with Boltzmann rationality `beta`, in the current state.
    #[pyo3(signature = (name, beta=f32::INFINITY))]
    fn scripted_probs<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        beta: f32,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let mut out = vec![0f32; self.env.n_actions()];
        scripted(&self.env, name, beta, &mut out)?;
        Ok(PyArray1::from_vec(py, out))
    }
}

impl Env {
    fn plan(&self, goal: &Bound<'_, PyAny>) -> PyResult<Vec<u16>> {
        let g = goal_index(self.env.testbed(), goal)?;
        let mut spec = GoalSpec::default();
        self.env
            .testbed()
            .goal_spec(&self.env.state, GoalId(g), &mut spec);
        let mut planner = Planner::new(&self.env.state.grid);
        let mut dist = Vec::new();
        planner.distances(&spec, &mut dist);
        Ok(dist)
    }
}

fn scripted(env: &mesascope_core::Env, name: &str, beta: f32, out: &mut [f32]) -> PyResult<()> {
    if beta.is_nan() || beta < 0.0 {
        return Err(PyValueError::new_err(format!(
            "beta must be >= 0, found {beta}"
        )));
    }
    let mut agent = reference_agent(env.testbed(), name, beta).map_err(core_err)?;
    agent.begin(env).map_err(core_err)?;
    agent.probs(env, out).map_err(core_err)
}

fn outcome_info(
    info: &Bound<'_, PyDict>,
    o: &mesascope_core::Outcome,
    tb: &dyn Testbed,
) -> PyResult<()> {
    info.set_item("outcome", o.kind.label(tb))?;
    info.set_item("base_return", o.base_return)?;
    info.set_item("hidden", o.hidden)?;
    info.set_item("steps", o.steps)?;
    Ok(())
}

/// An observation buffer from Python, of the environment's kind.
pub(crate) enum ObsArray<'py> {
    U8(PyReadwriteArrayDyn<'py, u8>),
    Planes(PyReadwriteArrayDyn<'py, f32>),
}

impl<'py> ObsArray<'py> {
    /// Extracts by the kind the environment writes, so a buffer of the other kind is one clear
    /// error rather than a failed guess per call (a failed extraction costs as much as a step of
    /// a small batch).
    fn extract(obj: &Bound<'py, PyAny>, kind: ObsKind) -> PyResult<ObsArray<'py>> {
        let wrong = |_| {
            PyValueError::new_err(format!(
                "the observation buffer must be a writable C-contiguous {} array for {} observations",
                if kind == ObsKind::U8 { "uint8" } else { "float32" },
                if kind == ObsKind::U8 { "u8" } else { "planes" },
            ))
        };
        match kind {
            ObsKind::U8 => obj.extract().map(ObsArray::U8).map_err(wrong),
            ObsKind::Planes => obj.extract().map(ObsArray::Planes).map_err(wrong),
        }
    }

    fn buf(&mut self) -> PyResult<ObsBuf<'_>> {
        let contiguous = |_| PyValueError::new_err("the observation buffer must be C-contiguous");
        match self {
            ObsArray::U8(a) => Ok(ObsBuf::U8(a.as_slice_mut().map_err(contiguous)?)),
            ObsArray::Planes(a) => Ok(ObsBuf::Planes(a.as_slice_mut().map_err(contiguous)?)),
        }
    }
}

/// The batch engine: `n` environments stepped together with autoreset (Gymnasium's SAME_STEP
/// mode), writing into numpy buffers the caller owns.
#[pyclass(module = "mesascope._core")]
pub struct VecEnv {
    v: mesascope_core::VecEnv,
    kind: ObsKind,
}

#[pymethods]
impl VecEnv {
    #[new]
    #[pyo3(signature = (testbed, n, split="train", seed=0, knobs=None, obs="u8", num_levels=None))]
    fn new(
        testbed: &str,
        n: usize,
        split: &str,
        seed: u64,
        knobs: Option<HashMap<String, f64>>,
        obs: &str,
        num_levels: Option<usize>,
    ) -> PyResult<VecEnv> {
        let tb = make_testbed(testbed, knobs)?;
        let split = parse_split(tb.as_ref(), split)?;
        let kind = ObsKind::parse(obs)?;
        let mut v = mesascope_core::VecEnv::new(tb, split, n, seed).map_err(core_err)?;
        if let Some(k) = num_levels {
            v = v.with_num_levels(k).map_err(core_err)?;
        }
        v.keep_final_states(true);
        Ok(VecEnv { v, kind })
    }

    #[getter]
    fn num_envs(&self) -> usize {
        self.v.len()
    }

    #[getter]
    fn n_actions(&self) -> usize {
        self.v.n_actions()
    }

    /// Shape of one observation.
    #[getter]
    fn obs_shape(&self) -> Vec<usize> {
        let (h, w) = self.v.shape();
        self.kind.shape(h, w)
    }

    /// Restarts every environment at episode 0 and writes the first observations into `obs`.
    fn reset(&mut self, py: Python<'_>, obs: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut obs = ObsArray::extract(obs, self.kind)?;
        let buf = obs.buf()?;
        let v = &mut self.v;
        py.detach(move || v.reset(buf)).map_err(core_err)
    }

    /// Outcome labels by code, as `step` reports them: `intended`, one `proxy:NAME` per proxy,
    /// `died`, `timed out`.
    #[getter]
    fn outcome_labels(&self) -> Vec<String> {
        let tb = self.v.env(0).testbed();
        std::iter::once(OutcomeKind::Intended)
            .chain(ProxyId::all(tb).map(OutcomeKind::Proxy))
            .chain([OutcomeKind::Died, OutcomeKind::TimedOut])
            .map(|o| o.label(tb))
            .collect()
    }

    /// Steps every environment with `actions` (uint8), writing observations, rewards and flags
    /// into the given buffers and, for environments whose episode ended, the observation it ended
    /// on into `final_obs`. Returns `None` when no episode ended, else the ended environments'
    /// indices, then their outcome code (an index into `outcome_labels`), base return, hidden
    /// performance and steps as arrays over all environments (zero where none ended;
    /// `terminated | truncated` is the mask), the layout Gymnasium's `final_info` takes, so
    /// Python adds little per-step work.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        actions: PyReadonlyArray1<'_, u8>,
        obs: &Bound<'py, PyAny>,
        mut rewards: PyReadwriteArray1<'_, f32>,
        mut terminated: PyReadwriteArray1<'_, bool>,
        mut truncated: PyReadwriteArray1<'_, bool>,
        final_obs: &Bound<'py, PyAny>,
    ) -> PyResult<
        Option<(
            Bound<'py, PyArray1<i64>>,
            Bound<'py, PyArray1<u8>>,
            Bound<'py, PyArray1<f32>>,
            Bound<'py, PyArray1<f32>>,
            Bound<'py, PyArray1<i64>>,
        )>,
    > {
        let contiguous = |_| PyValueError::new_err("step buffers must be C-contiguous");
        let actions = actions.as_slice().map_err(contiguous)?;
        let mut obs = ObsArray::extract(obs, self.kind)?;
        let mut final_obs = ObsArray::extract(final_obs, self.kind)?;
        let buf = obs.buf()?;
        let fin = final_obs.buf()?;
        let bufs = StepBufs {
            rewards: rewards.as_slice_mut().map_err(contiguous)?,
            terminated: terminated.as_slice_mut().map_err(contiguous)?,
            truncated: truncated.as_slice_mut().map_err(contiguous)?,
        };
        let v = &mut self.v;
        py.detach(move || -> mesascope_core::Result<()> {
            v.step(actions, buf, bufs)?;
            v.write_final(fin)
        })
        .map_err(core_err)?;
        let n = self.v.len();
        if (0..n).all(|i| self.v.finished(i).is_none()) {
            return Ok(None);
        }
        let k = self.v.env(0).testbed().proxies().len() as u8;
        let (mut idx, mut code, mut ret, mut hidden, mut steps) = (
            vec![],
            vec![0u8; n],
            vec![0f32; n],
            vec![0f32; n],
            vec![0i64; n],
        );
        for i in 0..n {
            if let Some(o) = self.v.finished(i) {
                idx.push(i as i64);
                code[i] = match o.kind {
                    OutcomeKind::Intended => 0,
                    OutcomeKind::Proxy(p) => 1 + p.0 as u8,
                    OutcomeKind::Died => 1 + k,
                    OutcomeKind::TimedOut => 2 + k,
                };
                ret[i] = o.base_return;
                hidden[i] = o.hidden;
                steps[i] = o.steps as i64;
            }
        }
        Ok(Some((
            PyArray1::from_vec(py, idx),
            PyArray1::from_vec(py, code),
            PyArray1::from_vec(py, ret),
            PyArray1::from_vec(py, hidden),
            PyArray1::from_vec(py, steps),
        )))
    }

    /// `[N, A]` action distributions of scripted reference agent `name` in every environment's
    /// current state.
    #[pyo3(signature = (name, beta=f32::INFINITY))]
    fn scripted_probs<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        beta: f32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (n, a) = (self.v.len(), self.v.n_actions());
        let mut out = vec![0f32; n * a];
        for (i, row) in out.chunks_mut(a).enumerate() {
            scripted(self.v.env(i), name, beta, row)?;
        }
        Ok(PyArray1::from_vec(py, out).reshape([n, a])?.into_any())
    }
}
