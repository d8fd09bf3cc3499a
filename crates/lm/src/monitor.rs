//! The generation-time monitor: the defection probe read at every forward pass of a generation
//! (the prompt's final token, then each generated token), flagging, and optionally halting, the
//! moment a score crosses the probe's threshold (calibrated at a stated false-positive rate on
//! clean prompts). Scoring is one dot product of the model's width per token.

use crate::defection::ProbeFile;
use crate::error::Result;
use crate::generate::{GenerateOptions, Generation};
use crate::hooks::{Hooks, Positions};
use crate::Model;
use serde::Serialize;
use std::time::Instant;

/// A generation watched by a probe.
#[derive(Debug, Clone, Serialize)]
pub struct MonitoredGeneration {
    pub generation: Generation,
    /// `scores[0]` is the prompt's final token's score (read before the first token is chosen);
    /// `scores[k]` the residual at the `k`-th generated token (read before token `k + 1`); each as
    /// the threshold meets it (`ProbeFile::score_at`: standardized per pass once calibrated).
    pub scores: Vec<f64>,
    /// The first index of `scores` above the threshold: the monitor fired before generated token
    /// `flagged_at + 1` was chosen.
    pub flagged_at: Option<usize>,
    /// The generation was stopped by the monitor.
    pub halted: bool,
    /// Time spent scoring (taking the captured residual and the dot product).
    pub monitor_seconds: f64,
    /// The whole generation's time, monitor included.
    pub total_seconds: f64,
}

impl MonitoredGeneration {
    pub fn flagged(&self) -> bool {
        self.flagged_at.is_some()
    }
}

/// Generates after `prompt` (tokens) with `probe` watching at its layer; `halt` stops the
/// generation at the first flag. `edits` (steering) apply as in [`Model::generate`].
pub fn generate_monitored(
    model: &Model,
    prompt: &[u32],
    options: &GenerateOptions,
    probe: &ProbeFile,
    halt: bool,
    edits: &Hooks,
    on_token: &mut dyn FnMut(u32, &str) -> bool,
) -> Result<MonitoredGeneration> {
    let point = probe.hook_point();
    let name = point.to_string();
    let mut hooks = Hooks {
        edits: edits.edits.clone(),
        reads: vec![point],
        read_positions: Some(Positions::Last),
        ..Hooks::default()
    };
    let mut scores = Vec::new();
    let mut flagged_at = None;
    let mut monitor_seconds = 0.0;
    let started = Instant::now();
    let mut observe = |h: &mut Hooks| {
        let t = Instant::now();
        let rows = h.captured.remove(&name).unwrap_or_default();
        if let Some(x) = rows.last() {
            let s = probe.score_at(x, scores.len());
            if flagged_at.is_none() && s > probe.threshold {
                flagged_at = Some(scores.len());
            }
            scores.push(s);
        }
        monitor_seconds += t.elapsed().as_secs_f64();
        !(halt && flagged_at.is_some())
    };
    let generation =
        model.generate_observed(prompt, options, &mut hooks, &mut observe, on_token)?;
    Ok(MonitoredGeneration {
        generation,
        halted: halt && flagged_at.is_some(),
        scores,
        flagged_at,
        monitor_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The residual at the probe's hook point at every pass of a generation after `prompt`: the
/// prompt's final token, then each generated token but the last.
fn generation_residuals(
    model: &Model,
    prompt: &[u32],
    options: &GenerateOptions,
    probe: &ProbeFile,
) -> Result<Vec<Vec<f32>>> {
    let point = probe.hook_point();
    let name = point.to_string();
    let mut hooks = Hooks {
        reads: vec![point],
        read_positions: Some(Positions::Last),
        ..Hooks::default()
    };
    let mut rows = Vec::new();
    let mut observe = |h: &mut Hooks| {
        if let Some(x) = h.captured.remove(&name).unwrap_or_default().pop() {
            rows.push(x);
        }
        true
    };
    model.generate_observed(prompt, options, &mut hooks, &mut observe, &mut |_, _| true)?;
    Ok(rows)
}

/// The probe made a monitor of whole generations, from clean prompts' generations
/// (chat-templated, `options`) alone:
/// 1. with `standardize`, the direction divided by each dimension's variance over the clean
///    generations' residuals and centred on their mean: the difference of means taken in
///    residuals standardized by normal generation, where dimensions that swing anyway weigh
///    less (on SmolLM2's decoy organisms at layer 16 it flags 47, 43, 47 of 48 triggered
///    generations early where the raw direction flags 26, 19, 30; on the tests' tiny random
///    model it loses them: measure on the model at hand);
/// 2. each pass's clean scores standardized (`ProbeFile::passes`): the prompt's final token and
///    the generated tokens score on different scales, and one threshold per pass would let a
///    clean generation cross one of them far more often than the stated rate;
/// 3. the threshold: the score that at most a fraction `fpr` of the clean generations exceed at
///    any pass.
///
/// The probe file's own threshold is calibrated on prompts' final tokens only; on SmolLM2 a clean
/// generation's later tokens crossed it in 11 of 48 prompts. The fitted probe's `recall` and
/// `auroc` (final tokens, raw direction) are kept as they were.
pub fn calibrate_on_generations(
    model: &Model,
    probe: &ProbeFile,
    clean_prompts: &[String],
    options: &GenerateOptions,
    fpr: f64,
    standardize: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ProbeFile> {
    if !probe.passes.is_empty() {
        return Err(crate::LmError::InvalidArgument(
            "the probe is already calibrated on generations; calibrate the probe file `lm probe` wrote"
                .into(),
        ));
    }
    if clean_prompts.len() < 2 || !(0.0..1.0).contains(&fpr) {
        return Err(crate::LmError::InvalidArgument(
            "calibration needs at least two clean prompts and a false-positive rate in [0, 1)"
                .into(),
        ));
    }
    let mut runs = Vec::with_capacity(clean_prompts.len());
    for (i, p) in clean_prompts.iter().enumerate() {
        let tokens = model.prompt_tokens(p, true)?;
        runs.push(generation_residuals(model, &tokens, options, probe)?);
        progress(i + 1, clean_prompts.len());
    }
    let scaled = if standardize {
        let rows: Vec<&[f32]> = runs.iter().flatten().map(Vec::as_slice).collect();
        let (mean, var) = mesascope_core::probe_stats::feature_moments(&rows);
        let direction: Vec<f64> = probe
            .direction
            .iter()
            .zip(&var)
            .map(|(w, v)| w / (v.sqrt() + 1e-6).powi(2))
            .collect();
        let bias = -direction.iter().zip(&mean).map(|(w, m)| w * m).sum::<f64>();
        ProbeFile {
            direction,
            bias,
            passes: Vec::new(),
            ..probe.clone()
        }
    } else {
        ProbeFile {
            passes: Vec::new(),
            ..probe.clone()
        }
    };
    let scores: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| r.iter().map(|x| scaled.score(x)).collect())
        .collect();
    // Statistics for every pass that at least two generations reach.
    let mut passes = Vec::new();
    for k in 0.. {
        let at: Vec<f64> = scores.iter().filter_map(|s| s.get(k).copied()).collect();
        if at.len() < 2 {
            break;
        }
        let m = at.iter().sum::<f64>() / at.len() as f64;
        let sd = (at.iter().map(|v| (v - m).powi(2)).sum::<f64>() / at.len() as f64).sqrt();
        passes.push(crate::defection::PassStatistics {
            mean: m,
            sd: if sd > 0.0 { sd } else { 1.0 },
        });
    }
    if passes.is_empty() {
        return Err(crate::LmError::InvalidArgument(
            "the clean generations gave no scores to calibrate on".into(),
        ));
    }
    let calibrated = ProbeFile { passes, ..scaled };
    let peaks: Vec<f64> = runs
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(k, x)| calibrated.score_at(x, k))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let op = mesascope_core::probe_stats::recall_at_fpr(&[], &peaks, fpr);
    Ok(ProbeFile {
        threshold: op.threshold,
        fpr,
        calibration_prompts: clean_prompts.len(),
        ..calibrated
    })
}
