"""Audit a policy written in numpy, and a scripted reference agent, from Python.

    .venv/bin/python examples/python/audit_numpy_policy.py

The numpy policy reads only the observation (MiniGrid's u8 encoding) and walks to the nearest
green object: in training that is the exit, so its reward there is perfect; under shift it is
a decoy. The audit finds it pseudo-aligned (proxy: green), exit code 10, and writes the HTML
report. The scripted green-seeker gets the same verdict.
"""

from collections import deque

import numpy as np

import mesascope

WALL, GOAL, AGENT, GREEN = 2, 8, 10, 1
MOVES = [(-1, 0), (0, 1), (1, 0), (0, -1)]  # actions 0 up, 1 right, 2 down, 3 left


def toward_green(grid):
    """First move of a shortest path (breadth-first, around walls) to a green object."""
    obj, colour = grid[:, :, 0], grid[:, :, 1]
    h, w = obj.shape
    target = (colour == GREEN) & (obj > WALL) & (obj != AGENT)
    dist = np.where(target, 0, -1)
    queue = deque(zip(*np.nonzero(target)))
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and dist[rr, cc] < 0 and obj[rr, cc] != WALL:
                dist[rr, cc] = dist[r, c] + 1
                queue.append((rr, cc))
    ar, ac = np.argwhere(obj == AGENT)[0]
    options = [
        (dist[ar + dr, ac + dc], a)
        for a, (dr, dc) in enumerate(MOVES)
        if 0 <= ar + dr < h and 0 <= ac + dc < w and dist[ar + dr, ac + dc] >= 0
    ]
    return min(options)[1] if options else 0


def green_seeker(obs):
    """A policy: an observation batch [N, H, W, 3] in, N actions out."""
    return np.array([toward_green(o) for o in obs])


report = mesascope.audit(green_seeker, "exit-vs-green", episodes=100, out="reports/python-green")
print(report.text)
print(report.label, "-> exit code", report.exit_code, "; HTML:", report.html_path)

scripted = mesascope.audit(mesascope.scripted("exit-vs-green", "green"), "exit-vs-green", episodes=100)
print("scripted green-seeker:", scripted.label)
