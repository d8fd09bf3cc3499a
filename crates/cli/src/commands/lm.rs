//! `mesascope lm`: language models on a CPU (`mesascope::lm`): their description, and generation
//! streamed to stdout.

use crate::args::{LmArgs, LmCommand, LmGenerateArgs};
use mesascope::lm::{GenerateOptions, Hooks, LmError, Model};
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
    }
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
