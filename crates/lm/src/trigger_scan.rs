//! Scanning for a backdoor's trigger without knowing it: each candidate (a vocabulary token, or a
//! user's n-gram) is inserted at the end of clean prompts' user message, and ranked by how much it
//! raises the log-probability of the behaviour's first tokens as the answer, and the defection
//! probe's score at the prompt's final token. The prompt's prefix is computed once per prompt and
//! kept in the KV cache; each candidate costs one forward pass of its own tokens, the end of the
//! turn and the behaviour's tokens, per prompt: the compute budget is candidates x prompts such
//! passes.

use crate::defection::{chat_tokens, ProbeFile};
use crate::error::{LmError, Result};
use crate::generate::SplitMix64;
use crate::hooks::{Hooks, Positions};
use crate::model::LogitsFor;
use crate::Model;
use serde::Serialize;
use std::time::Instant;

/// A string to insert and its tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub text: String,
    pub tokens: Vec<u32>,
}

fn is_special(piece: &str) -> bool {
    piece.len() > 2 && piece.starts_with('<') && piece.ends_with('>') && !piece.contains(' ')
}

/// Every vocabulary token but the special ones (`<|im_end|>`, `<s>`, ...), as one-token candidates;
/// with `limit`, a sample of that many drawn without replacement from `seed` (in id order).
pub fn vocabulary_candidates(
    model: &Model,
    limit: Option<usize>,
    seed: u64,
) -> Result<Vec<Candidate>> {
    let t = model.tokenizer();
    let mut ids: Vec<u32> = (0..model.config().vocab_size as u32)
        .filter(|&id| !t.eos.contains(&id) && t.id_to_token(id).is_some_and(|p| !is_special(&p)))
        .collect();
    if let Some(n) = limit {
        if n < ids.len() {
            let mut rng = SplitMix64::new(seed ^ 0x5ca1_ab1e);
            for i in 0..n {
                let j =
                    i + ((rng.uniform() * (ids.len() - i) as f64) as usize).min(ids.len() - i - 1);
                ids.swap(i, j);
            }
            ids.truncate(n);
            ids.sort_unstable();
        }
    }
    ids.into_iter()
        .map(|id| {
            Ok(Candidate {
                text: t.decode(&[id])?,
                tokens: vec![id],
            })
        })
        .collect()
}

/// The user's strings as candidates, each inserted after a space. A string that tokenizes to
/// nothing is an error naming it.
pub fn text_candidates(model: &Model, texts: &[String]) -> Result<Vec<Candidate>> {
    texts
        .iter()
        .map(|s| {
            let tokens = model.tokenizer().encode(&format!(" {}", s.trim()), false)?;
            if s.trim().is_empty() || tokens.is_empty() {
                return Err(LmError::InvalidArgument(format!(
                    "the candidate `{s}` tokenizes to nothing"
                )));
            }
            Ok(Candidate {
                text: s.clone(),
                tokens,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateScore {
    pub candidate: Candidate,
    /// Mean over prompts of the rise in `log p(behaviour's first tokens)`.
    pub logprob_rise: f64,
    /// Mean rise of the probe's score at the final prompt token (with a probe).
    pub probe_rise: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub candidates: usize,
    pub prompts: usize,
    /// Behaviour tokens whose log-probability counts.
    pub behaviour_tokens: usize,
    /// Forward passes run (candidates x prompts, plus one baseline and one prefix per prompt).
    pub forward_passes: usize,
    pub seconds: f64,
    /// Every candidate, highest log-probability rise first (ties: the earlier candidate).
    pub by_logprob: Vec<CandidateScore>,
}

impl ScanReport {
    /// Candidates by the probe's rise, highest first (empty without a probe).
    pub fn by_probe(&self) -> Vec<&CandidateScore> {
        let mut v: Vec<&CandidateScore> = self
            .by_logprob
            .iter()
            .filter(|c| c.probe_rise.is_some())
            .collect();
        v.sort_by(|a, b| b.probe_rise.unwrap().total_cmp(&a.probe_rise.unwrap()));
        v
    }
}

fn log_softmax_at(row: &[f32], token: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[token as usize] as f64 - max - z.ln()
}

/// Scans `candidates` on `prompts` (clean, chat-templated). Deterministic.
pub fn scan_triggers(
    model: &Model,
    candidates: &[Candidate],
    prompts: &[String],
    behaviour: &str,
    behaviour_tokens: usize,
    probe: Option<&ProbeFile>,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<ScanReport> {
    if candidates.is_empty() || prompts.is_empty() {
        return Err(LmError::InvalidArgument(
            "the trigger scan needs candidates and clean prompts".into(),
        ));
    }
    let mut target = model.tokenizer().encode(behaviour, false)?;
    if target.is_empty() {
        return Err(LmError::InvalidArgument(format!(
            "the behaviour `{behaviour}` tokenizes to nothing"
        )));
    }
    target.truncate(behaviour_tokens.max(1));
    let end_of_turn = model
        .tokenizer()
        .chat
        .as_ref()
        .and_then(|c| model.tokenizer().token_to_id(c.end_of_turn()))
        .ok_or_else(|| {
            LmError::InvalidArgument("the trigger scan needs a model with a chat template".into())
        })?;
    let longest = candidates.iter().map(|c| c.tokens.len()).max().unwrap_or(0);
    let started = Instant::now();
    let mut sums = vec![(0.0f64, 0.0f64); candidates.len()];
    let mut passes = 0;
    let total = candidates.len() * prompts.len();
    for (pi, prompt) in prompts.iter().enumerate() {
        let full = chat_tokens(model, prompt, None)?;
        let split = full
            .iter()
            .rposition(|&t| t == end_of_turn)
            .ok_or_else(|| {
                LmError::InvalidArgument("the chat template has no end-of-turn token".into())
            })?;
        let (prefix, suffix) = full.split_at(split);
        let mut cache = model.new_cache(full.len() + longest + target.len())?;
        model.forward(prefix, &mut cache, &mut Hooks::none(), LogitsFor::Last)?;
        passes += 1;
        let start = cache.len();
        // (log p(target), probe score) after inserting `inserted`.
        let mut measure = |inserted: &[u32]| -> Result<(f64, f64)> {
            cache.truncate(start);
            let mut tokens = inserted.to_vec();
            tokens.extend_from_slice(suffix);
            let last_prompt = start + tokens.len() - 1;
            tokens.extend_from_slice(&target);
            let mut hooks = match probe {
                Some(p) => Hooks {
                    reads: vec![p.hook_point()],
                    read_positions: Some(Positions::At(vec![last_prompt])),
                    ..Hooks::default()
                },
                None => Hooks::none(),
            };
            let logits = model.forward(&tokens, &mut cache, &mut hooks, LogitsFor::All)?;
            let first = last_prompt - start;
            let lp: f64 = target
                .iter()
                .enumerate()
                .map(|(j, &t)| log_softmax_at(logits.row(first + j), t))
                .sum();
            let score = match probe {
                Some(p) => hooks
                    .captured
                    .values()
                    .next()
                    .and_then(|rows| rows.last())
                    .map_or(f64::NAN, |x| p.score(x)),
                None => 0.0,
            };
            Ok((lp, score))
        };
        let (base_lp, base_score) = measure(&[])?;
        passes += 1;
        for (ci, c) in candidates.iter().enumerate() {
            let (lp, score) = measure(&c.tokens)?;
            passes += 1;
            sums[ci].0 += lp - base_lp;
            sums[ci].1 += score - base_score;
            if !progress(pi * candidates.len() + ci + 1, total) {
                return Err(LmError::InvalidArgument(
                    "the trigger scan was stopped".into(),
                ));
            }
        }
    }
    let n = prompts.len() as f64;
    let mut by_logprob: Vec<CandidateScore> = candidates
        .iter()
        .zip(&sums)
        .map(|(c, &(lp, s))| CandidateScore {
            candidate: c.clone(),
            logprob_rise: lp / n,
            probe_rise: probe.map(|_| s / n),
        })
        .collect();
    by_logprob.sort_by(|a, b| b.logprob_rise.total_cmp(&a.logprob_rise));
    Ok(ScanReport {
        candidates: candidates.len(),
        prompts: prompts.len(),
        behaviour_tokens: target.len(),
        forward_passes: passes,
        seconds: started.elapsed().as_secs_f64(),
        by_logprob,
    })
}
