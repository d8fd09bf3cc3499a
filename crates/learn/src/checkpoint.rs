//! Checkpoints: a folder with `model.safetensors` (the weights, f32, named as
//! [`ActorCritic::named_params`] names them) and `model.json` (what the weights are: testbed,
//! knobs, architecture, training config, seed, steps, version, and a hash of the weights file).
//!
//! `model.json` is the commit record: its hash ties it to the weights it was written with, so a
//! truncated copy or a mismatched pair is an error at load time, never a silently different
//! policy. A save is one atomic unit: the new pair is first written beside the current one
//! (`model.next.safetensors`, then `model.next.json`, each atomically), which commits it; the
//! two are then renamed over the current pair, weights first. A process killed at any moment
//! leaves either the previous checkpoint or the new one complete: [`load`] reads the newest
//! complete pair, and [`recover`] (run before a resumed run writes) finishes the renames.

use crate::error::{LearnError, Result};
use crate::policy::{ActorCritic, PolicyConfig};
use crate::ppo::PpoConfig;
use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";
/// The pair a save writes before renaming it over [`WEIGHTS_FILE`] and [`META_FILE`].
pub const PENDING_WEIGHTS_FILE: &str = "model.next.safetensors";
pub const PENDING_META_FILE: &str = "model.next.json";
/// Identifies the metadata format; bumped when a field changes meaning.
pub const FORMAT: &str = "mesascope-checkpoint/2";

/// Largest `model.json` read (a real one is about 1 KiB).
pub const MAX_META_BYTES: u64 = 1 << 20;
/// Largest `model.safetensors` read (the pretrained agents are well under 10 MiB).
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;
/// Most environment steps per PPO rollout (`num_envs x num_steps`; the default is 8,192).
pub const MAX_ROLLOUT_SAMPLES: usize = 1 << 20;

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

/// The hash `model.json` keeps of the weights file's bytes (`weights_fnv64`).
pub fn weights_hash(bytes: &[u8]) -> String {
    format!("{:016x}", fnv64(bytes))
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
    write_atomic(dir, PENDING_WEIGHTS_FILE, &weights)?;
    write_atomic(dir, PENDING_META_FILE, format!("{json}\n").as_bytes())?;
    recover(dir)
}

/// The files of the newest complete checkpoint in `dir`: the pending pair a save was cut short
/// after writing, the pending metadata with weights already renamed into place, or the current
/// pair (whose consistency [`load`] checks).
fn newest_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let pending = dir.join(PENDING_META_FILE);
    if let Ok(meta) = read_meta_file(&pending) {
        for weights in [PENDING_WEIGHTS_FILE, WEIGHTS_FILE] {
            let w = dir.join(weights);
            if read_capped(&w, MAX_WEIGHTS_BYTES)
                .is_ok_and(|b| weights_hash(&b) == meta.weights_fnv64)
            {
                return (pending, w);
            }
        }
    }
    (dir.join(META_FILE), dir.join(WEIGHTS_FILE))
}

/// Whether `dir` holds a checkpoint (complete or not: [`load`] says which).
pub fn exists(dir: &Path) -> bool {
    dir.join(META_FILE).exists() || dir.join(PENDING_META_FILE).exists()
}

/// Finishes a save that was cut short: renames the newest complete pair into place and removes
/// what an unfinished save left, so that `dir` holds exactly one checkpoint. Writers call it
/// before they write into a checkpoint folder again.
pub fn recover(dir: &Path) -> Result<()> {
    let (meta, weights) = newest_pair(dir);
    let io = |e| LearnError::io("cannot finish the checkpoint in", dir, e);
    if meta.ends_with(PENDING_META_FILE) {
        if weights.ends_with(PENDING_WEIGHTS_FILE) {
            std::fs::rename(&weights, dir.join(WEIGHTS_FILE)).map_err(io)?;
        }
        std::fs::rename(&meta, dir.join(META_FILE)).map_err(io)?;
    }
    for stale in [PENDING_WEIGHTS_FILE, PENDING_META_FILE] {
        match std::fs::remove_file(dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    // The renames reach the disk with the folder's entry list, not with the files.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads only the metadata of checkpoint `dir` (of its newest complete pair).
pub fn read_meta(dir: &Path) -> Result<Meta> {
    if !dir.is_dir() {
        return Err(LearnError::Checkpoint(format!(
            "{} is not a checkpoint folder (it should hold {META_FILE} and {WEIGHTS_FILE})",
            dir.display()
        )));
    }
    read_meta_file(&newest_pair(dir).0)
}

/// Reads and checks one metadata file.
fn read_meta_file(path: &Path) -> Result<Meta> {
    let bytes = read_capped(path, MAX_META_BYTES)?;
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| {
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
    // Bounds first: `validate` multiplies the grid's sides.
    check_meta(&meta).map_err(|m| LearnError::Checkpoint(format!("{}: {m}", path.display())))?;
    meta.policy.validate()?;
    Ok(meta)
}

/// Reads at most `max` bytes of `path`, refusing a larger file before reading it all.
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    mesascope_core::limits::read_capped(path, "checkpoint file", max)
        .map_err(|e| LearnError::Checkpoint(e.to_string()))
}

/// What `model.json` says beyond its types, checked before anything of the sizes it names is
/// allocated: the file is not covered by the weights' hash, so it may have been edited. Its
/// testbed and knobs must build the testbed (every knob declared and in range), the policy must
/// fit that testbed's actions, and the training sizes must be within the documented limits.
pub fn check_meta(meta: &Meta) -> std::result::Result<(), String> {
    let knobs = mesascope_core::Knobs::from_pairs(&meta.knobs);
    let tb = mesascope_core::testbeds::make(&meta.testbed, &knobs)
        .map_err(|e| format!("its testbed and knobs do not build: {e}"))?;
    let declared: Vec<&str> = tb.knobs().0.iter().map(|k| k.name).collect();
    let listed: Vec<&str> = meta.knobs.iter().map(|(k, _)| k.as_str()).collect();
    if listed != declared {
        return Err(format!(
            "its knobs are [{}]; testbed {} declares [{}], each listed once in that order",
            listed.join(", "),
            tb.name(),
            declared.join(", ")
        ));
    }
    let p = &meta.policy;
    if p.n_actions != tb.n_actions() {
        return Err(format!(
            "policy.n_actions is {}; testbed {} has {} actions",
            p.n_actions,
            tb.name(),
            tb.n_actions()
        ));
    }
    let max_side = mesascope_core::limits::MAX_LEVEL_SIDE;
    if p.height > max_side || p.width > max_side {
        return Err(format!(
            "policy grid {}x{} is larger than the limit of {max_side} cells on a side (docs/limits.md)",
            p.height, p.width
        ));
    }
    let ppo = &meta.ppo;
    let max_envs = mesascope_core::limits::MAX_VEC_ENVS;
    if ppo.num_envs == 0 || ppo.num_envs > max_envs {
        return Err(format!(
            "ppo.num_envs is {}; it must be in 1..={max_envs} (docs/limits.md)",
            ppo.num_envs
        ));
    }
    let samples = ppo.num_envs.saturating_mul(ppo.num_steps);
    if ppo.num_steps == 0 || samples > MAX_ROLLOUT_SAMPLES {
        return Err(format!(
            "ppo.num_envs x ppo.num_steps is {} x {}; a rollout must hold 1 to {MAX_ROLLOUT_SAMPLES} steps (docs/limits.md)",
            ppo.num_envs, ppo.num_steps
        ));
    }
    if ppo.num_minibatches == 0 || ppo.num_minibatches > samples {
        return Err(format!(
            "ppo.num_minibatches is {}; it must be in 1..={samples} (the rollout's steps)",
            ppo.num_minibatches
        ));
    }
    if ppo.update_epochs == 0 || ppo.update_epochs > 1_000 {
        return Err(format!(
            "ppo.update_epochs is {}; it must be in 1..=1000",
            ppo.update_epochs
        ));
    }
    if p.arch == crate::policy::Arch::Planner && p.planner != Some(ppo.planner) {
        return Err(format!(
            "ppo says a planner of {:?}, policy {:?}",
            ppo.planner, p.planner
        ));
    }
    if (ppo.arch, ppo.hidden) != (p.arch, p.hidden) {
        return Err(format!(
            "ppo says a {} network of width {}, policy a {} network of width {}",
            ppo.arch.name(),
            ppo.hidden,
            p.arch.name(),
            p.hidden
        ));
    }
    Ok(())
}

/// The fewest weights any architecture of `config` holds: a first layer from every cell to the
/// hidden units, a hidden-to-hidden layer and the action head. Compared with the values the
/// weights file holds before a network of the config's size is built, so that an edited
/// `model.json` cannot make the loader allocate a network far larger than its weights.
fn min_params(config: &PolicyConfig) -> u64 {
    let (cells, hidden, actions) = (
        config.cells() as u64,
        config.hidden as u64,
        config.n_actions as u64,
    );
    // The planner's first layer is shared by every cell (a row per cell feature), and its
    // readout, not the grid, feeds the first dense layer.
    let first = match &config.planner {
        Some(shape) => {
            (crate::planner::PLANNER_FEATURES * shape.channels) as u64
                + shape.readout_width() as u64 * hidden
        }
        None => cells * hidden,
    };
    first + hidden * hidden + hidden * actions
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
    let path = newest_pair(dir).1;
    let bytes = read_capped(&path, MAX_WEIGHTS_BYTES)?;
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
    let held: u64 = st
        .tensors()
        .iter()
        .map(|(_, v)| v.shape().iter().map(|&d| d as u64).product::<u64>())
        .sum();
    let needed = min_params(&meta.policy);
    if held < needed {
        return Err(LearnError::Checkpoint(format!(
            "{} holds {held} weights; the network {META_FILE} describes ({} of width {} on {}x{} grids, {} actions) needs at least {needed}",
            path.display(),
            meta.policy.arch.name(),
            meta.policy.hidden,
            meta.policy.height,
            meta.policy.width,
            meta.policy.n_actions
        )));
    }
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
    if p.n_actions != config.n_actions {
        return Err(LearnError::Checkpoint(format!(
            "it has {} actions; these levels have {}",
            p.n_actions, config.n_actions
        )));
    }
    // A planner reads grids of any size; the other trunks only the size they were trained on.
    if !p.any_size() && (p.height, p.width) != (config.height, config.width) {
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
