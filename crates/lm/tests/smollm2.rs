//! SmolLM2-135M-Instruct (Q4_1 GGUF) from `scripts/fetch_smollm2.sh`. Skipped with a note when the
//! file is absent, except under CI, where its absence fails the test.

use mesascope_lm::*;
use std::path::PathBuf;

fn smollm2() -> Option<Model> {
    let path = match std::env::var_os("MESASCOPE_SMOLLM2") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("MESASCOPE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/mesascope")
                });
            cache.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    if !path.exists() {
        let note = format!(
            "{} is missing: run scripts/fetch_smollm2.sh",
            path.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{note}");
        }
        eprintln!("skipped: {note}");
        return None;
    }
    Some(Model::load(&path).unwrap())
}

#[test]
fn smollm2_loads_quantized_with_its_chat_template() {
    let Some(model) = smollm2() else { return };
    let info = model.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(
        (
            info.n_layers,
            info.d_model,
            info.n_heads,
            info.n_kv_heads,
            info.head_dim
        ),
        (30, 576, 9, 3, 64)
    );
    assert_eq!(info.vocab_size, 49152);
    assert!(info.tied_embeddings);
    assert!(
        info.storage_types.contains_key("Q4_1"),
        "{:?}",
        info.storage_types
    );
    // The weights stay quantized: Q4_1 blocks take 24 bytes in memory (f32 scales) for 20 on disk.
    assert!(
        (info.memory_bytes as f64) < 1.25 * info.checkpoint_bytes as f64,
        "{} vs {}",
        info.memory_bytes,
        info.checkpoint_bytes
    );
    let Some(ChatTemplate::ChatMl { default_system }) = &info.chat_template else {
        panic!("{:?}", info.chat_template)
    };
    assert!(default_system.as_deref().unwrap_or("").contains("SmolLM"));
    let t = model.tokenizer();
    assert_eq!(
        t.decode(&t.encode("Hello, world! 2024 ünïcode", false).unwrap())
            .unwrap(),
        "Hello, world! 2024 ünïcode"
    );
}

#[test]
fn smollm2_answers_a_simple_question_and_is_deterministic() {
    let Some(model) = smollm2() else { return };
    let prompt = model
        .prompt_tokens("What is the capital of France?", true)
        .unwrap();
    let greedy = GenerateOptions {
        max_tokens: 16,
        ..GenerateOptions::default()
    };
    let answer = model
        .generate(&prompt, &greedy, &mut Hooks::none(), &mut |_, _| true)
        .unwrap();
    assert!(answer.text.contains("Paris"), "{:?}", answer.text);
    let sampled = GenerateOptions {
        max_tokens: 12,
        temperature: 0.8,
        top_p: 0.95,
        seed: 3,
        stop_at_eos: true,
    };
    let a = model
        .generate(&prompt, &sampled, &mut Hooks::none(), &mut |_, _| true)
        .unwrap();
    let b = model
        .generate(&prompt, &sampled, &mut Hooks::none(), &mut |_, _| true)
        .unwrap();
    assert_eq!(a.tokens, b.tokens);
}
