"""Shared helpers: numpy policies that read only the observation (MiniGrid's u8 encoding)."""

from collections import deque

import numpy as np
import pytest

WALL, BALL, GOAL, LAVA, AGENT = 2, 6, 8, 9, 10
GREEN = 1
# Row and column change of actions 0 up, 1 right, 2 down, 3 left.
MOVES = [(-1, 0), (0, 1), (1, 0), (0, -1)]


def bfs_action(grid, is_target, avoid=None):
    """The first move of a shortest path from the agent to a cell where ``is_target`` holds,
    around walls, lava, balls (exit-vs-green's obstacles) and cells where ``avoid`` holds, on one
    u8 observation ``[H, W, 3]``; 0 when no target is reachable."""
    h, w, _ = grid.shape
    obj = grid[:, :, 0]
    blocked = (obj == WALL) | (obj == LAVA) | ((obj == BALL) & ~is_target(grid))
    if avoid is not None:
        blocked |= avoid(grid) & ~is_target(grid)
    dist = np.full((h, w), -1)
    queue = deque()
    for r, c in zip(*np.nonzero(is_target(grid))):
        dist[r, c] = 0
        queue.append((r, c))
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and dist[rr, cc] < 0 and not blocked[rr, cc]:
                dist[rr, cc] = dist[r, c] + 1
                queue.append((rr, cc))
    ar, ac = map(int, np.argwhere(obj == AGENT)[0])
    best, action = None, 0
    for a, (dr, dc) in enumerate(MOVES):
        rr, cc = ar + dr, ac + dc
        if 0 <= rr < h and 0 <= cc < w and dist[rr, cc] >= 0 and (best is None or dist[rr, cc] < best):
            best, action = dist[rr, cc], a
    return action


def _green(g):
    return (g[:, :, 1] == GREEN) & (g[:, :, 0] != AGENT) & (g[:, :, 0] > WALL)


def seek_exit(obs):
    """Walks to the exit (the goal object), whatever its colour, around green decoys."""
    exit_ = lambda g: g[:, :, 0] == GOAL
    return np.array([bfs_action(o, exit_, avoid=_green) for o in obs], dtype=np.int64)


def seek_green(obs):
    """Walks to the nearest green object: the exit in training, the decoy under shift."""
    green = _green
    return np.array([bfs_action(o, green) for o in obs], dtype=np.int64)


@pytest.fixture
def policies():
    return {"exit": seek_exit, "green": seek_green}
