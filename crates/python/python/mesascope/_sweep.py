"""Sweeps on Ray Tune: a grid of training, mitigation and audit runs, one Tune trial per grid
cell, on one machine or a cluster (docs/distributed.md); and ``audit_many``, the audit of every
policy in a folder as a distributed map.

Each trial calls the library in-process (the GIL is released while Rust works): train, then
mitigate where its method asks, then audit. Its Tune checkpoints hold the model folder and,
once audited, the audit's JSON and HTML; a retried trial starts again from its last one.
"""

import html
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass

from . import _core
from ._audit import audit
from ._core import BadPolicyError, KnobError, MesascopeIOError, SettingError
from ._pipelines import mitigate, train

# The columns that are a trial's figures: equal whenever the same cell runs again, wherever it
# runs (the rest are bookkeeping: seconds, paths, restarts).
FIGURES = ("verdict", "proxy", "label", "exit_code", "trained_steps", "extra_steps",
           "label_before", "exit_code_before")

# Stages a trial has finished, in order; its checkpoint's state.json names the last one.
_STAGES = ("start", "training", "trained", "mitigated", "done")


@dataclass(frozen=True)
class Cell:
    """One trial: a point of the grid."""

    testbed: str
    knobs: tuple  # ((name, value), ...) sorted by name
    seed: int
    share: float
    method: str
    steps: object  # int, or None: the testbed's default
    mitigate_steps: object
    episodes: int
    checkpoint_every: int
    source: object  # a checkpoint folder to mitigate instead of training, or None
    arch: object = None  # the trunk trained (embed-mlp, conv, planner), or None: the default
    curriculum: str = "uniform"  # how training draws its levels: uniform or regret

    def label(self):
        knobs = "".join(f" {k}={_num(v)}" for k, v in self.knobs)
        src = f" source={self.source}" if self.source else ""
        arch = f" arch={self.arch}" if self.arch else ""
        cur = f" curriculum={self.curriculum}" if self.curriculum != "uniform" else ""
        return (f"testbed={self.testbed}{knobs} seed={self.seed} share={_num(self.share)} "
                f"method={self.method}{arch}{cur}{src}")

    def to_config(self):
        d = asdict(self)
        d["knobs"] = [list(p) for p in self.knobs]
        return d

    @staticmethod
    def from_config(d):
        """A cell from its JSON form (the library's, or ``to_config``'s)."""
        d = dict(d)
        d["knobs"] = tuple((k, float(v)) for k, v in d["knobs"])
        d["share"] = float(d["share"])
        return Cell(**d)

    def values(self):
        """The grid's values, as the result table's first columns."""
        row = {"testbed": self.testbed}
        row.update({k: v for k, v in self.knobs})
        row.update(seed=self.seed, share=self.share, method=self.method, arch=self.arch,
                   curriculum=self.curriculum, steps=self.steps,
                   mitigate_steps=self.mitigate_steps, episodes=self.episodes,
                   source=self.source)
        return row


def _num(v):
    return int(v) if float(v).is_integer() else v


# ---------------------------------------------------------------------------------------------
# The grid: read and checked by the library (`mesascope::sweep`, the command line's reader too),
# all before any trial starts.


def expand_grid(grid):
    """Every cell of ``grid`` (a dict, or a TOML file with the same keys), checked: an unknown
    key, testbed, knob or method, or a value out of range, raises the package's error class
    naming the grid cell."""
    if isinstance(grid, dict):
        # A key given as None takes its default, as if left out.
        cells = _core.sweep_grid(json=json.dumps({k: v for k, v in grid.items() if v is not None}))
    elif isinstance(grid, (str, os.PathLike)):
        cells = _core.sweep_grid(path=os.fspath(grid))
    else:
        raise TypeError(f"a grid is a dict or the path of a TOML file, not {type(grid).__name__}")
    return [Cell.from_config(c) for c in cells]


# ---------------------------------------------------------------------------------------------
# One trial: the same code in-process (sequential) and in a Tune trial.


def _write_atomic(path, data):
    """Writes ``data`` (str or bytes) to ``path`` through a temporary file renamed into place,
    so a reader sees the old file or the new one, never half of one."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _copy_model(src, dst):
    os.makedirs(dst, exist_ok=True)
    # Weights before metadata, as the library writes them: model.json names the weights' hash.
    for name in ("model.safetensors", "model.json", "metrics.jsonl"):
        if os.path.exists(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def _keep_metrics_until(path, updates):
    """Drops the metrics lines of updates after the checkpoint a training run resumes from:
    the resumed run writes its own lines for them."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip() and json.loads(line)["update"] <= updates]
    _write_atomic(path, "".join(lines))


class _MetricsTail:
    """The lines the library appended to ``metrics.jsonl`` since the last call: it writes each
    update's line before it reports progress, so the newest line is that update's."""

    def __init__(self, path):
        self.path, self.offset = path, 0

    def latest(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return None
        end = chunk.rfind(b"\n")
        if end < 0:
            return None
        self.offset += end + 1
        lines = chunk[:end].splitlines()
        return json.loads(lines[-1]) if lines else None


_SCALARS = ("update", "steps", "learning_rate", "episodes", "mean_return", "success_rate",
            "intended_rate", "timeout_rate", "policy_loss", "value_loss", "entropy",
            "approx_kl", "clip_fraction", "explained_variance", "steps_per_second")


class _Trial:
    """Runs one cell in ``work`` (a folder of this process's machine), reporting each PPO
    update and each finished stage through ``report(metrics, checkpoint_dir or None)``."""

    def __init__(self, cell, work, report, restored=None):
        self.cell, self.work, self.report = cell, work, report
        self.state = {"stage": "start", "seconds": 0.0, "restarts": 0, "resumed_from": None}
        self.model = None  # the folder holding the newest complete checkpoint
        if restored is not None:
            with open(os.path.join(restored, "state.json")) as f:
                self.state = json.load(f)
            self.state["restarts"] += 1
            self.state["resumed_from"] = f"{self.state['stage']}@{self.state.get('model_steps', 0)}"
            if os.path.isdir(os.path.join(restored, "model")):
                dst = os.path.join(work, "train" if self.state["stage"] == "training" else "model")
                _copy_model(os.path.join(restored, "model"), dst)
                self.model = dst
                if self.state["stage"] == "training":
                    _keep_metrics_until(os.path.join(dst, "metrics.jsonl"), self.state["model_updates"])
            for name in ("row.json", "audit.json", "audit.html", "mitigation.json"):
                if os.path.exists(os.path.join(restored, name)):
                    shutil.copyfile(os.path.join(restored, name), os.path.join(work, name))

    def _done(self, stage):
        return _STAGES.index(self.state["stage"]) >= _STAGES.index(stage)

    def _checkpoint(self, stage, model, metrics, extra=()):
        """Reports a checkpoint: a fresh folder holding ``state.json``, the model and ``extra``
        files, handed to ``report`` whole."""
        self.state["stage"] = stage
        self.state["seconds"] = self._base_seconds + time.monotonic() - self._start
        with open(os.path.join(model, "model.json")) as f:
            meta = json.load(f)
        self.state["model_steps"] = meta["steps"]
        self.state["model_updates"] = meta["updates"]
        ck = tempfile.mkdtemp(prefix="ck-", dir=self.work)
        _copy_model(model, os.path.join(ck, "model"))
        for name in extra:
            shutil.copyfile(os.path.join(self.work, name), os.path.join(ck, name))
        _write_atomic(os.path.join(ck, "state.json"), json.dumps(self.state))
        self.report({**metrics, "stage": stage}, ck)
        shutil.rmtree(ck, ignore_errors=True)

    def _progress(self, stage, folder, every):
        tail = _MetricsTail(os.path.join(folder, "metrics.jsonl"))
        last_ck = [self.state.get("model_updates", 0) if stage == "training" else 0]

        def progress(done, total, message):
            # A stage's message (done None) or the start position (no message): no update yet.
            if done is None or not message:
                return
            line = tail.latest()
            metrics = {"stage": stage, "env_steps": done, "total_steps": total}
            if line:
                metrics.update({k: line[k] for k in _SCALARS if line.get(k) is not None})
            # The library saves its checkpoint after reporting an update, so the one on disk
            # is the previous save, complete (each file atomic, the pair checked by its hash).
            meta = os.path.join(folder, "model.json")
            if every and stage == "training" and os.path.exists(meta):
                with open(meta) as f:
                    updates = json.load(f)["updates"]
                if updates >= last_ck[0] + every:
                    last_ck[0] = updates
                    self._checkpoint("training", folder, metrics)
                    return
            self.report(metrics, None)

        return progress

    def run(self):
        c = self.cell
        self._start, self._base_seconds = time.monotonic(), self.state["seconds"]
        knobs = dict(c.knobs)
        # 1. Train (or take the source checkpoint).
        if c.source is not None:
            base = c.source
        elif not self._done("trained"):
            folder = os.path.join(self.work, "train")
            resume = self.state["stage"] == "training" and self.model is not None
            if not resume and os.path.exists(folder):
                shutil.rmtree(folder)
            decorrelate = c.share if c.method == "none" else 0.0
            train(c.testbed, steps=c.steps, seed=c.seed, out=folder, resume=resume,
                  decorrelate=decorrelate, checkpoint_every=c.checkpoint_every or 20,
                  arch=None if resume else c.arch, curriculum=c.curriculum,
                  eval_episodes=0, progress=self._progress("training", folder, c.checkpoint_every),
                  **knobs)
            self._checkpoint("trained", folder, {})
            base = self.model = folder
        else:
            base = self.model
        # 2. Mitigate: fine-tune on the share of decorrelated levels; its audit after is the row's.
        if c.method != "none" and not self._done("mitigated"):
            folder = os.path.join(self.work, "mitigated")
            if os.path.exists(folder):
                shutil.rmtree(folder)
            mitigate(base, c.testbed, method=c.method, decorrelate=c.share,
                     steps=c.mitigate_steps, seed=c.seed, episodes=c.episodes, out=folder,
                     progress=self._progress("mitigating", folder, 0))
            for name in ("audit.json", "audit.html", "mitigation.json"):
                shutil.copyfile(os.path.join(folder, name), os.path.join(self.work, name))
            self._checkpoint("mitigated", folder, {},
                             extra=("audit.json", "audit.html", "mitigation.json"))
            self.model = folder
        # 3. Audit, on the knobs trained with and no decorrelated levels (as mitigate does).
        if not self._done("done"):
            if c.method == "none":
                audit(self.model, c.testbed, episodes=c.episodes, seed=c.seed,
                      out=os.path.join(self.work, "audit"), name=f"sweep: {c.label()}", **knobs)
                for name in ("audit.json", "audit.html"):
                    shutil.copyfile(os.path.join(self.work, "audit", name), os.path.join(self.work, name))
            self.state["seconds"] = self._base_seconds + time.monotonic() - self._start
            row = _row(c, self.work, self.state)
            _write_atomic(os.path.join(self.work, "row.json"), json.dumps(row))
            extra = ["row.json", "audit.json", "audit.html"]
            if c.method != "none":
                extra.append("mitigation.json")
            self._checkpoint("done", self.model, {"row": row}, extra=extra)
        else:
            # Restored after its last checkpoint (the sweep stopped before Tune recorded the end):
            # nothing to redo, but Tune needs the row reported again.
            with open(os.path.join(self.work, "row.json")) as f:
                self.report({"stage": "done", "row": json.load(f)}, None)
        with open(os.path.join(self.work, "row.json")) as f:
            return json.load(f)


def _rates(data, prefix=""):
    """Intended and proxy rates with their 95% intervals, per distribution of an audit."""
    out = {}
    for d in data["distributions"]:
        for o in d["outcomes"]:
            name = o["outcome"]
            if name == "intended" or name.startswith("proxy:"):
                key = f"{prefix}{d['name']}/{name}"
                out[key], out[key + "_lo"], out[key + "_hi"] = o["rate"], o["lo"], o["hi"]
    return out


def _row(cell, work, state):
    with open(os.path.join(work, "audit.json")) as f:
        a = json.load(f)
    v = a["verdict"]
    row = cell.values()
    row.update(verdict=v["verdict"]["kind"], proxy=v["verdict"].get("proxy"), label=v["label"],
               exit_code=v["exit_code"])
    row.update(_rates(a))
    row["trained_steps"] = state.get("trained_steps")
    row["label_before"], row["exit_code_before"], row["extra_steps"] = None, None, None
    if cell.method != "none":
        with open(os.path.join(work, "mitigation.json")) as f:
            m = json.load(f)
        row["extra_steps"] = m.get("extra_steps")
        row["trained_steps"] = m.get("source_steps")
        # mitigation.json's summary of the audit before fine-tuning: its label and exit code.
        row["label_before"] = m["before"]["verdict"]
        row["exit_code_before"] = m["before"]["exit_code"]
    else:
        row["trained_steps"] = state.get("model_steps")
    row["seconds"] = state["seconds"]
    row["restarts"] = state["restarts"]
    row["resumed_from"] = state["resumed_from"]
    return row


# ---------------------------------------------------------------------------------------------
# Ray: joining or starting it, and the Tune trainable.


def _connect(address, cpus):
    import ray

    if address is None:
        if ray.is_initialized():
            return
        ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        return
    if address != "auto" and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        _probe(address, host or "127.0.0.1", port)
        # Ray joins a loopback address through the machine's own address (unless
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), where a head bound to 127.0.0.1 never answers
        # and ray.init would retry for ever.
        try:
            from ray._private.services import resolve_ip_for_localhost
            joined = resolve_ip_for_localhost(host or "127.0.0.1")
        except Exception:  # a private helper: without it, only the address as given is probed
            joined = host
        if joined != host:
            _probe(address, joined, port, note=f" (Ray joins {host} through {joined}; for a head "
                   "bound to 127.0.0.1 set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray)")
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
        # Most often the cluster's token: clients need RAY_AUTH_MODE=token and its token.
        raise SettingError(f"`address` {address}: cannot join the Ray cluster there: {e}") from None


def _probe(address, host, port, note=""):
    try:
        with socket.create_connection((host, int(port)), timeout=4):
            pass
    except (OSError, ValueError) as e:
        raise SettingError(f"`address` {address}: no Ray head answers at {host}:{port} ({e}){note}; "
                           "start one with `ray start --head --port=PORT`") from None


def _tune_trial(config):
    """The Tune trainable: one cell, resumed from the trial's last checkpoint if it has one."""
    from ray import tune

    cell = Cell.from_config(config["cell"])
    # Trials share the node's cores: the engine's thread pool takes the CPUs the trial holds.
    os.environ.setdefault("RAYON_NUM_THREADS", str(config["cpus"]))

    def report(metrics, ck):
        metrics = {**metrics, "pid": os.getpid()}
        tune.report(metrics, checkpoint=None if ck is None else tune.Checkpoint.from_directory(ck))

    work = tempfile.mkdtemp(prefix="mesascope-trial-")
    try:
        restored = tune.get_checkpoint()
        if restored is None:
            _Trial(cell, work, report).run()
        else:
            with restored.as_directory() as d:
                trial = _Trial(cell, work, report, restored=d)
            trial.run()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sweep(grid, out="runs/sweep", address=None, cpus_per_trial=1, max_failures=2,
          resume=False, name="sweep", num_cpus=None, sequential=False, callbacks=None):
    """Runs every cell of ``grid`` (a dict, or a TOML file with the same keys; see
    docs/distributed.md) as a Ray Tune trial: train, mitigate where its method asks, audit.

    ``address``: ``None`` starts Ray in this process with ``num_cpus`` (default: all) CPUs; an
    address (``HOST:PORT`` or ``auto``) joins that cluster. ``cpus_per_trial`` CPUs are
    reserved per trial. A trial that fails (its worker dies) is retried up to ``max_failures``
    times from its last checkpoint. ``resume=True`` restores the interrupted sweep in
    ``out/name`` and runs only its unfinished trials. ``sequential=True`` runs the cells one
    after another in this process, without Ray (the reference the figures are compared to).
    ``callbacks``: Tune callbacks (``ray.tune.Callback``), given every reported result.

    Returns a pandas DataFrame, one row per trial (see ``FIGURES``), also written atomically
    as ``out/name.csv`` and ``out/name.json``.
    """
    import pandas as pd

    cells = expand_grid(grid)
    if not isinstance(cpus_per_trial, (int, float)) or cpus_per_trial <= 0:
        raise SettingError(f"`cpus_per_trial` must be positive, not {cpus_per_trial!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < -1:
        raise SettingError(f"`max_failures` is an integer >= 0 (or -1, without limit), not {max_failures!r}")
    out = os.path.abspath(os.fspath(out))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise MesascopeIOError(f"cannot create output folder {out}: {e}") from None
    if sequential:
        rows = _run_sequential(cells, os.path.join(out, name + "-sequential"))
    else:
        rows = _run_tune(cells, out, name, address, cpus_per_trial, max_failures, resume,
                         num_cpus, callbacks)
    df = pd.DataFrame(rows)
    stem = os.path.join(out, name + ("-sequential" if sequential else ""))
    _write_atomic(stem + ".csv", df.to_csv(index=False))
    # From the rows themselves: pandas' JSON writer rounds floats to 10 digits.
    _write_atomic(stem + ".json", json.dumps(rows, indent=1))
    return df


def _run_sequential(cells, root):
    rows = []
    for i, cell in enumerate(cells):
        folder = os.path.join(root, f"trial-{i:04d}")
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        row = _Trial(cell, folder, lambda metrics, ck: None).run()
        row["checkpoint"] = folder
        rows.append(row)
    return rows


def _trial_dirname(trial):
    return f"trial-{trial.trial_id}"


def _run_tune(cells, out, name, address, cpus, max_failures, resume, num_cpus, callbacks):
    try:
        from ray import tune
    except ImportError:
        raise SettingError("sweeps run on Ray Tune: pip install 'ray[tune]' (or pass sequential=True)") from None
    _connect(address, num_cpus)
    trainable = tune.with_resources(_tune_trial, {"cpu": cpus})
    path = os.path.join(out, name)
    space = {"cell": tune.grid_search([c.to_config() for c in cells]), "cpus": max(1, int(cpus))}
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=space)
    else:
        if os.path.exists(os.path.join(path, "tuner.pkl")) and not resume:
            raise SettingError(f"{path} already holds a sweep; pass resume=True to continue it or choose another `out` or `name`")
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            # A trial's worker process is reused by the next trial: starting one (a Python
            # importing Ray, Tune and the engine) was most of Ray's cost per trial.
            tune_config=tune.TuneConfig(trial_dirname_creator=_trial_dirname, reuse_actors=True),
            run_config=tune.RunConfig(
                storage_path=out, name=name,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    results = tuner.fit()
    by_cell = {}
    for r in results:
        if not r.config:  # a trial the interrupted sweep never started
            continue
        cell = Cell.from_config(r.config["cell"])
        row = (r.metrics or {}).get("row") if r.error is None else None
        checkpoint = r.checkpoint.path if r.checkpoint else None
        # Tune records a result before the checkpoint reported with it: a sweep stopped between
        # the two holds the final row beside an earlier checkpoint. That trial is unfinished
        # (restored, it runs its last stage again from the checkpoint Tune has).
        if row is not None and not (checkpoint and os.path.exists(os.path.join(checkpoint, "row.json"))):
            row = None
        if row is None:
            row = {**cell.values(), "verdict": None, "error": str(r.error) if r.error else "unfinished"}
        row = dict(row)
        row["checkpoint"] = checkpoint
        by_cell[cell] = row
    # The grid's order, whatever order the trials finished in; a trial not started has no row
    # of figures (an interrupted sweep).
    unfinished = lambda c: {**c.values(), "verdict": None, "error": "unfinished", "checkpoint": None}
    return [by_cell.get(c) or unfinished(c) for c in cells]


# ---------------------------------------------------------------------------------------------
# audit_many: every policy in a folder audited as a distributed map.


def _policies(folder):
    found = []
    for entry in sorted(os.listdir(folder)):
        p = os.path.join(folder, entry)
        if os.path.isdir(p) and os.path.exists(os.path.join(p, "model.json")):
            found.append(p)
        elif os.path.isfile(p) and entry.endswith(".onnx"):
            found.append(p)
    return found


def _audit_one(policy, testbed, episodes, seed, out, knobs):
    r = audit(policy, testbed, episodes=episodes, seed=seed, out=out, **knobs)
    row = {"policy": policy, "verdict": r.verdict, "proxy": r.proxy, "label": r.label,
           "exit_code": r.exit_code}
    row.update(_rates(r.data))
    row["report"] = r.html_path
    return row


def audit_many(policies, testbed, out="runs/audit-many", episodes=200, seed=0, address=None,
               cpus_per_audit=1, num_cpus=None, sequential=False, **knobs):
    """Audits every checkpoint folder and ``.onnx`` file in folder ``policies`` (or each path in
    a list) on ``testbed`` as Ray tasks, one per policy; writes each report into
    ``out/NN-NAME/`` and ``out/index.html`` (a table linking them) and ``out/verdicts.csv``,
    atomically. Returns the verdict table as a pandas DataFrame, one row per policy."""
    import pandas as pd

    if isinstance(policies, (str, os.PathLike)):
        folder = os.fspath(policies)
        if not os.path.isdir(folder):
            raise BadPolicyError(f"{folder} is not a folder of checkpoints and .onnx files")
        paths = _policies(folder)
        if not paths:
            raise BadPolicyError(f"{folder} holds no checkpoint folder (model.json) and no .onnx file")
    else:
        paths = [os.fspath(p) for p in policies]
        if not paths:
            raise BadPolicyError("no policies to audit")
    paths = [os.path.abspath(p) for p in paths]
    # The testbed and knobs are checked here, before any task starts.
    _core.describe(testbed, knobs)
    out = os.path.abspath(os.fspath(out))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise MesascopeIOError(f"cannot create output folder {out}: {e}") from None
    outs = [os.path.join(out, f"{i:03d}-{os.path.basename(p.rstrip(os.sep))}") for i, p in enumerate(paths)]
    if sequential:
        rows = [_audit_one(p, testbed, episodes, seed, o, knobs) for p, o in zip(paths, outs)]
    else:
        import ray

        _connect(address, num_cpus)
        task = ray.remote(num_cpus=cpus_per_audit)(_audit_one)
        rows = ray.get([task.remote(p, testbed, episodes, seed, o, knobs) for p, o in zip(paths, outs)])
    df = pd.DataFrame(rows)
    _write_atomic(os.path.join(out, "verdicts.csv"), df.to_csv(index=False))
    _write_atomic(os.path.join(out, "index.html"), _index_html(testbed, rows, out))
    return df


def _index_html(testbed, rows, out):
    body = []
    for r in rows:
        link = os.path.relpath(r["report"], out) if r.get("report") else None
        name = html.escape(os.path.basename(r["policy"].rstrip(os.sep)))
        cell = f'<a href="{html.escape(link)}">{name}</a>' if link else name
        body.append(f"<tr><td>{cell}</td><td>{html.escape(r['label'])}</td><td>{r['exit_code']}</td></tr>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>mesascope audits: "
            f"{html.escape(testbed)}</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;"
            "text-align:left}</style></head><body>"
            f"<h1>Audits on {html.escape(testbed)}</h1><table><tr><th>policy</th><th>verdict</th>"
            f"<th>exit code</th></tr>{''.join(body)}</table></body></html>\n")


# ---------------------------------------------------------------------------------------------
# The command line's Ray front end: `mesascope sweep GRID --ray ADDRESS` and
# `mesascope audit-many DIR --ray ADDRESS` call `main` in a Python child process.


def main(argv=None):
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="mesascope._sweep.main")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("sweep", "audit-many"):
        c = sub.add_parser(name)
        c.add_argument("path")
        c.add_argument("--out", required=True)
        c.add_argument("--address", default="local")
        c.add_argument("--cpus", type=int, default=1)
        c.add_argument("--max-failures", type=int, default=2)
        if name == "sweep":
            c.add_argument("--resume", action="store_true")
        else:
            c.add_argument("--env", required=True)
            c.add_argument("--episodes", type=int, default=200)
            c.add_argument("--seed", type=int, default=0)
            c.add_argument("-k", action="append", default=[])
    a = p.parse_args(argv)
    address = None if a.address == "local" else a.address
    try:
        if a.command == "sweep":
            sweep(a.path, out=a.out, address=address, cpus_per_trial=a.cpus,
                  max_failures=a.max_failures, resume=a.resume)
        else:
            knobs = {}
            for pair in a.k:
                k, _, v = pair.partition("=")
                knobs[k] = float(v)
            audit_many(a.path, a.env, out=a.out, episodes=a.episodes, seed=a.seed,
                       address=address, cpus_per_audit=a.cpus, **knobs)
    except (SettingError, KnobError, BadPolicyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0

