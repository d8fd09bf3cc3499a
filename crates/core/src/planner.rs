//! The exact planner: shortest paths to any set of goal cells, Q-values, and Boltzmann
//! (soft-optimal) action distributions.
//!
//! Moves are deterministic and cost one step each, so breadth-first search from the goal cells
//! computes exactly what value iteration would: the optimal steps-to-go `d(s)`, and
//! `V(s) = gamma^d(s)` for any discount. Q-values are negative steps-to-go,
//! `Q(s, a) = -(1 + d(s'))` with `s' = s` when the move is blocked, so a Boltzmann policy
//! `pi(a|s) ~ exp(beta * Q(s, a))` is invariant to the time limit and comparable across levels.

use crate::grid::{Cell, Grid, Object, Pos, N_MOVES};

/// Steps-to-go for a cell that cannot reach the goal (or is avoided).
pub const UNREACHABLE: u16 = u16::MAX;

/// What a goal aims at right now: target cells, and cells its pursuer never enters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoalSpec {
    pub targets: Vec<Pos>,
    pub avoid: Vec<Pos>,
}

impl GoalSpec {
    pub fn clear(&mut self) {
        self.targets.clear();
        self.avoid.clear();
    }
}

/// Planner tables for one level: which cells can be walked through (walls, balls, closed doors
/// block; lava is never planned through).
#[derive(Clone, Debug)]
pub struct Planner {
    width: usize,
    height: usize,
    /// The agent can stand here (lava included: entering it is a move, a fatal one).
    walkable: Vec<bool>,
    /// Walkable and not lava: what paths go through.
    passable: Vec<bool>,
    blocked: Vec<bool>,
    queue: Vec<u32>,
}

/// Whether paths go through a cell: the agent can stand there and it is not lava.
pub fn passable(c: Cell) -> bool {
    c.walkable() && c.object != Object::Lava as u8
}

impl Planner {
    pub fn new(grid: &Grid) -> Planner {
        let walkable: Vec<bool> = grid.cells.iter().map(|c| c.walkable()).collect();
        let passable = grid.cells.iter().map(|&c| passable(c)).collect();
        Planner {
            width: grid.width,
            height: grid.height,
            walkable,
            passable,
            blocked: vec![false; grid.len()],
            queue: Vec::with_capacity(grid.len()),
        }
    }

    pub fn cells(&self) -> usize {
        self.passable.len()
    }

    /// The cell in direction `m` from `p`, if inside the grid.
    #[inline]
    fn neighbour(&self, p: Pos, m: usize) -> Option<Pos> {
        let (r, c) = (p / self.width, p % self.width);
        match m {
            0 if r > 0 => Some(p - self.width),
            1 if c + 1 < self.width => Some(p + 1),
            2 if r + 1 < self.height => Some(p + self.width),
            3 if c > 0 => Some(p - 1),
            _ => None,
        }
    }

    /// Optimal steps-to-go to the nearest target for every cell, `UNREACHABLE` where none can be
    /// reached without entering an avoided cell.
    pub fn distances(&mut self, spec: &GoalSpec, dist: &mut Vec<u16>) {
        let n = self.passable.len();
        dist.clear();
        dist.resize(n, UNREACHABLE);
        for &a in &spec.avoid {
            if a < n {
                self.blocked[a] = true;
            }
        }
        self.queue.clear();
        for &t in &spec.targets {
            if t < n && dist[t] != 0 {
                dist[t] = 0;
                self.queue.push(t as u32);
            }
        }
        let mut head = 0;
        while head < self.queue.len() {
            let p = self.queue[head] as usize;
            head += 1;
            let d = dist[p] + 1;
            for m in 0..N_MOVES {
                if let Some(q) = self.neighbour(p, m) {
                    if dist[q] == UNREACHABLE && self.passable[q] && !self.blocked[q] {
                        dist[q] = d;
                        self.queue.push(q as u32);
                    }
                }
            }
        }
        for &a in &spec.avoid {
            if a < n {
                self.blocked[a] = false;
            }
        }
    }

    /// `Q(s, a) = -(1 + d(s'))`, `-inf` where `s'` cannot reach the goal.
    pub fn q_values(&self, dist: &[u16], pos: Pos, q: &mut [f32]) {
        for (m, qm) in q.iter_mut().enumerate().take(N_MOVES) {
            let next = match self.neighbour(pos, m) {
                Some(n) if self.walkable[n] => n,
                _ => pos,
            };
            *qm = match dist[next] {
                UNREACHABLE => f32::NEG_INFINITY,
                d => -(1.0 + d as f32),
            };
        }
    }

    /// Boltzmann-rational action distribution toward the goal whose distances are `dist`.
    pub fn action_probs(&self, dist: &[u16], pos: Pos, beta: f32, out: &mut [f32]) {
        let mut q = [0f32; N_MOVES];
        self.q_values(dist, pos, &mut q);
        boltzmann(&q, beta, out);
    }
}

/// `pi(a) ~ exp(beta * q(a))`. `beta = inf` is uniform over the best actions; if no action has a
/// finite value the result is uniform.
pub fn boltzmann(q: &[f32], beta: f32, out: &mut [f32]) {
    let max = q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        let u = 1.0 / q.len() as f32;
        out.iter_mut().for_each(|o| *o = u);
        return;
    }
    let mut sum = 0.0;
    for (o, &qa) in out.iter_mut().zip(q) {
        *o = if beta.is_infinite() {
            if qa == max {
                1.0
            } else {
                0.0
            }
        } else if qa == f32::NEG_INFINITY {
            0.0
        } else {
            (beta * (qa - max)).exp()
        };
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// `V(s) = gamma^d(s)` (0 where unreachable): the discounted value of reaching the goal.
pub fn values(dist: &[u16], gamma: f32, out: &mut Vec<f32>) {
    out.clear();
    out.extend(dist.iter().map(|&d| {
        if d == UNREACHABLE {
            0.0
        } else {
            gamma.powi(d as i32)
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::Level;

    fn level(text: &str) -> Level {
        Level::parse(text).unwrap().level
    }

    #[test]
    fn distances_and_greedy_policy() {
        let l = level("############\n##@@......##\n##..####..##\n##......GG##\n############\n");
        let g = &l.grid;
        let goal = g.pos(3, 4);
        let mut p = Planner::new(g);
        let mut d = Vec::new();
        p.distances(
            &GoalSpec {
                targets: vec![goal],
                avoid: vec![],
            },
            &mut d,
        );
        assert_eq!(d[l.agent], 5);
        assert_eq!(d[g.pos(0, 0)], UNREACHABLE);
        let mut pr = [0f32; 4];
        p.action_probs(&d, l.agent, f32::INFINITY, &mut pr);
        // From (1,1) the goal at (3,4) is 5 steps either way: right or down are both optimal.
        assert_eq!(pr, [0.0, 0.5, 0.5, 0.0]);
        let mut soft = [0f32; 4];
        p.action_probs(&d, l.agent, 1.0, &mut soft);
        assert!((soft.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(soft[1] > soft[0] && soft[0] > 0.0);
    }

    #[test]
    fn avoid_forces_detour() {
        let l = level("##########\n##@@FRGG##\n##......##\n##########\n");
        let g = &l.grid;
        let (goal, forbidden) = (g.pos(1, 3), g.pos(1, 2));
        let mut p = Planner::new(g);
        let mut d = Vec::new();
        p.distances(
            &GoalSpec {
                targets: vec![goal],
                avoid: vec![],
            },
            &mut d,
        );
        assert_eq!(d[l.agent], 2);
        p.distances(
            &GoalSpec {
                targets: vec![goal],
                avoid: vec![forbidden],
            },
            &mut d,
        );
        assert_eq!(d[l.agent], 4);
        assert_eq!(d[forbidden], UNREACHABLE);
    }
}
