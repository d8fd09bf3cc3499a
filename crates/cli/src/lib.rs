//! The `mesascope` command line as a library: each command returns its output as a string, so
//! tests (and other front ends) reach the same code the binary runs. `main.rs` only parses
//! arguments, prints, and maps errors to exit codes.

pub mod args;
pub mod bench;
pub mod demo;
pub mod envs;
pub mod error;
pub mod show;
pub mod text;

pub use error::{exit_code, input, InputError};

use args::{Cli, Command};

/// Runs a parsed command line and returns what it prints on stdout.
pub fn run(cli: &Cli) -> anyhow::Result<String> {
    match &cli.command {
        Command::Envs(a) => envs::run(a.json, &a.knobs.knobs),
        Command::Show(a) => show::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
    }
}
