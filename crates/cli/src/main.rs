//! `mesascope`: parse the arguments, run the command through the library, print, and map errors
//! to exit codes (2: bad input or usage, 1: other failures, 130: interrupted; `audit` and
//! `mitigate` exit with their verdict's code).

mod args;
mod commands;
mod exit;
mod progress;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    progress::stop_on_ctrl_c();
    match commands::run(&cli) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(out.text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ExitCode::from(out.code),
                // `mesascope envs | head`: the reader left; not an error (and not a reason to
                // hide an audit's verdict).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(out.code),
                Err(e) => {
                    eprintln!("error: cannot write output: {e}");
                    ExitCode::from(exit::EXIT_FAILURE)
                }
            }
        }
        Err(e) => {
            eprintln!("error: {}", exit::message(&e));
            ExitCode::from(exit::code(&e))
        }
    }
}
