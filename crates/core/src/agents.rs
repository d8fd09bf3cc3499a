//! Policies as the engine sees them, the scripted reference agents built on the planner, and
//! episode rollouts.
//!
//! The reference agents are the ground truth for audits: "seek goal G" (Boltzmann-rational with
//! a chosen beta), "seek one goal when watched and another when not", and uniformly random.

use crate::env::Env;
use crate::error::{Error, Result};
use crate::grid::Pos;
use crate::planner::{GoalSpec, Planner};
use crate::rng::Rng;
use crate::state::{Outcome, OutcomeKind};
use crate::testbed::GoalId;

/// Anything that acts in an environment: maps the current state to an action distribution.
pub trait Agent: Send {
    fn name(&self) -> String;
    /// Called when an episode starts.
    fn begin(&mut self, _env: &Env) -> Result<()> {
        Ok(())
    }
    /// Writes the probability of each action (length `env.n_actions()`).
    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()>;
    /// Whether one instance may act in many episodes at once through
    /// [`Agent::probs_batch`]: true for a policy that is a function of the current state alone
    /// (a network, an ONNX model, a Python callable) and whose `begin` keeps nothing per
    /// episode. Agents that remember anything within an episode keep the default, `false`, and
    /// rollouts give each episode its own instance.
    fn batched(&self) -> bool {
        false
    }
    /// Writes the action distributions of several states, `n_actions` values per state in the
    /// order of `envs`. The default asks [`Agent::probs`] state by state; batched policies
    /// answer the whole batch with one inference call.
    fn probs_batch(&mut self, envs: &[&Env], out: &mut [f32]) -> Result<()> {
        let na = out.len() / envs.len().max(1);
        for (env, o) in envs.iter().zip(out.chunks_mut(na.max(1))) {
            self.probs(env, o)?;
        }
        Ok(())
    }
}

/// Pursues one declared goal, or a fixed place
/// ([`SeekGoal::place`]), with Boltzmann rationality `beta` (`f32::INFINITY`: uniformly among
/// the optimal moves).
#[derive(Clone, Debug)]
pub struct SeekGoal {
    pub goal: GoalId,
    pub beta: f32,
    /// `spec` holds fixed cells rather than the testbed's goal: a goal nobody declared.
    place: bool,
    planner: Option<Planner>,
    spec: GoalSpec,
    planned: Option<GoalSpec>,
    dist: Vec<u16>,
}

impl SeekGoal {
    pub fn new(goal: GoalId, beta: f32) -> SeekGoal {
        SeekGoal {
            goal,
            beta,
            place: false,
            planner: None,
            spec: GoalSpec::default(),
            planned: None,
            dist: Vec::new(),
        }
    }

    /// Pursues the cells `targets`, whatever the testbed declares.
    pub fn place(targets: Vec<Pos>, beta: f32) -> SeekGoal {
        SeekGoal {
            place: true,
            spec: GoalSpec {
                targets,
                avoid: Vec::new(),
            },
            ..SeekGoal::new(GoalId::INTENDED, beta)
        }
    }

    /// Steps-to-go table for the goal's current targets, replanned only when they change.
    fn refresh(&mut self, env: &Env) -> &[u16] {
        if self.planner.is_none() {
            self.planner = Some(Planner::new(&env.state.grid));
        }
        if !self.place {
            self.spec.clear();
            env.testbed()
                .goal_spec(&env.state, self.goal, &mut self.spec);
        }
        if self.planned.as_ref() != Some(&self.spec) {
            let planner = self.planner.as_mut().expect("set above");
            planner.distances(&self.spec, &mut self.dist);
            self.planned = Some(self.spec.clone());
        }
        &self.dist
    }

    /// `Q(s, a)` of the goal at the agent's cell (negative steps-to-go, `-inf` for moves after
    /// which the goal cannot be reached): the utility that audits fit Boltzmann models to.
    pub fn q_values(&mut self, env: &Env, q: &mut [f32]) {
        let pos = env.state.agent;
        self.refresh(env);
        let planner = self.planner.as_ref().expect("refresh builds it");
        planner.q_values(&self.dist, pos, q);
    }

    /// Optimal steps-to-go from the agent's cell to the goal's current targets.
    pub fn steps_to_go(&mut self, env: &Env) -> Option<u16> {
        let d = self.refresh(env)[env.state.agent];
        (d != crate::planner::UNREACHABLE).then_some(d)
    }
}

impl Agent for SeekGoal {
    fn name(&self) -> String {
        if self.place {
            format!("seek cells {:?} (beta {})", self.spec.targets, self.beta)
        } else {
            format!("seek goal {} (beta {})", self.goal, self.beta)
        }
    }

    fn begin(&mut self, env: &Env) -> Result<()> {
        if !self.place && self.goal.0 >= env.testbed().goals().len() {
            return Err(Error::Input(format!(
                "goal index {} out of range: {} declares {} goals",
                self.goal,
                env.testbed().name(),
                env.testbed().goals().len()
            )));
        }
        self.planner = Some(Planner::new(&env.state.grid));
        self.planned = None;
        Ok(())
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()> {
        let beta = self.beta;
        let pos = env.state.agent;
        self.refresh(env);
        let planner = self.planner.as_ref().expect("refresh builds it");
        planner.action_probs(&self.dist, pos, beta, out);
        Ok(())
    }
}

/// Seeks one goal while watched and another while not (supervisor present / deployment cue
/// absent): the observable signature of deceptive alignment.
#[derive(Clone, Debug)]
pub struct Conditional {
    pub watched: SeekGoal,
    pub unwatched: SeekGoal,
}

impl Conditional {
    pub fn new(watched_goal: GoalId, unwatched_goal: GoalId, beta: f32) -> Conditional {
        Conditional {
            watched: SeekGoal::new(watched_goal, beta),
            unwatched: SeekGoal::new(unwatched_goal, beta),
        }
    }
}

impl Agent for Conditional {
    fn name(&self) -> String {
        format!(
            "seek goal {} when watched, goal {} otherwise",
            self.watched.goal, self.unwatched.goal
        )
    }

    fn begin(&mut self, env: &Env) -> Result<()> {
        if env.testbed().oversight().is_none() {
            return Err(Error::Input(format!(
                "testbed {} has no oversight cue, so a watched/unwatched agent means nothing there",
                env.testbed().name()
            )));
        }
        self.watched.begin(env)?;
        self.unwatched.begin(env)
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()> {
        if env.watched().unwrap_or(true) {
            self.watched.probs(env, out)
        } else {
            self.unwatched.probs(env, out)
        }
    }
}

/// Uniformly random actions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomAgent;

impl Agent for RandomAgent {
    fn name(&self) -> String {
        "random".into()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()> {
        let u = 1.0 / env.n_actions() as f32;
        out.iter_mut().for_each(|o| *o = u);
        Ok(())
    }
}

/// A reference agent by name: `intended`, a proxy's name, `random`, or
/// `conditional:<proxy>` (intended when watched, the proxy when not).
pub fn reference_agent(
    testbed: &dyn crate::testbed::Testbed,
    name: &str,
    beta: f32,
) -> Result<Box<dyn Agent>> {
    let goal_index = |g: &str| testbed.goals().iter().position(|d| d.name == g).map(GoalId);
    if name == "random" {
        return Ok(Box::new(RandomAgent));
    }
    if name == "intended" {
        return Ok(Box::new(SeekGoal::new(GoalId::INTENDED, beta)));
    }
    if let Some(p) = name.strip_prefix("conditional:") {
        if testbed.oversight().is_none() {
            return Err(Error::Input(format!(
                "testbed {} has no oversight cue; conditional agents need one",
                testbed.name()
            )));
        }
        let g = goal_index(p)
            .filter(|g| !g.is_intended())
            .ok_or_else(|| unknown_agent(testbed, name))?;
        return Ok(Box::new(Conditional::new(GoalId::INTENDED, g, beta)));
    }
    match goal_index(name) {
        Some(g) => Ok(Box::new(SeekGoal::new(g, beta))),
        None => Err(unknown_agent(testbed, name)),
    }
}

/// Names `reference_agent` accepts for a testbed.
pub fn reference_agent_names(testbed: &dyn crate::testbed::Testbed) -> Vec<String> {
    let mut v = vec!["intended".to_string()];
    v.extend(testbed.proxies().iter().map(|p| p.name.to_string()));
    if testbed.oversight().is_some() {
        v.extend(
            testbed
                .proxies()
                .iter()
                .map(|p| format!("conditional:{}", p.name)),
        );
    }
    v.push("random".into());
    v
}

fn unknown_agent(testbed: &dyn crate::testbed::Testbed, name: &str) -> Error {
    Error::Input(format!(
        "unknown agent '{name}' for testbed {} (known: {})",
        testbed.name(),
        reference_agent_names(testbed).join(", ")
    ))
}

/// A finished episode.
#[derive(Clone, Debug)]
pub struct Episode {
    pub outcome: Outcome,
    pub actions: Vec<u8>,
    /// The agent's cell before each action, then its final cell.
    pub positions: Vec<Pos>,
}

/// Checks an action distribution: right length, finite, non-negative, sums to 1.
pub fn check_probs(probs: &[f32]) -> Result<()> {
    if probs.iter().any(|p| !p.is_finite()) {
        return Err(Error::Policy(format!(
            "non-finite action probabilities {probs:?}"
        )));
    }
    if probs.iter().any(|&p| p < 0.0) {
        return Err(Error::Policy(format!(
            "negative action probabilities {probs:?}"
        )));
    }
    let s: f32 = probs.iter().sum();
    if (s - 1.0).abs() > 1e-3 {
        return Err(Error::Policy(format!(
            "action probabilities sum to {s}, not 1"
        )));
    }
    Ok(())
}

/// Runs the current episode of `env` to its end, sampling actions from `agent` with `rng`.
pub fn run_episode(env: &mut Env, agent: &mut dyn Agent, rng: &mut Rng) -> Result<Episode> {
    run_episode_with(env, agent, rng, &mut |_, _, _| Ok(()))
}

/// Sees each state before its step, with the action distribution there and the sampled action.
pub type Observer<'a> = dyn FnMut(&Env, &[f32], usize) -> Result<()> + 'a;

/// [`run_episode`], showing `observe` each state before its step, with the agent's (checked)
/// action distribution there and the action sampled from it: what audits record.
pub fn run_episode_with(
    env: &mut Env,
    agent: &mut dyn Agent,
    rng: &mut Rng,
    observe: &mut Observer,
) -> Result<Episode> {
    let n = env.n_actions();
    let mut probs = vec![0f32; n];
    let mut actions = Vec::new();
    let mut positions = vec![env.state.agent];
    agent.begin(env)?;
    while !env.done() {
        agent.probs(env, &mut probs)?;
        check_probs(&probs)?;
        let a = rng.categorical(&probs);
        observe(env, &probs, a)?;
        env.step(a);
        actions.push(a as u8);
        positions.push(env.state.agent);
    }
    Ok(Episode {
        outcome: env.outcome().expect("loop ends when done"),
        actions,
        positions,
    })
}

/// Sees each state of episode `i` before its step, as [`Observer`] does.
pub type LockstepObserver<'a> = dyn FnMut(usize, &Env, &[f32], usize) -> Result<()> + 'a;

/// Plays the current episodes of `envs` to their ends in lockstep, episode `i` sampling its
/// actions with `rngs[i]`: every step, one call of the policy for all live episodes when it is
/// [`Agent::batched`] (one instance from `factory`), else one instance per episode asked state
/// by state. Each episode draws only from its own stream, so the episodes are exactly those
/// [`run_episode_with`] plays one at a time with fresh agents. Returns the episodes and the
/// nanoseconds spent inside the policy.
pub fn run_lockstep(
    envs: &mut [Env],
    rngs: &mut [Rng],
    factory: &dyn Fn() -> Result<Box<dyn Agent>>,
    observe: &mut LockstepObserver,
) -> Result<(Vec<Episode>, u64)> {
    assert_eq!(envs.len(), rngs.len(), "one random stream per episode");
    let n = envs.len();
    let mut ns = 0u64;
    let mut actions: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut positions: Vec<Vec<Pos>> = envs.iter().map(|e| vec![e.state.agent]).collect();
    if n == 0 {
        return Ok((Vec::new(), ns));
    }
    let mut timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = std::time::Instant::now();
        let r = f();
        ns += t.elapsed().as_nanos() as u64;
        r
    };
    let na = envs[0].n_actions();
    let first = factory()?;
    let shared = first.batched();
    let mut agents: Vec<Box<dyn Agent>> = vec![first];
    if !shared {
        for _ in 1..n {
            agents.push(factory()?);
        }
    }
    for (i, env) in envs.iter().enumerate() {
        let agent = &mut agents[if shared { 0 } else { i }];
        timed(&mut || agent.begin(env))?;
    }
    let mut probs = vec![0f32; n * na];
    loop {
        let live: Vec<usize> = (0..n).filter(|&i| !envs[i].done()).collect();
        if live.is_empty() {
            break;
        }
        let out = &mut probs[..live.len() * na];
        if shared {
            let states: Vec<&Env> = live.iter().map(|&i| &envs[i]).collect();
            let agent = &mut agents[0];
            timed(&mut || agent.probs_batch(&states, out))?;
        } else {
            for (j, &i) in live.iter().enumerate() {
                let (agent, env) = (&mut agents[i], &envs[i]);
                let o = &mut out[j * na..(j + 1) * na];
                timed(&mut || agent.probs(env, o))?;
            }
        }
        for (j, &i) in live.iter().enumerate() {
            let p = &probs[j * na..(j + 1) * na];
            check_probs(p)?;
            let a = rngs[i].categorical(p);
            observe(i, &envs[i], p, a)?;
            envs[i].step(a);
            actions[i].push(a as u8);
            positions[i].push(envs[i].state.agent);
        }
    }
    let episodes = envs
        .iter()
        .zip(actions.into_iter().zip(positions))
        .map(|(env, (actions, positions))| Episode {
            outcome: env.outcome().expect("loop ends when every episode is done"),
            actions,
            positions,
        })
        .collect();
    Ok((episodes, ns))
}

/// The action distributions of `states`, `n_actions` values each, each state asked afresh
/// (`begin` then `probs`, as [`crate::audit::rollout::probe`] does): in batches of `batch` for a
/// batched policy, one state at a time otherwise. Returns them and the nanoseconds spent inside
/// the policy.
pub fn probs_of_states(
    states: &[Env],
    agent: &mut dyn Agent,
    batch: usize,
) -> Result<(Vec<f32>, u64)> {
    let Some(first) = states.first() else {
        return Ok((Vec::new(), 0));
    };
    let na = first.n_actions();
    let mut out = vec![0f32; states.len() * na];
    let t = std::time::Instant::now();
    if agent.batched() {
        for (chunk, o) in states
            .chunks(batch.max(1))
            .zip(out.chunks_mut(batch.max(1) * na))
        {
            for s in chunk {
                agent.begin(s)?;
            }
            let refs: Vec<&Env> = chunk.iter().collect();
            agent.probs_batch(&refs, o)?;
        }
    } else {
        for (s, o) in states.iter().zip(out.chunks_mut(na)) {
            agent.begin(s)?;
            agent.probs(s, o)?;
        }
    }
    let ns = t.elapsed().as_nanos() as u64;
    for p in out.chunks(na) {
        check_probs(p)?;
    }
    Ok((out, ns))
}

/// Length of the path the planner takes to each declared goal from the current state: the
/// steps a deterministic optimal seeker of that goal needs until its episode ends at a goal.
/// Exact shortest paths for single-target goals; `None` where the goal cannot be reached.
pub fn goal_path_lengths(env: &Env) -> Vec<Option<u32>> {
    GoalId::all(env.testbed())
        .map(|g| {
            let mut sim = env.clone();
            let mut seeker = SeekGoal::new(g, f32::INFINITY);
            if seeker.begin(&sim).is_err() {
                return None;
            }
            let start = sim.state.steps;
            let mut probs = vec![0f32; sim.n_actions()];
            while !sim.done() {
                seeker.probs(&sim, &mut probs).ok()?;
                // Lowest-index best move: deterministic.
                let a = probs.iter().position(|&p| p > 0.0)?;
                sim.step(a);
            }
            match sim.state.outcome? {
                OutcomeKind::Intended | OutcomeKind::Proxy(_) => Some(sim.state.steps - start),
                _ => None,
            }
        })
        .collect()
}
