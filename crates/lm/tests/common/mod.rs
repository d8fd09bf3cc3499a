//! A tiny SentencePiece vocabulary (Llama 2's layout: `<unk>`, `<s>`, `</s>`, the 256 byte tokens,
//! merged pieces by descending score, then single characters) and the tiny model's GGUF copy
//! carrying it in place of its byte-level BPE.

#![allow(dead_code)]

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use mesascope_lm::testing::{write_tiny_gguf, TINY_HEADS, TINY_MLP, TINY_WIDTH};
use std::path::{Path, PathBuf};

/// The merges of the vocabulary in rank order, as Hugging Face's converter lists them in Llama's
/// `tokenizer.json`: by the merged piece's score, and a piece with two splits (`▁ing`) contributes
/// both, the one whose left half has the lower id first.
pub const MERGES: [(&str, &str); 19] = [
    ("▁", "t"),
    ("h", "e"),
    ("i", "n"),
    ("▁t", "he"),
    ("▁", "a"),
    ("e", "r"),
    ("▁", "▁"),
    ("in", "g"),
    ("▁", "in"),
    ("▁▁", "▁▁"),
    ("o", "n"),
    ("▁", "s"),
    ("1", "2"),
    ("▁in", "g"),
    ("▁", "ing"),
    ("c", "a"),
    ("ca", "f"),
    ("caf", "é"),
    ("▁", "["),
];

/// Single characters in the vocabulary; any other character falls back to its UTF-8 bytes.
pub const CHARACTERS: &str =
    "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'[]/<>:;()-é";

pub const SPECIALS: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// GGUF token types.
pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const BYTE: i32 = 6;

/// Llama 2's chat template (Hugging Face's `tokenizer_config.json`).
pub const LLAMA2_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// Mistral Instruct v0.1's chat template.
pub const MISTRAL_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/// The vocabulary in id order: (piece, score, token type).
pub fn vocabulary() -> Vec<(String, f32, i32)> {
    let mut v: Vec<(String, f32, i32)> = vec![
        (SPECIALS[0].into(), 0.0, UNKNOWN),
        (SPECIALS[1].into(), 0.0, CONTROL),
        (SPECIALS[2].into(), 0.0, CONTROL),
    ];
    v.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, BYTE)));
    let mut merged: Vec<String> = Vec::new();
    for (a, b) in MERGES {
        let piece = format!("{a}{b}");
        if !merged.contains(&piece) {
            merged.push(piece);
        }
    }
    v.extend(
        merged
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, -(i as f32), NORMAL)),
    );
    v.extend(
        CHARACTERS
            .chars()
            .enumerate()
            .map(|(i, c)| (c.to_string(), -1000.0 - i as f32, NORMAL)),
    );
    v
}

/// The tiny model's GGUF copy with the SentencePiece vocabulary (`tokenizer.ggml.model = llama`),
/// its embedding and unembedding resized to it. `edit` changes the tokenizer's metadata further.
pub fn write_sentencepiece_gguf(
    dir: &Path,
    file_name: &str,
    chat_template: &str,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
) -> PathBuf {
    write_vocabulary_gguf(dir, file_name, &vocabulary(), chat_template, edit)
}

/// The tiny model's GGUF copy with the SentencePiece vocabulary `vocab` ((piece, score, type) in id
/// order; ids 0, 1, 2 are `<unk>`, `<s>`, `</s>`).
pub fn write_vocabulary_gguf(
    dir: &Path,
    file_name: &str,
    vocab: &[(String, f32, i32)],
    chat_template: &str,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
) -> PathBuf {
    let n = vocab.len();
    write_tiny_gguf(dir, file_name, |meta, tensors| {
        meta.retain(|(k, _)| !k.starts_with("tokenizer."));
        let mut tok: Vec<(String, Value)> = vec![
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(vocab.iter().map(|t| Value::String(t.0.clone())).collect()),
            ),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(vocab.iter().map(|t| Value::F32(t.1)).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(vocab.iter().map(|t| Value::I32(t.2)).collect()),
            ),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
            (
                "tokenizer.chat_template".into(),
                Value::String(chat_template.into()),
            ),
        ];
        edit(&mut tok);
        meta.extend(tok);
        for (name, t) in tensors.iter_mut() {
            if name == "token_embd.weight" || name == "output.weight" {
                let data: Vec<f32> = (0..n * TINY_WIDTH)
                    .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 0.8)
                    .collect();
                let dense = Tensor::from_vec(data, (n, TINY_WIDTH), &Device::Cpu).unwrap();
                *t = QTensor::quantize(&dense, GgmlDType::F32).unwrap();
            }
        }
    })
    .unwrap()
}

/// The tiny model with every matrix stored as `dtype` (vectors stay F32), or, with `dequantized`,
/// as F32 holding exactly the values that `dtype` rounds them to: the reference for that type.
/// `wide` multiplies every dimension but the vocabulary by 4 (width 256, MLP 512, heads of 64)
/// with fresh random weights, so that the K-quants' blocks of 256 fit the rows.
pub fn write_typed_gguf(
    dir: &Path,
    file_name: &str,
    dtype: GgmlDType,
    wide: bool,
    dequantized: bool,
) -> PathBuf {
    write_tiny_gguf(dir, file_name, |meta, tensors| {
        if wide {
            for (k, v) in meta.iter_mut() {
                match k.as_str() {
                    "llama.embedding_length" => *v = Value::U32(4 * TINY_WIDTH as u32),
                    "llama.feed_forward_length" => *v = Value::U32(4 * TINY_MLP as u32),
                    "llama.rope.dimension_count" => {
                        *v = Value::U32(4 * (TINY_WIDTH / TINY_HEADS) as u32)
                    }
                    _ => {}
                }
            }
        }
        let vocab = tensors
            .iter()
            .find(|(n, _)| n == "token_embd.weight")
            .map(|(_, t)| t.shape().dims()[0])
            .unwrap();
        for (seed, (_, t)) in tensors.iter_mut().enumerate() {
            let mut dense = t.dequantize(&Device::Cpu).unwrap();
            if wide {
                dense = widened(&dense, vocab, seed as u64);
            }
            *t = if dense.rank() == 2 {
                let q = QTensor::quantize(&dense, dtype).unwrap();
                if dequantized {
                    QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
                } else {
                    q
                }
            } else if matches!(dtype, GgmlDType::F16 | GgmlDType::BF16) {
                // Norm gains stay F32 in the file, as converters write them, holding the values
                // a half-precision checkpoint would round them to.
                let rounded = QTensor::quantize(&dense, dtype).unwrap();
                QTensor::quantize(&rounded.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32)
                    .unwrap()
            } else {
                QTensor::quantize(&dense, GgmlDType::F32).unwrap()
            };
        }
    })
    .unwrap()
}

/// A tensor of `t`'s shape with every dimension but the vocabulary's 4 times larger: random
/// weights of a scale that keeps the wider model's activations in range, or norm gains near 1.
fn widened(t: &Tensor, vocab: usize, seed: u64) -> Tensor {
    let dims: Vec<usize> = t
        .dims()
        .iter()
        .map(|&d| if d == vocab { d } else { 4 * d })
        .collect();
    let n: usize = dims.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let data: Vec<f32> = if dims.len() == 1 {
        (0..n).map(|_| 1.0 + 0.1 * uniform()).collect()
    } else {
        let fan_in = dims[1] as f32;
        (0..n).map(|_| uniform() * 3.0 / fan_in.sqrt()).collect()
    };
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}
