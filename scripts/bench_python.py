"""Python-side speed: the vector environment's steps/s with numpy observations beside the Rust
batch engine's own figure (same build, same testbed, random actions, all cores), and ONNX
inference time per batch. Run after building the package (scripts/py-dev.sh):

    .venv/bin/python scripts/bench_python.py [--envs 1024] [--seconds 3]

Build with `--release` (maturin build --release) for figures to quote; the dev wheel optimizes
the engine crates too, but not tract.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import mesascope

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crates", "python", "tests"))


def python_rate(testbed, n, obs, seconds):
    v = mesascope.make_vec(testbed, n, obs=obs)
    v.reset()
    rng = np.random.default_rng(0)
    table = rng.integers(0, v.single_action_space.n, size=(64, n), dtype=np.uint8)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for t in range(64):
            v.step(table[t])
        steps += 64 * n
    return steps / (time.perf_counter() - t0)


def onnx_batch_seconds(testbed, n, reps=20):
    import onnx
    import onnx_models

    d = mesascope.describe(testbed)
    model = onnx_models.greedy(onnx_models.COLOUR_GREEN, d["height"], d["width"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "greedy.onnx")
        onnx.save(model, path)
        policy = mesascope.load_onnx(path, testbed)
    obs, _ = mesascope.make_vec(testbed, n, obs="planes").reset()
    policy(obs)  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        policy(obs)
    return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testbed", default="exit-vs-green")
    ap.add_argument("--envs", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=3.0, help="per side and observation kind")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"{a.testbed}, {a.envs} environments, {os.cpu_count()} cores")
    for obs in ["u8", "planes"]:
        # Alternating rounds, best of each: other work on the machine then slows both sides alike
        # instead of whichever ran during it.
        rust = py = 0.0
        for _ in range(a.rounds):
            rust = max(rust, mesascope._core.rust_step_rate(a.testbed, a.envs, obs, a.seconds / a.rounds))
            py = max(py, python_rate(a.testbed, a.envs, obs, a.seconds / a.rounds))
        print(f"  {obs:6}  Rust VecEnv {rust / 1e6:6.2f} M steps/s   Python make_vec {py / 1e6:6.2f} M steps/s   ratio {py / rust:.2f}")
    s = onnx_batch_seconds(a.testbed, a.envs)
    print(f"  ONNX (tract) greedy Flatten+Gemm policy, batch of {a.envs} planes: {s * 1e3:.2f} ms per batch ({a.envs / s / 1e6:.2f} M observations/s)")


if __name__ == "__main__":
    main()
