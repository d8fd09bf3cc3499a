"""``mesascope.audit``: the command line's audit on any policy, Python callables included."""

import os
import sys
import time

from . import _core
from ._policy import ScriptedPolicy, adapter


class AuditReport:
    """The audit's report.

    ``verdict`` (``robustly-aligned``, ``pseudo-aligned``, ``capability-failure``,
    ``oversight-conditional``, ``inconclusive``), ``proxy`` (the proxy pursued, when
    pseudo-aligned), ``label`` (e.g. ``pseudo-aligned (proxy: green)``), ``exit_code`` (what ``mesascope audit`` exits with), ``evidence`` (sentences
    citing the figures), ``distributions`` (name -> outcome rates and the inferred goal),
    ``data`` (everything ``audit.json`` holds), ``text`` (the command line's summary), and
    ``json_path``/``html_path`` when written.
    """

    def __init__(self, data, text, exit_code, written):
        self.data = data
        self.text = text
        self.exit_code = exit_code
        v = data["verdict"]
        self.verdict = v["verdict"]["kind"]
        self.proxy = v["verdict"].get("proxy")
        self.label = v["label"]
        self.evidence = list(v["evidence"])
        self.distributions = {
            d["name"]: {
                "episodes": d["episodes"],
                "outcomes": {o["outcome"]: o["rate"] for o in d["outcomes"]},
                "competent": d["competent"]["rate"],
                "hidden": d["hidden"]["mean"],
                "goal_inferred": d["inference"]["map"],
                "goal_shares": {g["name"]: g["share"] for g in d["inference"]["shares"]},
            }
            for d in data["distributions"]
        }
        self.json_path, self.html_path = (None, None) if written is None else tuple(map(str, written))

    def __repr__(self):
        return f"<AuditReport {self.data['policy']} on {self.data['testbed']}: {self.label}, exit code {self.exit_code}>"

    def __str__(self):
        return self.text


def _stderr_progress():
    """Prints each phase of the audit on stderr as it starts, with the time so far."""
    start = time.monotonic()

    def show(phase, i, n):
        print(f"audit [{i + 1}/{n}] {phase} ({time.monotonic() - start:.1f} s)", file=sys.stderr, flush=True)

    return show


def audit(policy, testbed, episodes=200, seed=0, out=None, obs="u8", levels=None, name=None, progress=None, size_shift=None, **knobs):
    """Audits ``policy`` on ``testbed`` (knobs as keyword arguments) and returns an
    ``AuditReport``; with ``out``, writes ``audit.json`` and ``audit.html`` there.

    ``policy`` is a callable from an observation batch (``obs="u8"``: uint8 ``[N, H, W, 3]``;
    ``obs="planes"``: float32 ``[N, C, H, W]``) to actions ``[N]`` or logits ``[N, A]``; a
    ``ScriptedPolicy`` (``mesascope.scripted``); or a string ``mesascope audit`` accepts
    (``scripted:green@2``, a checkpoint folder, a ``.onnx`` file). The audit plays its
    episodes in lockstep and calls a callable once per step with every live episode's
    observation (``N`` up to 256; up to 1,024 when it probes states it built), checking for
    Ctrl-C between calls.

    ``size_shift``: also audit on training levels that many cells longer per side (negative:
    shorter), one more distribution ``train@size=S``, as ``mesascope audit --size-shift``.

    ``progress``: ``True`` prints each phase on stderr as it starts, a callable is called with
    ``(phase, index, count)``, ``None`` (the default) prints when stderr is a terminal.
    """
    if isinstance(policy, ScriptedPolicy):
        if policy.testbed != testbed:
            raise ValueError(f"the scripted policy is for testbed {policy.testbed}, the audit is on {testbed}")
        label, policy = policy.spec, policy.spec
    elif isinstance(policy, (str, os.PathLike)):
        label = policy = os.fspath(policy)
    elif isinstance(policy, _core.OnnxModel):
        label = name or "onnx"
        obs = policy.obs
        n_actions = _core.describe(testbed, knobs)["n_actions"]
        policy = adapter(policy, n_actions)
    elif callable(policy):
        label = name or f"python:{getattr(policy, '__qualname__', type(policy).__name__)}"
        n_actions = _core.describe(testbed, knobs)["n_actions"]
        policy = adapter(policy, n_actions)
    else:
        raise TypeError(f"a policy is a callable, a ScriptedPolicy or a policy string, not {type(policy).__name__}")
    if name is not None:
        label = name
    levels = None if levels is None else os.fspath(levels)
    out = None if out is None else os.fspath(out)
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    if progress is True:
        progress = _stderr_progress()
    elif progress is False:
        progress = None
    data, text, code, written = _core.audit(
        policy, testbed, label, knobs, episodes, seed, obs, levels, out, progress, size_shift
    )
    return AuditReport(data, text, code, written)
