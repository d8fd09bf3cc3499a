//! A tiny random-weight Llama model that tests write themselves, in both formats, so that the
//! loaders, hooks and generation are tested without downloading weights. The two formats hold the
//! same numbers: the GGUF copy's q and k rows are permuted as llama.cpp's converter does it, so the
//! models agree only if the loaders handle each format's rotary layout correctly.

use crate::error::{io_error, LmError, Result};
use crate::generate::SplitMix64;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::AddedToken;

/// Which copy of the tiny model to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyFormat {
    /// One `.gguf` file, F32 weights.
    Gguf,
    /// A Hugging Face folder: `config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`.
    HuggingFace,
}

/// The tiny model's shape: 2 layers, width 64, 4 query heads sharing 2 key/value heads.
pub const TINY_LAYERS: usize = 2;
pub const TINY_WIDTH: usize = 64;
pub const TINY_HEADS: usize = 4;
pub const TINY_KV_HEADS: usize = 2;
pub const TINY_MLP: usize = 128;
pub const TINY_CONTEXT: usize = 128;
const TINY_THETA: f32 = 10_000.0;
const TINY_EPS: f32 = 1e-5;

/// SmolLM2's chat template (ChatML with a default system message), so the tiny model chats alike.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// A few English merges over GPT-2's byte alphabet (`Ġ` is the space).
const MERGES: [(&str, &str); 24] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġt", "he"),
    ("r", "e"),
    ("a", "n"),
    ("Ġ", "s"),
    ("Ġ", "w"),
    ("o", "u"),
    ("e", "s"),
    ("i", "s"),
    ("Ġ", "c"),
    ("a", "t"),
    ("i", "t"),
    ("Ġ", "o"),
    ("e", "n"),
    ("in", "g"),
    ("Ġ", "i"),
    ("e", "d"),
    ("l", "l"),
    ("o", "r"),
];

/// The tiny tokenizer's vocabulary in id order: the special tokens, the byte alphabet, the merges.
fn tiny_vocab() -> Vec<String> {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    SPECIALS
        .iter()
        .map(|s| s.to_string())
        .chain(alphabet.into_iter().map(String::from))
        .chain(MERGES.iter().map(|(a, b)| format!("{a}{b}")))
        .collect()
}

fn tiny_tokenizer_json(vocab: &[String]) -> Result<String> {
    let ids: tokenizers::models::bpe::Vocab = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = MERGES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .build()
        .map_err(|e| LmError::Tokenizer(e.to_string()))?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    t.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    t.add_special_tokens(specials)
        .map_err(|e| LmError::Tokenizer(e.to_string()))?;
    t.to_string(true)
        .map_err(|e| LmError::Tokenizer(e.to_string()))
}

/// The tiny model's tensors under their Hugging Face names, `[out, in]`, from a fixed seed.
fn tiny_tensors(vocab_size: usize) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = SplitMix64::new(18);
    let mut normal = |shape: Vec<usize>, scale: f32| {
        let n: usize = shape.iter().product();
        // Sums of uniforms: close enough to Gaussian for random weights, and exact across platforms.
        let data = (0..n)
            .map(|_| ((0..4).map(|_| rng.uniform()).sum::<f64>() - 2.0) as f32 * scale)
            .collect();
        (shape, data)
    };
    let (d, hd) = (TINY_WIDTH, TINY_WIDTH / TINY_HEADS);
    let mut t = BTreeMap::new();
    t.insert(
        "model.embed_tokens.weight".into(),
        normal(vec![vocab_size, d], 1.0),
    );
    t.insert("lm_head.weight".into(), normal(vec![vocab_size, d], 0.2));
    let gain = |rng_shift: f32| {
        (
            vec![d],
            (0..d)
                .map(|i| 1.0 + rng_shift * ((i % 7) as f32 - 3.0))
                .collect::<Vec<f32>>(),
        )
    };
    t.insert("model.norm.weight".into(), gain(0.05));
    for i in 0..TINY_LAYERS {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        t.insert(p("input_layernorm.weight"), gain(0.03));
        t.insert(p("post_attention_layernorm.weight"), gain(-0.02));
        t.insert(
            p("self_attn.q_proj.weight"),
            normal(vec![TINY_HEADS * hd, d], 0.3),
        );
        t.insert(
            p("self_attn.k_proj.weight"),
            normal(vec![TINY_KV_HEADS * hd, d], 0.3),
        );
        t.insert(
            p("self_attn.v_proj.weight"),
            normal(vec![TINY_KV_HEADS * hd, d], 0.3),
        );
        t.insert(
            p("self_attn.o_proj.weight"),
            normal(vec![d, TINY_HEADS * hd], 0.2),
        );
        t.insert(p("mlp.gate_proj.weight"), normal(vec![TINY_MLP, d], 0.2));
        t.insert(p("mlp.up_proj.weight"), normal(vec![TINY_MLP, d], 0.2));
        t.insert(p("mlp.down_proj.weight"), normal(vec![d, TINY_MLP], 0.2));
    }
    t
}

fn gguf_name(hf: &str) -> String {
    let renamed = hf
        .replace("model.embed_tokens.weight", "token_embd.weight")
        .replace("model.norm.weight", "output_norm.weight")
        .replace("lm_head.weight", "output.weight")
        .replace("model.layers.", "blk.")
        .replace("input_layernorm", "attn_norm")
        .replace("post_attention_layernorm", "ffn_norm")
        .replace("self_attn.q_proj", "attn_q")
        .replace("self_attn.k_proj", "attn_k")
        .replace("self_attn.v_proj", "attn_v")
        .replace("self_attn.o_proj", "attn_output")
        .replace("mlp.gate_proj", "ffn_gate")
        .replace("mlp.up_proj", "ffn_up")
        .replace("mlp.down_proj", "ffn_down");
    renamed
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Writes the tiny model into `dir` and returns its path (the `.gguf` file or the folder).
pub fn write_tiny_model(dir: &Path, format: TinyFormat) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let vocab = tiny_vocab();
    let tensors = tiny_tensors(vocab.len());
    match format {
        TinyFormat::HuggingFace => {
            let folder = dir.join("tiny-llama");
            std::fs::create_dir_all(&folder).map_err(io_error(&folder))?;
            let config = serde_json::json!({
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": TINY_WIDTH,
                "intermediate_size": TINY_MLP,
                "num_hidden_layers": TINY_LAYERS,
                "num_attention_heads": TINY_HEADS,
                "num_key_value_heads": TINY_KV_HEADS,
                "max_position_embeddings": TINY_CONTEXT,
                "rope_theta": TINY_THETA,
                "rms_norm_eps": TINY_EPS,
                "vocab_size": vocab.len(),
                "tie_word_embeddings": false,
                "bos_token_id": 0,
                "eos_token_id": 0,
            });
            let tokenizer_config = serde_json::json!({
                "add_bos_token": false,
                "eos_token": "<|endoftext|>",
                "chat_template": CHATML_TEMPLATE,
            });
            let pretty = |v: &serde_json::Value| {
                serde_json::to_string_pretty(v).expect("JSON values serialize")
            };
            write_atomically(&folder.join("config.json"), pretty(&config).as_bytes())?;
            write_atomically(
                &folder.join("tokenizer_config.json"),
                pretty(&tokenizer_config).as_bytes(),
            )?;
            write_atomically(
                &folder.join("tokenizer.json"),
                tiny_tokenizer_json(&vocab)?.as_bytes(),
            )?;
            let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
                .iter()
                .map(|(name, (shape, data))| {
                    (
                        name.clone(),
                        shape.clone(),
                        data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    )
                })
                .collect();
            let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
                .iter()
                .map(|(name, shape, data)| {
                    let view = safetensors::tensor::TensorView::new(
                        safetensors::Dtype::F32,
                        shape.clone(),
                        data,
                    )
                    .map_err(|e| LmError::CorruptSafetensors {
                        path: folder.clone(),
                        reason: e.to_string(),
                    })?;
                    Ok((name.clone(), view))
                })
                .collect::<Result<_>>()?;
            let serialized = safetensors::tensor::serialize(views, None).map_err(|e| {
                LmError::CorruptSafetensors {
                    path: folder.clone(),
                    reason: e.to_string(),
                }
            })?;
            write_atomically(&folder.join("model.safetensors"), &serialized)?;
            Ok(folder)
        }
        TinyFormat::Gguf => write_tiny_gguf(dir, "tiny-llama.gguf", |_, _| {}),
    }
}

/// GGUF metadata entries and tensors, as the writer takes them.
pub type GgufMetadata = Vec<(String, Value)>;
pub type GgufTensors = Vec<(String, QTensor)>;

/// Writes the tiny model's GGUF copy as `dir/file_name`, after `edit` has changed its metadata or
/// tensors (tests use it to write models that must be refused).
pub fn write_tiny_gguf(
    dir: &Path,
    file_name: &str,
    edit: impl FnOnce(&mut GgufMetadata, &mut GgufTensors),
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let vocab = tiny_vocab();
    let tensors = tiny_tensors(vocab.len());
    let path = dir.join(file_name);
    let hd = TINY_WIDTH / TINY_HEADS;
    let mut q_tensors = Vec::new();
    for (name, (shape, data)) in &tensors {
        let data = if name.ends_with("q_proj.weight") {
            crate::lora::permute_rope_rows(data, TINY_HEADS, shape[1], true)
        } else if name.ends_with("k_proj.weight") {
            crate::lora::permute_rope_rows(data, TINY_KV_HEADS, shape[1], true)
        } else {
            data.clone()
        };
        let t = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?;
        q_tensors.push((gguf_name(name), QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let u32v = |x: usize| Value::U32(x as u32);
    let strings = |xs: Vec<String>| Value::Array(xs.into_iter().map(Value::String).collect());
    let token_types = Value::Array(
        (0..vocab.len())
            .map(|i| Value::I32(if i < SPECIALS.len() { 3 } else { 1 }))
            .collect(),
    );
    let mut metadata: GgufMetadata = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String("tiny-llama".into())),
        ("llama.block_count".into(), u32v(TINY_LAYERS)),
        ("llama.embedding_length".into(), u32v(TINY_WIDTH)),
        ("llama.feed_forward_length".into(), u32v(TINY_MLP)),
        ("llama.attention.head_count".into(), u32v(TINY_HEADS)),
        ("llama.attention.head_count_kv".into(), u32v(TINY_KV_HEADS)),
        ("llama.context_length".into(), u32v(TINY_CONTEXT)),
        ("llama.rope.freq_base".into(), Value::F32(TINY_THETA)),
        ("llama.rope.dimension_count".into(), u32v(hd)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(TINY_EPS),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(vocab.clone())),
        ("tokenizer.ggml.token_type".into(), token_types),
        (
            "tokenizer.ggml.merges".into(),
            strings(MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(CHATML_TEMPLATE.into()),
        ),
    ];
    edit(&mut metadata, &mut q_tensors);
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        q_tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = path.with_extension("part");
    let file = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
    let mut writer = std::io::BufWriter::new(file);
    gguf_file::write(&mut writer, &meta_refs, &tensor_refs)?;
    std::io::Write::flush(&mut writer).map_err(io_error(&tmp))?;
    drop(writer);
    std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
    Ok(path)
}
