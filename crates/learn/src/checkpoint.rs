//! Checkpoints: a folder with `model.safetensors` (the weights, f32, named as
//! [`ActorCritic::named_params`] names them) and `model.json` (what the weights are: testbed,
//! knobs, architecture, training config, seed, steps, version, and a hash of the weights file).
//!
//! Both files are written atomically (a temporary file in the same folder, flushed, then
//! renamed), weights first: `model.json` is the commit record, and its hash ties it to the
//! weights it was written with, so an interrupted save, a truncated copy or a mismatched pair
//! is an error at load time, never a silently different policy.

use crate::error::{LearnError, Result};
use crate::policy::{ActorCritic, PolicyConfig};
use crate::ppo::PpoConfig;
use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";
/// Identifies the metadata format; bumped when a field changes meaning.
pub const FORMAT: &str = "mesascope-checkpoint/2";

/// What a checkpoint holds besides the weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub format: String,
    /// The mesascope version that wrote it.
    pub version: String,
    pub testbed: String,
    /// Every knob of the testbed, resolved (defaults included), in declaration order.
    pub knobs: Vec<(String, f64)>,
    pub policy: PolicyConfig,
    pub ppo: PpoConfig,
    pub seed: u64,
    /// Environment steps trained so far.
    pub steps: u64,
    /// PPO updates done so far.
    pub updates: u64,
    /// FNV-1a 64 of `model.safetensors`, hex.
    pub weights_fnv64: String,
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    mesascope_core::fsio::write_atomic(&dir.join(name), bytes)
        .map_err(|e| LearnError::io("cannot save the checkpoint in", dir, e))
}

/// Writes `model` and `meta` (whose hash field is filled in here) into folder `dir`, creating
/// it if needed.
pub fn save(dir: &Path, model: &ActorCritic, meta: &Meta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| LearnError::io("cannot create folder", dir, e))?;
    let params = model.named_params();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .into_iter()
        .map(|(name, shape, values)| {
            let b: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, b)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| LearnError::Checkpoint(format!("cannot serialize {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let weights = safetensors::tensor::serialize(views, None)
        .map_err(|e| LearnError::Checkpoint(format!("cannot serialize weights: {e}")))?;
    let mut meta = meta.clone();
    meta.weights_fnv64 = format!("{:016x}", fnv64(&weights));
    let json = serde_json::to_string_pretty(&meta)
        .map_err(|e| LearnError::Checkpoint(format!("cannot serialize metadata: {e}")))?;
    write_atomic(dir, WEIGHTS_FILE, &weights)?;
    write_atomic(dir, META_FILE, format!("{json}\n").as_bytes())
}

/// Reads only the metadata of checkpoint `dir`.
pub fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join(META_FILE);
    if !dir.is_dir() {
        return Err(LearnError::Checkpoint(format!(
            "{} is not a checkpoint folder (it should hold {META_FILE} and {WEIGHTS_FILE})",
            dir.display()
        )));
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| LearnError::io("cannot read", &path, e))?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| {
        LearnError::Checkpoint(format!(
            "{} is not valid checkpoint metadata: {e}",
            path.display()
        ))
    })?;
    if meta.format != FORMAT {
        return Err(LearnError::Checkpoint(format!(
            "{} has format '{}', this mesascope reads '{FORMAT}'",
            path.display(),
            meta.format
        )));
    }
    meta.policy.validate()?;
    Ok(meta)
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub meta: Meta,
    pub model: ActorCritic,
}

/// Reads checkpoint `dir` onto `device`: metadata, weights, and their consistency.
pub fn load(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let meta = read_meta(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| LearnError::io("cannot read", &path, e))?;
    let hash = format!("{:016x}", fnv64(&bytes));
    if hash != meta.weights_fnv64 {
        return Err(LearnError::Checkpoint(format!(
            "{} does not match {META_FILE} (corrupt, truncated or from another save)",
            path.display()
        )));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        LearnError::Checkpoint(format!(
            "{} is not a valid safetensors file: {e}",
            path.display()
        ))
    })?;
    let lookup = |name: &str| -> Option<(Vec<usize>, Vec<f32>)> {
        let view = st.tensor(name).ok()?;
        if view.dtype() != Dtype::F32 {
            return None;
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some((view.shape().to_vec(), values))
    };
    let model = ActorCritic::from_named(&meta.policy, lookup, device)?;
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        meta,
        model,
    })
}

/// Checks that a checkpoint was trained for `testbed` with the observation shape of `config`.
pub fn check_compatible(meta: &Meta, testbed: &str, config: &PolicyConfig) -> Result<()> {
    if meta.testbed != testbed {
        return Err(LearnError::Checkpoint(format!(
            "it was trained on testbed {}, not {testbed}",
            meta.testbed
        )));
    }
    let p = &meta.policy;
    if (p.height, p.width, p.n_actions) != (config.height, config.width, config.n_actions) {
        return Err(LearnError::Checkpoint(format!(
            "it reads {}x{} grids with {} actions; these levels are {}x{} with {} actions \
             (check the size knob)",
            p.height, p.width, p.n_actions, config.height, config.width, config.n_actions
        )));
    }
    if p.arch != config.arch || p.hidden != config.hidden {
        return Err(LearnError::Checkpoint(format!(
            "it is a {} network of width {}, not {} of width {}",
            p.arch.name(),
            p.hidden,
            config.arch.name(),
            config.hidden
        )));
    }
    Ok(())
}
