"""mesascope: testbeds, audit and monitor for mesa-optimizers and inner-alignment failures.

The Rust engine as Gymnasium environments (``make``, ``make_vec``), the audit of any policy
(``audit``), the pipelines (``train``, ``mitigate``, ``monitor``), sweeps on Ray Tune (``sweep``,
``audit_many``; docs/distributed.md), the planner and the scripted
reference agents (``scripted``, ``MesascopeEnv.distances``). Bad input raises a ``ValueError``
of a specific class (``BadPolicyError``, ``LevelError``, ``KnobError``, ``SettingError``), I/O
problems a ``MesascopeIOError`` (an ``OSError``), a misbehaving policy a ``PolicyError``.
See docs/python.md.
"""

from ._core import (
    AuditError,
    BadPolicyError,
    KnobError,
    LevelError,
    MesascopeIOError,
    OnnxModel,
    PolicyError,
    SettingError,
    __version__,
    describe,
    testbed_names,
)
from ._gym import MesascopeEnv, MesascopeVectorEnv, make, make_vec
from ._policy import ScriptedPolicy, scripted, to_probs
from ._audit import AuditReport, audit
from ._pipelines import Result, mitigate, monitor, train
from ._sweep import audit_many, expand_grid, sweep


def load_onnx(path, testbed, **knobs):
    """An ONNX policy (docs/onnx.md) checked against ``testbed``'s contract, run by tract:
    ``model(obs)`` returns ``[N, A]`` logits for a batch, so it is a policy for ``audit`` and a
    fast batched actor for ``make_vec``. ``model.obs`` is the observation kind it reads."""
    import os

    return OnnxModel(os.fspath(path), testbed, knobs)

__all__ = [
    "AuditError",
    "AuditReport",
    "BadPolicyError",
    "KnobError",
    "LevelError",
    "MesascopeIOError",
    "Result",
    "SettingError",
    "mitigate",
    "monitor",
    "train",
    "MesascopeEnv",
    "MesascopeVectorEnv",
    "OnnxModel",
    "PolicyError",
    "ScriptedPolicy",
    "__version__",
    "audit",
    "audit_many",
    "expand_grid",
    "sweep",
    "describe",
    "load_onnx",
    "make",
    "make_vec",
    "scripted",
    "testbed_names",
    "to_probs",
]


def _register():
    # `gymnasium.make("mesascope/exit-vs-green-v0")` works too.
    import gymnasium

    for name in testbed_names():
        env_id = f"mesascope/{name}-v0"
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point="mesascope._gym:MesascopeEnv",
                kwargs={"testbed": name},
            )


_register()
