//! Maze generation shared by the maze testbeds: a perfect maze by randomized depth-first search
//! (recursive backtracker) on the odd cells of an odd-sized grid, then a fraction of the
//! remaining inner walls knocked out so that mazes have loops and more than one route.

use crate::grid::{Cell, Grid, Pos};
use crate::planner::{GoalSpec, Planner, UNREACHABLE};
use crate::rng::Rng;

/// A `size` x `size` maze (size odd, at least 5). `loops` in [0, 1]: the fraction of removable
/// inner walls removed after carving.
pub fn maze(size: usize, loops: f64, rng: &mut Rng) -> Grid {
    debug_assert!(size % 2 == 1 && size >= 5);
    let mut g = Grid::new(size, size, Cell::WALL);
    let cells = (size - 1) / 2; // maze cells per side, at odd coordinates
    let at = |i: usize, j: usize| (2 * i + 1) * size + (2 * j + 1);
    let mut seen = vec![false; cells * cells];
    let start = (rng.below(cells), rng.below(cells));
    let mut stack = Vec::with_capacity(cells * cells);
    stack.push(start);
    seen[start.0 * cells + start.1] = true;
    g.cells[at(start.0, start.1)] = Cell::EMPTY;
    let mut options = Vec::with_capacity(4);
    while let Some(&(i, j)) = stack.last() {
        options.clear();
        if i > 0 && !seen[(i - 1) * cells + j] {
            options.push((i - 1, j));
        }
        if j + 1 < cells && !seen[i * cells + j + 1] {
            options.push((i, j + 1));
        }
        if i + 1 < cells && !seen[(i + 1) * cells + j] {
            options.push((i + 1, j));
        }
        if j > 0 && !seen[i * cells + j - 1] {
            options.push((i, j - 1));
        }
        match rng.pick(&options) {
            Some((ni, nj)) => {
                seen[ni * cells + nj] = true;
                let (a, b) = (at(i, j), at(ni, nj));
                g.cells[b] = Cell::EMPTY;
                g.cells[(a + b) / 2] = Cell::EMPTY;
                stack.push((ni, nj));
            }
            None => {
                stack.pop();
            }
        }
    }
    if loops > 0.0 {
        // Inner walls between two open maze cells, in row-major order (deterministic). Each
        // cell is read before it is knocked out and never after, so no list is needed.
        for r in 1..size - 1 {
            for c in (1..size - 1).filter(|&c| (r + c) % 2 == 1) {
                let p = r * size + c;
                if g.cells[p] == Cell::WALL && rng.chance(loops) {
                    g.cells[p] = Cell::EMPTY;
                }
            }
        }
    }
    g
}

/// Empty interior cells, row-major.
pub fn empty_cells(g: &Grid) -> Vec<Pos> {
    g.find(|c| c == Cell::EMPTY)
        .into_iter()
        .filter(|&p| !g.is_border(p))
        .collect()
}

/// Picks `k` distinct cells from `from` (k <= from.len()).
pub fn distinct(from: &[Pos], k: usize, rng: &mut Rng) -> Vec<Pos> {
    let mut v = from.to_vec();
    // Partial Fisher-Yates: the first k entries.
    for i in 0..k.min(v.len()) {
        let j = i + rng.below(v.len() - i);
        v.swap(i, j);
    }
    v.truncate(k);
    v
}

/// Whether any of `targets` is reachable from `from` without entering `avoid`: the planner's
/// notion (paths through walkable cells other than lava; a target need not be walkable).
/// Level generators call it several times per level, so it searches forward from `from` over a
/// bitset on the stack and stops at the first target, with no allocation for grids up to
/// 1,024 cells (every maze size the knobs allow).
pub fn reachable(g: &Grid, from: Pos, targets: &[Pos], avoid: &[Pos]) -> bool {
    const MAX: usize = 1024;
    let n = g.len();
    if n > MAX {
        return reachable_by_planner(g, from, targets, avoid);
    }
    if targets.contains(&from) {
        return true;
    }
    let passable = |p: Pos| crate::planner::passable(g.cells[p]);
    if from >= n || !passable(from) || avoid.contains(&from) {
        return false;
    }
    let mut seen = [0u64; MAX / 64];
    let mark = |p: Pos, seen: &mut [u64; MAX / 64]| {
        let fresh = seen[p / 64] & (1 << (p % 64)) == 0;
        seen[p / 64] |= 1 << (p % 64);
        fresh
    };
    for &a in avoid {
        if a < n {
            mark(a, &mut seen);
        }
    }
    let mut queue = [0u16; MAX];
    let (mut head, mut tail) = (0, 1);
    queue[0] = from as u16;
    mark(from, &mut seen);
    let w = g.width;
    while head < tail {
        let p = queue[head] as usize;
        head += 1;
        let (r, c) = (p / w, p % w);
        let moves = [
            (r > 0).then(|| p - w),
            (c + 1 < w).then(|| p + 1),
            (r + 1 < g.height).then(|| p + w),
            (c > 0).then(|| p - 1),
        ];
        for q in moves.into_iter().flatten() {
            if targets.contains(&q) {
                return true;
            }
            if passable(q) && mark(q, &mut seen) {
                queue[tail] = q as u16;
                tail += 1;
            }
        }
    }
    false
}

/// [`reachable`] by the planner's backward search from the targets, for grids too large for
/// the stack bitset.
fn reachable_by_planner(g: &Grid, from: Pos, targets: &[Pos], avoid: &[Pos]) -> bool {
    let mut planner = Planner::new(g);
    let mut d = Vec::new();
    planner.distances(
        &GoalSpec {
            targets: targets.to_vec(),
            avoid: avoid.to_vec(),
        },
        &mut d,
    );
    d.get(from).is_some_and(|&x| x != UNREACHABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_maze_is_connected() {
        for seed in 0..50 {
            let mut rng = Rng::new(seed);
            for &(size, loops) in &[(5, 0.0), (9, 0.0), (11, 0.3), (21, 0.1)] {
                let g = maze(size, loops, &mut rng);
                let open = empty_cells(&g);
                assert!(open.len() >= ((size - 1) / 2).pow(2));
                assert!(open.iter().all(|&p| reachable(&g, open[0], &[p], &[])));
                assert!((0..g.len())
                    .filter(|&p| g.is_border(p))
                    .all(|p| g.cells[p] == Cell::WALL));
            }
        }
    }

    #[test]
    fn reachable_agrees_with_the_planner() {
        let mut rng = Rng::new(5);
        for trial in 0..300 {
            let mut g = maze(if trial % 2 == 0 { 7 } else { 11 }, 0.2, &mut rng);
            let open = empty_cells(&g);
            // Some cells blocked by balls, so that some targets cannot be reached.
            for &p in &distinct(&open, 4, &mut rng) {
                g.set(
                    p,
                    Cell::new(crate::grid::Object::Ball, crate::grid::Colour::Red),
                );
            }
            let picks = distinct(&open, 4, &mut rng);
            let (from, targets, avoid) = (picks[0], &picks[1..3], &picks[3..]);
            for (t, a) in [(targets, avoid), (targets, &[][..]), (avoid, targets)] {
                assert_eq!(
                    reachable(&g, from, t, a),
                    reachable_by_planner(&g, from, t, a),
                    "trial {trial}"
                );
            }
        }
    }

    #[test]
    fn loops_add_openings() {
        let a = maze(11, 0.0, &mut Rng::new(3));
        let b = maze(11, 1.0, &mut Rng::new(3));
        assert!(empty_cells(&b).len() > empty_cells(&a).len());
        // A perfect maze on 5x5 cells has exactly 25 cells + 24 passages open.
        assert_eq!(empty_cells(&a).len(), 49);
    }
}
