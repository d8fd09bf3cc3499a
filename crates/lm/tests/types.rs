//! Every GGUF weight type the crate multiplies itself (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1, Q4_K, Q5_K, Q6_K; Q2_K and Q3_K go to candle's products) and safetensors' F16 and BF16:
//! loaded kept in their own type (the memory says so), with logits that match the same model
//! written in F32 with the values the type rounds to (its dequantized reference).

mod common;

use candle_core::quantized::GgmlDType;
use common::write_typed_gguf;
use mesascope_lm::testing::{write_tiny_model, TinyFormat};
use mesascope_lm::*;
use std::path::Path;

const PROMPT: &str = "the cat sat on the mat and it was not in the hat, 0123456789";

/// Next-token logits at every position of the prompt: its first half in one forward pass (the
/// products of many rows), the rest decoded one token at a time with the KV cache (the products of
/// one row, which take another code path).
fn logits(model: &Model) -> Logits {
    let tokens = model.tokenizer().encode(PROMPT, false).unwrap();
    let half = tokens.len() / 2;
    let mut cache = model.new_cache(tokens.len()).unwrap();
    let mut all = model
        .forward(
            &tokens[..half],
            &mut cache,
            &mut Hooks::none(),
            LogitsFor::All,
        )
        .unwrap();
    for &t in &tokens[half..] {
        let step = model
            .forward(&[t], &mut cache, &mut Hooks::none(), LogitsFor::Last)
            .unwrap();
        all.data.extend_from_slice(&step.data);
        all.rows += 1;
    }
    all
}

/// Largest |difference| over every position and vocabulary entry, relative to the largest |logit|;
/// and whether the top-1 token agrees at every position.
fn compare(ours: &Logits, reference: &Logits) -> (f32, bool) {
    let scale = reference.data.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = ours
        .data
        .iter()
        .zip(&reference.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let same_top1 = (0..ours.rows).all(|t| argmax(ours.row(t)) == argmax(reference.row(t)));
    (diff / scale, same_top1)
}

/// Weights in the model's matrices (what a type's bytes per weight multiply).
fn matrix_weights(c: &Config) -> usize {
    let per_layer = c.d_model * c.n_heads * c.head_dim * 2
        + c.d_model * c.n_kv_heads * c.head_dim * 2
        + c.d_model * c.d_mlp * 3;
    2 * c.vocab_size * c.d_model + c.n_layers * per_layer
}

fn load(path: &Path) -> Model {
    Model::load(path).unwrap()
}

/// (type, wide model, bytes per weight). Every type is multiplied by this crate's kernels with the
/// weights as stored against f32 activations, so only the order of the sums separates a model from
/// its dequantized reference: the tolerance is 1e-5 of the largest logit (measured: below 1e-6).
const TYPES: [(GgmlDType, bool, f64); 11] = [
    (GgmlDType::F32, false, 4.0),
    (GgmlDType::F16, false, 2.0),
    (GgmlDType::BF16, false, 2.0),
    (GgmlDType::Q8_0, false, 34.0 / 32.0),
    (GgmlDType::Q4_1, false, 20.0 / 32.0),
    (GgmlDType::Q4_0, false, 18.0 / 32.0),
    (GgmlDType::Q4K, true, 144.0 / 256.0),
    (GgmlDType::Q6K, true, 210.0 / 256.0),
    (GgmlDType::Q5_0, false, 22.0 / 32.0),
    (GgmlDType::Q5_1, false, 24.0 / 32.0),
    (GgmlDType::Q5K, true, 176.0 / 256.0),
];

#[test]
fn each_gguf_type_is_kept_in_memory_and_matches_its_dequantized_reference() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, wide, bytes_per_weight) in TYPES {
        let name = format!("{dtype:?}");
        let model = load(&write_typed_gguf(
            dir.path(),
            &format!("{name}.gguf"),
            dtype,
            wide,
            false,
        ));
        let reference = load(&write_typed_gguf(
            dir.path(),
            &format!("{name}-reference.gguf"),
            dtype,
            wide,
            true,
        ));
        let info = model.info();
        let type_name = name.replace('K', "_K");
        let matrices = 2 + 7 * model.config().n_layers;
        let vectors = 1 + 2 * model.config().n_layers;
        let expected_count = matrices + if dtype == GgmlDType::F32 { vectors } else { 0 };
        assert_eq!(
            info.storage_types.get(&type_name),
            Some(&expected_count),
            "{name}: {:?}",
            info.storage_types
        );
        // Kept in their type: the matrices take the type's bytes per weight, the norms f32.
        let c = model.config();
        let norms = 4 * c.d_model * (2 * c.n_layers + 1);
        let expected = (matrix_weights(c) as f64 * bytes_per_weight) as usize + norms;
        assert_eq!(info.memory_bytes, expected, "{name}");
        assert_eq!(reference.info().memory_bytes, 4 * matrix_weights(c) + norms);

        let (diff, same_top1) = compare(&logits(&model), &logits(&reference));
        println!("{name:>5}: max |logit difference| / max |logit| = {diff:.2e}");
        assert!(diff < 1e-5, "{name}: {diff}");
        assert!(same_top1, "{name}: top-1 differs");
    }
}

#[test]
fn half_precision_gguf_matches_the_f32_model_and_halves_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let f32_model = load(&write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap());
    let reference = logits(&f32_model);
    let f32_bytes = f32_model.info().memory_bytes;
    let matrices = matrix_weights(f32_model.config());
    for (dtype, tolerance) in [(GgmlDType::F16, 5e-3), (GgmlDType::BF16, 5e-2)] {
        let model = load(&write_typed_gguf(
            dir.path(),
            &format!("{dtype:?}-half.gguf"),
            dtype,
            false,
            false,
        ));
        assert_eq!(model.info().memory_bytes, f32_bytes - 2 * matrices);
        let (diff, same_top1) = compare(&logits(&model), &reference);
        println!("{dtype:?} against F32: {diff:.2e}");
        assert!(diff < tolerance, "{dtype:?}: {diff}");
        assert!(same_top1, "{dtype:?}: top-1 differs from the F32 model");
    }
}

/// Rewrites the tiny folder's safetensors with every tensor in `dtype`.
fn convert_safetensors(folder: &Path, dtype: safetensors::Dtype) {
    let path = folder.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let converted: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<u8> = view
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    let x = f32::from_le_bytes(b.try_into().unwrap());
                    match dtype {
                        safetensors::Dtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                        _ => half::bf16::from_f32(x).to_le_bytes(),
                    }
                })
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = converted
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn half_precision_safetensors_stay_half_and_match_the_gguf_copy() {
    for (st_dtype, gguf_dtype) in [
        (safetensors::Dtype::F16, GgmlDType::F16),
        (safetensors::Dtype::BF16, GgmlDType::BF16),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
        convert_safetensors(&folder, st_dtype);
        let hf = load(&folder);
        let gguf = load(&write_typed_gguf(
            dir.path(),
            "half.gguf",
            gguf_dtype,
            false,
            false,
        ));
        let info = hf.info();
        assert_eq!(
            info.storage_types.keys().collect::<Vec<_>>(),
            [&format!("{st_dtype:?}")]
        );
        // The matrices are 2 bytes a weight; the norms, stored in half precision too, are
        // widened to f32 (they are tiny).
        let c = hf.config();
        let norms = 4 * c.d_model * (2 * c.n_layers + 1);
        assert_eq!(info.memory_bytes, 2 * matrix_weights(c) + norms);
        assert_eq!(info.memory_bytes, gguf.info().memory_bytes);
        // The same rounded numbers in both formats (the GGUF's q/k rows permuted): the same logits.
        let (diff, same_top1) = compare(&logits(&hf), &logits(&gguf));
        assert!(diff < 1e-5, "{st_dtype:?}: {diff}");
        assert!(same_top1);
    }
}

/// The block types left to candle's quantized products (Q2_K, Q3_K): kept in
/// their blocks too, and near their dequantized reference; candle rounds the activations to 8 bits
/// (as llama.cpp does), so the tolerance is 5e-2 of the largest logit rather than 1e-5.
#[test]
fn types_left_to_candle_are_kept_quantized_and_near_their_reference() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, wide, bytes_per_weight) in [
        (GgmlDType::Q2K, true, 84.0 / 256.0),
        (GgmlDType::Q3K, true, 110.0 / 256.0),
    ] {
        let name = format!("{dtype:?}");
        let model = load(&write_typed_gguf(
            dir.path(),
            &format!("{name}.gguf"),
            dtype,
            wide,
            false,
        ));
        let reference = load(&write_typed_gguf(
            dir.path(),
            &format!("{name}-reference.gguf"),
            dtype,
            wide,
            true,
        ));
        let c = model.config();
        let norms = 4 * c.d_model * (2 * c.n_layers + 1);
        assert_eq!(
            model.info().memory_bytes,
            (matrix_weights(c) as f64 * bytes_per_weight) as usize + norms,
            "{name}"
        );
        let (diff, _) = compare(&logits(&model), &logits(&reference));
        println!("{name:>5}: max |logit difference| / max |logit| = {diff:.2e}");
        assert!(diff < 5e-2, "{name}: {diff}");
    }
}
