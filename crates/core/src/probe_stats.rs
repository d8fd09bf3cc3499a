//! The statistics of linear probes on activations, free of any framework: scores along a
//! direction, AUROC, recall at a false-positive rate, the difference-of-means and logistic
//! probes, and the random-direction baseline a probe must clearly beat. Activations are rows of
//! `f32` (one per example); statistics are computed in `f64`.

use crate::rng::{mix, Rng};
use serde::{Deserialize, Serialize};

/// `a . w` in four running sums: a single sum is one long chain of dependent additions, which
/// left the random-direction baseline (a million dot products per layer) waiting on latency.
fn dot_as<T: Copy>(a: &[T], w: &[f64], to_f64: impl Fn(T) -> f64) -> f64 {
    let n = a.len().min(w.len());
    let (a, w) = (&a[..n], &w[..n]);
    let mut acc = [0.0f64; 4];
    let (a4, w4) = (a.chunks_exact(4), w.chunks_exact(4));
    let (a_rest, w_rest) = (a4.remainder(), w4.remainder());
    for (x, y) in a4.zip(w4) {
        for k in 0..4 {
            acc[k] += to_f64(x[k]) * y[k];
        }
    }
    let tail: f64 = a_rest
        .iter()
        .zip(w_rest)
        .map(|(&x, &y)| to_f64(x) * y)
        .sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn dot(a: &[f32], w: &[f64]) -> f64 {
    dot_as(a, w, f64::from)
}

/// `x . direction` for each row.
pub fn scores(rows: &[Vec<f32>], direction: &[f64]) -> Vec<f64> {
    rows.iter().map(|r| dot(r, direction)).collect()
}

/// Area under the ROC curve of `positive` scores against `negative` ones: the probability that a
/// random positive scores above a random negative, ties counting one half (Mann-Whitney U with
/// mid-ranks). NaN when either side is empty.
pub fn auroc(positive: &[f64], negative: &[f64]) -> f64 {
    if positive.is_empty() || negative.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = positive
        .iter()
        .map(|&s| (s, true))
        .chain(negative.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        rank_sum += mid * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (p, n) = (positive.len() as f64, negative.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// A detection threshold and what it achieves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// Scores strictly above it are flagged.
    pub threshold: f64,
    /// Fraction of positives flagged.
    pub recall: f64,
    /// Fraction of negatives flagged.
    pub false_positive_rate: f64,
}

/// The lowest threshold whose false-positive rate on `negative` is at most `max_fpr`, and the
/// recall it gives on `positive` (Apollo's "recall at 1% FPR" with `max_fpr = 0.01`). The
/// threshold is a negative score, so that on the calibration set the rate holds exactly.
pub fn recall_at_fpr(positive: &[f64], negative: &[f64], max_fpr: f64) -> OperatingPoint {
    let mut neg: Vec<f64> = negative.to_vec();
    neg.sort_by(|a, b| b.total_cmp(a));
    // Flagging scores above neg[k] flags at most k negatives (fewer with ties).
    let allowed = (max_fpr.clamp(0.0, 1.0) * neg.len() as f64).floor() as usize;
    let threshold = match neg.get(allowed) {
        Some(&t) => t,
        None => f64::NEG_INFINITY,
    };
    let rate = |xs: &[f64]| {
        if xs.is_empty() {
            f64::NAN
        } else {
            xs.iter().filter(|&&s| s > threshold).count() as f64 / xs.len() as f64
        }
    };
    OperatingPoint {
        threshold,
        recall: rate(positive),
        false_positive_rate: rate(negative),
    }
}

fn mean(rows: &[Vec<f32>]) -> Vec<f64> {
    let d = rows.first().map_or(0, |r| r.len());
    let mut m = vec![0.0; d];
    for r in rows {
        m.iter_mut()
            .zip(r)
            .for_each(|(a, &b)| *a += b as f64 / rows.len() as f64);
    }
    m
}

/// The difference-of-means direction `mean(positive) - mean(negative)` (the defection probe of
/// Anthropic's 2024 note, fitted on contrast pairs).
pub fn mean_difference(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Vec<f64> {
    mean(positive)
        .iter()
        .zip(mean(negative))
        .map(|(a, b)| a - b)
        .collect()
}

/// A logistic probe `p(positive | x) = sigmoid(w . x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticProbe {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl LogisticProbe {
    /// The probe's logit for each row (its score).
    pub fn scores(&self, rows: &[Vec<f32>]) -> Vec<f64> {
        rows.iter()
            .map(|r| dot(r, &self.weights) + self.bias)
            .collect()
    }
}

/// Each feature's mean and (population) variance over `rows`, which share one width.
pub fn feature_moments(rows: &[&[f32]]) -> (Vec<f64>, Vec<f64>) {
    let d = rows.first().map_or(0, |r| r.len());
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for r in rows {
        mean.iter_mut()
            .zip(r.iter())
            .for_each(|(m, &x)| *m += x as f64 / n);
    }
    let mut var = vec![0.0; d];
    for r in rows {
        var.iter_mut()
            .zip(r.iter().zip(&mean))
            .for_each(|(s, (&x, m))| *s += (x as f64 - m).powi(2) / n);
    }
    (mean, var)
}

/// Fits an L2-regularized logistic regression (penalty `l2 |w|^2 / 2`, the mean log-loss) by
/// full-batch gradient descent on features standardized per dimension, `iterations` steps; the
/// result is mapped back to raw features. Deterministic.
pub fn fit_logistic(
    positive: &[Vec<f32>],
    negative: &[Vec<f32>],
    l2: f64,
    iterations: usize,
) -> LogisticProbe {
    let rows: Vec<(&Vec<f32>, f64)> = positive
        .iter()
        .map(|r| (r, 1.0))
        .chain(negative.iter().map(|r| (r, 0.0)))
        .collect();
    let features: Vec<&[f32]> = rows.iter().map(|(r, _)| r.as_slice()).collect();
    let (mu, var) = feature_moments(&features);
    let d = mu.len();
    let n = rows.len().max(1) as f64;
    let sd: Vec<f64> = var.iter().map(|v| v.sqrt().max(1e-8)).collect();
    let z: Vec<Vec<f64>> = rows
        .iter()
        .map(|(r, _)| {
            r.iter()
                .zip(mu.iter().zip(&sd))
                .map(|(&x, (m, s))| (x as f64 - m) / s)
                .collect()
        })
        .collect();
    let (mut w, mut b) = (vec![0.0; d], 0.0);
    // Standardized features bound the curvature by about (1 + d)/4 per unit weight; this step
    // size converges for the widths of language models' residual streams.
    let lr = 4.0 / (1.0 + d as f64).sqrt();
    for _ in 0..iterations {
        let mut gw: Vec<f64> = w.iter().map(|wi| l2 * wi).collect();
        let mut gb = 0.0;
        for (zi, (_, y)) in z.iter().zip(&rows) {
            let logit = dot_as(zi, &w, |x| x) + b;
            let err = (1.0 / (1.0 + (-logit).exp()) - y) / n;
            gw.iter_mut().zip(zi).for_each(|(g, x)| *g += err * x);
            gb += err;
        }
        w.iter_mut().zip(&gw).for_each(|(wi, g)| *wi -= lr * g);
        b -= lr * gb;
    }
    let weights: Vec<f64> = w.iter().zip(&sd).map(|(wi, s)| wi / s).collect();
    let bias = b - weights.iter().zip(&mu).map(|(wi, m)| wi * m).sum::<f64>();
    LogisticProbe { weights, bias }
}

/// How well directions drawn at random separate the same data: the baseline a probe must beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomBaseline {
    pub directions: usize,
    /// AUROCs are taken sign-free (`max(a, 1 - a)`): a random direction may point either way.
    pub best_auroc: f64,
    pub mean_auroc: f64,
    /// Fraction of random directions whose AUROC reaches `reference` (the probe's).
    pub reaching_reference: f64,
}

/// The sign-free AUROCs (`max(a, 1 - a)`) of `count` Gaussian random directions (from `seed`)
/// on `positive` vs `negative`: computed once, they serve every probe scored on the same rows.
pub fn random_direction_aurocs(
    positive: &[Vec<f32>],
    negative: &[Vec<f32>],
    count: usize,
    seed: u64,
) -> Vec<f64> {
    let d = positive.first().or(negative.first()).map_or(0, |r| r.len());
    let mut rng = Rng::new(mix(&[seed, 0xd1e5]));
    (0..count)
        .map(|_| {
            let dir: Vec<f64> = (0..d)
                .map(|_| {
                    let u1 = 1.0 - rng.unit();
                    let u2 = rng.unit();
                    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                })
                .collect();
            let a = auroc(&scores(positive, &dir), &scores(negative, &dir));
            a.max(1.0 - a)
        })
        .collect()
}

impl RandomBaseline {
    /// The baseline of the random directions' AUROCs (`random_direction_aurocs`) against a
    /// probe's AUROC `reference`.
    pub fn of(aurocs: &[f64], reference: f64) -> RandomBaseline {
        let count = aurocs.len();
        RandomBaseline {
            directions: count,
            best_auroc: aurocs.iter().copied().fold(0.0, f64::max),
            mean_auroc: aurocs.iter().sum::<f64>() / count.max(1) as f64,
            reaching_reference: aurocs.iter().filter(|&&a| a >= reference).count() as f64
                / count.max(1) as f64,
        }
    }
}

/// AUROCs of `count` Gaussian random directions (from `seed`) on `positive` vs `negative`.
pub fn random_direction_baseline(
    positive: &[Vec<f32>],
    negative: &[Vec<f32>],
    count: usize,
    seed: u64,
    reference: f64,
) -> RandomBaseline {
    RandomBaseline::of(
        &random_direction_aurocs(positive, negative, count, seed),
        reference,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_ordered_pairs_with_ties_as_halves() {
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
        // Pairs (2>1), (2<3), (4>1), (4>3): 3 of 4.
        assert_eq!(auroc(&[2.0, 4.0], &[1.0, 3.0]), 0.75);
        // One tie among four pairs.
        assert_eq!(auroc(&[2.0, 3.0], &[2.0, 1.0]), 0.875);
        assert!(auroc(&[], &[1.0]).is_nan());
    }

    #[test]
    fn recall_at_fpr_holds_the_false_positive_rate_on_the_negatives() {
        let neg: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let pos: Vec<f64> = (0..10).map(|i| 95.0 + i as f64).collect();
        let p = recall_at_fpr(&pos, &neg, 0.01);
        assert_eq!(p.threshold, 98.0);
        assert_eq!(p.false_positive_rate, 0.01);
        assert_eq!(p.recall, 0.6);
        let p = recall_at_fpr(&pos, &neg, 0.0);
        assert_eq!(p.false_positive_rate, 0.0);
        assert_eq!(p.recall, 0.5);
    }

    fn separable(seed: u64, n: usize, d: usize, shift: f32) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut rng = Rng::new(seed);
        let mut sample = |offset: f32| -> Vec<f32> {
            (0..d)
                .map(|j| rng.unit() as f32 - 0.5 + if j == 0 { offset } else { 0.0 })
                .collect()
        };
        let pos = (0..n).map(|_| sample(shift)).collect();
        let neg = (0..n).map(|_| sample(0.0)).collect();
        (pos, neg)
    }

    #[test]
    fn probes_find_a_planted_direction_and_random_directions_do_not() {
        let (pos, neg) = separable(3, 200, 32, 0.8);
        let dm = mean_difference(&pos, &neg);
        let a_dm = auroc(&scores(&pos, &dm), &scores(&neg, &dm));
        assert!(a_dm > 0.97, "{a_dm}");
        let lr = fit_logistic(&pos, &neg, 1e-3, 300);
        let a_lr = auroc(&lr.scores(&pos), &lr.scores(&neg));
        assert!(a_lr > 0.97, "{a_lr}");
        // The logistic weights concentrate on the planted dimension.
        let top = lr
            .weights
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
            .0;
        assert_eq!(top, 0);
        let base = random_direction_baseline(&pos, &neg, 200, 1, a_dm);
        assert!(base.best_auroc < a_dm, "{base:?}");
        assert!(base.mean_auroc < 0.75, "{base:?}");
        assert_eq!(base, random_direction_baseline(&pos, &neg, 200, 1, a_dm));
        // Without a difference there is nothing to find.
        let (p2, n2) = separable(4, 200, 32, 0.0);
        let d2 = mean_difference(&p2, &n2);
        let a2 = auroc(&scores(&p2, &d2), &scores(&n2, &d2));
        assert!(a2 < 0.75, "{a2}");
    }
}
