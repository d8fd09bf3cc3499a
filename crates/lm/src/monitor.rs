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
    /// `scores[k]` the residual at the `k`-th generated token (read before token `k + 1`).
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
            let s = probe.score(x);
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

/// The probe with its threshold recalibrated for monitoring whole generations: the score that at
/// most a fraction `fpr` of `clean_prompts`' monitored generations (chat-templated, `options`)
/// exceed at any token. The probe file's own threshold is calibrated on prompts' final tokens
/// only, and generated tokens' residuals score differently (on SmolLM2 a clean generation's
/// later tokens crossed it in 11 of 48 prompts).
pub fn calibrate_on_generations(
    model: &Model,
    probe: &ProbeFile,
    clean_prompts: &[String],
    options: &GenerateOptions,
    fpr: f64,
) -> Result<ProbeFile> {
    if clean_prompts.is_empty() || !(0.0..1.0).contains(&fpr) {
        return Err(crate::LmError::InvalidArgument(
            "calibration needs clean prompts and a false-positive rate in [0, 1)".into(),
        ));
    }
    let never = ProbeFile {
        threshold: f64::INFINITY,
        ..probe.clone()
    };
    let mut peaks = Vec::new();
    for p in clean_prompts {
        let tokens = model.prompt_tokens(p, true)?;
        let m = generate_monitored(
            model,
            &tokens,
            options,
            &never,
            false,
            &Hooks::none(),
            &mut |_, _| true,
        )?;
        peaks.push(m.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    }
    let op = mesascope_core::probe_stats::recall_at_fpr(&[], &peaks, fpr);
    Ok(ProbeFile {
        threshold: op.threshold,
        fpr,
        calibration_prompts: clean_prompts.len(),
        ..probe.clone()
    })
}
