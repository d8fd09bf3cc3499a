import math

import numpy as np
import pytest

import mesascope


def test_distances_and_optimal_actions_follow_shortest_paths():
    env = mesascope.make("exit-vs-green", split="shift:green", seed=2)
    env.reset()
    for goal in ["intended", "green"]:
        d = env.distances(goal)
        r, c = env.core.agent
        start = d[r, c]
        assert start > 0
        steps = 0
        while True:
            acts = env.optimal_actions(goal)
            assert acts, f"no optimal action toward {goal}"
            q = env.q_values(goal)
            assert q[acts[0]] == q.max() == -d[env.core.agent]
            _, _, te, tr, info = env.step(acts[0])
            steps += 1
            if te or tr:
                break
        assert steps == start
        assert info["outcome"] == ("intended" if goal == "intended" else "proxy:green")
        env.reset(seed=2)
    with pytest.raises(ValueError, match="unknown goal"):
        env.distances("blue")


@pytest.mark.parametrize("testbed", mesascope.testbed_names())
def test_scripted_agents_reach_their_goals(testbed):
    d = mesascope.describe(testbed)
    agent = mesascope.scripted(testbed, "intended")
    env = mesascope.make(testbed, seed=4)
    env.reset()
    for _ in range(500):
        p = agent.probs(env)
        assert p.shape == (4,) and math.isclose(p.sum(), 1, rel_tol=1e-5)
        _, _, te, tr, info = env.step(int(agent.act(env)))
        if te or tr:
            break
    assert info["outcome"] == "intended", (testbed, info)
    v = mesascope.make_vec(testbed, 6, split=d["splits"][1])
    v.reset()
    probs = agent.probs(v)
    assert probs.shape == (6, 4) and np.allclose(probs.sum(axis=1), 1)
    acts = agent.act(v, rng=np.random.default_rng(0))
    assert acts.shape == (6,) and np.all(probs[np.arange(6), acts] > 0)


def test_unknown_scripted_agent_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown agent 'blue'.*intended, green"):
        mesascope.scripted("exit-vs-green", "blue")
    with pytest.raises(TypeError, match="mesascope environments"):
        mesascope.scripted("exit-vs-green", "green").probs(object())
