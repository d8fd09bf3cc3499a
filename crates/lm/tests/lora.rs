//! LoRA adapters on the tiny model: the adapted inference forward pass, the trainer's forward pass
//! and gradients, PEFT's file layout, and the refusal of adapters that do not fit.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use mesascope_lm::testing::{write_tiny_gguf, write_tiny_model, TinyFormat};
use mesascope_lm::train::{loss, loss_and_gradients, training_logits, Example};
use mesascope_lm::*;

fn tiny(format: TinyFormat) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_model(dir.path(), format).unwrap();
    let model = Model::load(&path).unwrap();
    (dir, model)
}

/// The tiny model with its block weights stored as `dtype` blocks (the quantized kernels' paths).
fn tiny_quantized(dtype: GgmlDType) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path(), "tiny-q.gguf", |_, tensors| {
        for (name, t) in tensors.iter_mut() {
            if name.starts_with("blk.") && !name.contains("norm") {
                let dense = t.dequantize(&Device::Cpu).unwrap();
                *t = QTensor::quantize(&dense, dtype).unwrap();
            }
        }
    })
    .unwrap();
    let model = Model::load(&path).unwrap();
    (dir, model)
}

fn adapter(model: &Model, rank: usize, seed: u64) -> LoraAdapter {
    let config = LoraConfig {
        rank,
        alpha: 2.0 * rank as f32,
        targets: Projection::ALL.to_vec(),
    };
    let mut a = LoraAdapter::new(model.config(), config, "tiny-llama", seed).unwrap();
    a.randomize_b(seed + 1, 0.05);
    a
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tokens(model: &Model, text: &str) -> Vec<u32> {
    model.prompt_tokens(text, true).unwrap()
}

#[test]
fn a_fresh_adapter_changes_nothing_and_a_trained_one_changes_the_logits() {
    let (_d, mut model) = tiny(TinyFormat::Gguf);
    let t = tokens(&model, "the cat sat on the mat");
    let base = model.logits(&t, &mut Hooks::none()).unwrap();
    let fresh = LoraAdapter::new(model.config(), LoraConfig::default(), "tiny", 3).unwrap();
    // PEFT's initialization: B = 0, so the adapted model is the base model.
    model.set_adapter(Some(fresh)).unwrap();
    assert_eq!(model.logits(&t, &mut Hooks::none()).unwrap(), base);
    let a = adapter(&model, 4, 5);
    model.set_adapter(Some(a)).unwrap();
    let adapted = model.logits(&t, &mut Hooks::none()).unwrap();
    assert!(max_abs_diff(&adapted.data, &base.data) > 1e-3);
    model.set_adapter(None).unwrap();
    assert_eq!(model.logits(&t, &mut Hooks::none()).unwrap(), base);
}

/// The trainer's forward pass (packed sequences, attention written out) computes the inference
/// forward pass's logits, with and without an adapter, for F32 and quantized weights.
#[test]
fn training_logits_equal_inference_logits() {
    for (name, (_d, mut model)) in [
        ("f32", tiny(TinyFormat::Gguf)),
        ("hf", tiny(TinyFormat::HuggingFace)),
        ("q4_1", tiny_quantized(GgmlDType::Q4_1)),
        ("q8_0", tiny_quantized(GgmlDType::Q8_0)),
    ] {
        let t = tokens(&model, "digits 1234567 and the cat");
        for with in [false, true] {
            let a = with.then(|| adapter(&model, 4, 7));
            let train = training_logits(&model, a.as_ref(), &t).unwrap();
            model.set_adapter(a).unwrap();
            let infer = model.logits(&t, &mut Hooks::none()).unwrap();
            assert_eq!((train.rows, train.vocab), (infer.rows, infer.vocab));
            let diff = max_abs_diff(&train.data, &infer.data);
            assert!(diff < 1e-4, "{name} adapter={with}: {diff}");
        }
    }
}

fn examples(model: &Model) -> Vec<Example> {
    ["the cat sat", "it's a test of the"]
        .iter()
        .zip(["on the mat", "gradients"])
        .map(|(prompt, answer)| {
            let mut tokens = tokens(model, prompt);
            let answer_start = tokens.len();
            tokens.extend(model.tokenizer().encode(answer, false).unwrap());
            Example {
                tokens,
                answer_start,
                distill: false,
            }
        })
        .collect()
}

/// Central differences of the loss against the analytic gradient: along the gradient itself (the
/// directional derivative must be |g|) and at the largest coordinates of A and B of several
/// projections.
fn check_gradients(model: &Model) {
    let mut batch = examples(model);
    // One example distilled from the base model's distribution, one on its answer tokens.
    batch[1].distill = true;
    let base = adapter(model, 2, 11);
    let out = loss_and_gradients(model, &base, &batch).unwrap();
    assert_eq!(
        out.tokens,
        batch.iter().map(|e| e.answer_len()).sum::<usize>()
    );
    let direct = loss(model, Some(&base), &batch).unwrap();
    assert!((out.loss - direct).abs() < 1e-9, "{} {direct}", out.loss);
    let g = &out.gradients;
    let norm: f64 =
        g.a.iter()
            .chain(&g.b)
            .flatten()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
    assert!(norm > 1e-4, "gradient norm {norm}");
    // Directional derivative along g / |g|.
    let eps = 1e-2f32;
    let shifted = |sign: f32| {
        let mut a = base.clone();
        for (i, pair) in a.pairs_mut().enumerate() {
            for (w, d) in pair.a.iter_mut().zip(&g.a[i]) {
                *w += sign * eps * d / norm as f32;
            }
            for (w, d) in pair.b.iter_mut().zip(&g.b[i]) {
                *w += sign * eps * d / norm as f32;
            }
        }
        loss(model, Some(&a), &batch).unwrap()
    };
    let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
    assert!(
        (numeric - norm).abs() < 2e-2 * norm,
        "directional derivative {numeric} vs |g| {norm}"
    );
    // Single coordinates: the largest entry of A and of B in a few projections.
    let pairs: Vec<(usize, Projection)> = base.pairs().map(|(l, p, _)| (l, p)).collect();
    for &slot in &[0usize, 3, 6, 7, 12] {
        let (layer, p) = pairs[slot];
        for factor in ['A', 'B'] {
            let grads = if factor == 'A' {
                &g.a[slot]
            } else {
                &g.b[slot]
            };
            let (i, &analytic) = grads
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
                .unwrap();
            let eps = 1e-2f32;
            let at = |delta: f32| {
                let mut a = base.clone();
                let pair = a.get_mut(layer, p).unwrap();
                if factor == 'A' {
                    pair.a[i] += delta;
                } else {
                    pair.b[i] += delta;
                }
                loss(model, Some(&a), &batch).unwrap()
            };
            let numeric = ((at(eps) - at(-eps)) / (2.0 * eps as f64)) as f32;
            assert!(
                (numeric - analytic).abs() < 3e-2 * analytic.abs() + 2e-4,
                "layer {layer} {p:?} {factor}[{i}]: numeric {numeric}, analytic {analytic}"
            );
        }
    }
}

#[test]
fn lora_gradients_match_finite_differences() {
    let (_d, model) = tiny(TinyFormat::Gguf);
    check_gradients(&model);
}

#[test]
fn lora_gradients_through_quantized_weights_match_finite_differences() {
    let (_d, model) = tiny_quantized(GgmlDType::Q4_1);
    check_gradients(&model);
}

#[test]
fn adapters_round_trip_in_peft_layout_across_formats() {
    let (dir, mut gguf) = tiny(TinyFormat::Gguf);
    let (_d2, mut hf) = tiny(TinyFormat::HuggingFace);
    let a = adapter(&gguf, 4, 21);
    let out = dir.path().join("adapter");
    a.save(&out, gguf.config()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["base_model_name_or_path"], "tiny-llama");
    assert_eq!(config["target_modules"].as_array().unwrap().len(), 7);
    let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 2 * 7 * 2);
    let q_a = st
        .tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        .unwrap();
    assert_eq!(q_a.shape(), &[4, 64]);
    let down_b = st
        .tensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
        .unwrap();
    assert_eq!(down_b.shape(), &[64, 4]);

    // Loaded back into the same format it is the same adapter; loaded into the Hugging Face copy
    // (whose q/k rows are not permuted) the adapted models agree.
    let back = LoraAdapter::load(&out, gguf.config()).unwrap();
    assert_eq!(back, a);
    let t = tokens(&gguf, "the cat sat on the mat");
    gguf.set_adapter(Some(a)).unwrap();
    hf.load_adapter(&out).unwrap();
    let (x, y) = (
        gguf.logits(&t, &mut Hooks::none()).unwrap(),
        hf.logits(&t, &mut Hooks::none()).unwrap(),
    );
    assert!(max_abs_diff(&x.data, &y.data) < 1e-4);
    hf.set_adapter(None).unwrap();
    let base = hf.logits(&t, &mut Hooks::none()).unwrap();
    assert!(max_abs_diff(&base.data, &y.data) > 1e-3);

    // Saving again replaces the folder as a whole and leaves nothing beside it.
    let b = adapter(&gguf, 2, 22);
    b.save(&out, gguf.config()).unwrap();
    assert_eq!(LoraAdapter::load(&out, gguf.config()).unwrap(), b);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("partial") && !n.contains(".old")),
        "{names:?}"
    );
}

#[test]
fn adapters_that_do_not_fit_are_refused_with_the_problem_named() {
    let (dir, model) = tiny(TinyFormat::Gguf);
    let a = adapter(&model, 4, 31);
    let out = dir.path().join("adapter");
    a.save(&out, model.config()).unwrap();
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(out.join(f), p.join(f)).unwrap();
        }
        p
    };

    // Another model: a wider MLP, more layers.
    let mut wider = model.config().clone();
    wider.d_mlp = 256;
    let e = LoraAdapter::load(&out, &wider).unwrap_err();
    assert!(matches!(e, LmError::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("gate_proj"), "{e}");
    let mut deeper = model.config().clone();
    deeper.n_layers = 3;
    let e = LoraAdapter::load(&out, &deeper).unwrap_err();
    assert!(matches!(e, LmError::MissingTensor { .. }), "{e}");
    let mut shallower = model.config().clone();
    shallower.n_layers = 1;
    let e = LoraAdapter::load(&out, &shallower).unwrap_err();
    assert!(e.to_string().contains("layers.1."), "{e}");
    // set_adapter checks too.
    let mut m2 = model;
    let mut other = LoraAdapter::new(&wider, LoraConfig::default(), "x", 1).unwrap();
    other.randomize_b(1, 0.1);
    assert!(matches!(
        m2.set_adapter(Some(other)).unwrap_err(),
        LmError::ShapeMismatch { .. }
    ));

    // A rank other than the configuration says.
    let p = copy("rank");
    let text = std::fs::read_to_string(p.join("adapter_config.json"))
        .unwrap()
        .replace("\"r\": 4", "\"r\": 8");
    std::fs::write(p.join("adapter_config.json"), text).unwrap();
    let e = LoraAdapter::load(&p, m2.config()).unwrap_err();
    assert!(matches!(e, LmError::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("lora_A"), "{e}");

    // Corrupt and truncated weights, a configuration that is not LoRA, or not JSON, or missing.
    let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    for (i, cut) in [10usize, bytes.len() / 2, bytes.len() - 3]
        .into_iter()
        .enumerate()
    {
        let p = copy(&format!("cut{i}"));
        std::fs::write(p.join("adapter_model.safetensors"), &bytes[..cut]).unwrap();
        let e = LoraAdapter::load(&p, m2.config()).unwrap_err();
        assert!(matches!(e, LmError::CorruptSafetensors { .. }), "{e}");
    }
    let p = copy("nan");
    let mut nan = bytes.clone();
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(p.join("adapter_model.safetensors"), &nan).unwrap();
    let e = LoraAdapter::load(&p, m2.config()).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
    let p = copy("ia3");
    let text = std::fs::read_to_string(p.join("adapter_config.json"))
        .unwrap()
        .replace("\"LORA\"", "\"IA3\"");
    std::fs::write(p.join("adapter_config.json"), text).unwrap();
    let e = LoraAdapter::load(&p, m2.config()).unwrap_err();
    assert!(
        matches!(e, LmError::BadConfig { .. }) && e.to_string().contains("IA3"),
        "{e}"
    );
    let p = copy("json");
    std::fs::write(p.join("adapter_config.json"), "{ not json").unwrap();
    assert!(matches!(
        LoraAdapter::load(&p, m2.config()).unwrap_err(),
        LmError::BadConfig { .. }
    ));
    let p = copy("module");
    let text = std::fs::read_to_string(p.join("adapter_config.json"))
        .unwrap()
        .replace("\"up_proj\"", "\"lm_head\"");
    std::fs::write(p.join("adapter_config.json"), text).unwrap();
    let e = LoraAdapter::load(&p, m2.config()).unwrap_err();
    assert!(e.to_string().contains("lm_head"), "{e}");
    let e = LoraAdapter::load(&dir.path().join("nowhere"), m2.config()).unwrap_err();
    assert!(matches!(e, LmError::Io { .. }), "{e}");
    // Bad hyperparameters.
    for config in [
        LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        },
        LoraConfig {
            alpha: f32::NAN,
            ..LoraConfig::default()
        },
        LoraConfig {
            targets: vec![],
            ..LoraConfig::default()
        },
    ] {
        assert!(matches!(
            LoraAdapter::new(m2.config(), config, "x", 0).unwrap_err(),
            LmError::InvalidArgument(_)
        ));
    }
}

/// `Model::expand_weights` (the f32 copy bulk work uses) changes no output: the inference
/// logits of a prompt long enough for the dense product, and the trainer's loss and gradients,
/// through Q4_1 and Q8_0 blocks.
#[test]
fn expanded_weights_give_the_quantized_outputs() {
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let (_d, mut model) = tiny_quantized(dtype);
        let t = tokens(&model, "digits 1234567 and the cat sat on the mat");
        assert!(t.len() >= 8, "the dense product needs 8 rows or more");
        let a = adapter(&model, 4, 9);
        let batch = examples(&model);
        let before_grad = loss_and_gradients(&model, &a, &batch).unwrap();
        let before = model.logits(&t, &mut Hooks::none()).unwrap();
        let memory = model.info().memory_bytes;
        model.expand_weights().unwrap();
        assert!(
            model.info().memory_bytes > memory,
            "{dtype:?}: no f32 copy was kept"
        );
        let after = model.logits(&t, &mut Hooks::none()).unwrap();
        let diff = max_abs_diff(&after.data, &before.data);
        assert!(diff < 1e-4, "{dtype:?} logits: {diff}");
        let after_grad = loss_and_gradients(&model, &a, &batch).unwrap();
        assert!((after_grad.loss - before_grad.loss).abs() < 1e-5);
        for (x, y) in [
            (&after_grad.gradients.a, &before_grad.gradients.a),
            (&after_grad.gradients.b, &before_grad.gradients.b),
        ] {
            for (gx, gy) in x.iter().zip(y.iter()) {
                let scale = gy.iter().map(|v| v.abs()).fold(1e-6, f32::max);
                let diff = max_abs_diff(gx, gy);
                assert!(
                    diff <= 1e-4 * scale,
                    "{dtype:?} gradient: {diff} of {scale}"
                );
            }
        }
    }
}
