//! Bad input gets a typed error naming the problem, never a panic.

mod common;

use candle_core::quantized::gguf_file::Value;
use mesascope_lm::testing::{write_tiny_gguf, write_tiny_model, TinyFormat};
use mesascope_lm::*;
use std::path::Path;

fn load_err(path: &Path) -> LmError {
    match Model::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_and_corrupt_gguf_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [10, 2_000, bytes.len() / 2, bytes.len() - 100] {
        let p = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = load_err(&p);
        assert!(
            matches!(e, LmError::CorruptGguf { .. }),
            "cut at {cut}: {e}"
        );
        assert!(e.to_string().contains("truncated or corrupt"));
    }
    let p = dir.path().join("noise.gguf");
    std::fs::write(
        &p,
        (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    assert!(matches!(load_err(&p), LmError::CorruptGguf { .. }));
    // A string length field blown up to petabytes must not be allocated.
    let mut huge = bytes.clone();
    huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let p = dir.path().join("huge.gguf");
    std::fs::write(&p, &huge).unwrap();
    assert!(matches!(load_err(&p), LmError::CorruptGguf { .. }));
    assert!(matches!(
        load_err(&dir.path().join("absent.gguf")),
        LmError::Io { .. }
    ));
}

#[test]
fn unsupported_architecture_and_quantization_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tiny_gguf(dir.path(), "falcon.gguf", |meta, _| {
        meta[0].1 = Value::String("falcon".into());
    })
    .unwrap();
    let e = load_err(&p);
    assert!(
        matches!(&e, LmError::UnsupportedArchitecture { architecture, .. } if architecture == "falcon"),
        "{e}"
    );

    // Patch one tensor's ggml type to 16 (IQ2_XXS), which no CPU kernel here multiplies.
    let p = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let dtype_at = at + 4 + 8 * n_dims;
    bytes[dtype_at..dtype_at + 4].copy_from_slice(&16u32.to_le_bytes());
    let q = dir.path().join("iq2.gguf");
    std::fs::write(&q, &bytes).unwrap();
    let e = load_err(&q);
    assert!(matches!(e, LmError::UnsupportedQuantization { .. }), "{e}");

    let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let config = folder.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"llama\"", "\"gpt_neox\"")).unwrap();
    assert!(matches!(
        load_err(&folder),
        LmError::UnsupportedArchitecture { .. }
    ));
}

#[test]
fn a_config_that_disagrees_with_the_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let config = folder.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .unwrap();
    let e = load_err(&folder);
    assert!(
        matches!(&e, LmError::ShapeMismatch { tensor, .. } if tensor.contains("gate_proj")),
        "{e}"
    );

    let p = write_tiny_gguf(dir.path(), "heads.gguf", |meta, _| {
        for (k, v) in meta.iter_mut() {
            if k == "llama.attention.head_count_kv" {
                *v = Value::U32(4);
            }
        }
    })
    .unwrap();
    let e = load_err(&p);
    assert!(
        matches!(&e, LmError::ShapeMismatch { tensor, .. } if tensor.contains("attn_k")),
        "{e}"
    );

    let p = write_tiny_gguf(dir.path(), "no_v.gguf", |_, tensors| {
        tensors.retain(|(name, _)| name != "blk.1.attn_v.weight");
    })
    .unwrap();
    assert!(matches!(load_err(&p), LmError::MissingTensor { .. }));
    let p = write_tiny_gguf(dir.path(), "heads3.gguf", |meta, _| {
        for (k, v) in meta.iter_mut() {
            if k == "llama.attention.head_count_kv" {
                *v = Value::U32(3);
            }
        }
    })
    .unwrap();
    assert!(matches!(load_err(&p), LmError::BadConfig { .. }));
}

#[test]
fn a_missing_tokenizer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    std::fs::remove_file(folder.join("tokenizer.json")).unwrap();
    let e = load_err(&folder);
    assert!(matches!(e, LmError::MissingTokenizer { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"));
    let p = write_tiny_gguf(dir.path(), "novocab.gguf", |meta, _| {
        meta.retain(|(k, _)| !k.starts_with("tokenizer."));
    })
    .unwrap();
    assert!(matches!(load_err(&p), LmError::MissingTokenizer { .. }));
}

#[test]
fn truncated_safetensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let weights = folder.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    for cut in [4, 100, bytes.len() - 10] {
        std::fs::write(&weights, &bytes[..cut]).unwrap();
        let e = load_err(&folder);
        assert!(
            matches!(e, LmError::CorruptSafetensors { .. }),
            "cut at {cut}: {e}"
        );
    }
    std::fs::remove_file(&weights).unwrap();
    assert!(matches!(load_err(&folder), LmError::MissingTensor { .. }));
}

#[test]
fn a_prompt_longer_than_the_context_and_unknown_hooks_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap()).unwrap();
    let long = vec![5u32; testing::TINY_CONTEXT + 1];
    let e = model.logits(&long, &mut Hooks::none()).unwrap_err();
    assert!(
        matches!(
            e,
            LmError::ContextOverflow {
                tokens: 129,
                context: 128
            }
        ),
        "{e}"
    );
    let e = model
        .generate(
            &long,
            &GenerateOptions::default(),
            &mut Hooks::none(),
            &mut |_, _| true,
        )
        .unwrap_err();
    assert!(matches!(e, LmError::ContextOverflow { .. }));

    for name in [
        "blocks.2.resid_pre",
        "blocks.0.attn",
        "resid_pre",
        "blocks.x.mlp_out",
    ] {
        let e = model.hook_point(name).unwrap_err();
        assert!(matches!(e, LmError::UnknownHook { .. }));
        assert!(
            e.to_string()
                .contains("blocks.{0..1}.{resid_pre, attn_out, mlp_out, resid_post}"),
            "{e}"
        );
    }
    let mut hooks = Hooks::default();
    hooks.edits.push(Edit {
        point: model.hook_point("blocks.0.mlp_out").unwrap(),
        positions: Positions::All,
        op: EditOp::Add {
            vector: vec![1.0; 3],
            coefficient: 1.0,
        },
    });
    assert!(matches!(
        model.logits(&[1, 2], &mut hooks).unwrap_err(),
        LmError::InvalidArgument(_)
    ));
    assert!(matches!(
        model.logits(&[10_000], &mut Hooks::none()).unwrap_err(),
        LmError::InvalidArgument(_)
    ));
}

#[test]
fn tokenizer_vocabularies_that_cannot_be_rebuilt_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let set = |key: &'static str, value: Value| {
        move |meta: &mut Vec<(String, Value)>| {
            meta.retain(|(k, _)| k != key);
            meta.push((key.into(), value));
        }
    };
    let refused = |path: &Path, needle: &str| {
        let e = load_err(path);
        assert!(matches!(e, LmError::MissingTokenizer { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    };
    // A tokenizer model that is neither byte-level BPE nor SentencePiece.
    let p = common::write_sentencepiece_gguf(
        dir.path(),
        "bert.gguf",
        "",
        set("tokenizer.ggml.model", Value::String("bert".into())),
    );
    refused(&p, "`bert`");
    // A SentencePiece vocabulary whose scores do not line up with its pieces, or are absent.
    let n = common::vocabulary().len();
    let p = common::write_sentencepiece_gguf(
        dir.path(),
        "scores.gguf",
        "",
        set(
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::F32(0.0); n - 1]),
        ),
    );
    refused(&p, &format!("scores has {} entries for {n} tokens", n - 1));
    let p = common::write_sentencepiece_gguf(dir.path(), "noscores.gguf", "", |meta| {
        meta.retain(|(k, _)| k != "tokenizer.ggml.scores")
    });
    refused(&p, "no tokenizer.ggml.scores");
    let p = common::write_sentencepiece_gguf(
        dir.path(),
        "textscores.gguf",
        "",
        set(
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::String("x".into()); n]),
        ),
    );
    refused(&p, "non-number");
    let p = common::write_sentencepiece_gguf(
        dir.path(),
        "types.gguf",
        "",
        set(
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1); 3]),
        ),
    );
    refused(&p, "token_type has 3 entries");
    // A byte-level BPE whose pre-tokenizer is not one that is rebuilt.
    let p = write_tiny_gguf(dir.path(), "pre.gguf", |meta, _| {
        for (k, v) in meta.iter_mut() {
            if k == "tokenizer.ggml.pre" {
                *v = Value::String("jais".into());
            }
        }
    })
    .unwrap();
    refused(&p, "`jais`");
}

#[test]
fn an_unsupported_safetensors_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let path = folder.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // The same numbers as f64: a type no loader here takes.
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = if name == "model.layers.0.mlp.up_proj.weight" {
                view.data()
                    .chunks_exact(4)
                    .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) as f64).to_le_bytes())
                    .collect()
            } else {
                view.data().to_vec()
            };
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let dtype = if d.len() == 8 * s.iter().product::<usize>() {
                safetensors::Dtype::F64
            } else {
                safetensors::Dtype::F32
            };
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
    let e = load_err(&folder);
    assert!(
        matches!(&e, LmError::UnsupportedQuantization { tensor, dtype } if tensor.contains("up_proj") && dtype == "F64"),
        "{e}"
    );
}
