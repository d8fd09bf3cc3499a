//! Prompt-processing and generation speed on a GGUF model, on the same 265-token prompt and 128
//! greedy tokens as /work/shared/peers/llamacpp_speed.py (llama.cpp), plus load time and peak memory.
//!
//! cargo run --release -p mesascope-lm --example lm_speed -- MODEL.gguf

use mesascope_lm::{GenerateOptions, Hooks, LogitsFor, Model};
use std::time::Instant;

/// Peak resident memory of this process (Linux's VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM:")
}

fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: lm_speed MODEL.gguf")?;
    let file_bytes = std::fs::metadata(&path)?.len();
    let t = Instant::now();
    let model = Model::load(&path)?;
    let load_s = t.elapsed().as_secs_f64();
    let prompt = "The history of the printing press begins in the fifteenth century, when movable type changed how knowledge spread across Europe. ".repeat(12);
    let tokens = model.tokenizer().encode(&prompt, true)?;
    println!("model {path}: {} threads", rayon_threads());
    println!(
        "load {:.3} s; resident after load {:.1} MB (weights {:.1} MB); prompt tokens {}",
        load_s,
        status_bytes("VmRSS:").unwrap_or(0) as f64 / 1e6,
        model.info().memory_bytes as f64 / 1e6,
        tokens.len()
    );
    let (mut best_pp, mut best_tg) = (0.0f64, 0.0f64);
    for _ in 0..3 {
        let mut cache = model.new_cache(tokens.len() + 129)?;
        let t = Instant::now();
        let logits = model.prefill(
            &tokens,
            &mut cache,
            &mut Hooks::none(),
            mesascope_lm::PREFILL_CHUNK,
        )?;
        let pp = tokens.len() as f64 / t.elapsed().as_secs_f64();
        let mut next = mesascope_lm::argmax(logits.last());
        let n = 128;
        let t = Instant::now();
        for _ in 0..n {
            let logits = model.forward(&[next], &mut cache, &mut Hooks::none(), LogitsFor::Last)?;
            next = mesascope_lm::argmax(logits.last());
        }
        let tg = n as f64 / t.elapsed().as_secs_f64();
        best_pp = best_pp.max(pp);
        best_tg = best_tg.max(tg);
        println!("prompt {pp:.0} tok/s, generation {tg:.1} tok/s");
    }
    println!("best: prompt {best_pp:.0} tok/s, generation {best_tg:.1} tok/s");
    let chat = model.prompt_tokens("What is the capital of France?", true)?;
    let options = GenerateOptions {
        max_tokens: 12,
        ..GenerateOptions::default()
    };
    let answer = model.generate(&chat, &options, &mut Hooks::none(), &mut |_, _| true)?;
    println!("{}", answer.text);
    if let Some(peak) = peak_rss() {
        println!(
            "peak RSS {:.1} MB; GGUF file {:.1} MB (ratio {:.2})",
            peak as f64 / 1e6,
            file_bytes as f64 / 1e6,
            peak as f64 / file_bytes as f64
        );
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
