//! Which model a probe was fitted on: the architecture and shape, a hash of the checkpoint's files
//! (the weights, the configuration and the tokenizer) and a hash of the LoRA adapter's factors, so
//! that a probe file is refused on any other model, however similarly named.

use crate::error::{io_error, LmError, Result};
use crate::Model;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A 64-bit hash, fed a word at a time (FNV-1a's multiply-xor on 8-byte words, then a final
/// avalanche): fast enough to hash a 100 MB checkpoint in a fraction of a second. It detects
/// accidents (another file, another adapter), not adversaries.
#[derive(Debug, Clone)]
pub struct Hasher {
    state: u64,
    pending: Vec<u8>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            state: FNV_OFFSET,
            pending: Vec::with_capacity(8),
        }
    }
}

impl Hasher {
    fn word(&mut self, w: u64) {
        self.state = (self.state ^ w).wrapping_mul(FNV_PRIME);
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        if !self.pending.is_empty() {
            let take = (8 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.pending[..8].try_into().expect("8 bytes"));
            self.pending.clear();
            self.word(w);
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// The hash as 16 hexadecimal digits (the length is mixed in, so a prefix differs).
    pub fn finish(mut self, length: u64) -> String {
        if !self.pending.is_empty() {
            let mut last = [0u8; 8];
            last[..self.pending.len()].copy_from_slice(&self.pending);
            self.word(u64::from_le_bytes(last));
        }
        self.word(length);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:016x}", z ^ (z >> 31))
    }
}

fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut h = Hasher::default();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = std::fs::File::open(path).map_err(io_error(path))?;
        loop {
            let n = f.read(&mut buf).map_err(io_error(path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
    }
    Ok(h.finish(total))
}

/// The files that make a checkpoint: the GGUF file itself, or a folder's configuration,
/// tokenizer and weights (sorted by name).
fn checkpoint_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_error(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| {
                n == "config.json" || n == "tokenizer.json" || n.ends_with(".safetensors")
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A model's identity as a probe file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFingerprint {
    pub architecture: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    /// Hash of the checkpoint's bytes (weights, configuration and tokenizer).
    pub checkpoint_hash: String,
    /// Hash of the adapter's rank, scale and factors; `None` for the bare model.
    pub adapter_hash: Option<String>,
    /// Where the model was loaded from (informative only: the hashes decide).
    pub path: PathBuf,
}

impl ModelFingerprint {
    pub fn of(model: &Model) -> Result<ModelFingerprint> {
        let c = model.config();
        let adapter_hash = model.adapter().map(|a| {
            let mut h = Hasher::default();
            h.update(&(a.config.rank as u64).to_le_bytes());
            h.update(&a.config.scale().to_le_bytes());
            let mut n = 0u64;
            for (layer, p, pair) in a.pairs() {
                h.update(&(layer as u64).to_le_bytes());
                h.update(p.name().as_bytes());
                for x in pair.a.iter().chain(&pair.b) {
                    h.update(&x.to_le_bytes());
                }
                n += (pair.a.len() + pair.b.len()) as u64;
            }
            h.finish(n)
        });
        Ok(ModelFingerprint {
            architecture: c.architecture.clone(),
            n_layers: c.n_layers,
            d_model: c.d_model,
            vocab_size: c.vocab_size,
            checkpoint_hash: hash_files(&checkpoint_files(model.path())?)?,
            adapter_hash,
            path: model.path().to_path_buf(),
        })
    }

    /// An error naming the first difference when `other` (the running model) is not this one.
    pub fn check_matches(&self, other: &ModelFingerprint, what: &Path) -> Result<()> {
        let bad = |reason: String| LmError::BadConfig {
            path: what.to_path_buf(),
            reason,
        };
        let shape = |f: &ModelFingerprint| {
            format!(
                "{} with {} layers of width {} and {} tokens",
                f.architecture, f.n_layers, f.d_model, f.vocab_size
            )
        };
        if shape(self) != shape(other) {
            return Err(bad(format!(
                "fitted on another model ({}); this one is {}",
                shape(self),
                shape(other)
            )));
        }
        if self.checkpoint_hash != other.checkpoint_hash {
            return Err(bad(format!(
                "fitted on another checkpoint ({}, hash {}); this one is {} (hash {})",
                self.path.display(),
                self.checkpoint_hash,
                other.path.display(),
                other.checkpoint_hash
            )));
        }
        if self.adapter_hash != other.adapter_hash {
            let name = |h: &Option<String>| match h {
                Some(h) => format!("adapter {h}"),
                None => "no adapter".into(),
            };
            return Err(bad(format!(
                "fitted on the model with {}; this one runs with {}",
                name(&self.adapter_hash),
                name(&other.adapter_hash)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_does_not_depend_on_how_the_bytes_are_split() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut whole = Hasher::default();
        whole.update(&bytes);
        let mut parts = Hasher::default();
        for c in bytes.chunks(3) {
            parts.update(c);
        }
        assert_eq!(whole.finish(100), parts.finish(100));
        let mut other = Hasher::default();
        other.update(&bytes[..99]);
        let mut same = Hasher::default();
        same.update(&bytes);
        assert_ne!(other.finish(99), same.finish(100));
    }
}
