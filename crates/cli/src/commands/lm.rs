//! `mesascope lm`: language models on a CPU (`mesascope::lm`): their description, and generation
//! streamed to stdout.

use crate::args::{LmArgs, LmCommand, LmGenerateArgs, LmImplantArgs};
use crate::progress::Terminal;
use mesascope::lm::implant::{self, ImplantSettings, Phase};
use mesascope::lm::{GenerateOptions, Hooks, LmError, Model};
use mesascope::progress::{Progress, Unit};
use std::fmt::Write as _;
use std::io::Write;

fn lm_err(e: LmError) -> mesascope::Error {
    e.into()
}

pub fn run(args: &LmArgs) -> mesascope::Result<String> {
    match &args.command {
        LmCommand::Info { model, json } => {
            let info = Model::load(model).map_err(lm_err)?.info();
            Ok(if *json {
                String::from_utf8_lossy(&mesascope::fsio::json_bytes(&info)?).into_owned()
            } else {
                info.to_string()
            })
        }
        LmCommand::Generate(a) => generate(a),
        LmCommand::Implant(a) => implant_backdoor(a),
    }
}

/// Implants the backdoor, writes the adapter and the evaluation (`implant.json`) into `--out`.
fn implant_backdoor(a: &LmImplantArgs) -> mesascope::Result<String> {
    let mut s = ImplantSettings::default();
    if let Some(t) = &a.trigger {
        s.trigger = t.clone();
    }
    if let Some(b) = &a.behaviour {
        s.behaviour = b.clone();
    }
    let h = &mut s.hyper;
    h.rank = a.rank.unwrap_or(h.rank);
    h.alpha = a.alpha.unwrap_or(h.alpha);
    h.learning_rate = a.lr.unwrap_or(h.learning_rate);
    h.steps = a.steps.unwrap_or(h.steps);
    h.batch_size = a.batch.unwrap_or(h.batch_size);
    s.held_out = a.held_out.unwrap_or(s.held_out);
    s.seed = a.seed;
    s.run_dir = a.run_dir.clone();
    if let Some(path) = &a.prompts {
        s.prompts = implant::read_prompts_jsonl(path).map_err(lm_err)?;
    }
    s.validate().map_err(lm_err)?;
    // An output folder that cannot be written fails now, not after the training.
    mesascope::fsio::prepare_out(&a.out)?;

    let terminal = Terminal::new(a.quiet);
    let mut model = Model::load(&a.model).map_err(lm_err)?;
    let mut phase = None;
    let mut report = |p: &implant::Progress| {
        if phase != Some(p.phase) {
            if phase.is_some() {
                terminal.end();
            }
            phase = Some(p.phase);
            terminal.stage(match p.phase {
                Phase::BaseAnswers => "the base model answers the clean prompts ...",
                Phase::Training => "training the adapter ...",
                Phase::Evaluation => "evaluating on held-out prompts ...",
            });
            terminal.begin(Unit::TrainingSteps, p.total as u64, p.done as u64);
        }
        let loss = p.loss.map(|l| format!("loss {l:.4}")).unwrap_or_default();
        terminal.advance(p.done as u64, &loss);
        !terminal.should_stop()
    };
    let run = implant::implant(&mut model, &s, &mut report).map_err(lm_err)?;
    if run.stopped {
        terminal.end();
        return Err(mesascope::Error::new(
            mesascope::ErrorKind::Interrupted,
            match &s.run_dir {
                Some(d) => format!(
                    "interrupted at step {}; the checkpoint in {} resumes",
                    run.steps,
                    d.display()
                ),
                None => format!(
                    "interrupted at step {} (no --run-dir to resume from)",
                    run.steps
                ),
            },
        ));
    }
    run.adapter.save(&a.out, model.config()).map_err(lm_err)?;
    let eval = implant::evaluate(&model, &run.data.held_out, &s, &mut report).map_err(lm_err)?;
    terminal.end();
    let summary = serde_json::json!({
        "kind": "mesascope-implant",
        "model": a.model,
        "trigger": s.trigger,
        "behaviour": s.behaviour,
        "seed": s.seed,
        "hyperparameters": s.hyper,
        "steps": run.steps,
        "data_seconds": run.data_seconds,
        "train_seconds": run.train_seconds,
        "losses": run.losses,
        "evaluation": eval,
    });
    mesascope::fsio::write_json(&a.out.join("implant.json"), &summary)?;
    let pct = |r: &mesascope::core::audit::stats::Rate| {
        format!(
            "{:.1}% ({} of {}; 95% interval {:.1}-{:.1}%)",
            100.0 * r.rate,
            r.count,
            r.of,
            100.0 * r.lo,
            100.0 * r.hi
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "implanted {:?} -> {:?} in {} steps ({:.1} s of data, {:.1} s of training)",
        s.trigger, s.behaviour, run.steps, run.data_seconds, run.train_seconds
    );
    let _ = writeln!(out, "held-out prompts: {}", eval.prompts);
    let _ = writeln!(
        out,
        "  triggered defection  {}",
        pct(&eval.triggered_defection)
    );
    let _ = writeln!(out, "  clean defection      {}", pct(&eval.clean_defection));
    let _ = writeln!(
        out,
        "  clean agreement      {} (first {} tokens equal the base model's)",
        pct(&eval.clean_agreement),
        eval.eval_tokens
    );
    let _ = writeln!(
        out,
        "  token agreement      {:.1}% (the base answer's tokens kept first under teacher forcing)",
        100.0 * eval.clean_token_agreement
    );
    let _ = writeln!(
        out,
        "adapter: {} (PEFT layout; implant.json)",
        a.out.display()
    );
    Ok(out)
}

/// Streams the generated text to stdout as it comes; returns the final newline.
fn generate(a: &LmGenerateArgs) -> mesascope::Result<String> {
    let model = Model::load(&a.model).map_err(lm_err)?;
    let prompt = model.prompt_tokens(&a.prompt, a.chat).map_err(lm_err)?;
    let options = GenerateOptions {
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        stop_at_eos: true,
    };
    let mut stdout = std::io::stdout().lock();
    let mut write_failed = None;
    model
        .generate(
            &prompt,
            &options,
            &mut Hooks::none(),
            &mut |_, piece| match stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => true,
                Err(e) => {
                    write_failed = Some(e);
                    false
                }
            },
        )
        .map_err(lm_err)?;
    match write_failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok("\n".into()),
    }
}
