#!/usr/bin/env python3
"""mesascope-lm and llama.cpp side by side on the same GGUF, back to back, alternating, on one
machine: prompt processing and generation tokens/s (the same 265-token prompt and 128 greedy tokens,
2 threads), load time and peak resident memory, and mesascope's ratios to llama.cpp per round.
Compare the ratios of one run, not absolute figures. Not part of CI.

Set up llama.cpp once, outside the repository (about 10 minutes on 2 cores):
    python3 -m venv ../llama-venv
    CMAKE_ARGS="-DGGML_NATIVE=ON" ../llama-venv/bin/pip install llama-cpp-python
Then, from the repository root:
    python3 scripts/lm_vs_llamacpp.py [MODEL.gguf] [--rounds N] [--llama-python PATH]
It builds `cargo build --release -p mesascope-lm --example lm_speed` first (CARGO_TARGET_DIR is
honoured) and runs the peer script /work/shared/peers/llamacpp_speed.py (or $LLAMACPP_SPEED).

llama.cpp runs with OMP_WAIT_POLICY=PASSIVE unless --omp-wait-policy says otherwise: its OpenMP
threads otherwise spin at every barrier, and on a machine that other work keeps busy a descheduled
thread stalls the other (measured here at load 7 to 8: prompt 19 to 29 tok/s, generation 1.0 to 1.5
tok/s with the default policy, against 86 and 27 passive). mesascope's rayon threads sleep when idle.
On a CPU with AMX, build llama.cpp without it where the kernel does not grant AMX to processes
(SIGILL on `tileloadd`): add `"-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"` and the
same CMAKE_CXX_FLAGS to CMAKE_ARGS.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(
    os.environ.get("MESASCOPE_CACHE", os.path.expanduser("~/.cache/mesascope")),
    "smollm2",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
)
PEER = os.environ.get("LLAMACPP_SPEED", "/work/shared/peers/llamacpp_speed.py")
# llama.cpp's load time: the constructor the peer script calls, with its arguments.
LLAMA_LOAD = (
    "import sys, time\n"
    "from llama_cpp import Llama\n"
    "t = time.perf_counter()\n"
    "Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=2, n_batch=512, verbose=False, seed=0)\n"
    "print(f'load {time.perf_counter() - t:.3f} s')\n"
)


def run(cmd, env=None):
    """Runs `cmd` under /usr/bin/time -v; returns its stdout and peak resident memory in bytes."""
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    return out.stdout, int(peak.group(1)) * 1024 if peak else float("nan")


def best(text):
    m = re.search(r"best: prompt (\d+(?:\.\d+)?) tok/s, generation (\d+(?:\.\d+)?) tok/s", text)
    if not m:
        sys.exit(f"error: no 'best:' line in:\n{text}")
    return float(m.group(1)), float(m.group(2))


def load_seconds(text):
    m = re.search(r"load (\d+(?:\.\d+)?) s", text)
    return float(m.group(1)) if m else float("nan")


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-python", default=os.path.join(ROOT, "..", "llama-venv", "bin", "python"))
    ap.add_argument("--omp-wait-policy", default="PASSIVE", help="llama.cpp's OMP_WAIT_POLICY ('' leaves it unset)")
    args = ap.parse_args()
    if not os.path.isfile(args.model):
        sys.exit(f"error: {args.model} does not exist (scripts/fetch_smollm2.sh fetches SmolLM2)")
    if not os.path.isfile(args.llama_python):
        sys.exit(f"error: {args.llama_python} does not exist; build llama-cpp-python as the docstring says")
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "mesascope-lm", "--example", "lm_speed"],
        cwd=ROOT,
        check=True,
    )
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    lm_speed = os.path.join(target, "release", "examples", "lm_speed")
    size = os.path.getsize(args.model)
    print(f"model {args.model} ({size / 1e6:.1f} MB); {os.cpu_count()} CPUs; {args.rounds} rounds")
    llama_env = dict(os.environ)
    if args.omp_wait_policy:
        llama_env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    print(f"llama.cpp: {args.llama_python}, OMP_WAIT_POLICY={llama_env.get('OMP_WAIT_POLICY', '(unset)')}")
    rows = []
    for r in range(args.rounds):
        load_before = load_average()
        text, llama_peak = run([args.llama_python, PEER, args.model], llama_env)
        llama_pp, llama_tg = best(text)
        llama_load = load_seconds(run([args.llama_python, "-c", LLAMA_LOAD, args.model], llama_env)[0])
        text, ours_peak = run([lm_speed, args.model])
        ours_pp, ours_tg = best(text)
        ours_load = load_seconds(text)
        row = dict(
            load_avg=(load_before + load_average()) / 2,
            llama=(llama_pp, llama_tg, llama_load, llama_peak),
            ours=(ours_pp, ours_tg, ours_load, ours_peak),
        )
        rows.append(row)
        print(
            f"round {r + 1} (load average {row['load_avg']:.1f}): "
            f"llama.cpp prompt {llama_pp:.0f} tok/s, generation {llama_tg:.1f} tok/s, load {llama_load:.2f} s, "
            f"peak {llama_peak / 1e6:.0f} MB | mesascope prompt {ours_pp:.0f} tok/s, generation {ours_tg:.1f} tok/s, "
            f"load {ours_load:.2f} s, peak {ours_peak / 1e6:.0f} MB | ratios prompt {ours_pp / llama_pp:.2f}x, "
            f"generation {ours_tg / llama_tg:.2f}x",
            flush=True,
        )
    med = lambda xs: statistics.median(xs)
    col = lambda who, i: [row[who][i] for row in rows]
    print()
    print(f"| | mesascope | llama.cpp | ratio (median of per-round ratios) | goal |")
    print(f"|---|---|---|---|---|")
    for i, (name, unit, goal) in enumerate(
        [("prompt processing", "tok/s", ">= 0.5x"), ("generation", "tok/s", ">= 0.5x")]
    ):
        ratios = [o / l for o, l in zip(col("ours", i), col("llama", i))]
        print(
            f"| {name} | {min(col('ours', i)):.1f} to {max(col('ours', i)):.1f} {unit} "
            f"| {min(col('llama', i)):.1f} to {max(col('llama', i)):.1f} {unit} "
            f"| {med(ratios):.2f}x ({min(ratios):.2f} to {max(ratios):.2f}) | {goal} |"
        )
    print(
        f"| load | {med(col('ours', 2)):.2f} s | {med(col('llama', 2)):.2f} s | "
        f"{med(col('ours', 2)) / med(col('llama', 2)):.2f}x | < 1 s |"
    )
    print(
        f"| peak resident memory | {med(col('ours', 3)) / 1e6:.0f} MB ({med(col('ours', 3)) / size:.2f}x the file) "
        f"| {med(col('llama', 3)) / 1e6:.0f} MB ({med(col('llama', 3)) / size:.2f}x, Python included) | | <= 1.5x the file |"
    )
    print(f"load average during the runs: {min(r['load_avg'] for r in rows):.1f} to {max(r['load_avg'] for r in rows):.1f}")


if __name__ == "__main__":
    main()
