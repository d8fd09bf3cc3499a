import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mesascope


@pytest.mark.parametrize("testbed", mesascope.testbed_names())
@pytest.mark.parametrize("obs", ["u8", "planes"])
def test_every_testbed_passes_gymnasiums_checker(testbed, obs):
    env = mesascope.make(testbed, obs=obs)
    check_env(env, skip_render_check=True)
    o, _ = env.reset(seed=3)
    assert env.observation_space.contains(o)
    if obs == "planes":
        # One-hot: exactly one object plane per cell.
        assert np.all(o[:11].sum(axis=0) == 1)


def test_same_seed_same_episodes_and_knobs_change_the_level():
    def rollout(**kw):
        env = mesascope.make("corner-cheese", seed=5, **kw)
        out = [env.reset()[0]]
        for t in range(40):
            o, r, te, tr, info = env.step(t % 4)
            out.append(o)
            if te or tr:
                out.append(env.reset()[0])
        return np.stack([x for x in out if x.shape == out[0].shape])

    a, b = rollout(), rollout()
    assert np.array_equal(a, b)
    big = mesascope.make("corner-cheese", size=15, region=3).reset()[0]
    assert big.shape == (15, 15, 3)


def test_episodes_end_with_an_outcome_in_info():
    env = mesascope.make("exit-vs-green", split="shift:green", seed=7)
    env.reset()
    agent = mesascope.scripted("exit-vs-green", "green")
    for _ in range(200):
        _, reward, te, tr, info = env.step(int(agent.act(env)))
        if te or tr:
            break
    assert te and info["outcome"] == "proxy:green"
    assert reward == 0.0 and info["hidden"] == 0.0
    with pytest.raises(ValueError, match="after the episode ended"):
        env.step(0)


def test_gymnasium_registry_and_render():
    env = gymnasium.make("mesascope/exit-vs-green-v0", render_mode="ansi")
    env.reset(seed=1)
    text = env.render()
    assert isinstance(text, str) and len(text.splitlines()) == env.unwrapped.core.obs_shape[0]


def test_bad_input_is_a_value_error_naming_the_problem():
    with pytest.raises(ValueError, match="unknown testbed 'exit-vs-blue'"):
        mesascope.make("exit-vs-blue")
    with pytest.raises(ValueError, match="unknown split 'shift:blue'"):
        mesascope.make("exit-vs-green", split="shift:blue")
    with pytest.raises(ValueError, match="unknown knob 'colour'"):
        mesascope.make("exit-vs-green", colour=1)
    with pytest.raises(ValueError, match="decorrelate.*out of range"):
        mesascope.make("exit-vs-green", decorrelate=2.0)
    with pytest.raises(ValueError, match="unknown observation kind 'rgb'"):
        mesascope.make("exit-vs-green", obs="rgb")
    env = mesascope.make("exit-vs-green")
    env.reset()
    with pytest.raises(ValueError, match="action 4 is out of range"):
        env.step(4)
    with pytest.raises(ValueError, match="an action is an integer"):
        env.step(1.5)


def test_describe_lists_goals_and_the_plane_order():
    d = mesascope.describe("exit-vs-green")
    assert d["goals"] == ["exit", "green"] and d["splits"] == ["train", "shift:green"]
    assert d["n_actions"] == 4 and len(d["plane_names"]) == 20
    assert d["plane_names"][0] == "object:unseen"
