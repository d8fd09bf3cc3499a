"""mesascope: testbeds, audit and monitor for mesa-optimizers and inner-alignment failures.

The Rust engine as Gymnasium environments (``make``, ``make_vec``), the audit of any policy
(``audit``), the planner and the scripted reference agents (``scripted``, ``MesascopeEnv.distances``).
See docs/python.md.
"""

from ._core import AuditError, PolicyError, __version__, describe, testbed_names
from ._gym import MesascopeEnv, MesascopeVectorEnv, make, make_vec
from ._policy import ScriptedPolicy, scripted, to_probs
from ._audit import AuditReport, audit

__all__ = [
    "AuditError",
    "AuditReport",
    "MesascopeEnv",
    "MesascopeVectorEnv",
    "PolicyError",
    "ScriptedPolicy",
    "__version__",
    "audit",
    "describe",
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
