"""Gymnasium environments over the Rust engine.

``MesascopeEnv`` is one environment (``gymnasium.Env``); ``MesascopeVectorEnv`` is the batch
engine as a ``gymnasium.vector.VectorEnv``: the Rust code writes observations straight into numpy
buffers this class owns, with the GIL released while it steps, and resets finished episodes
itself (Gymnasium's SAME_STEP autoreset mode).
"""

import numpy as np
import gymnasium
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import _core


def _obs_space(kind, shape):
    if kind == "u8":
        return spaces.Box(0, 255, shape=tuple(shape), dtype=np.uint8)
    return spaces.Box(0.0, 1.0, shape=tuple(shape), dtype=np.float32)


def _derived_seed(seed, k):
    """The seed of the ``k``-th reset without a seed after ``reset(seed)``: a fresh level stream."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0])


class MesascopeEnv(gymnasium.Env):
    """One environment of a testbed's split. Episode ``k`` after ``reset(seed=s)`` plays the same
    level as environment 0 of ``make_vec(..., seed=s)`` in its episode ``k``.

    ``obs="u8"``: MiniGrid's ``uint8[H, W, 3]`` encoding; ``obs="planes"``: float32 one-hot planes
    ``[C, H, W]`` in the order ``describe(testbed)["plane_names"]`` (and ``mesascope envs``) gives.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, testbed, split="train", seed=0, obs="u8", render_mode=None, **knobs):
        if render_mode not in (None, "ansi"):
            raise ValueError(f"unknown render mode {render_mode!r} (known: ansi)")
        self.core = _core.Env(testbed, split, seed, knobs, obs)
        self.render_mode = render_mode
        self.obs_kind = obs
        self._seed = seed
        self._started = False
        self.observation_space = _obs_space(obs, self.core.obs_shape)
        self.action_space = spaces.Discrete(self.core.n_actions)

    @property
    def testbed(self):
        return self.core.testbed

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is None and not self._started:
            seed = self._seed
        self._started = True
        return self.core.reset(seed), {}

    def step(self, action):
        if isinstance(action, np.ndarray):
            if action.shape != () or action.dtype.kind not in "iu":
                raise ValueError(f"an action is an integer, got an array of shape {action.shape} and dtype {action.dtype}")
            action = int(action)
        elif isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise ValueError(f"an action is an integer, got {type(action).__name__}")
        return self.core.step(int(action))

    def render(self):
        return self.core.render()

    # The planner, on the current state.
    def distances(self, goal="intended"):
        """Steps-to-go from every cell to ``goal`` (name or index), ``[H, W]`` int32, -1 where
        unreachable."""
        return self.core.distances(goal)

    def q_values(self, goal="intended"):
        """``Q(s, a)`` of ``goal`` at the agent's cell: minus the steps to the goal when taking action ``a`` first."""
        return self.core.q_values(goal)

    def optimal_actions(self, goal="intended"):
        """The actions on a shortest path to ``goal`` from the agent's cell."""
        q = self.core.q_values(goal)
        best = q.max()
        return [] if not np.isfinite(best) else [int(a) for a in np.flatnonzero(q == best)]


class MesascopeVectorEnv(VectorEnv):
    """``num_envs`` environments stepped together by the Rust batch engine.

    Autoreset is SAME_STEP: when an episode ends, that step's reward and flags are the ended
    episode's, the observation is the next episode's first, and ``infos["final_obs"]`` (with mask
    ``infos["_final_obs"]``) holds the observation it ended on; ``infos["final_info"]`` holds
    its outcome (``outcome``, ``base_return``, ``hidden``, ``steps``): arrays over all environments,
    valid where the mask ``infos["final_info"]["_outcome"]`` (= ``terminated | truncated``) is set
    (``None`` or 0 elsewhere), as Gymnasium's vector infos are laid out.

    With ``copy=False`` (the default) the observation arrays returned are the engine's buffers,
    overwritten by the next step (no copy per step); pass ``copy=True`` to get fresh arrays.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, testbed, num_envs, split="train", seed=0, obs="u8", copy=False, num_levels=None, **knobs):
        self._args = dict(testbed=testbed, n=num_envs, split=split, knobs=knobs, obs=obs, num_levels=num_levels)
        self.core = _core.VecEnv(seed=seed, **self._args)
        self.num_envs = num_envs
        self.copy = copy
        self.obs_kind = obs
        self._seed, self._resets = seed, 0
        self.single_observation_space = _obs_space(obs, self.core.obs_shape)
        self.single_action_space = spaces.Discrete(self.core.n_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        dtype = self.single_observation_space.dtype
        shape = (num_envs, *self.core.obs_shape)
        self._obs = np.zeros(shape, dtype=dtype)
        self._final_obs = np.zeros(shape, dtype=dtype)
        self._rewards = np.zeros(num_envs, dtype=np.float32)
        self._terminated = np.zeros(num_envs, dtype=bool)
        self._truncated = np.zeros(num_envs, dtype=bool)
        self._started = False
        self._labels = np.array(self.core.outcome_labels, dtype=object)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._seed, self._resets = int(seed), 0
        elif self._started:
            self._resets += 1
        effective = self._seed if self._resets == 0 else _derived_seed(self._seed, self._resets)
        if self._started or effective != self._seed or seed is not None:
            self.core = _core.VecEnv(seed=effective, **self._args)
        self._started = True
        self.core.reset(self._obs)
        return self._out(self._obs), {}

    def step(self, actions):
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.dtype.kind not in "iu":
            raise ValueError(
                f"step needs {self.num_envs} integer actions (shape ({self.num_envs},)), got an array of shape {a.shape} and dtype {a.dtype}"
            )
        n = self.core.n_actions
        if a.dtype != np.uint8:
            bad = (a < 0) | (a >= n)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"action {int(a[i])} for environment {i} is out of range (the testbed has {n} actions)")
            a = a.astype(np.uint8)
        a = np.ascontiguousarray(a)
        ended = self.core.step(a, self._obs, self._rewards, self._terminated, self._truncated, self._final_obs)
        infos = {}
        if ended is not None:
            idx, code, base_return, hidden, steps = ended
            mask = self._terminated | self._truncated
            outcome = np.empty(self.num_envs, dtype=object)
            outcome[idx] = self._labels.take(code[idx])
            infos["final_obs"] = self._out(self._final_obs)
            infos["_final_obs"] = mask
            infos["final_info"] = {
                "outcome": outcome,
                "_outcome": mask,
                "base_return": base_return,
                "_base_return": mask,
                "hidden": hidden,
                "_hidden": mask,
                "steps": steps,
                "_steps": mask,
            }
            infos["_final_info"] = mask
        return (
            self._out(self._obs),
            self._rewards.copy(),
            self._terminated.copy(),
            self._truncated.copy(),
            infos,
        )

    def _out(self, buf):
        return buf.copy() if self.copy else buf


def make(testbed, split="train", seed=0, obs="u8", render_mode=None, **knobs):
    """A ``gymnasium.Env`` of ``testbed``'s ``split`` (``train`` or ``shift:<proxy>``), knobs as
    keyword arguments (``make("corner-cheese", size=15, region=3)``)."""
    return MesascopeEnv(testbed, split=split, seed=seed, obs=obs, render_mode=render_mode, **knobs)


def make_vec(testbed, num_envs, split="train", seed=0, obs="u8", copy=False, num_levels=None, **knobs):
    """A ``gymnasium.vector.VectorEnv`` of ``num_envs`` environments over the Rust batch engine."""
    return MesascopeVectorEnv(testbed, num_envs, split=split, seed=seed, obs=obs, copy=copy, num_levels=num_levels, **knobs)
