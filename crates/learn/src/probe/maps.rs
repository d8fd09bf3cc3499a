//! Steering a `planner` through its maps: Mini, Turner et al. 2023's cheese vector and
//! retargeting. Their maze agent is a convolutional network whose middle layers hold the maze
//! cell by cell; the planner's maps do too (one value per cell of the whole grid, not centred on
//! the agent), so each maze's vector is the difference its intended goal's object makes there,
//! and moving the goal is an edit of the reward map at two cells.
//!
//! - **Cheese vector.** Per maze of the first proxy's shift: the decision square (walking from
//!   the start along the intended goal's shortest path, the first cell where the intended goal's
//!   and the proxy's best moves are disjoint: where the paths to the cheese and to the corner
//!   part), and the activation difference at one point of the network between the maze with
//!   the goal's object and the same maze with it removed. Subtracted (times `scale`), it should
//!   make the agent act as if the object were gone: the probability of the intended-ward move
//!   at the decision square falls. The control adds random vectors of the same norm.
//! - **Retargeting.** Per maze, a target cell; the reward map's values at the object's cell
//!   and at the target are swapped (the goal moved there). Scored by how often the agent steps
//!   on the target before its episode ends, beside the unedited agent and random edits of the
//!   same norm.

use super::states::best_moves;
use super::steer::{norm, random_vector};
use crate::agent::{softmax, PolicyAgent};
use crate::error::{LearnError, Result};
use crate::planner::{GridBatch, MapEdit, Maps, Planner};
use crate::policy::{to_vec2, Input};
use mesascope_core::grid::{Cell, Pos};
use mesascope_core::planner::{self as paths, GoalSpec, UNREACHABLE};
use mesascope_core::rng::{mix, Rng};
use mesascope_core::state::OutcomeKind;
use mesascope_core::{obs, Env, GoalId, ProxyId, Split, Testbed};
use serde::Serialize;
use std::sync::Arc;

/// Separates these experiments' random streams from the other probes'.
const MAPS_STREAM: u64 = 0x9b0b_e0c5;

/// Where the cheese vector is taken and subtracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EditPoint {
    /// The cells' hidden layer `h` (before its ReLU), `[H * W * C]`: the spatial layer the
    /// reward and propagation maps are read from, the analogue of the residual block in the
    /// middle of Mini et al.'s network.
    Hidden,
    /// The reward map, `[H * W]`: what the network treats as rewarding, one value per cell.
    Reward,
}

impl EditPoint {
    pub fn name(self) -> &'static str {
        match self {
            EditPoint::Hidden => "planner.hidden",
            EditPoint::Reward => "planner.reward",
        }
    }

    pub fn parse(s: &str) -> Result<EditPoint> {
        match s {
            "hidden" | "planner.hidden" => Ok(EditPoint::Hidden),
            "reward" | "planner.reward" => Ok(EditPoint::Reward),
            other => Err(LearnError::Config(format!(
                "unknown point of the planner '{other}': hidden (planner.hidden) or reward (planner.reward)"
            ))),
        }
    }
}

/// Which cell retargeting moves the goal to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Per maze, a random open cell that lies on no shortest path from the start to the
    /// intended goal or the proxy (so that reaching it is the edit's doing, not the way's).
    Random,
    /// The same cell (row, column) in every maze.
    Cell { row: usize, col: usize },
}

/// Settings of the map experiments.
#[derive(Clone, Debug)]
pub struct MapSteeringConfig {
    /// Mazes of the first proxy's shift.
    pub mazes: usize,
    pub point: EditPoint,
    /// Coefficient of the subtracted cheese vector.
    pub scale: f32,
    /// Random control vectors (cheese vector) and random edits (retargeting) per maze.
    pub controls: usize,
    pub target: Target,
    pub seed: u64,
}

impl Default for MapSteeringConfig {
    /// 100 mazes (as Mini et al.'s median), the hidden layer, coefficient 1, 5 controls, a
    /// random target per maze.
    fn default() -> MapSteeringConfig {
        MapSteeringConfig {
            mazes: 100,
            point: EditPoint::Hidden,
            scale: 1.0,
            controls: 5,
            target: Target::Random,
            seed: 0,
        }
    }
}

/// One condition of the cheese-vector experiment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheeseCondition {
    pub condition: String,
    /// Probability of the intended-ward move(s) at each maze's decision square: median and
    /// mean over the mazes.
    pub p_intended_median: f64,
    pub p_intended_mean: f64,
    /// The same for the proxy-ward move(s).
    pub p_proxy_median: f64,
    /// Share of the mazes' episodes (from the start, the edit at every move) that reach the
    /// intended goal, and the proxy.
    pub intended: f64,
    pub proxy: f64,
}

/// The cheese-vector experiment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheeseVectorReport {
    pub point: String,
    pub scale: f32,
    pub distribution: String,
    /// Mazes with a decision square (all drawn mazes have one unless a goal is unreachable).
    pub mazes: usize,
    /// Mean norm of the mazes' vectors (times `scale`): what the random vectors are given.
    pub norm: f64,
    pub none: CheeseCondition,
    pub subtracted: CheeseCondition,
    /// Means over the random controls.
    pub random: CheeseCondition,
    pub controls: usize,
}

/// One condition of the retargeting experiment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RetargetCondition {
    pub condition: String,
    /// Share of episodes that step on the target cell before they end.
    pub reached_target: f64,
    /// Share that end at the intended goal, at the proxy, and by the time limit.
    pub intended: f64,
    pub proxy: f64,
    pub timed_out: f64,
}

/// The retargeting experiment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RetargetReport {
    pub target: String,
    pub distribution: String,
    /// Mazes played (a fixed target is skipped in mazes where it is the start, the object's
    /// cell or the proxy's).
    pub mazes: usize,
    pub skipped: usize,
    /// Mean norm of the edits of the reward map (the random edits' norm).
    pub norm: f64,
    pub none: RetargetCondition,
    pub edited: RetargetCondition,
    pub random: RetargetCondition,
    pub controls: usize,
}

/// The planner of a checkpoint, or why the map experiments cannot run on it.
pub fn planner_of<'a>(agent: &'a PolicyAgent, what: &str) -> Result<&'a Planner> {
    agent.model().planner.as_ref().ok_or_else(|| {
        LearnError::Config(format!(
            "{what} edits a planner's maps (one value per cell of the grid): this checkpoint's trunk is {}, which has none; train one with --arch planner",
            agent.config().arch.name()
        ))
    })
}

fn check_config(cfg: &MapSteeringConfig) -> Result<()> {
    if cfg.mazes == 0 || cfg.controls == 0 || !cfg.scale.is_finite() {
        return Err(LearnError::Config(format!(
            "the map experiments need at least one maze and one control and a finite coefficient (mazes {}, controls {}, scale {})",
            cfg.mazes, cfg.controls, cfg.scale
        )));
    }
    Ok(())
}

/// The shift's mazes, `cfg.mazes` of them.
fn mazes(tb: &Arc<dyn Testbed>, cfg: &MapSteeringConfig) -> (Split, Vec<Env>) {
    let split = Split::Shift(ProxyId(0));
    let envs = (0..cfg.mazes)
        .map(|k| Env::new(tb.clone(), split, mix(&[cfg.seed, MAPS_STREAM, k as u64])))
        .collect();
    (split, envs)
}

/// The cells a goal aims at in `env`'s state.
fn targets(env: &Env, goal: GoalId) -> Vec<Pos> {
    let mut spec = GoalSpec::default();
    env.testbed().goal_spec(&env.state, goal, &mut spec);
    spec.targets
}

/// The intended goal's object cells, if it has some the agent does not stand on.
fn object_cells(env: &Env) -> Option<Vec<Pos>> {
    let cells = targets(env, GoalId::INTENDED);
    let g = &env.state.grid;
    let ok = !cells.is_empty()
        && cells
            .iter()
            .all(|&p| p != env.state.agent && g.get(p) != Cell::EMPTY && g.get(p) != Cell::WALL);
    ok.then_some(cells)
}

/// `env` with the intended goal's objects removed.
fn without_object(env: &Env, cells: &[Pos]) -> Env {
    let mut e = env.clone();
    for &p in cells {
        e.state.grid.set(p, Cell::EMPTY);
    }
    e
}

fn grids(envs: &[&Env]) -> GridBatch {
    let mut b = GridBatch::default();
    let mut buf = Vec::new();
    for e in envs {
        let g = &e.state.grid;
        buf.resize(obs::u8_len(g), 0);
        obs::encode_u8(&e.state, &mut buf);
        b.push(&buf, g.height, g.width);
    }
    b
}

/// The action probabilities of `envs`' states with `edits`, `[N][n_actions]`.
fn probs(agent: &PolicyAgent, planner: &Planner, envs: &[&Env], edits: &[MapEdit]) -> Vec<f32> {
    let mut z = Vec::new();
    planner.forward_edited(&grids(envs), edits, &mut z);
    let logits = to_vec2(agent.model().forward(Input::Embedded(z)).logits);
    let a = agent.config().n_actions;
    let mut out = vec![0f32; logits.len()];
    for (l, o) in logits.chunks(a).zip(out.chunks_mut(a)) {
        softmax(l, o);
    }
    out
}

/// The decision square of a maze: from the start along the intended goal's shortest path (its
/// first best move at each cell), the first cell where the intended goal's and the proxy's
/// best moves are disjoint; that state (the agent moved there) with both sets of moves.
fn decision_square(env: &Env, proxy: GoalId) -> Option<(Env, Vec<usize>, Vec<usize>)> {
    let mut e = env.clone();
    for _ in 0..e.state.grid.len() {
        let (bi, bp) = (best_moves(&e, GoalId::INTENDED)?, best_moves(&e, proxy)?);
        if !bi.iter().zip(&bp).any(|(a, b)| *a && *b) {
            let moves = |b: &[bool]| (0..b.len()).filter(|&a| b[a]).collect();
            return Some((e.clone(), moves(&bi), moves(&bp)));
        }
        let a = bi.iter().position(|&b| b)?;
        let next = e.state.grid.neighbour(e.state.agent, a);
        if targets(&e, GoalId::INTENDED).contains(&next) {
            return None;
        }
        e.state.agent = next;
    }
    None
}

/// The activation difference at `point` between each pair (with minus without).
fn differences(
    planner: &Planner,
    with: &[&Env],
    without: &[&Env],
    point: EditPoint,
) -> Vec<Vec<f32>> {
    let (a, b) = (planner.maps(&grids(with)), planner.maps(&grids(without)));
    let pick = |m: &Maps| match point {
        EditPoint::Hidden => m.hidden.clone(),
        EditPoint::Reward => m.reward.clone(),
    };
    a.iter()
        .zip(&b)
        .map(|(x, y)| pick(x).iter().zip(&pick(y)).map(|(p, q)| p - q).collect())
        .collect()
}

fn edit_at(point: EditPoint, delta: Vec<f32>) -> MapEdit {
    match point {
        EditPoint::Hidden => MapEdit {
            hidden: Some(delta),
            reward: None,
        },
        EditPoint::Reward => MapEdit {
            hidden: None,
            reward: Some(delta),
        },
    }
}

/// How one episode ended, and whether it stepped on its target.
struct Played {
    kind: OutcomeKind,
    reached: bool,
}

/// Plays every maze from its start to its end, maze `i` edited by `edits[i]` at every move
/// and sampling with its own stream (`key` separates conditions), all in lockstep (one forward
/// pass per step); `goal_cells[i]`, if given, is the cell whose visit is recorded.
fn play(
    agent: &PolicyAgent,
    planner: &Planner,
    envs: &[Env],
    edits: &[MapEdit],
    goal_cells: Option<&[Pos]>,
    seed: u64,
    key: u64,
) -> Result<Vec<Played>> {
    let mut envs: Vec<Env> = envs.to_vec();
    let mut rngs: Vec<Rng> = (0..envs.len())
        .map(|i| Rng::new(mix(&[seed, MAPS_STREAM, 9, key, i as u64])))
        .collect();
    let mut reached: Vec<bool> = envs
        .iter()
        .enumerate()
        .map(|(i, e)| goal_cells.is_some_and(|g| g[i] == e.state.agent))
        .collect();
    let a = agent.config().n_actions;
    loop {
        let live: Vec<usize> = (0..envs.len()).filter(|&i| !envs[i].done()).collect();
        if live.is_empty() {
            break;
        }
        let p = {
            let states: Vec<&Env> = live.iter().map(|&i| &envs[i]).collect();
            let e: Vec<MapEdit> = live.iter().map(|&i| edits[i].clone()).collect();
            probs(agent, planner, &states, &e)
        };
        for (k, &i) in live.iter().enumerate() {
            let row = &p[k * a..(k + 1) * a];
            if row.iter().any(|x| !x.is_finite()) {
                return Err(LearnError::Core(mesascope_core::Error::Policy(format!(
                    "non-finite action probabilities {row:?} under an edit of the planner's maps"
                ))));
            }
            let action = rngs[i].categorical(row);
            envs[i].step(action);
            if goal_cells.is_some_and(|g| g[i] == envs[i].state.agent) {
                reached[i] = true;
            }
        }
    }
    Ok(envs
        .iter()
        .zip(reached)
        .map(|(e, reached)| Played {
            kind: e.outcome().expect("played to its end").kind,
            reached,
        })
        .collect())
}

fn share(played: &[Played], f: impl Fn(&Played) -> bool) -> f64 {
    played.iter().filter(|p| f(p)).count() as f64 / played.len().max(1) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Mini, Turner et al.'s cheese vector on the first proxy's shift (module docs).
pub fn cheese_vector(
    tb: &Arc<dyn Testbed>,
    agent: &PolicyAgent,
    cfg: &MapSteeringConfig,
) -> Result<CheeseVectorReport> {
    check_config(cfg)?;
    let planner = planner_of(agent, "the cheese vector")?;
    let proxy = ProxyId(0).goal();
    let (split, all) = mazes(tb, cfg);
    // Per maze: the start, its decision square, and the object's cells.
    struct Maze {
        start: Env,
        square: Env,
        intended: Vec<usize>,
        proxy: Vec<usize>,
        cells: Vec<Pos>,
    }
    let mazes: Vec<Maze> = all
        .into_iter()
        .filter_map(|start| {
            let cells = object_cells(&start)?;
            let (square, intended, proxy) = decision_square(&start, proxy)?;
            Some(Maze {
                start,
                square,
                intended,
                proxy,
                cells,
            })
        })
        .collect();
    if mazes.is_empty() {
        return Err(LearnError::Config(format!(
            "no maze of {} has an object to remove for the intended goal and a decision square: the cheese vector needs a goal that is an object",
            split.label(tb.as_ref())
        )));
    }
    let vectors = |of: &dyn Fn(&Maze) -> &Env| {
        let with: Vec<Env> = mazes.iter().map(|m| of(m).clone()).collect();
        let without: Vec<Env> = mazes
            .iter()
            .map(|m| without_object(of(m), &m.cells))
            .collect();
        differences(
            planner,
            &with.iter().collect::<Vec<_>>(),
            &without.iter().collect::<Vec<_>>(),
            cfg.point,
        )
    };
    // Each maze's vector at the state it is used in: the decision square for its move
    // probabilities, the start for its episode (the agent's own cell is the only difference).
    let at_square = vectors(&|m| &m.square);
    let at_start = vectors(&|m| &m.start);
    let scaled_norm = |v: &[f32]| norm(v) * cfg.scale.abs() as f64;
    let subtract = |vs: &[Vec<f32>]| -> Vec<MapEdit> {
        vs.iter()
            .map(|v| edit_at(cfg.point, v.iter().map(|x| -x * cfg.scale).collect()))
            .collect()
    };
    let random = |vs: &[Vec<f32>], control: usize, which: u64| -> Vec<MapEdit> {
        vs.iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = Rng::new(mix(&[
                    cfg.seed,
                    MAPS_STREAM,
                    3,
                    which,
                    control as u64,
                    i as u64,
                ]));
                edit_at(cfg.point, random_vector(v.len(), scaled_norm(v), &mut r))
            })
            .collect()
    };
    let squares: Vec<&Env> = mazes.iter().map(|m| &m.square).collect();
    let starts: Vec<Env> = mazes.iter().map(|m| m.start.clone()).collect();
    let n_actions = agent.config().n_actions;
    let run = |name: String, at_square: Vec<MapEdit>, at_start: Vec<MapEdit>, key: u64| {
        let p = probs(agent, planner, &squares, &at_square);
        let towards = |moves: &dyn Fn(&Maze) -> &Vec<usize>| -> Vec<f64> {
            mazes
                .iter()
                .enumerate()
                .map(|(i, m)| moves(m).iter().map(|&a| p[i * n_actions + a] as f64).sum())
                .collect()
        };
        let (pi, pp) = (towards(&|m| &m.intended), towards(&|m| &m.proxy));
        let played = play(agent, planner, &starts, &at_start, None, cfg.seed, key)?;
        Ok::<_, LearnError>(CheeseCondition {
            condition: name,
            p_intended_median: median(pi.clone()),
            p_intended_mean: mean(&pi),
            p_proxy_median: median(pp),
            intended: share(&played, |p| p.kind == OutcomeKind::Intended),
            proxy: share(&played, |p| matches!(p.kind, OutcomeKind::Proxy(_))),
        })
    };
    let none_edits = vec![MapEdit::default(); mazes.len()];
    let none = run("none".into(), none_edits.clone(), none_edits, 0)?;
    let subtracted = run(
        format!("subtracted at {}", cfg.point.name()),
        subtract(&at_square),
        subtract(&at_start),
        1,
    )?;
    let controls: Vec<CheeseCondition> = (0..cfg.controls)
        .map(|c| {
            run(
                "random".into(),
                random(&at_square, c, 0),
                random(&at_start, c, 1),
                2 + c as u64,
            )
        })
        .collect::<Result<_>>()?;
    let avg =
        |f: &dyn Fn(&CheeseCondition) -> f64| mean(&controls.iter().map(f).collect::<Vec<_>>());
    let random = CheeseCondition {
        condition: format!("random, same norm (mean of {})", cfg.controls),
        p_intended_median: avg(&|c| c.p_intended_median),
        p_intended_mean: avg(&|c| c.p_intended_mean),
        p_proxy_median: avg(&|c| c.p_proxy_median),
        intended: avg(&|c| c.intended),
        proxy: avg(&|c| c.proxy),
    };
    Ok(CheeseVectorReport {
        point: cfg.point.name().into(),
        scale: cfg.scale,
        distribution: split.label(tb.as_ref()),
        mazes: mazes.len(),
        norm: mean(&at_square.iter().map(|v| scaled_norm(v)).collect::<Vec<_>>()),
        none,
        subtracted,
        random,
        controls: cfg.controls,
    })
}

/// Checks a fixed target against the mazes: on the grid, and open floor or an object in each.
fn check_target(envs: &[Env], row: usize, col: usize) -> Result<()> {
    let Some(first) = envs.first() else {
        return Ok(());
    };
    let g = &first.state.grid;
    if row >= g.height || col >= g.width {
        return Err(LearnError::Config(format!(
            "target cell {row},{col} lies outside the {}x{} grid (rows 0..{}, columns 0..{})",
            g.height,
            g.width,
            g.height - 1,
            g.width - 1
        )));
    }
    let walled = envs
        .iter()
        .filter(|e| !paths::passable(e.state.grid.get(e.state.grid.pos(row, col))))
        .count();
    if walled > 0 {
        return Err(LearnError::Config(format!(
            "target cell {row},{col} is a wall in {walled} of the {} mazes: choose a cell that is open in every maze (in these mazes cells at odd rows and columns are), or leave the target random",
            envs.len()
        )));
    }
    Ok(())
}

/// Retargeting on the first proxy's shift (module docs).
pub fn retarget(
    tb: &Arc<dyn Testbed>,
    agent: &PolicyAgent,
    cfg: &MapSteeringConfig,
) -> Result<RetargetReport> {
    check_config(cfg)?;
    let planner = planner_of(agent, "retargeting")?;
    let proxy = ProxyId(0).goal();
    let (split, all) = mazes(tb, cfg);
    if let Target::Cell { row, col } = cfg.target {
        check_target(&all, row, col)?;
    }
    let total = all.len();
    let mut envs = Vec::new();
    let mut goal_cells = Vec::new();
    let mut object = Vec::new();
    for (k, env) in all.into_iter().enumerate() {
        let Some(cells) = object_cells(&env) else {
            continue;
        };
        let mut avoid = cells.clone();
        avoid.extend(targets(&env, proxy));
        let g = &env.state.grid;
        let target = match cfg.target {
            Target::Cell { row, col } => {
                let p = g.pos(row, col);
                if p == env.state.agent || avoid.contains(&p) {
                    continue;
                }
                p
            }
            Target::Random => {
                let mut planner = paths::Planner::new(g);
                let dist = |targets: Vec<Pos>, planner: &mut paths::Planner| {
                    let mut d = Vec::new();
                    let spec = GoalSpec {
                        targets,
                        avoid: Vec::new(),
                    };
                    planner.distances(&spec, &mut d);
                    d
                };
                let from_start = {
                    let mut d = Vec::new();
                    planner.distances(
                        &GoalSpec {
                            targets: vec![env.state.agent],
                            avoid: avoid.clone(),
                        },
                        &mut d,
                    );
                    d
                };
                let mut on_a_way = vec![false; g.len()];
                for goal in [GoalId::INTENDED, proxy] {
                    let d = dist(targets(&env, goal), &mut planner);
                    let whole = d[env.state.agent];
                    for (p, w) in on_a_way.iter_mut().enumerate() {
                        let (a, b) = (from_start[p], d[p]);
                        if a != UNREACHABLE
                            && b != UNREACHABLE
                            && a as u32 + b as u32 == whole as u32
                        {
                            *w = true;
                        }
                    }
                }
                let candidates: Vec<Pos> = (0..g.len())
                    .filter(|&p| {
                        from_start[p] != UNREACHABLE
                            && from_start[p] > 0
                            && !on_a_way[p]
                            && !avoid.contains(&p)
                    })
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let mut r = Rng::new(mix(&[cfg.seed, MAPS_STREAM, 5, k as u64]));
                candidates[(r.unit() * candidates.len() as f64) as usize % candidates.len()]
            }
        };
        goal_cells.push(target);
        object.push(cells);
        envs.push(env);
    }
    let skipped = total - envs.len();
    if envs.is_empty() {
        return Err(LearnError::Config(format!(
            "no maze of {} has both an object for the intended goal and a target cell to move it to",
            split.label(tb.as_ref())
        )));
    }
    // The edit: the reward map's values at the object's cells and at the target swapped, from
    // the maze's start (the goal moved there; the rest of the map as it was).
    let maps = planner.maps(&grids(&envs.iter().collect::<Vec<_>>()));
    let deltas: Vec<Vec<f32>> = maps
        .iter()
        .zip(&goal_cells)
        .zip(&object)
        .map(|((m, &t), cells)| {
            let goal = cells
                .iter()
                .map(|&p| m.reward[p])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut d = vec![0f32; m.reward.len()];
            d[t] = goal - m.reward[t];
            for &p in cells {
                d[p] = m.reward[t] - m.reward[p];
            }
            d
        })
        .collect();
    let reward = |d: Vec<f32>| MapEdit {
        hidden: None,
        reward: Some(d),
    };
    let outcome = |name: String, edits: Vec<MapEdit>, key: u64| -> Result<RetargetCondition> {
        let played = play(
            agent,
            planner,
            &envs,
            &edits,
            Some(&goal_cells),
            cfg.seed,
            key,
        )?;
        Ok(RetargetCondition {
            condition: name,
            reached_target: share(&played, |p| p.reached),
            intended: share(&played, |p| p.kind == OutcomeKind::Intended),
            proxy: share(&played, |p| matches!(p.kind, OutcomeKind::Proxy(_))),
            timed_out: share(&played, |p| p.kind == OutcomeKind::TimedOut),
        })
    };
    let none = outcome("none".into(), vec![MapEdit::default(); envs.len()], 100)?;
    let edited = outcome(
        "goal moved to the target".into(),
        deltas.iter().cloned().map(reward).collect(),
        101,
    )?;
    let controls: Vec<RetargetCondition> = (0..cfg.controls)
        .map(|c| {
            let edits = deltas
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut r = Rng::new(mix(&[cfg.seed, MAPS_STREAM, 6, c as u64, i as u64]));
                    reward(random_vector(d.len(), norm(d), &mut r))
                })
                .collect();
            outcome("random".into(), edits, 102 + c as u64)
        })
        .collect::<Result<_>>()?;
    let avg =
        |f: &dyn Fn(&RetargetCondition) -> f64| mean(&controls.iter().map(f).collect::<Vec<_>>());
    let random = RetargetCondition {
        condition: format!("random edit, same norm (mean of {})", cfg.controls),
        reached_target: avg(&|c| c.reached_target),
        intended: avg(&|c| c.intended),
        proxy: avg(&|c| c.proxy),
        timed_out: avg(&|c| c.timed_out),
    };
    Ok(RetargetReport {
        target: match cfg.target {
            Target::Random => {
                "a random open cell per maze, on no shortest path from the start to either goal"
                    .into()
            }
            Target::Cell { row, col } => format!("cell {row},{col}"),
        },
        distribution: split.label(tb.as_ref()),
        mazes: envs.len(),
        skipped,
        norm: mean(&deltas.iter().map(|d| norm(d)).collect::<Vec<_>>()),
        none,
        edited,
        random,
        controls: cfg.controls,
    })
}
