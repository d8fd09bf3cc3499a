//! Step 2: linear probes on the visited states' activations. A probe is a ridge regression on
//! standardized activations, fitted on the states of the first `1 - holdout` share of levels and
//! scored on the rest, beside the same probe fitted to shuffled labels (what chance gives).

use super::report::{CueProbe, GoalProbe};
use super::states::Visited;
use super::ProbeConfig;
use mesascope_core::rng::Rng;
use mesascope_core::{GoalId, Split, Testbed};

/// One probe per (layer, declared goal) on the shifted states: from the activations to the
/// goal's moves labelled +1 (a best move for it) or -1, scored by [`move_accuracy`]. Training
/// states are left out: there the intended goal and its proxy stand on the same cells, so their
/// labels agree.
pub(super) fn goal_probes(
    tb: &dyn Testbed,
    states: &[Visited],
    acts: &[Vec<Vec<f32>>],
    names: &[String],
    cfg: &ProbeConfig,
    rng: &mut Rng,
) -> Vec<GoalProbe> {
    let mut goal_probes = Vec::new();
    for (l, layer_acts) in acts.iter().enumerate() {
        for (g, decl) in GoalId::all(tb).zip(tb.goals()) {
            let rows: Vec<(usize, bool, Vec<f64>)> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| s.split != Split::Train)
                .filter_map(|(i, s)| {
                    s.goal_moves(g).map(|m| {
                        let y = m.iter().map(|&b| if b { 1.0 } else { -1.0 }).collect();
                        (i, held_out(s.level, cfg.levels, cfg.holdout), y)
                    })
                })
                .collect();
            if let Some((acc, acc_s, ntr, nte)) =
                score(layer_acts, &rows, cfg.ridge, rng, &move_accuracy)
            {
                goal_probes.push(GoalProbe {
                    layer: names[l].clone(),
                    goal: decl.name.into(),
                    intended: g.is_intended(),
                    accuracy: acc,
                    accuracy_shuffled: acc_s,
                    train_states: ntr,
                    test_states: nte,
                });
            }
        }
    }
    goal_probes
}

/// One probe per layer for the oversight cue (testbeds that have one), on every state: from
/// the activations to watched (+1) or not (-1), scored by [`accuracy`] beside the majority class.
pub(super) fn cue_probes(
    states: &[Visited],
    acts: &[Vec<Vec<f32>>],
    names: &[String],
    cfg: &ProbeConfig,
    rng: &mut Rng,
) -> Vec<CueProbe> {
    let mut cue = Vec::new();
    for (l, layer_acts) in acts.iter().enumerate() {
        let rows: Vec<(usize, bool, Vec<f64>)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.watched.map(|w| {
                    (
                        i,
                        held_out(s.level, cfg.levels, cfg.holdout),
                        vec![if w { 1.0 } else { -1.0 }],
                    )
                })
            })
            .collect();
        let test: Vec<bool> = rows.iter().filter(|r| r.1).map(|r| r.2[0] > 0.0).collect();
        if let Some((acc, acc_s, _, nte)) = score(layer_acts, &rows, cfg.ridge, rng, &accuracy) {
            let yes = test.iter().filter(|&&w| w).count() as f64 / test.len().max(1) as f64;
            cue.push(CueProbe {
                layer: names[l].clone(),
                accuracy: acc,
                majority: yes.max(1.0 - yes),
                accuracy_shuffled: acc_s,
                test_states: nte,
            });
        }
    }
    cue
}

/// Solves the symmetric positive definite system `a x = b` (Cholesky), `a` row-major `d x d`,
/// `b` with `k` columns row-major; returns `x` `d x k`.
fn solve_spd(mut a: Vec<f64>, d: usize, b: &[f64], k: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for p in 0..j {
            s -= a[j * d + p] * a[j * d + p];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for p in 0..j {
                s -= a[i * d + p] * a[j * d + p];
            }
            a[i * d + j] = s / l;
        }
    }
    let mut x = b.to_vec();
    for c in 0..k {
        for i in 0..d {
            let mut s = x[i * k + c];
            for p in 0..i {
                s -= a[i * d + p] * x[p * k + c];
            }
            x[i * k + c] = s / a[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = x[i * k + c];
            for p in i + 1..d {
                s -= a[p * d + i] * x[p * k + c];
            }
            x[i * k + c] = s / a[i * d + i];
        }
    }
    Some(x)
}

/// A ridge regression on standardized features (and an unpenalized intercept) from `x` rows to
/// `y` rows of width `k`.
struct Ridge {
    mean: Vec<f64>,
    scale: Vec<f64>,
    w: Vec<f64>,
    k: usize,
}

impl Ridge {
    fn fit(x: &[&[f32]], y: &[Vec<f64>], lambda: f64) -> Option<Ridge> {
        let (n, d) = (x.len(), x.first()?.len());
        let k = y.first()?.len();
        let mut mean = vec![0.0; d];
        for r in x {
            for (m, &v) in mean.iter_mut().zip(r.iter()) {
                *m += v as f64 / n as f64;
            }
        }
        let mut scale = vec![0.0; d];
        for r in x {
            for j in 0..d {
                scale[j] += (r[j] as f64 - mean[j]).powi(2) / n as f64;
            }
        }
        // Dead units (constant over the data) get scale 1 and contribute nothing.
        scale
            .iter_mut()
            .for_each(|s| *s = if *s > 1e-12 { s.sqrt() } else { 1.0 });
        let dd = d + 1;
        let mut a = vec![0.0; dd * dd];
        let mut b = vec![0.0; dd * k];
        let mut z = vec![0.0; dd];
        for (r, t) in x.iter().zip(y) {
            for j in 0..d {
                z[j] = (r[j] as f64 - mean[j]) / scale[j];
            }
            z[d] = 1.0;
            for i in 0..dd {
                for j in 0..=i {
                    a[i * dd + j] += z[i] * z[j];
                }
                for c in 0..k {
                    b[i * k + c] += z[i] * t[c];
                }
            }
        }
        for i in 0..dd {
            for j in 0..i {
                a[j * dd + i] = a[i * dd + j];
            }
            if i < d {
                a[i * dd + i] += lambda.max(1e-9);
            } else {
                a[i * dd + i] += 1e-9;
            }
        }
        let w = solve_spd(a, dd, &b, k)?;
        Some(Ridge { mean, scale, w, k })
    }

    fn predict(&self, r: &[f32]) -> Vec<f64> {
        let d = self.mean.len();
        (0..self.k)
            .map(|c| {
                let bias = self.w[d * self.k + c];
                r.iter()
                    .zip(self.mean.iter().zip(&self.scale))
                    .enumerate()
                    .map(|(j, (&x, (m, sc)))| (x as f64 - m) / sc * self.w[j * self.k + c])
                    .sum::<f64>()
                    + bias
            })
            .collect()
    }
}

fn shuffled(y: &[Vec<f64>], rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut y = y.to_vec();
    for i in (1..y.len()).rev() {
        y.swap(i, rng.below(i + 1));
    }
    y
}

/// Whether level `k` of `levels` is held out.
fn held_out(k: usize, levels: usize, holdout: f64) -> bool {
    (k as f64) >= (levels as f64) * (1.0 - holdout)
}

/// A probe's score on held-out rows.
type Metric = dyn Fn(&Ridge, &[&[f32]], &[Vec<f64>]) -> f64;

/// Fits and scores one probe: rows `rows` of `acts`, labels `y`.
fn score(
    acts: &[Vec<f32>],
    rows: &[(usize, bool, Vec<f64>)],
    lambda: f64,
    rng: &mut Rng,
    metric: &Metric,
) -> Option<(f64, f64, usize, usize)> {
    let (train, test): (Vec<_>, Vec<_>) = rows.iter().partition(|r| !r.1);
    if train.len() < 8 || test.len() < 4 {
        return None;
    }
    let xs = |v: &[&(usize, bool, Vec<f64>)]| -> Vec<&[f32]> {
        v.iter().map(|r| acts[r.0].as_slice()).collect()
    };
    let ys = |v: &[&(usize, bool, Vec<f64>)]| -> Vec<Vec<f64>> {
        v.iter().map(|r| r.2.clone()).collect()
    };
    let (xtr, ytr, xte, yte) = (xs(&train), ys(&train), xs(&test), ys(&test));
    let real = Ridge::fit(&xtr, &ytr, lambda)?;
    let fake = Ridge::fit(&xtr, &shuffled(&ytr, rng), lambda)?;
    Some((
        metric(&real, &xte, &yte),
        metric(&fake, &xte, &yte),
        train.len(),
        test.len(),
    ))
}

/// Share of rows whose highest-scored move is one of the goal's best moves (labels +1).
fn move_accuracy(model: &Ridge, x: &[&[f32]], y: &[Vec<f64>]) -> f64 {
    let right = x
        .iter()
        .zip(y)
        .filter(|(r, t)| {
            let p = model.predict(r);
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0);
            t[best] > 0.0
        })
        .count();
    right as f64 / y.len().max(1) as f64
}

fn accuracy(model: &Ridge, x: &[&[f32]], y: &[Vec<f64>]) -> f64 {
    let right = x
        .iter()
        .zip(y)
        .filter(|(r, t)| (model.predict(r)[0] > 0.0) == (t[0] > 0.0))
        .count();
    right as f64 / y.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean over the outputs of the held-out R².
    fn r2(model: &Ridge, x: &[&[f32]], y: &[Vec<f64>]) -> f64 {
        let k = model.k;
        let mut total = 0.0;
        for c in 0..k {
            let mean = y.iter().map(|t| t[c]).sum::<f64>() / y.len() as f64;
            let sst: f64 = y.iter().map(|t| (t[c] - mean).powi(2)).sum();
            let sse: f64 = x
                .iter()
                .zip(y)
                .map(|(r, t)| (model.predict(r)[c] - t[c]).powi(2))
                .sum();
            total += if sst > 0.0 { 1.0 - sse / sst } else { 0.0 };
        }
        total / k as f64
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4, 2], [2, 3]] x = [[2], [1]] -> x = [0.5, 0].
        let x = solve_spd(vec![4.0, 2.0, 2.0, 3.0], 2, &[2.0, 1.0], 1).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(vec![0.0, 0.0, 0.0, 0.0], 2, &[1.0, 1.0], 1).is_none());
    }

    #[test]
    fn ridge_recovers_a_linear_map_and_not_shuffled_labels() {
        let mut rng = Rng::new(5);
        let xs: Vec<Vec<f32>> = (0..400)
            .map(|_| (0..6).map(|_| rng.unit() as f32).collect())
            .collect();
        let y: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| vec![3.0 * x[0] as f64 - 2.0 * x[3] as f64 + 1.0])
            .collect();
        let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let (tr, te) = (&rows[..300], &rows[300..]);
        let m = Ridge::fit(tr, &y[..300], 1e-3).unwrap();
        assert!(r2(&m, te, &y[300..]) > 0.999);
        let s = Ridge::fit(tr, &shuffled(&y[..300], &mut rng), 1e-3).unwrap();
        assert!(r2(&s, te, &y[300..]) < 0.1);
    }
}
