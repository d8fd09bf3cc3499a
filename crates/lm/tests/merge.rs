//! The merged export (`Model::save_merged`): the adapter folded into the weights and written as a
//! Hugging Face folder, on the tiny model in its three forms (F32 GGUF, Q4_1 GGUF, Hugging Face
//! folder). The folder loads with this crate's Hugging Face loader, without an adapter, and gives
//! the adapted model's logits; its tokenizer encodes and templates as the source's does; bad
//! destinations and models that cannot be exported are refused before anything is written.

mod common;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::{write_sentencepiece_gguf, write_typed_gguf, LLAMA2_TEMPLATE};
use mesascope_lm::testing::{write_tiny_gguf, write_tiny_model, TinyFormat, TINY_HEADS};
use mesascope_lm::*;
use std::path::{Path, PathBuf};

const TEXTS: [&str; 4] = [
    "the cat sat on the mat",
    "hello world, 1234 and 56",
    "<|im_start|>user\nwhat is in the sea?<|im_end|>\n",
    "a",
];

fn adapter(model: &Model, seed: u64) -> LoraAdapter {
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: Projection::ALL.to_vec(),
    };
    let mut a = LoraAdapter::new(model.config(), config, "tiny-llama", seed).unwrap();
    a.randomize_b(seed + 1, 0.05);
    a
}

fn adapted(path: &Path, seed: u64) -> Model {
    let mut m = Model::load(path).unwrap();
    let a = adapter(&m, seed);
    m.set_adapter(Some(a)).unwrap();
    m
}

fn all_logits(model: &Model) -> Vec<Vec<f32>> {
    TEXTS
        .iter()
        .map(|t| {
            let tokens = model.prompt_tokens(t, false).unwrap();
            model.logits(&tokens, &mut Hooks::none()).unwrap().data
        })
        .chain(std::iter::once({
            let tokens = model.prompt_tokens("name a fish", true).unwrap();
            model.logits(&tokens, &mut Hooks::none()).unwrap().data
        }))
        .collect()
}

/// max |a - b| / max |b| over every position and vocabulary entry of every text.
fn relative_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let mut worst = 0f32;
    let mut scale = 0f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
            scale = scale.max(q.abs());
        }
    }
    worst / scale
}

fn export(model: &Model, dir: &Path, dtype: MergedDtype) -> (PathBuf, MergedExport) {
    let out = dir.join("merged");
    let started = std::time::Instant::now();
    let e = model.save_merged(&out, dtype).unwrap();
    eprintln!(
        "exported {} tensors ({} merged projections) in {:.2} s: {} bytes of weights, {} in all",
        e.tensors,
        e.merged_projections,
        started.elapsed().as_secs_f64(),
        e.weight_bytes,
        e.total_bytes
    );
    (out, e)
}

#[test]
fn merged_models_give_the_adapted_logits_in_every_source_format() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        (
            "f32 gguf",
            write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap(),
        ),
        (
            "hf folder",
            write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap(),
        ),
    ];
    for (name, path) in sources {
        let model = adapted(&path, 11);
        let expected = all_logits(&model);
        let base = {
            let mut m = Model::load(&path).unwrap();
            m.set_adapter(None).unwrap();
            all_logits(&m)
        };
        assert!(
            relative_difference(&expected, &base) > 1e-3,
            "{name}: the adapter changes the logits"
        );
        let out_dir = tempfile::tempdir().unwrap();
        let (out, e) = export(&model, out_dir.path(), MergedDtype::F32);
        assert_eq!(e.merged_projections, 2 * 7);
        let merged = Model::load(&out).unwrap();
        assert!(merged.adapter().is_none());
        assert_eq!(merged.info().format, "huggingface");
        assert_eq!(
            merged.info().storage_types.keys().collect::<Vec<_>>(),
            ["F32"]
        );
        let got = all_logits(&merged);
        let d = relative_difference(&got, &expected);
        eprintln!("{name}: merged vs adapted, max relative logit difference {d:.2e}");
        assert!(d < 1e-4, "{name}: {d}");
    }
}

/// A Q4_1 source: the merged F32 model holds the dequantized weights plus the update, so it
/// equals the adapted model computed on the dequantized weights (the same Q4_1 values in an F32
/// file), and the adapted Q4_1 model itself.
#[test]
fn a_quantized_source_merges_into_its_dequantized_weights() {
    let dir = tempfile::tempdir().unwrap();
    let q4 = write_typed_gguf(dir.path(), "tiny-q4_1.gguf", GgmlDType::Q4_1, false, false);
    let reference = write_typed_gguf(
        dir.path(),
        "tiny-q4_1-f32.gguf",
        GgmlDType::Q4_1,
        false,
        true,
    );
    let model = adapted(&q4, 5);
    assert!(model.info().storage_types.contains_key("Q4_1"));
    let out_dir = tempfile::tempdir().unwrap();
    let (out, _) = export(&model, out_dir.path(), MergedDtype::F32);
    let merged = Model::load(&out).unwrap();
    let got = all_logits(&merged);
    let on_dequantized = relative_difference(&got, &all_logits(&adapted(&reference, 5)));
    let on_blocks = relative_difference(&got, &all_logits(&model));
    eprintln!(
        "q4_1: merged vs adapted on dequantized weights {on_dequantized:.2e}, vs adapted on the Q4_1 blocks {on_blocks:.2e}"
    );
    assert!(on_dequantized < 1e-4, "{on_dequantized}");
    assert!(on_blocks < 1e-4, "{on_blocks}");
    // Weights kept also in f32 (`expand_weights`, as the implant runs) export the same bytes.
    let mut expanded = adapted(&q4, 5);
    expanded.expand_weights().unwrap();
    let again_dir = tempfile::tempdir().unwrap();
    let (again, _) = export(&expanded, again_dir.path(), MergedDtype::F32);
    let bytes = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(bytes(&again) == bytes(&out));
}

/// Without an adapter the export of the F32 GGUF copy is the tiny model's Hugging Face folder,
/// tensor for tensor and bit for bit: names, shapes, and the q and k rows permuted back.
#[test]
fn an_export_without_adapter_reproduces_the_hugging_face_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let hf = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let (out, e) = export(
        &Model::load(&gguf).unwrap(),
        out_dir.path(),
        MergedDtype::F32,
    );
    assert_eq!(e.merged_projections, 0);
    let ours = std::fs::read(out.join("model.safetensors")).unwrap();
    let theirs = std::fs::read(hf.join("model.safetensors")).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let theirs = safetensors::SafeTensors::deserialize(&theirs).unwrap();
    let mut names = ours.names();
    names.sort();
    let mut expected = theirs.names();
    expected.sort();
    assert_eq!(names, expected);
    for name in names {
        let (a, b) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert!(a.data() == b.data(), "{name} differs");
    }
    // The exported Hugging Face folder, exported again with no adapter, loads and runs alike.
    let hf_model = Model::load(&hf).unwrap();
    let again_dir = tempfile::tempdir().unwrap();
    let (again, _) = export(&hf_model, again_dir.path(), MergedDtype::F32);
    let again = Model::load(&again).unwrap();
    assert!(again.adapter().is_none());
    assert_eq!(all_logits(&again), all_logits(&hf_model));
}

#[test]
fn the_configuration_names_what_transformers_needs() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let model = adapted(&gguf, 3);
    let (out, _) = export(&model, dir.path(), MergedDtype::F32);
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap()
    };
    let config = read("config.json");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["num_attention_heads"], TINY_HEADS);
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["hidden_size"], 64);
    assert_eq!(config["intermediate_size"], 128);
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(config["max_position_embeddings"], 128);
    assert_eq!(config["vocab_size"], model.config().vocab_size);
    assert_eq!(config["rms_norm_eps"].as_f64(), Some(1e-5));
    assert_eq!(config["rope_theta"].as_f64(), Some(10_000.0));
    assert_eq!(config["tie_word_embeddings"], false);
    assert_eq!(config["torch_dtype"], "float32");
    assert_eq!(config["eos_token_id"], serde_json::json!([0, 2]));
    let tokenizer_config = read("tokenizer_config.json");
    assert_eq!(
        tokenizer_config["chat_template"],
        mesascope_lm::testing::CHATML_TEMPLATE
    );
    assert_eq!(tokenizer_config["eos_token"], "<|im_end|>");
    assert_eq!(tokenizer_config["add_bos_token"], false);
    let generation = read("generation_config.json");
    assert_eq!(generation["eos_token_id"], serde_json::json!([0, 2]));
    // Every file readable as the user's other files are (the weights' writer makes its
    // temporary file private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode();
        assert_eq!(mode("model.safetensors"), mode("config.json"));
    }
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
}

/// The merged folder's tokenizer gives the source's token ids, special tokens, chat prompts and
/// end-of-sequence tokens, for the byte-level BPE (GGUF and tokenizer.json) and for a
/// SentencePiece GGUF vocabulary whose beginning-of-sequence token is prepended.
#[test]
fn the_tokenizer_and_chat_template_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap(),
        write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap(),
        write_sentencepiece_gguf(dir.path(), "tiny-sp.gguf", LLAMA2_TEMPLATE, |_| {}),
    ];
    let strings = [
        "the cat sat on the mat",
        "  two  spaces, digits 12345 and café [INST]",
        "<|im_start|>user\nhi<|im_end|>\n",
        "",
    ];
    for source in sources {
        let model = Model::load(&source).unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let (out, _) = export(&model, out_dir.path(), MergedDtype::F32);
        let merged = Model::load(&out).unwrap();
        let (a, b) = (model.tokenizer(), merged.tokenizer());
        for s in strings {
            for add_bos in [false, true] {
                assert_eq!(
                    a.encode(s, add_bos).unwrap(),
                    b.encode(s, add_bos).unwrap(),
                    "{}: {s:?}",
                    source.display()
                );
            }
        }
        assert_eq!(a.bos, b.bos);
        assert_eq!(a.bos_token(), b.bos_token());
        assert_eq!(a.eos, b.eos);
        assert_eq!(a.chat, b.chat);
        assert!(a.chat.is_some());
        assert_eq!(a.chat_template_source(), b.chat_template_source());
        let chat = [
            Message::new("system", "be brief"),
            Message::new("user", "name a fish"),
        ];
        assert_eq!(a.encode_chat(&chat).unwrap(), b.encode_chat(&chat).unwrap());
        assert_eq!(
            model.prompt_tokens("tell me", true).unwrap(),
            merged.prompt_tokens("tell me", true).unwrap()
        );
        // tokenizer.json alone, as `transformers` reads it: special tokens whole, and the
        // beginning-of-sequence token prepended where the model prepends it.
        let file = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        for s in strings {
            let with_specials = file.encode(s, true).unwrap();
            assert_eq!(
                with_specials.get_ids(),
                a.encode(s, true).unwrap().as_slice(),
                "{}: {s:?}",
                source.display()
            );
        }
    }
}

#[test]
fn bf16_halves_the_weights_and_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let model = adapted(&gguf, 9);
    let f32_dir = tempfile::tempdir().unwrap();
    let (_, full) = export(&model, f32_dir.path(), MergedDtype::F32);
    let bf16_dir = tempfile::tempdir().unwrap();
    let (out, half) = export(&model, bf16_dir.path(), MergedDtype::BF16);
    assert!(half.weight_bytes * 2 < full.weight_bytes + 4096);
    let merged = Model::load(&out).unwrap();
    assert!(merged.info().storage_types.contains_key("BF16"));
    let d = relative_difference(&all_logits(&merged), &all_logits(&model));
    eprintln!("bf16: merged vs adapted, max relative logit difference {d:.2e}");
    assert!(d < 3e-2, "{d}");
}

/// Destinations that must not be written and models that cannot be exported are refused before
/// anything is written; a previous export is replaced as a whole.
#[test]
fn bad_destinations_and_unexportable_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let hf = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let model = adapted(&gguf, 3);
    let leftovers = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".partial") || n.contains(".old"))
            .collect()
    };

    // A file where the folder should go.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    let e = model.save_merged(&file, MergedDtype::F32).unwrap_err();
    assert!(
        e.to_string().contains("a-file") && e.to_string().contains("file"),
        "{e}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    // A folder holding something else.
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"mine").unwrap();
    let e = model.save_merged(&busy, MergedDtype::F32).unwrap_err();
    assert!(e.to_string().contains("notes.txt"), "{e}");
    assert_eq!(std::fs::read(busy.join("notes.txt")).unwrap(), b"mine");
    assert!(!busy.join("config.json").exists());

    // The source model's own folder.
    let hf_model = Model::load(&hf).unwrap();
    let e = hf_model.save_merged(&hf, MergedDtype::F32).unwrap_err();
    assert!(e.to_string().contains("the model being exported"), "{e}");

    // A previous export is replaced: the second holds the second adapter.
    let out = dir.path().join("merged");
    model.save_merged(&out, MergedDtype::F32).unwrap();
    let other = adapted(&gguf, 40);
    other.save_merged(&out, MergedDtype::F32).unwrap();
    let merged = Model::load(&out).unwrap();
    assert!(relative_difference(&all_logits(&merged), &all_logits(&other)) < 1e-4);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    // Llama 3.1's rope frequency factors: config.json's rope_scaling cannot be rebuilt.
    let scaled = write_tiny_gguf(dir.path(), "tiny-rope-freqs.gguf", |_, tensors| {
        let hd = 64 / TINY_HEADS;
        let factors = Tensor::from_vec(vec![1.5f32; hd / 2], hd / 2, &Device::Cpu).unwrap();
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&factors, GgmlDType::F32).unwrap(),
        ));
    })
    .unwrap();
    let scaled = Model::load(&scaled).unwrap();
    let target = dir.path().join("scaled");
    let e = scaled.save_merged(&target, MergedDtype::F32).unwrap_err();
    assert!(e.to_string().contains("rope"), "{e}");
    assert!(!target.exists());

    // An adapter of another model is refused where it is set (the existing error).
    let mut wrong = Model::load(&gguf).unwrap();
    let mut other_config = wrong.config().clone();
    other_config.n_layers = 3;
    let bad = LoraAdapter::new(&other_config, LoraConfig::default(), "x", 1).unwrap();
    assert!(wrong.set_adapter(Some(bad)).is_err());
}
