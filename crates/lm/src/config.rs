//! The hyperparameters of a Llama-family decoder, read from GGUF metadata or a Hugging Face
//! `config.json`, and checked for consistency before any weight is read.

use crate::error::{LmError, Result};
use serde::Serialize;
use std::path::Path;

/// The architectures this crate runs. SmolLM/SmolLM2 and Llama 2/3 are `llama`; Mistral differs only in
/// its sliding window, which the contexts run here never reach; Qwen2/2.5 add biases to q, k and v.
pub const SUPPORTED_ARCHITECTURES: &str =
    "llama (Llama 2/3, SmolLM, SmolLM2), mistral, qwen2 (Qwen2, Qwen2.5)";

/// How the rotary embedding pairs a head's dimensions: adjacent pairs `(2i, 2i+1)` (llama.cpp's
/// layout for Llama-family GGUF files, whose converter permutes the q and k rows) or the first half
/// with the second (`rotate_half`, Hugging Face's layout and GGUF's for Qwen2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    Interleaved,
    Halves,
}

/// A decoder's shape and constants.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub architecture: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_mlp: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_theta: f32,
    pub rope_layout: RopeLayout,
    /// Per-frequency divisors (Llama 3's long-context scaling), one per pair of head dimensions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f32>>,
    pub rms_norm_eps: f32,
    pub tied_embeddings: bool,
    pub qkv_bias: bool,
}

impl Config {
    pub(crate) fn check(&self, source: &Path) -> Result<()> {
        let bad = |reason: String| LmError::BadConfig {
            path: source.to_path_buf(),
            reason,
        };
        for (name, v) in [
            ("layers", self.n_layers),
            ("width", self.d_model),
            ("heads", self.n_heads),
            ("kv heads", self.n_kv_heads),
            ("head dimension", self.head_dim),
            ("MLP width", self.d_mlp),
            ("vocabulary", self.vocab_size),
            ("context", self.context_length),
        ] {
            if v == 0 {
                return Err(bad(format!("the model's {name} is 0")));
            }
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return Err(bad(format!(
                "{} query heads cannot share {} key/value heads evenly",
                self.n_heads, self.n_kv_heads
            )));
        }
        if self.head_dim % 2 != 0 {
            return Err(bad(format!(
                "the head dimension {} is odd; rotary embeddings need pairs",
                self.head_dim
            )));
        }
        if !(self.rope_theta > 0.0) || !(self.rms_norm_eps >= 0.0) {
            return Err(bad(
                "rope theta must be positive and the norm's epsilon non-negative".into(),
            ));
        }
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim / 2 {
                return Err(bad(format!(
                    "{} rope frequency factors for a head dimension of {}",
                    f.len(),
                    self.head_dim
                )));
            }
        }
        Ok(())
    }

    /// The rotary frequencies `theta^(-2i/d)`, divided by the scaling factors where the model has them.
    pub(crate) fn rope_frequencies(&self) -> Vec<f32> {
        (0..self.head_dim / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf(2.0 * i as f32 / self.head_dim as f32);
                match &self.rope_freq_factors {
                    Some(factors) => f / factors[i],
                    None => f,
                }
            })
            .collect()
    }
}

/// Llama 3's `rope_scaling` (`rope_type: llama3`) turned into per-frequency divisors, the form GGUF
/// files store as `rope_freqs.weight`: long wavelengths are slowed by `factor`, short ones kept,
/// and the band between is interpolated.
pub(crate) fn llama3_freq_factors(
    head_dim: usize,
    theta: f32,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_context: f32,
) -> Vec<f32> {
    let low_freq_wavelen = original_context / low_freq_factor;
    let high_freq_wavelen = original_context / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                1.0
            } else if wavelen > low_freq_wavelen {
                factor
            } else {
                let smooth = (original_context / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}
