"""The library's pipelines from Python: the same calls, files and figures as the command line."""

import json
import os

import pytest

import mesascope

AGENTS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "agents")


def test_train_writes_a_checkpoint_and_returns_its_figures(tmp_path):
    calls = []
    r = mesascope.train("exit-vs-green", steps=60_000, out=tmp_path / "run", eval_episodes=20,
                        progress=lambda done, total, message: calls.append((done, total)),
                        size=5)
    assert r["steps"] >= 60_000 and r["trained"] == r["steps"]
    assert os.path.isfile(tmp_path / "run" / "model.safetensors")
    # The figures are the ones the files hold.
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(r["curve"])
    assert json.loads(lines[-1])["steps"] == r["curve"][-1]["steps"] == r["steps"]
    evals = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert evals == r["evaluation"]
    assert "trained planner on exit-vs-green" in str(r)
    # Progress came once per update, counting up to the total.
    counted = [c for c in calls if c[0] is not None]
    assert counted and counted[-1] == (60_000, 60_000)  # the position stops at the total
    # The same seed gives the same run.
    again = mesascope.train("exit-vs-green", steps=60_000, out=tmp_path / "again", eval_episodes=20,
                            size=5)
    assert again["curve"] == r["curve"] and again["evaluation"] == r["evaluation"]


def test_mitigate_and_monitor_a_pretrained_agent(tmp_path):
    agent = os.path.join(AGENTS, "exit-vs-green")
    m = mesascope.mitigate(agent, "exit-vs-green", steps=100_000, episodes=30, out=tmp_path / "m")
    assert m["before"]["verdict"]["verdict"]["kind"] == "pseudo-aligned"
    assert m["exit_code"] == m["after"]["verdict"]["exit_code"]
    assert m["extra_steps"] >= 100_000
    assert json.loads((tmp_path / "m" / "audit.json").read_text()) == m["after"]
    mon = mesascope.monitor(agent, "exit-vs-green", episodes=30)
    assert [row["distribution"] for row in mon["rows"]] == ["train", "shift:green"]
    assert all(row["episodes"] == 30 for row in mon["rows"])
    assert "alarm before proxy" in str(mon)


def test_bad_input_raises_a_specific_class(tmp_path):
    with pytest.raises(mesascope.KnobError, match="exit-vs-blue"):
        mesascope.train("exit-vs-blue", out=tmp_path / "x")
    with pytest.raises(mesascope.KnobError, match="size"):
        mesascope.train("exit-vs-green", out=tmp_path / "x", size=99)
    with pytest.raises(mesascope.SettingError, match="`resume`"):
        mesascope.train("exit-vs-green", out=tmp_path / "none", resume=True)
    with pytest.raises(mesascope.BadPolicyError, match="no/such"):
        mesascope.mitigate("no/such", "exit-vs-green")
    with pytest.raises(mesascope.SettingError, match="`method`"):
        mesascope.mitigate(os.path.join(AGENTS, "exit-vs-green"), "exit-vs-green", method="magic")
    with pytest.raises(mesascope.BadPolicyError):
        mesascope.monitor("scripted:nobody", "exit-vs-green")
    with pytest.raises(mesascope.LevelError):
        mesascope.audit("scripted:intended", "exit-vs-green", levels=tmp_path / "no-levels")
    # Specific classes are still ValueErrors; an unwritable output is an OSError.
    assert issubclass(mesascope.KnobError, ValueError)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(mesascope.MesascopeIOError):
        mesascope.train("exit-vs-green", steps=10_000, out=blocker / "run", size=5)
    assert issubclass(mesascope.MesascopeIOError, OSError)
