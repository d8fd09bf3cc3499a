#!/usr/bin/env python3
"""Runs mesascope's engine benchmark and the peers' (../shared/peers) in one go, on the same
machine, and prints throughput ratios: compare ratios from one run, not absolute figures.

Set up the peers once (outside the project):
    python3 -m venv ../peer-venv && ../peer-venv/bin/pip install minigrid navix rlax
Then, from the repository root, after `cargo build --release -p mesascope-cli`:
    python3 scripts/compare_peers.py
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "..", "shared", "peers")
VENV_PY = os.path.join(ROOT, "..", "peer-venv", "bin", "python")
MESASCOPE = os.path.join(ROOT, "target", "release", "mesascope")


def run(cmd):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


def rates(text):
    """(label, steps/s) pairs from the peers' printed lines."""
    found = []
    for line in text.splitlines():
        m = re.match(r"(\S+)(.*?):\s*([\d,]+)", line)
        if m:
            found.append((m.group(1) + m.group(2), float(m.group(3).replace(",", ""))))
    return found


def main():
    for path, what in [(MESASCOPE, "cargo build --release -p mesascope-cli"), (VENV_PY, "the peer venv (see above)")]:
        if not os.path.exists(path):
            sys.exit(f"error: {path} not found: run {what} first")
    ours = json.loads(run([MESASCOPE, "bench", "--json", "--testbed", "exit-vs-green", "--seconds", "2"]))
    tb = ours["testbeds"][0]
    single = tb["u8"]["steps_per_sec"]
    batched = tb["batched_u8"]["steps_per_sec"]
    minigrid = rates(run([VENV_PY, os.path.join(PEERS, "minigrid_bench.py")]))
    navix = rates(run([VENV_PY, os.path.join(PEERS, "navix_bench.py")]))
    print(f"mesascope exit-vs-green 7x7 maze, u8 observation: {single:,.0f} steps/s on one thread, "
          f"{batched:,.0f} on all {ours['threads']} threads ({tb['batched_u8']['envs']} envs)")
    print(f"{'peer':<50} {'steps/s':>14} {'mesascope / peer':>18}")
    for label, r in minigrid:
        print(f"{label:<50} {r:>14,.0f} {single / r:>17,.0f}x  (one thread each)")
    for label, r in navix:
        mine = batched if "1024" in label else single
        print(f"{label:<50} {r:>14,.0f} {mine / r:>17,.1f}x")


if __name__ == "__main__":
    main()
