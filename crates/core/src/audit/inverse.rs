//! Mesa-objective inference by Bayesian inverse planning, and maximum-entropy goal-directedness.
//!
//! Each candidate goal `g` (the intended goal, each proxy) gives a utility over actions, the
//! planner's `Q_g(s, a) = -(1 + d_g(s'))`: negative steps-to-go of the goal's own spec (what
//! [`crate::Testbed::goal_spec`] says it aims at and steps around, recomputed at every state so
//! that state-dependent goals such as keys-then-chests are modelled exactly). A move after which
//! the goal cannot be reached (into another goal's terminal cell, say) ranks one step below the
//! worst reachable move there ([`super::rollout::push_finite_q`]), so that a few episodes ending
//! elsewhere do not make a candidate impossible.
//!
//! A Boltzmann-rational pursuer of `g` acts by `pi_beta(a|s) ~ exp(beta Q_g(s, a))`. The
//! log-likelihood `sum_t sum_a w_t(a) log pi_beta(a|s_t)` is concave in `beta` (a linear term minus
//! a log-sum-exp), so its maximum over `beta >= 0` is found by bracketing the root of its
//! derivative `sum_t sum_a w_t(a) (Q_t(a) - E_pi_beta[Q_t])` and bisecting. The weights `w` are
//! one-hot on the sampled actions (the likelihood of what the agent did) or the agent's own
//! action distribution (an expectation with no sampling noise, used for MEG).
//!
//! The posterior over candidates has a uniform prior; each goal candidate has one fitted
//! parameter, so its maximized likelihood is penalized by `ln(T) / 2` (BIC, the Laplace
//! approximation to the marginal likelihood), which lets the parameter-free uniform policy win
//! when the agent is in fact random.
//!
//! MEG (maximum-entropy goal-directedness, MacDermott et al. 2024) of the agent toward `g`:
//! `max_{beta >= 0} mean_t sum_a pi(a|s_t) [log pi_beta(a|s_t) - log(1/|A|)]` in nats per step.
//! It is 0 for the uniform policy (Gibbs' inequality: nothing beats `beta = 0` against uniform
//! weights), approaches `log |A|` for a deterministic optimal policy where the optimal move is
//! unique, and is unchanged by affine changes `a U + b` (`a > 0`) of the utility, because `beta`
//! absorbs the scale and a softmax ignores shifts.

use serde::Serialize;

/// Per-step utilities of one candidate and the weights to fit them to, `n_actions` per step.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub n_actions: usize,
    pub q: Vec<f64>,
    pub w: Vec<f64>,
}

impl Trace {
    pub fn new(n_actions: usize) -> Trace {
        Trace {
            n_actions,
            ..Trace::default()
        }
    }

    pub fn steps(&self) -> usize {
        self.q.len() / self.n_actions.max(1)
    }

    pub fn push(&mut self, q: &[f64], w: &[f64]) {
        self.q.extend_from_slice(q);
        self.w.extend_from_slice(w);
    }

    /// Log-likelihood and its derivative in `beta`.
    pub fn eval(&self, beta: f64) -> (f64, f64) {
        let na = self.n_actions;
        let (mut ll, mut grad) = (0.0, 0.0);
        let mut e = vec![0.0; na];
        for (q, w) in self.q.chunks_exact(na).zip(self.w.chunks_exact(na)) {
            let m = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut z = 0.0;
            for (ea, &qa) in e.iter_mut().zip(q) {
                *ea = (beta * (qa - m)).exp();
                z += *ea;
            }
            let eq = e.iter().zip(q).map(|(ea, qa)| ea * qa).sum::<f64>() / z;
            let lz = z.ln();
            let wsum: f64 = w.iter().sum();
            for (&wa, &qa) in w.iter().zip(q) {
                if wa > 0.0 {
                    ll += wa * (beta * (qa - m) - lz);
                    grad += wa * qa;
                }
            }
            grad -= wsum * eq;
        }
        (ll, grad)
    }
}

/// The maximum-likelihood fit of `beta`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Fit {
    pub beta: f64,
    pub log_likelihood: f64,
}

/// Above this `beta` the model is deterministic for any utility gap a grid can produce.
const BETA_MAX: f64 = 1e12;

/// Maximizes the concave log-likelihood over `beta >= 0`.
pub fn fit_beta(trace: &Trace) -> Fit {
    fit_beta_to(trace, 1e-12)
}

/// [`fit_beta`] to a relative precision `rel` of `beta` (the mixture's inner rounds need less
/// than a report prints).
pub fn fit_beta_to(trace: &Trace, rel: f64) -> Fit {
    let at = |beta: f64| Fit {
        beta,
        log_likelihood: trace.eval(beta).0,
    };
    if trace.steps() == 0 || trace.eval(0.0).1 <= 0.0 {
        return at(0.0);
    }
    // Bracket the root of the derivative by doubling; the derivative of a deterministic optimal
    // agent's likelihood only decays toward 0, and reaching it (in floating point) ends the climb.
    let (mut lo, mut hi) = (0.0, 1.0);
    while trace.eval(hi).1 > 0.0 {
        lo = hi;
        hi *= 2.0;
        if hi > BETA_MAX {
            return at(lo);
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        // Relative precision far beyond what any report prints.
        if mid <= lo || mid >= hi || hi - lo <= rel * hi {
            break;
        }
        if trace.eval(mid).1 > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The derivative is exactly 0 at `hi` when the likelihood has saturated; `lo` is the last
    // point with a rising likelihood, and the better of the two is the answer.
    let (a, b) = (at(lo), at(hi));
    if b.log_likelihood >= a.log_likelihood {
        b
    } else {
        a
    }
}

/// MEG in nats per step: the fitted expected log-likelihood per step above the uniform policy's.
/// `trace.w` holds the agent's action distributions.
pub fn meg(trace: &Trace) -> (f64, Fit) {
    let t = trace.steps();
    if t == 0 {
        return (
            0.0,
            Fit {
                beta: 0.0,
                log_likelihood: 0.0,
            },
        );
    }
    let fit = fit_beta(trace);
    let per_step = fit.log_likelihood / t as f64 + (trace.n_actions as f64).ln();
    // Against uniform weights the maximum is at beta = 0, exactly 0; rounding must not show as
    // a sliver of goal-directedness (or of its negative).
    (per_step.max(0.0), fit)
}

/// Posterior over candidates with a uniform prior. `scores` are log-likelihoods already
/// penalized for fitted parameters.
pub fn posterior(scores: &[f64]) -> Vec<f64> {
    let lse = super::stats::log_sum_exp(scores);
    scores.iter().map(|s| (s - lse).exp()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace from (q, chosen action) pairs, one-hot weights.
    fn sampled(rows: &[([f64; 4], usize)]) -> Trace {
        let mut t = Trace::new(4);
        for (q, a) in rows {
            let mut w = [0.0; 4];
            w[*a] = 1.0;
            t.push(q, &w);
        }
        t
    }

    #[test]
    fn meg_is_zero_for_uniform_and_near_log_a_for_deterministic_optimal() {
        let qs = [
            [-3.0, -1.0, -3.0, -2.0],
            [-5.0, -4.0, -6.0, -2.0],
            [-1.0, -3.0, -3.0, -3.0],
            [-7.0, -7.0, -5.0, -6.0],
        ];
        let mut uniform = Trace::new(4);
        let mut optimal = Trace::new(4);
        for q in &qs {
            uniform.push(q, &[0.25; 4]);
            let best = (0..4).max_by(|&a, &b| q[a].total_cmp(&q[b])).unwrap();
            let mut w = [0.0; 4];
            w[best] = 1.0;
            optimal.push(q, &w);
        }
        let (m, fit) = meg(&uniform);
        assert!(m.abs() < 1e-12, "{m} {fit:?}");
        let (m, _) = meg(&optimal);
        assert!(m > 4f64.ln() - 1e-6 && m <= 4f64.ln() + 1e-12, "{m}");
    }

    #[test]
    fn meg_and_fit_are_invariant_to_affine_changes_of_the_utility() {
        let rows = [
            ([-3.0, -1.0, -3.0, -2.0], 1),
            ([-5.0, -4.0, -6.0, -2.0], 3),
            ([-1.0, -3.0, -3.0, -3.0], 1),
            ([-7.0, -7.0, -5.0, -6.0], 2),
            ([-2.0, -4.0, -3.0, -3.0], 0),
        ];
        let base = sampled(&rows);
        let f0 = fit_beta(&base);
        assert!(f0.beta > 0.0 && f0.beta.is_finite());
        let mut weights = Trace::new(4);
        for (q, _) in &rows {
            weights.push(q, &[0.7, 0.1, 0.1, 0.1]);
        }
        let m0 = meg(&weights).0;
        for (a, b) in [(10.0, 3.0), (0.01, -100.0), (1e3, 1e3)] {
            let scale = |t: &Trace| Trace {
                q: t.q.iter().map(|q| a * q + b).collect(),
                ..t.clone()
            };
            let f = fit_beta(&scale(&base));
            assert!(
                (f.log_likelihood - f0.log_likelihood).abs() < 1e-6,
                "{a} {b}: {f:?} vs {f0:?}"
            );
            assert!((f.beta * a / f0.beta - 1.0).abs() < 1e-6, "{a}: {f:?}");
            let m = meg(&scale(&weights)).0;
            assert!((m - m0).abs() < 1e-9, "{a} {b}: {m} vs {m0}");
        }
    }

    #[test]
    fn fit_recovers_beta_and_posterior_prefers_the_true_goal() {
        // Expected-likelihood weights drawn from beta = 2 recover beta = 2 exactly.
        let q = [-3.0, -1.0, -2.0, -4.0];
        let mut pi = [0.0; 4];
        let z: f64 = q.iter().map(|x: &f64| (2.0 * x).exp()).sum();
        for (p, x) in pi.iter_mut().zip(&q) {
            *p = (2.0 * x).exp() / z;
        }
        let mut t = Trace::new(4);
        t.push(&q, &pi);
        t.push(&[-2.0, -2.0, -1.0, -3.0], &{
            let z: f64 = [-2.0f64, -2.0, -1.0, -3.0]
                .iter()
                .map(|x| (2.0 * x).exp())
                .sum();
            [-2.0f64, -2.0, -1.0, -3.0].map(|x| (2.0 * x).exp() / z)
        });
        let f = fit_beta(&t);
        assert!((f.beta - 2.0).abs() < 1e-6, "{f:?}");
        let p = posterior(&[-10.0, -10.0 - 2f64.ln()]);
        assert!((p[0] - 2.0 / 3.0).abs() < 1e-12);
        let p = posterior(&[-5000.0, 0.0]);
        assert_eq!(p, vec![0.0, 1.0]);
    }
}
