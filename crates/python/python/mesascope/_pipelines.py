"""The library's pipelines: ``train``, ``mitigate`` and ``monitor``, as the command line runs
them (same settings, same files, same figures), with the GIL released while Rust works."""

import os

from . import _core


class Result:
    """What a pipeline did: ``data`` (its figures, as the JSON files hold them; also reachable
    as ``result["key"]``) and ``text`` (the command line's summary, also ``str(result)``)."""

    def __init__(self, kind, data, text):
        self.kind = kind
        self.data = data
        self.text = text

    def __getitem__(self, key):
        return self.data[key]

    def __repr__(self):
        return f"<mesascope {self.kind} result: {sorted(self.data)}>"

    def __str__(self):
        return self.text


def _path(p):
    return None if p is None else os.fspath(p)


def train(testbed, steps=None, seed=None, out=None, resume=False, decorrelate=None, arch=None,
          num_envs=None, hidden=None, checkpoint_every=20, eval_episodes=500, progress=None,
          channels=None, iterations=None, curriculum="uniform", **knobs):
    """Trains a policy with PPO on ``testbed``'s training distribution (knobs as keyword
    arguments) and writes its checkpoint, ``metrics.jsonl`` and ``eval.json`` into ``out``
    (default ``runs/TESTBED-seedS``). ``seed`` defaults to 0; a resumed run keeps its
    checkpoint's (another raises ``SettingError``). ``progress`` is an optional callable
    ``progress(done, total, message)``. Ctrl-C stops it cleanly: the checkpoint is written and
    resumes with ``resume=True``; then ``KeyboardInterrupt`` is raised. ``arch`` is
    ``planner``, ``embed-mlp`` or ``conv`` (default the testbed's: ``planner`` for
    exit-vs-green, corner-cheese and keys-chests, ``embed-mlp`` for the others); ``channels`` and ``iterations`` shape the
    planner. ``curriculum`` is ``uniform`` (a fresh level each episode) or ``regret`` (a quarter
    of the episodes replay the levels of highest regret for the intended goal).

    Returns a ``Result`` whose data holds ``out``, ``steps``, ``trained``, ``seconds``,
    ``env_steps_per_second``, ``last_update``, ``reached_target``, ``curve`` and ``evaluation``.
    """
    data, text = _core.train(testbed, steps, seed, _path(out), resume, decorrelate, arch,
                             num_envs, hidden, checkpoint_every, eval_episodes, progress, knobs,
                             channels, iterations, curriculum)
    return Result("train", data, text)


def mitigate(policy, testbed, method="diversify", decorrelate=None, steps=None, seed=0,
             episodes=500, out=None, progress=None):
    """Audits checkpoint ``policy``, fine-tunes it on levels where the proxy is decorrelated
    (``method``: ``diversify``, uniform; ``adversarial``, a regret curriculum) into ``out``, and
    audits it again. Returns a ``Result`` with ``before`` and ``after`` (the audits, as
    ``audit.json`` holds them), ``exit_code`` (the verdict after), ``extra_steps``, ``out``."""
    data, text = _core.mitigate(_path(policy), testbed, method, decorrelate, steps, seed,
                                episodes, _path(out), progress)
    return Result("mitigate", data, text)


def monitor(policy, testbed, fallback="scripted:intended", episodes=200, seed=0, threshold=None,
            beta=None, reach=3, evidence="policy", **knobs):
    """Plays ``policy`` (a policy string: ``scripted:NAME``, a checkpoint folder, an ONNX file)
    under the runtime monitor on every distribution of ``testbed``; returns a ``Result`` with
    the monitor's rows (alarms, false alarms, alarms before the proxy, delays, the fallback's
    success) and one alarmed episode's posterior trace."""
    data, text = _core.monitor(_path(policy), testbed, fallback, episodes, seed, threshold,
                               beta, reach, evidence, knobs)
    return Result("monitor", data, text)
