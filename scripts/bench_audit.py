"""Audit time per 1,000 episodes per distribution for a checkpoint (agents/exit-vs-green-7), an
ONNX convolutional policy (about 1.5 MFLOP per observation, built with the `onnx` package:
crates/python/tests/onnx_models.py's `conv_greedy`) and a Python callable, on exit-vs-green.
The first two run the command line (`--bin`, default target/debug/mesascope); the callable runs
through the installed Python package, counting its calls. Figures in docs/audit.md.

    .venv/bin/python scripts/bench_audit.py [--bin PATH] [--episodes 1000] [--skip-python]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "crates", "python", "tests"))


def timed_cli(binary, policy, episodes):
    t0 = time.perf_counter()
    r = subprocess.run(
        [binary, "audit", policy, "--env", "exit-vs-green", "-k", "size=7", "--episodes", str(episodes)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 10, 11, 12, 13):
        raise SystemExit(f"{policy}: exit {r.returncode}\n{r.stderr}")
    verdict = next((l for l in r.stdout.splitlines() if "verdict" in l.lower()), "")
    return seconds, verdict.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "mesascope"))
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--skip-python", action="store_true")
    a = ap.parse_args()

    import onnx
    import onnx_models as m

    with tempfile.TemporaryDirectory() as d:
        conv = os.path.join(d, "conv.onnx")
        onnx.save(m.conv_greedy(m.COLOUR_GREEN, 7, 7), conv)
        print(f"ONNX policy: {m.flops_per_observation(7, 7) / 1e6:.2f} MFLOP per observation")
        for label, policy in [("checkpoint agents/exit-vs-green-7", os.path.join(ROOT, "agents", "exit-vs-green-7")), ("ONNX conv", conv)]:
            s, verdict = timed_cli(a.bin, policy, a.episodes)
            print(f"{label}: {s:.2f} s for {a.episodes} episodes per distribution ({verdict})")

    if not a.skip_python:
        import numpy as np

        import mesascope
        from conftest import seek_green

        calls, states = [0], [0]

        def counted(obs):
            calls[0] += 1
            states[0] += obs.shape[0]
            return seek_green(obs)

        t0 = time.perf_counter()
        r = mesascope.audit(counted, "exit-vs-green", episodes=a.episodes, progress=False, size=7)
        s = time.perf_counter() - t0
        print(f"Python callable (BFS green-seeker in numpy): {s:.2f} s, {calls[0]} calls for {states[0]} states ({r.label})")


if __name__ == "__main__":
    main()
