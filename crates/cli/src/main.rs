//! `mesascope`: parse the arguments, run the command, print, map errors to exit codes
//! (2: bad input or usage, 1: other failures; `audit` exits with its verdict's code).

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mesascope::args::Cli::parse();
    match mesascope::run_with_code(&cli) {
        Ok((out, code)) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ExitCode::from(code as u8),
                // `mesascope envs | head`: the reader left; not an error (and not a reason to
                // hide an audit's verdict).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(code as u8),
                Err(e) => {
                    eprintln!("error: cannot write output: {e}");
                    ExitCode::from(mesascope::error::EXIT_FAILURE as u8)
                }
            }
        }
        Err(e) => {
            eprintln!("error: {}", mesascope::error::message(&e));
            ExitCode::from(mesascope::exit_code(&e) as u8)
        }
    }
}
