//! The statistics of the audit: binomial intervals, the exact paired test, means with intervals,
//! and divergences between action distributions.

use serde::Serialize;

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A proportion with its Wilson 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub count: usize,
    pub of: usize,
    pub rate: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Rate {
    pub fn new(count: usize, of: usize) -> Rate {
        let (lo, hi) = wilson(count, of);
        Rate {
            count,
            of,
            rate: if of == 0 {
                0.0
            } else {
                count as f64 / of as f64
            },
            lo,
            hi,
        }
    }
}

/// Wilson score interval at 95%. Unlike the normal (Wald) interval it stays inside [0, 1] and
/// keeps its coverage at rates of 0 and 1, which audits meet all the time. `(0, 1)` for `n = 0`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided exact binomial test of `k` successes in `n` trials against `p = 1/2`: twice the
/// smaller tail, capped at 1. Summed in log space so that thousands of trials do not underflow.
pub fn binomial_half_two_sided(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let k = k.min(n - k);
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut log_c = 0.0f64; // ln C(n, 0)
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        if i > 0 {
            log_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(log_c + ln_half_n);
    }
    (2.0 * log_sum_exp(&terms).exp()).min(1.0)
}

/// McNemar's exact test on paired binary outcomes: `b` pairs where only the first member
/// succeeded, `c` where only the second did. Concordant pairs carry no information about the
/// difference, so the test is the exact binomial on the `b + c` discordant pairs.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    binomial_half_two_sided(b.min(c), b + c)
}

/// `ln(sum(exp(x)))`, stable; `-inf` for an empty slice.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// A mean with its 95% normal interval (the audit's means are over hundreds of episodes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MeanCi {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl MeanCi {
    pub fn of(xs: &[f64]) -> MeanCi {
        let n = xs.len();
        if n == 0 {
            return MeanCi {
                mean: 0.0,
                lo: 0.0,
                hi: 0.0,
                n,
            };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let half = Z95 * (var / n as f64).sqrt();
        MeanCi {
            mean,
            lo: mean - half,
            hi: mean + half,
            n,
        }
    }
}

/// `KL(p || q)` in nats; infinite where `q` is 0 and `p` is not.
pub fn kl(p: &[f32], q: &[f32]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(&pi, _)| pi > 0.0)
        .map(|(&pi, &qi)| {
            if qi <= 0.0 {
                f64::INFINITY
            } else {
                pi as f64 * (pi as f64 / qi as f64).ln()
            }
        })
        .sum()
}

/// Jensen-Shannon divergence in nats: symmetric, always finite, at most `ln 2`.
pub fn js(p: &[f32], q: &[f32]) -> f64 {
    let m: Vec<f32> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0)
}

/// Total variation distance: the largest difference in probability of any set of actions.
pub fn tv(p: &[f32], q: &[f32]) -> f64 {
    0.5 * p
        .iter()
        .zip(q)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), Table I: 0/10 -> (0, 0.2775); 5/10 -> (0.2366, 0.7634);
        // 81/263 -> (0.2553, 0.3662).
        let (lo, hi) = wilson(0, 10);
        assert!(
            close(lo, 0.0, 1e-12) && close(hi, 0.2775, 1e-4),
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(5, 10);
        assert!(
            close(lo, 0.2366, 1e-4) && close(hi, 0.7634, 1e-4),
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(81, 263);
        assert!(
            close(lo, 0.2553, 1e-4) && close(hi, 0.3662, 1e-4),
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_exact_known_values() {
        // b = 10, c = 2: 2 * P(X <= 2 | n = 12) = 2 * (1 + 12 + 66) / 4096.
        assert!(close(mcnemar_exact(10, 2), 158.0 / 4096.0, 1e-12));
        assert!(close(mcnemar_exact(2, 10), 158.0 / 4096.0, 1e-12));
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        // 0 of 5: 2 / 32.
        assert!(close(mcnemar_exact(5, 0), 0.0625, 1e-12));
        // Thousands of pairs do not underflow to NaN.
        let p = mcnemar_exact(3000, 0);
        assert!((0.0..1e-300).contains(&p), "{p}");
        assert!(close(mcnemar_exact(520, 480), 0.2174, 1e-3));
    }

    #[test]
    fn divergences() {
        let (p, q) = ([0.5f32, 0.5, 0.0, 0.0], [0.0f32, 0.0, 0.5, 0.5]);
        assert!(close(js(&p, &q), std::f64::consts::LN_2, 1e-6));
        assert!(close(tv(&p, &q), 1.0, 1e-12));
        assert_eq!(js(&p, &p), 0.0);
        assert!(kl(&p, &q).is_infinite());
        let ci = MeanCi::of(&[1.0, 2.0, 3.0]);
        assert!(close(ci.mean, 2.0, 1e-12) && close(ci.hi - ci.mean, Z95 / 3f64.sqrt(), 1e-12));
    }
}
