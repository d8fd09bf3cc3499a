//! The tiny random-weight model in both formats: loaders, tokenizers, hooks, KV cache, generation.

use mesascope_lm::testing::{write_tiny_model, TinyFormat};
use mesascope_lm::*;

fn tiny(format: TinyFormat) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_model(dir.path(), format).unwrap();
    let model = Model::load(&path).unwrap();
    (dir, model)
}

const TEXTS: [&str; 8] = [
    "the cat sat on the mat",
    "  leading spaces, trailing   ",
    "digits 1234567 and 3.14159",
    "Ünïcödé: 日本語 — ça va? 🙂",
    "tabs\tand\nnewlines\n\n",
    "<|im_start|>user\nhello<|im_end|>\n",
    "",
    "it's; they're! (we'll) [don't]",
];

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn both_formats_load_the_same_shape() {
    let (_d1, gguf) = tiny(TinyFormat::Gguf);
    let (_d2, hf) = tiny(TinyFormat::HuggingFace);
    let (a, b) = (gguf.info(), hf.info());
    assert_eq!(a.format, "gguf");
    assert_eq!(b.format, "huggingface");
    for info in [&a, &b] {
        assert_eq!(
            (
                info.n_layers,
                info.d_model,
                info.n_heads,
                info.n_kv_heads,
                info.head_dim
            ),
            (2, 64, 4, 2, 16)
        );
        assert_eq!(info.hook_names.len(), 8);
        assert_eq!(info.hook_names[0], "blocks.0.resid_pre");
        assert!(!info.tied_embeddings);
        assert!(matches!(
            info.chat_template,
            Some(ChatTemplate::ChatMl { .. })
        ));
    }
    assert_eq!(a.vocab_size, b.vocab_size);
    assert_eq!(a.memory_bytes, b.memory_bytes);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["n_kv_heads"], 2);
}

#[test]
fn both_formats_give_the_same_logits() {
    let (_d1, gguf) = tiny(TinyFormat::Gguf);
    let (_d2, hf) = tiny(TinyFormat::HuggingFace);
    for text in [
        "the cat sat on the mat and it was not in the hat",
        "digits 0123456789",
    ] {
        let tokens = gguf.tokenizer().encode(text, true).unwrap();
        assert_eq!(tokens, hf.tokenizer().encode(text, true).unwrap());
        let a = gguf.logits(&tokens, &mut Hooks::none()).unwrap();
        let b = hf.logits(&tokens, &mut Hooks::none()).unwrap();
        assert_eq!((a.rows, a.vocab), (tokens.len(), gguf.config().vocab_size));
        let diff = max_abs_diff(&a.data, &b.data);
        assert!(diff < 1e-4, "GGUF and safetensors logits differ by {diff}");
        for t in 0..a.rows {
            assert_eq!(
                argmax(a.row(t)),
                argmax(b.row(t)),
                "top-1 differs at position {t}"
            );
        }
        // The logits are not degenerate: positions differ from each other.
        assert!(max_abs_diff(a.row(0), a.row(a.rows - 1)) > 1e-2);
    }
}

#[test]
fn gguf_vocabulary_tokenizes_like_tokenizer_json() {
    let (_d1, gguf) = tiny(TinyFormat::Gguf);
    let (_d2, hf) = tiny(TinyFormat::HuggingFace);
    for text in TEXTS {
        let a = gguf.tokenizer().encode(text, false).unwrap();
        let b = hf.tokenizer().encode(text, false).unwrap();
        assert_eq!(a, b, "{text:?}");
        assert_eq!(gguf.tokenizer().decode(&a).unwrap(), text);
    }
    // Special tokens are matched whole; digits are split one by one; merges apply.
    let t = gguf.tokenizer();
    let ids = t.encode("<|im_start|>the 42", false).unwrap();
    assert_eq!(ids[0], t.token_to_id("<|im_start|>").unwrap());
    assert_eq!(ids[1], t.token_to_id("the").unwrap_or(u32::MAX).min(ids[1]));
    let pieces: Vec<String> = ids.iter().map(|&i| t.id_to_token(i).unwrap()).collect();
    assert_eq!(
        pieces.iter().rev().take(2).cloned().collect::<Vec<_>>(),
        ["2", "4"]
    );
}

#[test]
fn chat_template_is_chatml_with_the_default_system_message() {
    let (_d, model) = tiny(TinyFormat::Gguf);
    let template = model.tokenizer().chat.clone().unwrap();
    let text = template.apply(&[Message::new("user", "Hi")]);
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a tiny test model.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let with_system = template.apply(&[Message::new("system", "S"), Message::new("user", "Hi")]);
    assert!(with_system.starts_with("<|im_start|>system\nS<|im_end|>"));
    let ids = model.prompt_tokens("Hi", true).unwrap();
    assert_eq!(model.tokenizer().decode(&ids).unwrap(), text);
    let im_end = model.tokenizer().token_to_id("<|im_end|>").unwrap();
    assert!(model.tokenizer().eos.contains(&im_end));
}

fn sample_tokens(model: &Model) -> Vec<u32> {
    model
        .tokenizer()
        .encode("the cat sat on the mat, then it ran", false)
        .unwrap()
}

#[test]
fn adding_a_zero_vector_changes_nothing_bit_for_bit() {
    let (_d, model) = tiny(TinyFormat::Gguf);
    let tokens = sample_tokens(&model);
    let plain = model.logits(&tokens, &mut Hooks::none()).unwrap();
    let mut hooks = Hooks::default();
    for name in [
        "blocks.0.resid_pre",
        "blocks.0.attn_out",
        "blocks.1.mlp_out",
        "blocks.1.resid_post",
    ] {
        hooks.edits.push(Edit {
            point: model.hook_point(name).unwrap(),
            positions: Positions::All,
            op: EditOp::Add {
                vector: vec![0.0; 64],
                coefficient: 3.0,
            },
        });
    }
    let hooked = model.logits(&tokens, &mut hooks).unwrap();
    assert!(plain
        .data
        .iter()
        .zip(&hooked.data)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // A non-zero vector does change them, and only from its position on (attention is causal).
    let mut hooks = Hooks::default();
    hooks.edits.push(Edit {
        point: model.hook_point("blocks.0.resid_post").unwrap(),
        positions: Positions::At(vec![3]),
        op: EditOp::Add {
            vector: vec![1.0; 64],
            coefficient: 2.0,
        },
    });
    let steered = model.logits(&tokens, &mut hooks).unwrap();
    for t in 0..3 {
        assert_eq!(plain.row(t), steered.row(t));
    }
    assert!(max_abs_diff(plain.row(3), steered.row(3)) > 1e-3);
}

#[test]
fn projecting_a_direction_out_removes_it() {
    let (_d, model) = tiny(TinyFormat::HuggingFace);
    let tokens = sample_tokens(&model);
    let point = model.hook_point("blocks.1.resid_pre").unwrap();
    let direction: Vec<f32> = (0..64).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
    let norm = direction.iter().map(|x| x * x).sum::<f32>().sqrt();
    let component =
        |row: &[f32]| row.iter().zip(&direction).map(|(a, u)| a * u).sum::<f32>() / norm;

    let before = model
        .activations(&[tokens.clone()], &[point], Positions::All)
        .unwrap();
    let rows = &before[0][&point.to_string()];
    assert_eq!(rows.len(), tokens.len());
    assert!(
        rows.iter().any(|r| component(r).abs() > 0.1),
        "the direction is present before"
    );

    let mut hooks = Hooks {
        edits: vec![Edit {
            point,
            positions: Positions::All,
            op: EditOp::ProjectOut {
                direction: direction.clone(),
            },
        }],
        reads: vec![point],
        read_positions: Some(Positions::All),
        ..Hooks::default()
    };
    model.logits(&tokens, &mut hooks).unwrap();
    let after = &hooks.captured[&point.to_string()];
    for (r, row) in after.iter().enumerate() {
        let scale = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            component(row).abs() < 1e-5 * scale.max(1.0),
            "component {} left at {r}",
            component(row)
        );
    }
}

#[test]
fn cached_activations_equal_a_second_run() {
    let (_d, model) = tiny(TinyFormat::Gguf);
    let prompts = vec![
        sample_tokens(&model),
        model.tokenizer().encode("in the end", false).unwrap(),
    ];
    let points: Vec<HookPoint> = model
        .info()
        .hook_names
        .iter()
        .map(|n| model.hook_point(n).unwrap())
        .collect();
    let a = model
        .activations(&prompts, &points, Positions::Last)
        .unwrap();
    let b = model
        .activations(&prompts, &points, Positions::Last)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].len(), 8);
    assert!(a[1]
        .values()
        .all(|rows| rows.len() == 1 && rows[0].len() == 64));
    // The last position's row is the all-positions run's last row; resid_post of block 0 is resid_pre of block 1.
    let all = model
        .activations(&prompts[..1], &points, Positions::All)
        .unwrap();
    for (name, rows) in &a[0] {
        assert_eq!(&rows[0], all[0][name].last().unwrap());
    }
    assert_eq!(a[0]["blocks.0.resid_post"], a[0]["blocks.1.resid_pre"]);
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    let (_d, model) = tiny(TinyFormat::Gguf);
    let tokens = sample_tokens(&model);
    let full = model.logits(&tokens, &mut Hooks::none()).unwrap();
    let mut cache = model.new_cache(tokens.len()).unwrap();
    // A prefix in one pass, then one token at a time.
    let split = 5;
    let mut rows = model
        .forward(
            &tokens[..split],
            &mut cache,
            &mut Hooks::none(),
            LogitsFor::All,
        )
        .unwrap()
        .data;
    for &t in &tokens[split..] {
        rows.extend(
            model
                .forward(&[t], &mut cache, &mut Hooks::none(), LogitsFor::Last)
                .unwrap()
                .data,
        );
    }
    let diff = max_abs_diff(&full.data, &rows);
    assert!(diff < 1e-4, "incremental logits differ by {diff}");
    assert_eq!(cache.len(), tokens.len());
}

#[test]
fn sampled_generation_is_deterministic_for_a_seed_and_streams() {
    let (_d, model) = tiny(TinyFormat::Gguf);
    let prompt = model.prompt_tokens("hello there", true).unwrap();
    let options = GenerateOptions {
        max_tokens: 20,
        temperature: 1.0,
        top_p: 0.9,
        seed: 7,
        stop_at_eos: false,
    };
    let mut streamed = String::new();
    let mut count = 0;
    let a = model
        .generate(&prompt, &options, &mut Hooks::none(), &mut |_, piece| {
            streamed.push_str(piece);
            count += 1;
            true
        })
        .unwrap();
    let b = model
        .generate(&prompt, &options, &mut Hooks::none(), &mut |_, _| true)
        .unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.tokens.len(), 20);
    assert_eq!(count, 20);
    assert_eq!(a.stop, StopReason::MaxTokens);
    assert_eq!(streamed, a.text);
    let other_seeds: Vec<Vec<u32>> = (8..12)
        .map(|seed| {
            let o = GenerateOptions {
                seed,
                ..options.clone()
            };
            model
                .generate(&prompt, &o, &mut Hooks::none(), &mut |_, _| true)
                .unwrap()
                .tokens
        })
        .collect();
    assert!(
        other_seeds.iter().any(|t| *t != a.tokens),
        "the seed changes the sample"
    );
    // Greedy generation follows the argmax of a full recomputation at every step.
    let greedy = GenerateOptions {
        temperature: 0.0,
        max_tokens: 6,
        ..options
    };
    let g = model
        .generate(&prompt, &greedy, &mut Hooks::none(), &mut |_, _| true)
        .unwrap();
    let mut seq = prompt.clone();
    for &t in &g.tokens {
        let logits = model.logits(&seq, &mut Hooks::none()).unwrap();
        assert_eq!(argmax(logits.last()), t);
        seq.push(t);
    }
    // The callback can stop generation.
    let stopped = model
        .generate(&prompt, &greedy, &mut Hooks::none(), &mut |_, _| false)
        .unwrap();
    assert_eq!(
        (stopped.tokens.len(), stopped.stop),
        (1, StopReason::Callback)
    );
}
