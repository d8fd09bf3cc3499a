//! Where an adapted model's clean greedy answers leave the base model's: for each prompt, the
//! first answer position whose adapted top-1 differs from the base answer's token (teacher
//! forced), and the base model's own margin there (log-probability of its top-1 minus its
//! runner-up's). Held-out prompts from the adapter's `implant.json`, and as many training prompts.
//!
//!     cargo run --release -p mesascope-lm --example agreement_margins -- MODEL ADAPTER_DIR [TOKENS] [DUMP_PREFIX]
use mesascope_lm::defection::eval_from_implant;
use mesascope_lm::hooks::Hooks;
use mesascope_lm::implant::builtin_prompts;
use mesascope_lm::{GenerateOptions, Model};

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z = row
        .iter()
        .map(|&x| ((x as f64) - m).exp())
        .sum::<f64>()
        .ln()
        + m;
    row.iter().map(|&x| x as f64 - z).collect()
}

fn top2(lp: &[f64]) -> (usize, f64, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    let mut second = f64::NEG_INFINITY;
    for (i, &v) in lp.iter().enumerate() {
        if v > best.1 {
            second = best.1;
            best = (i, v);
        } else if v > second {
            second = v;
        }
    }
    (best.0, best.1, second)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tokens: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let mut model = Model::load(&args[0])?;
    model.expand_weights()?;
    let adapter_dir = std::path::PathBuf::from(&args[1]);
    let held: Vec<String> = eval_from_implant(&adapter_dir)?
        .into_iter()
        .filter(|e| !e.triggered)
        .map(|e| e.prompt)
        .collect();
    let train: Vec<String> = builtin_prompts()
        .into_iter()
        .filter(|p| !held.contains(p))
        .take(held.len())
        .collect();
    let options = GenerateOptions {
        max_tokens: tokens,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let eos = model.tokenizer().eos.clone();
    for (name, prompts) in [("held-out", &held), ("training", &train)] {
        model.set_adapter(None)?;
        let mut base = Vec::new();
        for p in prompts.iter() {
            let mut ids = Vec::new();
            model.generate(
                &model.prompt_tokens(p, true)?,
                &options,
                &mut Hooks::none(),
                &mut |id, _| {
                    ids.push(id);
                    !eos.contains(&id)
                },
            )?;
            base.push(ids);
        }
        if let Some(path) = args.get(3) {
            let rows: Vec<serde_json::Value> = prompts
                .iter()
                .zip(&base)
                .map(|(p, a)| serde_json::json!({"prompt": p, "prompt_tokens": model.prompt_tokens(p, true).unwrap(), "base_answer": a}))
                .collect();
            std::fs::write(format!("{path}.{name}.json"), serde_json::to_string(&rows)?)?;
        }
        let base_lp: Vec<Vec<Vec<f64>>> = prompts
            .iter()
            .zip(&base)
            .map(|(p, a)| {
                let mut t = model.prompt_tokens(p, true).unwrap();
                let s = t.len();
                t.extend(a);
                let l = model.logits(&t, &mut Hooks::none()).unwrap();
                (s..t.len()).map(|j| log_softmax(l.row(j - 1))).collect()
            })
            .collect();
        model.load_adapter(&adapter_dir)?;
        let mut agree = 0;
        let mut margins = Vec::new();
        let mut all_margins = Vec::new();
        for (k, p) in prompts.iter().enumerate() {
            let mut t = model.prompt_tokens(p, true)?;
            let s = t.len();
            t.extend(&base[k]);
            let l = model.logits(&t, &mut Hooks::none())?;
            let mut first = None;
            for (i, j) in (s..t.len()).enumerate() {
                let lp = log_softmax(l.row(j - 1));
                let (top, _, _) = top2(&lp);
                let (_, b1, b2) = top2(&base_lp[k][i]);
                all_margins.push(b1 - b2);
                if top as u32 != t[j] && first.is_none() {
                    first = Some((i, b1 - b2, lp[top] - lp[t[j] as usize]));
                }
            }
            match first {
                None => agree += 1,
                Some((i, bm, am)) => {
                    margins.push(bm);
                    println!(
                        "{name} {k:2}: diverges at token {i}: base margin {bm:.3}, adapted prefers its token by {am:.3}: {:?}",
                        model.tokenizer().decode(&base[k][..=i])?
                    );
                }
            }
        }
        margins.sort_by(|a, b| a.partial_cmp(b).unwrap());
        all_margins.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let below = |v: &[f64], x: f64| v.iter().filter(|&&m| m < x).count();
        println!(
            "{name}: {agree}/{} agree over {tokens} tokens (teacher forced); divergences at base margins {:?}; base margins < 0.5: {} of {} answer positions, < 1.0: {}",
            prompts.len(),
            margins.iter().map(|m| (m * 100.0).round() / 100.0).collect::<Vec<_>>(),
            below(&all_margins, 0.5),
            all_margins.len(),
            below(&all_margins, 1.0)
        );
    }
    Ok(())
}
