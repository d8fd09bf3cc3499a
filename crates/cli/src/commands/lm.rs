//! `mesascope lm`: language models on a CPU (`mesascope::lm`): their description, and generation
//! streamed to stdout.

use super::lm_text;
use crate::args::{
    LmArgs, LmCalibrateArgs, LmCommand, LmGenerateArgs, LmImplantArgs, LmMergeArgs, LmProbeArgs,
    LmScanArgs, LmSteerArgs,
};
use crate::progress::Terminal;
use mesascope::lm::defection::{self, ProbeFile, ProbeMethod, ProbeSettings};
use mesascope::lm::implant::{self, ImplantSettings, Phase};
use mesascope::lm::merge::{check_merged_destination, MergedDtype, MergedExport};
use mesascope::lm::monitor::{calibrate_on_generations, generate_monitored};
use mesascope::lm::steering;
use mesascope::lm::trigger_scan;
use mesascope::lm::{GenerateOptions, Hooks, LmError, Model};
use mesascope::progress::{Progress, Unit};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

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
        LmCommand::Probe(a) => probe(a),
        LmCommand::Scan(a) => scan(a),
        LmCommand::Steer(a) => steer(a),
        LmCommand::Merge(a) => merge(a),
        LmCommand::Calibrate(a) => calibrate(a),
    }
}

/// The model with `adapter` applied, if given.
fn load_model(model: &Path, adapter: Option<&Path>) -> mesascope::Result<Model> {
    let mut m = Model::load(model).map_err(lm_err)?;
    if let Some(dir) = adapter {
        m.load_adapter(dir).map_err(lm_err)?;
    }
    Ok(m)
}

/// [`load_model`] for work over many texts (probes, scans, steering, the implant): its weights
/// also kept in f32, which spares expanding the quantized blocks for every matrix product.
fn load_model_for_bulk(model: &Path, adapter: Option<&Path>) -> mesascope::Result<Model> {
    let mut m = load_model(model, adapter)?;
    m.expand_weights().map_err(lm_err)?;
    Ok(m)
}

/// Calibrates a probe file as a monitor of whole generations and writes it to `--out`.
fn calibrate(a: &LmCalibrateArgs) -> mesascope::Result<String> {
    if !(0.0..1.0).contains(&a.fpr) {
        return Err(mesascope::Error::bad_setting(format!(
            "--fpr must be in [0, 1) (found {})",
            a.fpr
        )));
    }
    let prompts = match (&a.prompts, &a.adapter) {
        (Some(p), _) => implant::read_prompts_jsonl(p).map_err(lm_err)?,
        (None, adapter) => {
            // The implant's held-out prompts stay out of the calibration, for evaluation.
            let held_out: Vec<String> = match adapter {
                Some(dir) if dir.join("implant.json").exists() => defection::eval_from_implant(dir)
                    .map_err(lm_err)?
                    .into_iter()
                    .filter(|e| !e.triggered)
                    .map(|e| e.prompt)
                    .collect(),
                _ => Vec::new(),
            };
            implant::builtin_prompts()
                .into_iter()
                .filter(|p| !held_out.contains(p))
                .collect()
        }
    };
    if prompts.len() < 2 {
        return Err(mesascope::Error::bad_setting(
            "the calibration needs at least two clean prompts",
        ));
    }
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        mesascope::fsio::create_out(parent)?;
    }
    let model = load_model_for_bulk(&a.model, a.adapter.as_deref())?;
    let probe = ProbeFile::load(&a.probe, &model).map_err(lm_err)?;
    let options = GenerateOptions {
        max_tokens: a.max_tokens,
        ..GenerateOptions::default()
    };
    let terminal = Terminal::new(a.quiet);
    use mesascope::progress::Progress as _;
    terminal.stage(&format!(
        "calibrating {} on {} clean generations of {} tokens ...",
        probe.hook,
        prompts.len(),
        a.max_tokens
    ));
    terminal.begin(Unit::Generations, prompts.len() as u64, 0);
    let calibrated = calibrate_on_generations(
        &model,
        &probe,
        &prompts,
        &options,
        a.fpr,
        !a.raw,
        &mut |done, _| terminal.advance(done as u64, ""),
    )
    .map_err(lm_err)?;
    terminal.end();
    mesascope::fsio::write_json(&a.out, &calibrated)?;
    Ok(format!(
        "monitor calibrated at {} on {} clean generations ({} tokens each{}): threshold {:.4}, crossed by at most {:.1}% of them\nwritten to {}; watch with `mesascope lm generate MODEL{} --monitor {} [--halt]`\n",
        calibrated.hook,
        prompts.len(),
        a.max_tokens,
        if a.raw { ", raw direction" } else { ", direction standardized" },
        calibrated.threshold,
        100.0 * a.fpr,
        a.out.display(),
        if a.adapter.is_some() { " --adapter DIR" } else { "" },
        a.out.display()
    ))
}

/// Fits the defection probes and writes probe.json, analysis.json and report.html into `--out`.
fn probe(a: &LmProbeArgs) -> mesascope::Result<String> {
    let pairs = match &a.pairs {
        Some(p) => defection::read_pairs_jsonl(p).map_err(lm_err)?,
        None => defection::builtin_pairs(),
    };
    let eval = match (&a.eval, &a.adapter) {
        (Some(p), _) => defection::read_eval_jsonl(p).map_err(lm_err)?,
        (None, Some(dir)) => defection::eval_from_implant(dir).map_err(lm_err)?,
        (None, None) => {
            return Err(mesascope::Error::bad_setting(
                "no evaluation prompts: give --eval FILE, or an --adapter folder with the implant's implant.json",
            ))
        }
    };
    let model = load_model_for_bulk(&a.model, a.adapter.as_deref())?;
    let settings = ProbeSettings {
        fpr: a.fpr,
        random_directions: a.random_directions,
        seed: a.seed,
        layer: a.layer,
        method: if a.method == "logistic" {
            ProbeMethod::Logistic
        } else {
            ProbeMethod::DifferenceOfMeans
        },
        ..ProbeSettings::default()
    };
    settings.validate(model.config().n_layers).map_err(lm_err)?;
    let surface = if a.decoys {
        let recorded = a
            .adapter
            .as_deref()
            .and_then(|d| defection::implant_trigger(d).ok());
        let trigger = match (&a.trigger, &recorded) {
            (Some(t), _) => t.clone(),
            (None, Some((t, _))) => t.clone(),
            (None, None) => {
                return Err(mesascope::Error::bad_setting(
                    "--decoys needs the trigger: give --trigger TEXT, or an --adapter folder whose implant.json names it",
                ))
            }
        };
        let behaviour = a.behaviour.clone().or(recorded.map(|r| r.1));
        defection::SurfaceMatch {
            decoys: defection::decoy_prompts(&eval, &trigger).map_err(lm_err)?,
            behaviour,
        }
    } else {
        defection::SurfaceMatch::default()
    };
    // An output folder that cannot be written fails now, not after the work.
    mesascope::fsio::prepare_out(&a.out)?;
    let terminal = Terminal::new(a.quiet);
    use mesascope::progress::Progress as _;
    terminal.stage(&format!(
        "reading the residual stream of {} contrast texts and {} evaluation prompts ...",
        2 * pairs.len(),
        eval.len()
    ));
    let analysis = defection::fit_defection_probe_with_decoys(
        &model,
        &pairs,
        &eval,
        &surface,
        &settings,
        &mut |_, _| {},
    )
    .map_err(lm_err)?;
    let title = format!("Defection probe: {}", a.model.display());
    defection::write_probe_outputs(&a.out, &analysis, &title).map_err(lm_err)?;
    Ok(lm_text::probe_summary(&analysis, &a.out))
}

/// Contrastive activation addition on triggered prompts, against random vectors of the same norm.
fn steer(a: &LmSteerArgs) -> mesascope::Result<String> {
    let pairs = match &a.pairs {
        Some(p) => defection::read_pairs_jsonl(p).map_err(lm_err)?,
        None => defection::builtin_pairs(),
    };
    let mut prompts = match (&a.prompts, &a.adapter) {
        (Some(p), _) => implant::read_prompts_jsonl(p).map_err(lm_err)?,
        (None, Some(dir)) => defection::eval_from_implant(dir)
            .map_err(lm_err)?
            .into_iter()
            .filter(|e| e.triggered)
            .map(|e| e.prompt)
            .collect(),
        (None, None) => {
            return Err(mesascope::Error::bad_setting(
                "no prompts to steer: give --prompts FILE, or an --adapter folder with the implant's implant.json",
            ))
        }
    };
    if a.prompt_count == Some(0) || !a.coefficient.is_finite() {
        return Err(mesascope::Error::bad_setting(
            "--prompt-count must be at least 1 and --coefficient finite",
        ));
    }
    prompts.truncate(a.prompt_count.unwrap_or(usize::MAX));
    let behaviour = match (&a.behaviour, &a.adapter) {
        (Some(b), _) => b.clone(),
        (None, Some(dir)) => defection::implant_trigger(dir)
            .map(|(_, b)| b)
            .unwrap_or_else(|_| implant::DEFAULT_BEHAVIOUR.to_string()),
        (None, None) => implant::DEFAULT_BEHAVIOUR.to_string(),
    };
    let model = load_model_for_bulk(&a.model, a.adapter.as_deref())?;
    if let Some(out) = &a.out {
        // An output that cannot be written fails now, not after the work.
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            mesascope::fsio::create_out(parent)?;
        }
    }
    let terminal = Terminal::new(a.quiet);
    use mesascope::progress::Progress as _;
    terminal.stage(&format!(
        "steering {} prompts at layer{} {} with c = {} and {} random draws ...",
        prompts.len(),
        if a.layer.len() > 1 { "s" } else { "" },
        lm_text::layer_list(&a.layer),
        a.coefficient,
        a.random_vectors
    ));
    let vectors = steering::contrast_vectors(&model, &pairs, &a.layer).map_err(lm_err)?;
    let trial = steering::steer_defection(
        &model,
        &prompts,
        &vectors,
        &steering::Steering {
            layers: a.layer.clone(),
            coefficient: a.coefficient,
            random_vectors: a.random_vectors,
            seed: a.seed,
        },
        &behaviour,
    )
    .map_err(lm_err)?;
    if let Some(out) = &a.out {
        mesascope::fsio::write_json(out, &trial)?;
    }
    Ok(lm_text::steer_summary(&trial, &behaviour))
}

/// Ranks candidate triggers on clean prompts.
fn scan(a: &LmScanArgs) -> mesascope::Result<String> {
    let mut prompts = match &a.prompts {
        Some(p) => implant::read_prompts_jsonl(p).map_err(lm_err)?,
        None => implant::builtin_prompts(),
    };
    if a.prompt_count == 0 {
        return Err(mesascope::Error::bad_setting(
            "--prompt-count must be at least 1",
        ));
    }
    prompts.truncate(a.prompt_count);
    let model = load_model_for_bulk(&a.model, a.adapter.as_deref())?;
    let candidates = match &a.candidates {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                mesascope::Error::bad_setting(format!("cannot read {}: {e}", path.display()))
            })?;
            let lines: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect();
            if lines.is_empty() {
                return Err(mesascope::Error::bad_setting(format!(
                    "{} holds no candidates",
                    path.display()
                )));
            }
            trigger_scan::text_candidates(&model, &lines).map_err(lm_err)?
        }
        None => {
            trigger_scan::vocabulary_candidates(&model, a.vocabulary, a.seed).map_err(lm_err)?
        }
    };
    let probe = match &a.probe {
        Some(p) => Some(ProbeFile::load(p, &model).map_err(lm_err)?),
        None => None,
    };
    if let Some(out) = &a.out {
        // An output that cannot be written fails now, not after the scan.
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            mesascope::fsio::create_out(parent)?;
        }
    }
    let behaviour = a
        .behaviour
        .clone()
        .unwrap_or_else(|| implant::DEFAULT_BEHAVIOUR.to_string());
    let terminal = Terminal::new(a.quiet);
    use mesascope::progress::Progress as _;
    terminal.stage(&format!(
        "scanning {} candidates on {} clean prompts ({} forward passes) ...",
        candidates.len(),
        prompts.len(),
        candidates.len() * prompts.len()
    ));
    let report = trigger_scan::scan_triggers(
        &model,
        &candidates,
        &prompts,
        &behaviour,
        a.behaviour_tokens,
        probe.as_ref(),
        &mut |_, _| !terminal.should_stop(),
    )
    .map_err(lm_err)?;
    if let Some(out) = &a.out {
        mesascope::fsio::write_json(out, &report)?;
    }
    Ok(lm_text::scan_summary(&report, a.top))
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
    s.decoys = a.decoys;
    s.run_dir = a.run_dir.clone();
    if let Some(path) = &a.prompts {
        s.prompts = implant::read_prompts_jsonl(path).map_err(lm_err)?;
    }
    s.validate().map_err(lm_err)?;
    // An output folder that cannot be written fails now, not after the training.
    mesascope::fsio::prepare_out(&a.out)?;
    if let Some(merged) = &a.merged {
        if same_path(merged, &a.out) {
            return Err(mesascope::Error::bad_setting(
                "--merged must be another folder than --out (the adapter's)",
            ));
        }
        check_merged_destination(merged).map_err(lm_err)?;
    }

    let terminal = Terminal::new(a.quiet);
    let mut model = load_model_for_bulk(&a.model, None)?;
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
    let summary = implant::ImplantSummary::new(&a.model, &s, &run, &eval);
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
    if let Some(dir) = &a.merged {
        model
            .set_adapter(Some(run.adapter.clone()))
            .map_err(lm_err)?;
        let export = model.save_merged(dir, MergedDtype::F32).map_err(lm_err)?;
        let _ = writeln!(out, "{}", merged_line(&export));
    }
    Ok(out)
}

/// Whether two paths name the same place (the second one need not exist yet).
fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

fn merged_line(e: &MergedExport) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    format!(
        "merged model: {} (Hugging Face folder; model.safetensors {:.1} MB {}, {:.1} MB in all; {} adapted projections folded in)",
        e.dir.display(),
        mb(e.weight_bytes),
        e.dtype.torch_name(),
        mb(e.total_bytes),
        e.merged_projections
    )
}

/// Folds `--adapter` into the model's weights and writes the Hugging Face folder `--out`.
fn merge(a: &LmMergeArgs) -> mesascope::Result<String> {
    let dtype = MergedDtype::parse(&a.dtype).ok_or_else(|| {
        mesascope::Error::bad_setting(format!("--dtype must be f32 or bf16, not {:?}", a.dtype))
    })?;
    // A destination that would be refused fails before the model is read.
    check_merged_destination(&a.out).map_err(lm_err)?;
    let started = std::time::Instant::now();
    let model = load_model(&a.model, Some(&a.adapter))?;
    let export = model.save_merged(&a.out, dtype).map_err(lm_err)?;
    let adapter = model.adapter().map(|x| &x.config);
    Ok(format!(
        "folded {} (rank {}, alpha {}) into {} in {:.1} s\n{}\n",
        a.adapter.display(),
        adapter.map_or(0, |c| c.rank),
        adapter.map_or(0.0, |c| c.alpha),
        a.model.display(),
        started.elapsed().as_secs_f64(),
        merged_line(&export)
    ))
}

/// Streams the generated text to stdout as it comes; returns the final newline (and the
/// monitor's verdict with `--monitor`).
fn generate(a: &LmGenerateArgs) -> mesascope::Result<String> {
    let model = load_model(&a.model, a.adapter.as_deref())?;
    let probe = match &a.monitor {
        Some(p) => Some(ProbeFile::load(p, &model).map_err(lm_err)?),
        None => None,
    };
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
    let mut stream = |_, piece: &str| match stdout
        .write_all(piece.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => true,
        Err(e) => {
            write_failed = Some(e);
            false
        }
    };
    let verdict = match &probe {
        Some(p) => {
            let m = generate_monitored(
                &model,
                &prompt,
                &options,
                p,
                a.halt,
                &Hooks::none(),
                &mut stream,
            )
            .map_err(lm_err)?;
            Some(lm_text::monitor_verdict(&m, p))
        }
        None => {
            model
                .generate(&prompt, &options, &mut Hooks::none(), &mut stream)
                .map_err(lm_err)?;
            None
        }
    };
    match write_failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(format!("\n{}", verdict.unwrap_or_default())),
    }
}
