//! The defection probe's speed over 1,000 evaluation prompts (the benchmark): the
//! built-in contrast pairs, then the built-in clean prompts clean and with the trigger, until
//! there are 1,000; and, side by side on the first 100 texts, the residuals read as each text's
//! own forward pass (the former path) against continuing from the chat template's shared opening,
//! and that again with the weights kept in f32 (`Model::expand_weights`, as `lm probe` runs).
//!
//! cargo run --release -p mesascope-lm --example probe_speed -- MODEL.gguf [ADAPTER_DIR] [N]

use mesascope_lm::defection::*;
use mesascope_lm::implant::{builtin_prompts, DEFAULT_TRIGGER};
use mesascope_lm::{HookPoint, Model, Positions, Site};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: probe_speed MODEL.gguf [ADAPTER_DIR] [N]")?;
    let mut model = Model::load(&path)?;
    if let Some(adapter) = args.next().filter(|a| !a.is_empty() && a != "-") {
        model.load_adapter(adapter)?;
    }
    let n: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    let prompts = builtin_prompts();
    let eval: Vec<EvalPrompt> = (0u64..)
        .flat_map(|seed| eval_with_trigger(&prompts, DEFAULT_TRIGGER, seed))
        .take(n)
        .collect();
    let pairs = builtin_pairs();
    let texts: Vec<Vec<u32>> = eval
        .iter()
        .take(100)
        .map(|e| chat_tokens(&model, &e.prompt, None))
        .collect::<Result<_, _>>()?;
    let n_layers = model.config().n_layers;
    let points: Vec<HookPoint> = (0..n_layers)
        .map(|layer| HookPoint {
            layer,
            site: Site::ResidPost,
        })
        .collect();
    let t = Instant::now();
    for text in &texts {
        model.activations(std::slice::from_ref(text), &points, Positions::Last)?;
    }
    let fresh_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    final_residuals(&model, &texts, &mut |_, _| {})?;
    let shared_s = t.elapsed().as_secs_f64();
    let quantized = final_residuals(&model, &texts[..8], &mut |_, _| {})?;
    let t = Instant::now();
    model.expand_weights()?;
    let expand_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    final_residuals(&model, &texts, &mut |_, _| {})?;
    let expanded_s = t.elapsed().as_secs_f64();
    let same = final_residuals(&model, &texts[..8], &mut |_, _| {})?;
    let worst = quantized
        .iter()
        .flatten()
        .flatten()
        .zip(same.iter().flatten().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "weights expanded to f32 in {expand_s:.2} s ({:.0} MB in all now): the same {} texts {expanded_s:.2} s ({:.1} texts/s, {:.2}x the quantized path); largest residual difference {worst:.2e}",
        model.info().memory_bytes as f64 / 1e6,
        texts.len(),
        texts.len() as f64 / expanded_s,
        shared_s / expanded_s
    );
    let tokens: usize = texts.iter().map(Vec::len).sum();
    println!(
        "{} texts ({tokens} tokens): each its own forward pass {fresh_s:.2} s ({:.1} texts/s), from the shared opening {shared_s:.2} s ({:.1} texts/s): {:.2}x",
        texts.len(),
        texts.len() as f64 / fresh_s,
        texts.len() as f64 / shared_s,
        fresh_s / shared_s
    );
    let settings = ProbeSettings::default();
    let t = Instant::now();
    let analysis = fit_defection_probe(&model, &pairs, &eval, &settings, &mut |_, _| {})?;
    let total = t.elapsed().as_secs_f64();
    println!(
        "probe over {} evaluation prompts and {} contrast pairs: {total:.1} s (forward passes {:.1} s, statistics {:.1} s); layer {}",
        eval.len(),
        pairs.len(),
        analysis.activation_seconds,
        analysis.statistics_seconds,
        analysis.layer
    );
    Ok(())
}
