"""What a policy is to mesascope from Python, and the checks of what it returns.

A policy is a callable from an observation batch (numpy, ``[N, H, W, 3]`` uint8 or
``[N, C, H, W]`` float32) to either actions (integers, shape ``[N]``) or logits (floats, shape
``[N, A]``). ``to_probs`` turns either into action probabilities, or raises a ``PolicyError``
that says what was expected and what came back.
"""

import math

import numpy as np

from ._core import PolicyError


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def to_probs(output, n, n_actions):
    """Checks a policy's output for a batch of ``n`` observations and returns ``[n, A]`` float32
    action probabilities: actions become one-hot rows, logits go through a softmax."""
    expected = (
        f"expected actions (integers, shape ({n},)) or logits (floats, shape ({n}, {n_actions}))"
    )
    try:
        arr = np.asarray(output)
    except Exception as e:  # ragged lists and the like
        raise PolicyError(f"the policy returned {_describe(output)} that numpy cannot read ({e}); {expected}") from None
    if arr.dtype.kind in "iu":
        if arr.shape != (n,):
            raise PolicyError(f"the policy returned {_describe(arr)}; {expected}")
        bad = (arr < 0) | (arr >= n_actions)
        if bad.any():
            i = int(np.argmax(bad))
            raise PolicyError(
                f"the policy returned action {int(arr[i])} for observation {i}, out of range (the testbed has {n_actions} actions: 0 up, 1 right, 2 down, 3 left)"
            )
        probs = np.zeros((n, n_actions), dtype=np.float32)
        probs[np.arange(n), arr] = 1.0
        return probs
    if arr.dtype.kind == "f":
        if arr.shape != (n, n_actions):
            raise PolicyError(f"the policy returned {_describe(arr)}; {expected}")
        if not np.isfinite(arr).all():
            i = int(np.argmax(~np.isfinite(arr).all(axis=1)))
            raise PolicyError(f"the policy returned non-finite logits {arr[i].tolist()} for observation {i}")
        z = arr.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    raise PolicyError(f"the policy returned {_describe(arr)}; {expected}")


def adapter(policy, n_actions):
    """The callable the audit calls: one observation batch in, checked ``[N, A]``
    probabilities out."""

    def call(obs):
        return np.ascontiguousarray(to_probs(policy(obs), obs.shape[0], n_actions), dtype=np.float32)

    return call


class ScriptedPolicy:
    """A scripted reference agent: ``intended``, a proxy's name, ``conditional:<proxy>`` or
    ``random``, Boltzmann-rational with ``beta`` (``inf``: uniformly among the optimal moves).

    It plans on the true state, not on observations, so it acts on mesascope environments:
    ``probs(env)`` / ``act(env)`` take a ``MesascopeEnv`` or ``MesascopeVectorEnv``; ``audit``
    accepts it directly.
    """

    def __init__(self, testbed, name, beta=math.inf):
        from ._core import Env

        self.testbed = testbed
        self.name = name
        self.beta = float(beta)
        # Checks the name (and beta) now, with the testbed's list of names in the message.
        Env(testbed).scripted_probs(name, self.beta)

    @property
    def spec(self):
        """The policy string the command line accepts: ``scripted:NAME[@beta]``."""
        suffix = "" if math.isinf(self.beta) else f"@{self.beta:g}"
        return f"scripted:{self.name}{suffix}"

    def probs(self, env):
        """Action probabilities in the environment's current state(s): ``[A]`` for a single
        environment, ``[N, A]`` for a vector environment."""
        return _core_of(env).scripted_probs(self.name, self.beta)

    def act(self, env, rng=None):
        """Samples actions from ``probs(env)`` (the first best move when ``beta`` is infinite
        and no ``rng`` is given)."""
        p = self.probs(env)
        if rng is None:
            return np.argmax(p, axis=-1)
        p2 = np.atleast_2d(p).astype(np.float64)
        u = rng.random((p2.shape[0], 1))
        acts = (p2.cumsum(axis=1) < u).sum(axis=1).clip(0, p2.shape[1] - 1)
        return acts if p.ndim == 2 else int(acts[0])

    def __repr__(self):
        return f"ScriptedPolicy({self.testbed!r}, {self.name!r}, beta={self.beta})"


def scripted(testbed, name="intended", beta=math.inf):
    """The scripted reference agent ``name`` of ``testbed`` (see ``ScriptedPolicy``)."""
    return ScriptedPolicy(testbed, name, beta)


def _core_of(env):
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    if core is None:
        raise TypeError(f"scripted agents act on mesascope environments, not on {type(env).__name__}")
    return core
