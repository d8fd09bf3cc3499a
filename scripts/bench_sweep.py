#!/usr/bin/env python3
"""Ray's cost per sweep trial, against calling the library directly (docs/distributed.md).

Runs the same grid three ways, side by side in one process, and prints wall times:
  1. sequential: every cell one after another in this process, no Ray (`sweep(sequential=True)`);
  2. one at a time on Ray: the same cells as Tune trials holding all the node's CPUs each, so
     they run one after another and the difference with 1 is Ray's overhead (Tune's set-up,
     worker start, a report per PPO update, checkpoints copied to storage); a one-cell grid
     beside it separates the fixed cost per sweep from the cost per trial;
  3. in parallel on Ray: one CPU per trial, as many trials at once as the node has CPUs.
Ray starts in-process with --cpus CPUs (its start is timed apart), or joins --address.

    .venv/bin/python scripts/bench_sweep.py                 # the small grid, 2 CPUs
    .venv/bin/python scripts/bench_sweep.py --steps 3000000 --size 11 --episodes 500 --seeds 3
"""

import argparse
import os
import shutil
import tempfile
import time

import mesascope


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the in-process Ray (default 2)")
    ap.add_argument("--address", default=None, help="join this Ray cluster instead")
    ap.add_argument("--testbed", default="exit-vs-green")
    ap.add_argument("--size", type=int, default=5)
    ap.add_argument("--steps", type=int, default=32768)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--shares", default="0,0.2")
    ap.add_argument("--methods", default="none")
    ap.add_argument("--mitigate-steps", type=int, default=32768)
    args = ap.parse_args()
    grid = dict(testbed=args.testbed, knobs={"size": args.size}, seeds=list(range(args.seeds)),
                shares=[float(s) for s in args.shares.split(",")], methods=args.methods.split(","),
                steps=args.steps, mitigate_steps=args.mitigate_steps, episodes=args.episodes)
    cells = len(mesascope.expand_grid(grid))
    root = tempfile.mkdtemp(prefix="bench-sweep-")
    try:
        t = time.monotonic()
        seq = mesascope.sweep(grid, out=os.path.join(root, "seq"), sequential=True)
        sequential = time.monotonic() - t

        import ray

        t = time.monotonic()
        if args.address:
            ray.init(address=args.address, log_to_driver=False)
        else:
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        start = time.monotonic() - t
        cpus = int(ray.cluster_resources().get("CPU", args.cpus))

        # Ray's cost: a fixed part per sweep (Tune's set-up, the first worker's start) and a
        # part per trial, told apart by a one-cell grid beside the whole grid, each trial
        # holding all CPUs so that trials run one after another.
        first = dict(grid, seeds=[0], shares=[grid["shares"][0]], methods=[grid["methods"][0]])
        t = time.monotonic()
        one_cell = mesascope.sweep(first, out=os.path.join(root, "one-cell"), cpus_per_trial=cpus)
        single = time.monotonic() - t
        t = time.monotonic()
        one = mesascope.sweep(grid, out=os.path.join(root, "one"), cpus_per_trial=cpus)
        one_at_a_time = time.monotonic() - t
        t = time.monotonic()
        par = mesascope.sweep(grid, out=os.path.join(root, "par"), cpus_per_trial=1)
        parallel = time.monotonic() - t

        same = all(seq[c].equals(other[c]) for c in ("verdict", "exit_code") for other in (one, par))
        work = seq["seconds"].sum()
        per_trial = ((one_at_a_time - single) - (one["seconds"].sum() - one_cell["seconds"].sum())) / max(cells - 1, 1)
        print(f"grid: {cells} trials ({args.testbed} size {args.size}, {args.steps} steps, "
              f"{args.episodes} audit episodes, methods {args.methods}); Ray {ray.__version__}, {cpus} CPUs; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"library work in the trials (sum of their seconds, sequential): {work:.2f} s")
        print(f"sequential, no Ray:                 {sequential:7.2f} s  ({sequential / cells:.2f} s per trial)")
        print(f"Ray start (ray.init):               {start:7.2f} s  (once per session)")
        print(f"Ray, a one-trial grid:              {single:7.2f} s  "
              f"(fixed cost per sweep {single - one_cell['seconds'].sum():.2f} s)")
        print(f"Ray, the grid one trial at a time:  {one_at_a_time:7.2f} s  "
              f"(overhead {(one_at_a_time - sequential) / cells:+.2f} s per trial on average, "
              f"{per_trial:+.2f} s per trial beyond the first)")
        print(f"Ray, {cpus} trials at once:             {parallel:7.2f} s  "
              f"(speed-up over sequential {sequential / parallel:.2f}x)")
        print(f"same verdicts and exit codes in all runs: {same}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
