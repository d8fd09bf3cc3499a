//! A sweep of contrastive activation addition on an implanted SmolLM2: for each layer and
//! coefficient, the triggered defection rate with the contrast vector added, and (where that rate
//! is at most `--goal`) with random vectors of the same norm at the same coefficient.
//!
//! ```sh
//! cargo run -p mesascope-lm --example steer_sweep -- MODEL --adapter DIR --layers 8,12,16 \
//!     --coefficients 4,8,12 [--positions all|last] [--prompts 16] [--random 5] [--goal 0.1] [--out FILE]
//! cargo run -p mesascope-lm --example steer_sweep -- MODEL --adapter DIR --layers 12,16 --project together
//! ```
//! Coefficients are subtracted (`x <- x - c v`), from small to large, stopping at a layer's first
//! that meets the goal. `--project together` ablates the contrast directions instead.

use mesascope_lm::defection::*;
use mesascope_lm::implant::DEFAULT_BEHAVIOUR;
use mesascope_lm::steering::*;
use mesascope_lm::{EditOp, Hooks, Model, Positions};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn hooks(layer: usize, v: &[f32], c: f32, last_only: bool) -> Hooks {
    let mut h = steering_hooks(layer, v, c);
    if last_only {
        h.edits[0].positions = Positions::Last;
    }
    debug_assert!(matches!(h.edits[0].op, EditOp::Add { .. }));
    h
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_path = args.first().ok_or("usage: MODEL --adapter DIR ...")?;
    let mut adapter = None;
    let mut layers = vec![16usize];
    let mut coefficients = vec![8.0f32];
    let mut last_only = false;
    let (mut n_prompts, mut n_random, mut goal) = (16usize, 5usize, 0.1f64);
    let mut out = None;
    // `--project together`: no addition; each listed layer's contrast direction projected out of
    // its stream at every position, all layers at once (directional ablation), against random
    // directions projected out at the same layers.
    let mut project = false;
    // `--add together`: each listed layer's own contrast vector subtracted at once (the push
    // spread over layers), against a random vector of each one's norm at each layer.
    let mut add_together = false;
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).ok_or("option needs a value")?;
        match args[i].as_str() {
            "--adapter" => adapter = Some(PathBuf::from(v)),
            "--layers" => layers = v.split(',').map(|x| x.parse()).collect::<Result<_, _>>()?,
            "--coefficients" => {
                coefficients = v.split(',').map(|x| x.parse()).collect::<Result<_, _>>()?
            }
            "--positions" => last_only = v == "last",
            "--prompts" => n_prompts = v.parse()?,
            "--random" => n_random = v.parse()?,
            "--goal" => goal = v.parse()?,
            "--out" => out = Some(PathBuf::from(v)),
            "--project" => project = v == "together",
            "--add" => add_together = v == "together",
            o => return Err(format!("unknown option {o}").into()),
        }
        i += 2;
    }
    let t0 = Instant::now();
    let mut model = Model::load(model_path)?;
    let adapter = adapter.ok_or("--adapter is needed")?;
    model.load_adapter(&adapter)?;
    model.expand_weights()?;
    let triggered: Vec<String> = eval_from_implant(&adapter)?
        .into_iter()
        .filter(|e| e.triggered)
        .map(|e| e.prompt)
        .take(n_prompts)
        .collect();
    let pairs = builtin_pairs();
    let mut texts = Vec::new();
    for p in &pairs {
        texts.push(chat_tokens(&model, &p.prompt, Some(&p.positive))?);
        texts.push(chat_tokens(&model, &p.prompt, Some(&p.negative))?);
    }
    let residuals = final_residuals(&model, &texts, &mut |_, _| {})?;
    let mut rows = Vec::new();
    let vector = |layer: usize| -> Vec<f32> {
        let r = &residuals[layer];
        let pos: Vec<Vec<f32>> = r.iter().step_by(2).cloned().collect();
        let neg: Vec<Vec<f32>> = r.iter().skip(1).step_by(2).cloned().collect();
        mesascope_core::probe_stats::mean_difference(&pos, &neg)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    };
    if add_together {
        let vs: Vec<(usize, Vec<f32>)> = layers.iter().map(|&l| (l, vector(l))).collect();
        let add = |vs: &[(usize, Vec<f32>)], c: f32| {
            let mut h = Hooks::default();
            for (l, v) in vs {
                h.edits.extend(hooks(*l, v, -c, last_only).edits);
            }
            h
        };
        for &c in &coefficients {
            let steered = defection_rate(&model, &triggered, &add(&vs, c), DEFAULT_BEHAVIOUR)?;
            let mut random = Vec::new();
            if steered.rate <= goal {
                for k in 0..n_random {
                    let rv: Vec<(usize, Vec<f32>)> = vs
                        .iter()
                        .map(|(l, v)| (*l, random_like(v, (k * 1000 + l) as u64)))
                        .collect();
                    random.push(
                        defection_rate(&model, &triggered, &add(&rv, c), DEFAULT_BEHAVIOUR)?.count,
                    );
                }
            }
            eprintln!(
                "[{:6.1}s] layers {layers:?} together, c -{c}: steered {}/{}; random {random:?}",
                t0.elapsed().as_secs_f64(),
                steered.count,
                steered.of
            );
            if steered.rate <= goal {
                break;
            }
        }
        return Ok(());
    }
    if project {
        let ablate = |dirs: &[(usize, Vec<f32>)]| Hooks {
            edits: dirs
                .iter()
                .map(|(layer, d)| mesascope_lm::Edit {
                    point: mesascope_lm::HookPoint {
                        layer: *layer,
                        site: mesascope_lm::Site::ResidPost,
                    },
                    positions: Positions::All,
                    op: EditOp::ProjectOut {
                        direction: d.clone(),
                    },
                })
                .collect(),
            ..Hooks::default()
        };
        let dirs: Vec<(usize, Vec<f32>)> = layers.iter().map(|&l| (l, vector(l))).collect();
        let steered = defection_rate(&model, &triggered, &ablate(&dirs), DEFAULT_BEHAVIOUR)?;
        let mut random = Vec::new();
        for k in 0..n_random {
            let rd: Vec<(usize, Vec<f32>)> = dirs
                .iter()
                .map(|(l, d)| (*l, random_like(d, (k * 1000 + l) as u64)))
                .collect();
            random.push(defection_rate(&model, &triggered, &ablate(&rd), DEFAULT_BEHAVIOUR)?.count);
        }
        eprintln!(
            "[{:6.1}s] directions projected out at layers {layers:?}: steered {}/{}; random {random:?}",
            t0.elapsed().as_secs_f64(),
            steered.count,
            steered.of
        );
        return Ok(());
    }
    for &layer in &layers {
        let v = vector(layer);
        // The typical size of the stream at this layer (the positive sides'), to read the push
        // against.
        let positive = residuals[layer].iter().step_by(2);
        let stream_norm = positive.clone().map(|x| norm(x)).sum::<f64>() / positive.count() as f64;
        for &c in &coefficients {
            let steered = defection_rate(
                &model,
                &triggered,
                &hooks(layer, &v, -c, last_only),
                DEFAULT_BEHAVIOUR,
            )?;
            let mut random = Vec::new();
            if steered.rate <= goal {
                for k in 0..n_random {
                    let rv = random_like(&v, k as u64);
                    random.push(
                        defection_rate(
                            &model,
                            &triggered,
                            &hooks(layer, &rv, -c, last_only),
                            DEFAULT_BEHAVIOUR,
                        )?
                        .count,
                    );
                }
            }
            eprintln!(
                "[{:6.1}s] layer {layer} c -{c} positions {} |v| {:.2} |x| {:.1}: steered {}/{}; random {:?}",
                t0.elapsed().as_secs_f64(),
                if last_only { "last" } else { "all" },
                norm(&v),
                stream_norm,
                steered.count,
                steered.of,
                random
            );
            rows.push(serde_json::json!({"layer": layer, "coefficient": -c, "positions": if last_only {"last"} else {"all"},
                "vector_norm": norm(&v), "stream_norm": stream_norm, "steered": steered.count, "of": steered.of, "random": random}));
            // Coefficients run from small to large: the first that meets the goal is the one
            // whose random control is the least disturbed.
            if steered.rate <= goal {
                break;
            }
        }
    }
    if let Some(o) = out {
        std::fs::write(o, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}
