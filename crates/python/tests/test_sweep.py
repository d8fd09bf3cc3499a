"""Sweeps on Ray Tune (docs/distributed.md): the same grid gives the same figures in-process and
on a Ray head, a killed trial worker is retried from its checkpoint, an interrupted sweep
restored runs only its unfinished trials, and bad grids are refused before any trial."""

import glob
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest

# Ray reads these when imported. Without the first it joins 127.0.0.1 through the machine's
# address; the others give the test's head and its clients a token of their own.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
ray = pytest.importorskip("ray", reason="mesascope.sweep runs on Ray Tune: pip install 'ray[tune]'")
tune = pytest.importorskip("ray.tune", reason="mesascope.sweep runs on Ray Tune: pip install 'ray[tune]'")
pytest.importorskip("pandas", reason="mesascope.sweep returns a pandas DataFrame")

import mesascope  # noqa: E402
from mesascope._sweep import FIGURES  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
# 2 shares x 2 seeds on 5x5 levels: 4 PPO updates of 8,192 steps and a 40-episode audit each.
GRID = dict(testbed="exit-vs-green", knobs={"size": 5}, seeds=[0, 1], shares=[0.0, 0.2],
            steps=32768, episodes=40)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def figures(df):
    """The rows' figures (grid values, verdicts, steps, rates with intervals) in grid order,
    without what may differ between runs of the same cell (seconds, paths, restarts)."""
    keep = [c for c in df.columns
            if c in FIGURES or "/" in c or c in ("testbed", "size", "seed", "share", "method")]
    rows = df[keep].to_dict("records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs and the token above, stopped at the end, also when a
    test or the start fails."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    try:
        subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                        f"--port={port}", "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small grid run cell after cell in this process, without Ray."""
    return mesascope.sweep(GRID, out=tmp_path_factory.mktemp("reference"), sequential=True)


def test_bad_grids_are_refused_before_any_trial(tmp_path):
    out = tmp_path / "out"
    dead = f"127.0.0.1:{free_port()}"  # a grid error must come before any attempt to connect
    cases = [
        (dict(GRID, testbed="exit-vs-blue"), mesascope.KnobError, "grid cell testbed=exit-vs-blue .*unknown testbed"),
        (dict(GRID, knobs={"size": [5, 99]}), mesascope.KnobError, "grid cell .*size=99 .*out of range"),
        (dict(GRID, knobs={"sizes": 5}), mesascope.KnobError, "sizes=5 .*unknown knob 'sizes'"),
        (dict(GRID, methods=["none", "magic"]), mesascope.SettingError, "method=magic: unknown method"),
        (dict(GRID, shares=[0.1, 1.5]), mesascope.KnobError, "share=1.5 .*decorrelate = 1.5 is out of range"),
        (dict(GRID, seeds=[0, -1]), mesascope.SettingError, '"seeds": -1'),
        (dict(GRID, steps=0), mesascope.SettingError, '"steps": 0'),
        (dict(GRID, shares=[]), mesascope.SettingError, '"shares": an empty list'),
        (dict(GRID, colour="green"), mesascope.SettingError, "unknown key.*colour"),
        (dict(GRID, methods=["diversify"], shares=[0.2], source=str(tmp_path)), mesascope.BadPolicyError, "source"),
    ]
    for grid, cls, match in cases:
        with pytest.raises(cls, match=match):
            mesascope.sweep(grid, out=out, address=dead)
    assert not out.exists()
    # A TOML grid that does not parse names its line; one that does is the same grid as the dict.
    bad = tmp_path / "bad.toml"
    bad.write_text('testbed = "exit-vs-green"\nseeds = [0, 1\nshares = [0.1]\n')
    with pytest.raises(mesascope.SettingError, match=r"bad.toml does not parse: .*line 3"):
        mesascope.sweep(bad, out=out, address=dead)
    good = tmp_path / "good.toml"
    good.write_text('testbed = "exit-vs-green"\nseeds = [0, 1]\nshares = [0.0, 0.2]\nsteps = 32768\n'
                    'episodes = 40\n[knobs]\nsize = 5\n')
    assert mesascope.expand_grid(good) == mesascope.expand_grid(GRID)
    # Share 0 with a method is the control (the same fine-tuning, no decorrelated level).
    assert len(mesascope.expand_grid(dict(GRID, methods=["diversify"]))) == 4
    assert len(mesascope.expand_grid(os.path.join(ROOT, "examples", "sweep-small.toml"))) == 8
    # An address where no Ray head answers is an error at once.
    start = time.monotonic()
    with pytest.raises(mesascope.SettingError, match="no Ray head answers"):
        mesascope.sweep(GRID, out=out, address=dead)
    assert time.monotonic() - start < 10


def test_a_grid_on_a_ray_head_gives_the_in_process_figures(head, reference, tmp_path):
    df = mesascope.sweep(GRID, out=tmp_path, address=head)
    assert len(df) == 4 and df["verdict"].notna().all()
    assert figures(df) == figures(reference)
    assert list(df["trained_steps"]) == [32768] * 4
    # The table was written (atomically) beside the trials.
    assert json.loads((tmp_path / "sweep.json").read_text())[0]["seed"] == 0
    for row in df.to_dict("records"):
        # Each trial's checkpoint holds the model and the audit whose figures are its row's.
        ck = row["checkpoint"]
        audit = json.loads(open(os.path.join(ck, "audit.json")).read())
        assert audit["verdict"]["exit_code"] == row["exit_code"]
        assert os.path.isfile(os.path.join(ck, "model", "model.safetensors"))
        # Tune saw a result at every PPO update (4), then each stage's end.
        trial = os.path.dirname(ck)
        results = [json.loads(line) for line in open(os.path.join(trial, "result.json"))]
        assert [r["stage"] for r in results] == ["training"] * 4 + ["trained", "done"]
        assert [r["env_steps"] for r in results[:4]] == [8192, 16384, 24576, 32768]


def cli():
    """The `mesascope` binary `cargo test` built (scripts/test.sh runs it first)."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    exe = os.path.join(target, "debug", "mesascope")
    assert os.path.isfile(exe), f"{exe} is missing: build the command line first (cargo build)"
    return exe


def test_the_command_line_runs_the_grid_in_its_process_and_on_ray_with_the_same_figures(
        head, reference, tmp_path):
    import pandas as pd

    grid = tmp_path / "grid.toml"
    grid.write_text('testbed = "exit-vs-green"\nseeds = [0, 1]\nshares = [0.0, 0.2]\n'
                    'steps = 32768\nepisodes = 40\n[knobs]\nsize = 5\n')
    # In the command line's own process: the library's grid runner, not this package's.
    out = tmp_path / "rust"
    r = subprocess.run([cli(), "sweep", str(grid), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "sweep.json").read_text())
    assert figures(pd.DataFrame(rows)) == figures(reference)
    assert "<polyline" in (out / "sweep.html").read_text()
    # With --ray: handed to this package's Ray code on the test's head.
    out = tmp_path / "ray"
    env = dict(os.environ, MESASCOPE_PYTHON=sys.executable)
    r = subprocess.run([cli(), "sweep", str(grid), "--out", str(out), "--ray", head, "--quiet"],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "sweep.json").read_text())
    assert figures(pd.DataFrame(rows)) == figures(reference)
    assert "<polyline" in (out / "sweep.html").read_text() and "none: proxy, seed 1" in r.stdout + (out / "sweep.html").read_text()


class KillWorkers(tune.Callback):
    """Kills a trial's worker process by PID, once per trial: the plain training run at its
    first update after Tune registered a training checkpoint, the mitigated one while it
    fine-tunes (its training stage's checkpoint registered before)."""

    def __init__(self):
        self.killed, self.armed = {}, set()

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trial.last_result.get("stage") == "training":
            self.armed.add(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        method = trial.config["cell"]["method"]
        if method in self.killed:
            return
        stage = result.get("stage")
        if (method == "none" and stage == "training" and trial.trial_id in self.armed) or \
                (method == "diversify" and stage == "mitigating"):
            self.killed[method] = (stage, result["pid"])
            os.kill(result["pid"], signal.SIGKILL)


def test_a_killed_worker_is_retried_from_its_checkpoint(head, tmp_path):
    grid = dict(GRID, seeds=[0], shares=[0.2], methods=["none", "diversify"], steps=49152,
                mitigate_steps=32768, checkpoint_every=2)
    killer = KillWorkers()
    df = mesascope.sweep(grid, out=tmp_path / "killed", address=head, callbacks=[killer],
                         max_failures=2)
    assert set(killer.killed) == {"none", "diversify"}
    assert df["verdict"].notna().all() and list(df["restarts"]) == [1, 1]
    plain, mitigated = df.to_dict("records")
    # Training resumed (resume=True) from the checkpoint of update 2, and ran to its end.
    assert plain["resumed_from"].startswith("training@") and plain["trained_steps"] == 49152
    assert 0 < int(plain["resumed_from"].split("@")[1]) < 49152
    # Its metrics hold each update once: those after the checkpoint were rerun, not repeated.
    lines = open(os.path.join(plain["checkpoint"], "model", "metrics.jsonl")).read().splitlines()
    assert [json.loads(line)["update"] for line in lines] == [1, 2, 3, 4, 5, 6]
    # Killed after its training stage: resumed from that stage's checkpoint, its figures are an
    # uninterrupted run's.
    assert mitigated["resumed_from"] == "trained@49152"
    uninterrupted = mesascope.sweep(dict(grid, methods=["diversify"]), out=tmp_path / "ref",
                                    sequential=True)
    assert figures(df.iloc[[1]]) == figures(uninterrupted)
    # The resumed run's figures are those of its final checkpoint: audited again here, from the
    # files Tune kept, they come out the same (no half-written file was read or kept).
    for row in (plain, mitigated):
        again = mesascope.audit(os.path.join(row["checkpoint"], "model"), "exit-vs-green",
                                episodes=40, seed=0, size=5)
        assert again.exit_code == row["exit_code"]
        rates = {d: v["outcomes"] for d, v in again.distributions.items()}
        assert rates["shift:green"]["proxy:green"] == row["shift:green/proxy:green"]
        assert rates["train"]["intended"] == row["train/intended"]
    assert not glob.glob(str(tmp_path / "killed" / "**" / ".tmp-*"), recursive=True)


DRIVER = """
import json, sys, mesascope
mesascope.sweep(json.loads(sys.argv[1]), out=sys.argv[2], address=sys.argv[3], cpus_per_trial=2)
"""


def test_an_interrupted_sweep_restored_runs_only_its_unfinished_trials(head, reference, tmp_path):
    out = tmp_path / "interrupted"
    # One trial at a time (2 CPUs each), so the sweep is stopped with trials still to run.
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(GRID), str(out), head],
                              stdout=log, stderr=subprocess.STDOUT)
    done = lambda: glob.glob(str(out / "sweep" / "trial-*" / "checkpoint_*" / "row.json"))
    # A second trial's first checkpoint: the first trial's last one was registered by then (Tune
    # stops a trial, freeing its worker for the next, only after processing its save).
    started = lambda: {os.path.dirname(p) for p in glob.glob(str(out / "sweep" / "trial-*" / "checkpoint_*"))}
    try:
        deadline = time.monotonic() + 120
        while not (done() and len(started()) >= 2) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves the sweep's state and stops
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    log.close()
    # The interrupted sweep's own table says which trials Tune recorded as finished.
    assert (out / "sweep.json").exists(), (tmp_path / "driver.log").read_text()[-3000:]
    table = json.loads((out / "sweep.json").read_text())
    finished = [r for r in table if r.get("verdict")]
    assert 1 <= len(finished) < 4
    stamp = lambda r: os.stat(os.path.join(r["checkpoint"], "row.json")).st_mtime_ns
    stamps = {r["checkpoint"]: stamp(r) for r in finished}

    df = mesascope.sweep(GRID, out=out, address=head, cpus_per_trial=2, resume=True)
    assert len(df) == 4 and df["verdict"].notna().all()
    assert figures(df) == figures(reference)
    # The trials that had finished were not run again: the same last checkpoint, untouched,
    # and the same row; the others ran now.
    rows = df.to_dict("records")
    for before in finished:
        (now,) = [r for r in rows if r["checkpoint"] == before["checkpoint"]]
        assert stamp(now) == stamps[before["checkpoint"]]
        assert now["seconds"] == before["seconds"]
    assert len([r for r in rows if r["checkpoint"] not in stamps]) == 4 - len(finished)


def test_audit_many_maps_a_folder_of_checkpoints_over_ray(head, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("exit-vs-green", "exit-vs-green-decorrelated"):
        os.symlink(os.path.abspath(os.path.join(ROOT, "agents", name)), policies / name)
    (policies / "notes.txt").write_text("not a policy")
    df = mesascope.audit_many(policies, "exit-vs-green", out=tmp_path / "out", episodes=30,
                              address=head)
    assert [os.path.basename(p) for p in df["policy"]] == ["exit-vs-green", "exit-vs-green-decorrelated"]
    assert df["verdict"][0] == "pseudo-aligned" and df["exit_code"][0] == 10
    # The same audits in this process give the same table.
    seq = mesascope.audit_many(policies, "exit-vs-green", out=tmp_path / "seq", episodes=30,
                               sequential=True)
    same = lambda d: figures(d.drop(columns=["policy", "report"]))
    assert same(df) == same(seq)
    # One index links every report.
    index = (tmp_path / "out" / "index.html").read_text()
    for report in df["report"]:
        assert os.path.isfile(report)
        assert os.path.relpath(report, tmp_path / "out") in index
    with pytest.raises(mesascope.BadPolicyError, match="holds no checkpoint"):
        mesascope.audit_many(tmp_path / "out", "exit-vs-green", address=head)
    with pytest.raises(mesascope.KnobError, match="exit-vs-blue"):
        mesascope.audit_many(policies, "exit-vs-blue", address=head)
