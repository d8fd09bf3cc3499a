//! Fuzzing the loaders with mutated copies of the tiny model: a GGUF file, a safetensors file, a
//! `config.json` and a `tokenizer.json` with bytes flipped, inserted, cut or numbers replaced. Each
//! load must return a model or an error, never panic; a model that loads must run a forward pass
//! without panicking. A fixed number of cases here; `MESASCOPE_FUZZ_CASES` runs more and
//! `MESASCOPE_FUZZ_SEED` other ones (`scripts/fuzz.sh`). The first crasher found, a
//! `tokenizer.json` the `tokenizers` crate panicked on, is now refused by `Model::load`'s guard;
//! the default seed reaches it (case 79 of the folder target), so this test is its regression test.

use mesascope_lm::testing::{write_tiny_model, TinyFormat};
use mesascope_lm::Model;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cases(default: usize) -> usize {
    env_u64("MESASCOPE_FUZZ_CASES", default as u64) as usize
}

/// The stream of a fuzz target: `salt` names the target, `MESASCOPE_FUZZ_SEED` picks the run.
fn stream(salt: u64) -> Stream {
    Stream(salt ^ env_u64("MESASCOPE_FUZZ_SEED", 0).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// xorshift64*: the tests' own reproducible stream.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A few edits of `bytes`, most within its first `head` bytes (where sizes, counts and offsets
/// live).
fn mutate(bytes: &[u8], head: usize, s: &mut Stream) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + s.below(4) {
        let span = if s.below(4) == 0 {
            b.len()
        } else {
            head.min(b.len())
        };
        let at = s.below(span);
        match s.below(6) {
            0 => b.truncate(at),
            1 => b.insert(at, s.next() as u8),
            2 => {
                // A little-endian u64 where a count or a length may sit.
                let v = [0, 1, u32::MAX as u64, u64::MAX, 1 << 40, s.next()][s.below(6)];
                for (k, byte) in v.to_le_bytes().iter().enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            _ => {
                if let Some(x) = b.get_mut(at) {
                    *x ^= 1 << s.below(8);
                }
            }
        }
    }
    b
}

/// Loads `path` and, if it loads, runs it on a prompt; `Err` when either panicked.
fn exercise(path: &Path) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(model) = Model::load(path) {
            if let Ok(tokens) = model.tokenizer().encode("hello world 42", true) {
                let _ = model.logits(&tokens, &mut mesascope_lm::Hooks::none());
            }
        }
    }))
    .map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

#[test]
fn mutated_gguf_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_model(dir.path(), TinyFormat::Gguf).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut s = stream(0x6667_7566);
    let target = dir.path().join("case.gguf");
    for case in 0..cases(150) {
        let b = mutate(&bytes, 8192, &mut s);
        std::fs::write(&target, &b).unwrap();
        if let Err(message) = exercise(&target) {
            let kept = dir.path().join(format!("crash-{case}.gguf"));
            std::fs::write(&kept, &b).unwrap();
            panic!("case {case} panicked: {message}");
        }
    }
}

#[test]
fn mutated_hugging_face_folders_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_tiny_model(dir.path(), TinyFormat::HuggingFace).unwrap();
    let files = ["model.safetensors", "config.json", "tokenizer.json"];
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(folder.join(f)).unwrap())
        .collect();
    let mut s = stream(0x6866_6f6c);
    for case in 0..cases(150) {
        let which = s.below(files.len());
        let original = &originals[which];
        // The safetensors header is JSON after an 8-byte length; config and tokenizer are JSON.
        let b = mutate(original, 4096, &mut s);
        std::fs::write(folder.join(files[which]), &b).unwrap();
        let result = exercise(&folder);
        std::fs::write(folder.join(files[which]), original).unwrap();
        if let Err(message) = result {
            panic!("case {case} ({}) panicked: {message}", files[which]);
        }
    }
}
