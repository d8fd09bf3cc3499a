//! Llama-family language models on a CPU, with named hook points.
//!
//! [`Model::load`] reads a GGUF file (weights kept quantized) or a Hugging Face folder; the forward
//! pass ([`model`]) is written here and exposes per-token hook points ([`hooks`]) that read and
//! write the residual stream and the sublayers' outputs; [`Model::generate`] decodes with a KV
//! cache, greedy or sampled from a seed.

pub mod config;
pub mod defection;
pub mod error;
pub mod fingerprint;
pub mod generate;
pub mod hooks;
pub mod implant;
mod load;
pub mod lora;
pub mod merge;
pub mod model;
pub mod monitor;
mod quant;
pub mod report;
pub mod steering;
pub mod testing;
pub mod tokenizer;
pub mod train;
pub mod trigger_scan;

pub use config::{Config, RopeLayout};
pub use error::{LmError, Result};
pub use generate::{argmax, GenerateOptions, Generation, StopReason};
pub use hooks::{hook_names, Edit, EditOp, HookPoint, Hooks, Positions, Site};
pub use lora::{LoraAdapter, LoraConfig, LoraPair, Projection};
pub use merge::{MergedDtype, MergedExport};
pub use model::{KvCache, LogitsFor};
pub use tokenizer::{ChatTemplate, Message, Tokenizer};

use model::Transformer;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prompt tokens per forward pass when generating: long prompts run in chunks of this many so
/// that the activations' memory stays small next to the weights'.
pub const PREFILL_CHUNK: usize = 128;

/// Logits of a forward pass: `rows` positions of `vocab` each, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub rows: usize,
    pub vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
    pub fn last(&self) -> &[f32] {
        self.row(self.rows - 1)
    }
}

/// A summary of a loaded model (`mesascope lm info`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// `gguf` or `huggingface`.
    pub format: String,
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
    pub tied_embeddings: bool,
    pub qkv_bias: bool,
    /// Storage type of the checkpoint's tensors -> how many tensors use it.
    pub storage_types: BTreeMap<String, usize>,
    pub chat_template: Option<ChatTemplate>,
    pub hook_names: Vec<String>,
    /// Bytes of the checkpoint's tensors on disk.
    pub checkpoint_bytes: usize,
    /// Bytes the loaded weights occupy in memory.
    pub memory_bytes: usize,
}

/// A loaded model with its tokenizer.
pub struct Model {
    transformer: Transformer,
    tokenizer: Tokenizer,
    path: PathBuf,
    format: &'static str,
    storage_types: BTreeMap<String, usize>,
    checkpoint_bytes: usize,
}

impl Model {
    /// Loads a GGUF file, or a Hugging Face folder (`config.json`, safetensors, `tokenizer.json`).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        // candle, safetensors and tokenizers read the files; a panic of theirs on a malformed
        // one is that file's error.
        mesascope_core::foreign::catch_panic(|| Model::load_unguarded(path)).unwrap_or_else(
            |what| {
                Err(LmError::BadConfig {
                    path: path.to_path_buf(),
                    reason: format!("a reader failed on a malformed file: {what}"),
                })
            },
        )
    }

    fn load_unguarded(path: &Path) -> Result<Model> {
        let meta = std::fs::metadata(path).map_err(error::io_error(path))?;
        let loaded = if meta.is_dir() {
            load::load_hf_folder(path)?
        } else {
            load::load_gguf(path)?
        };
        Ok(Model {
            transformer: Transformer::new(loaded.config, loaded.weights),
            tokenizer: loaded.tokenizer,
            path: path.to_path_buf(),
            format: loaded.format,
            storage_types: loaded.storage_types,
            checkpoint_bytes: loaded.weight_bytes,
        })
    }

    pub fn config(&self) -> &Config {
        &self.transformer.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The file or folder the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `adapter`'s low-rank updates to every forward pass from now on (`None` removes it). The
    /// base weights are not changed. An adapter of another shape is an error.
    pub fn set_adapter(&mut self, adapter: Option<LoraAdapter>) -> Result<()> {
        if let Some(a) = &adapter {
            a.check(self.config())?;
        }
        self.transformer.adapter = adapter;
        Ok(())
    }

    pub fn adapter(&self) -> Option<&LoraAdapter> {
        self.transformer.adapter.as_ref()
    }

    /// Loads a PEFT adapter folder for this model and applies it (see [`Model::set_adapter`]).
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let adapter = LoraAdapter::load(dir.as_ref(), self.config())?;
        self.set_adapter(Some(adapter))
    }

    /// Keeps every block's quantized projections also in f32 (for SmolLM2-135M about 430 MB
    /// more), so that work over many texts (defection probes, trigger scans) stops expanding
    /// their blocks anew for every matrix product; generation still reads the blocks. The
    /// outputs are the same.
    pub fn expand_weights(&mut self) -> Result<()> {
        for block in &mut self.transformer.weights.blocks {
            for linear in [
                &mut block.q,
                &mut block.k,
                &mut block.v,
                &mut block.o,
                &mut block.gate,
                &mut block.up,
                &mut block.down,
            ] {
                if let model::Matrix::Blocks(q) = &mut linear.weight {
                    q.expand()?;
                }
            }
        }
        Ok(())
    }

    /// The hook point named `name` (`blocks.{i}.resid_pre`, ...); an error lists the valid names.
    pub fn hook_point(&self, name: &str) -> Result<HookPoint> {
        HookPoint::parse(name, self.config().n_layers)
    }

    pub fn info(&self) -> ModelInfo {
        let c = self.config();
        let w = &self.transformer.weights;
        let vector_bytes = |v: &Vec<f32>| v.len() * 4;
        let bias_bytes = |l: &model::Linear| l.bias.as_ref().map_or(0, |b| b.len() * 4);
        let mut memory = w.embedding.memory_bytes() + vector_bytes(&w.final_norm);
        if !c.tied_embeddings {
            memory += w.unembedding.memory_bytes();
        }
        for b in &w.blocks {
            memory += vector_bytes(&b.attn_norm) + vector_bytes(&b.mlp_norm);
            for l in [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down] {
                memory += l.weight.memory_bytes() + bias_bytes(l);
            }
        }
        ModelInfo {
            path: self.path.clone(),
            format: self.format.into(),
            architecture: c.architecture.clone(),
            n_layers: c.n_layers,
            d_model: c.d_model,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            d_mlp: c.d_mlp,
            vocab_size: c.vocab_size,
            context_length: c.context_length,
            rope_theta: c.rope_theta,
            tied_embeddings: c.tied_embeddings,
            qkv_bias: c.qkv_bias,
            storage_types: self.storage_types.clone(),
            chat_template: self.tokenizer.chat.clone(),
            hook_names: hook_names(c.n_layers),
            checkpoint_bytes: self.checkpoint_bytes,
            memory_bytes: memory,
        }
    }

    /// The prompt's tokens: templated as one user message when `chat`, else the plain text (with
    /// the beginning-of-sequence token where the model uses one).
    pub fn prompt_tokens(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        if chat {
            self.tokenizer.encode_chat(&[Message::new("user", prompt)])
        } else {
            self.tokenizer.encode(prompt, true)
        }
    }

    /// A KV cache for a sequence of up to `capacity` tokens (at most the model's context).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        self.transformer.new_cache(capacity)
    }

    /// Runs `tokens` after the sequence already in `cache`, with `hooks`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
        logits_for: LogitsFor,
    ) -> Result<Logits> {
        let c = self.config();
        hooks.validate(c.n_layers, c.d_model)?;
        let logits = self.transformer.forward(tokens, cache, hooks, logits_for)?;
        let (rows, vocab) = logits.dims2()?;
        Ok(Logits {
            rows,
            vocab,
            data: logits.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// Runs a prompt into `cache` in chunks of at most `chunk` tokens (bounding the activations'
    /// memory on long prompts) and returns the last position's logits.
    pub fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
        chunk: usize,
    ) -> Result<Logits> {
        if tokens.is_empty() {
            return Err(LmError::InvalidArgument("the prompt has no tokens".into()));
        }
        let mut last = None;
        for part in tokens.chunks(chunk.max(1)) {
            last = Some(self.forward(part, cache, hooks, LogitsFor::Last)?);
        }
        Ok(last.expect("at least one chunk"))
    }

    fn check_context(&self, tokens: usize) -> Result<()> {
        let context = self.config().context_length;
        if tokens > context {
            return Err(LmError::ContextOverflow { tokens, context });
        }
        Ok(())
    }

    /// Next-token logits at every position of `tokens`, the whole prompt in one forward pass.
    pub fn logits(&self, tokens: &[u32], hooks: &mut Hooks) -> Result<Logits> {
        self.check_context(tokens.len())?;
        let mut cache = self.new_cache(tokens.len())?;
        self.forward(tokens, &mut cache, hooks, LogitsFor::All)
    }

    /// Reads `points` for each prompt at `positions` (each prompt in one forward pass). Returns,
    /// per prompt, the point's name -> one row per selected token.
    pub fn activations(
        &self,
        prompts: &[Vec<u32>],
        points: &[HookPoint],
        positions: Positions,
    ) -> Result<Vec<BTreeMap<String, Vec<Vec<f32>>>>> {
        prompts
            .iter()
            .map(|tokens| {
                let mut hooks = Hooks {
                    reads: points.to_vec(),
                    read_positions: Some(positions.clone()),
                    ..Hooks::default()
                };
                self.check_context(tokens.len())?;
                let mut cache = self.new_cache(tokens.len())?;
                // The logits are not needed; the last row is the cheapest to compute.
                self.forward(tokens, &mut cache, &mut hooks, LogitsFor::Last)?;
                Ok(hooks.captured)
            })
            .collect()
    }

    /// Generates after `prompt` with a KV cache (the prompt in one forward pass, then one token at a
    /// time), calling `on_token(id, text_piece)` as each token is chosen; it returns false to stop.
    pub fn generate(
        &self,
        prompt: &[u32],
        options: &GenerateOptions,
        hooks: &mut Hooks,
        on_token: &mut dyn FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        self.generate_observed(prompt, options, hooks, &mut |_| true, on_token)
    }

    /// [`Model::generate`], with `after_forward(hooks)` called after each forward pass (the
    /// prompt's, then each generated token's), before the next token is chosen: it reads what the
    /// hooks captured (a generation-time monitor) and returns false to stop there.
    pub fn generate_observed(
        &self,
        prompt: &[u32],
        options: &GenerateOptions,
        hooks: &mut Hooks,
        after_forward: &mut dyn FnMut(&mut Hooks) -> bool,
        on_token: &mut dyn FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(LmError::InvalidArgument("the prompt has no tokens".into()));
        }
        if !(options.top_p > 0.0 && options.top_p <= 1.0) || !(options.temperature >= 0.0) {
            return Err(LmError::InvalidArgument(format!(
                "top_p must be in (0, 1] and the temperature non-negative (got top_p {}, temperature {})",
                options.top_p, options.temperature
            )));
        }
        self.check_context(prompt.len())?;
        let context = self.config().context_length;
        let mut cache = self.new_cache((prompt.len() + options.max_tokens).min(context))?;
        let mut rng = generate::SplitMix64::new(options.seed);
        let mut stream = self.tokenizer.inner.decode_stream(false);
        let mut tokens = Vec::new();
        let mut stop = StopReason::MaxTokens;
        if options.max_tokens > 0 {
            let mut logits = self.prefill(prompt, &mut cache, hooks, PREFILL_CHUNK)?;
            let mut go_on = after_forward(hooks);
            loop {
                if !go_on {
                    stop = StopReason::Callback;
                    break;
                }
                let next =
                    generate::sample(logits.last(), options.temperature, options.top_p, &mut rng);
                if options.stop_at_eos && self.tokenizer.eos.contains(&next) {
                    stop = StopReason::EndOfSequence;
                    break;
                }
                tokens.push(next);
                let piece = stream
                    .step(next)
                    .map_err(|e| LmError::Tokenizer(e.to_string()))?
                    .unwrap_or_default();
                if !on_token(next, &piece) {
                    stop = StopReason::Callback;
                    break;
                }
                if tokens.len() >= options.max_tokens || cache.len() >= cache.capacity() {
                    break;
                }
                logits = self.forward(&[next], &mut cache, hooks, LogitsFor::Last)?;
                go_on = after_forward(hooks);
            }
        }
        Ok(Generation {
            prompt_tokens: prompt.to_vec(),
            text: self.tokenizer.decode(&tokens)?,
            tokens,
            stop,
        })
    }
}

impl std::fmt::Display for ModelInfo {
    /// The text of `mesascope lm info`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: usize| b as f64 / 1e6;
        writeln!(f, "model         {} ({})", self.path.display(), self.format)?;
        writeln!(f, "architecture  {}", self.architecture)?;
        writeln!(f, "layers        {}", self.n_layers)?;
        writeln!(f, "width         {} (MLP {})", self.d_model, self.d_mlp)?;
        writeln!(
            f,
            "heads         {} query, {} key/value, {} dimensions each",
            self.n_heads, self.n_kv_heads, self.head_dim
        )?;
        writeln!(f, "vocabulary    {}", self.vocab_size)?;
        writeln!(
            f,
            "context       {} (rope theta {})",
            self.context_length, self.rope_theta
        )?;
        writeln!(
            f,
            "embeddings    {}",
            if self.tied_embeddings {
                "tied"
            } else {
                "untied"
            }
        )?;
        let types: Vec<String> = self
            .storage_types
            .iter()
            .map(|(t, n)| format!("{t} x{n}"))
            .collect();
        writeln!(f, "tensors       {}", types.join(", "))?;
        let chat = self
            .chat_template
            .as_ref()
            .map_or("none recognized", ChatTemplate::name);
        writeln!(f, "chat template {chat}")?;
        writeln!(
            f,
            "memory        {:.1} MB of weights loaded ({:.1} MB in the checkpoint)",
            mb(self.memory_bytes),
            mb(self.checkpoint_bytes)
        )?;
        writeln!(
            f,
            "hook points   blocks.{{0..{}}}.{{resid_pre, attn_out, mlp_out, resid_post}} ({} in all)",
            self.n_layers.saturating_sub(1),
            self.hook_names.len()
        )
    }
}
