//! `mesascope lm`: converts the arguments for the `mesascope-lm` crate and prints its results.

use crate::args::{LmArgs, LmCommand, LmGenerateArgs};
use mesascope_lm::{GenerateOptions, Hooks, LmError, Model};
use std::io::Write;

/// Bad files and arguments exit with code 2; a failed computation with 1.
fn lm_err(e: LmError) -> anyhow::Error {
    match e {
        LmError::Compute(_) => anyhow::Error::new(e),
        other => crate::input(other.to_string()),
    }
}

pub fn run(args: &LmArgs) -> anyhow::Result<String> {
    match &args.command {
        LmCommand::Info { model, json } => {
            let info = Model::load(model).map_err(lm_err)?.info();
            Ok(if *json {
                serde_json::to_string_pretty(&info)? + "\n"
            } else {
                info.to_string()
            })
        }
        LmCommand::Generate(a) => generate(a),
    }
}

/// Streams the generated text to stdout as it comes; returns the final newline.
fn generate(a: &LmGenerateArgs) -> anyhow::Result<String> {
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
