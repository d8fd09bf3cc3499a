//! Fuzzing of the checkpoint loader on stable Rust: a bounded loop of seeded cases, each the
//! pretrained exit-vs-green checkpoint with `model.json` edited by `arbitrary` (values replaced
//! by hostile ones, keys dropped or added) and its weights at times damaged, the hash at times
//! recomputed so that the edits reach the checks behind it. Loading may fail, never panic or
//! allocate what the files do not hold. `MESASCOPE_FUZZ_CASES` and `MESASCOPE_FUZZ_SEED` as in
//! mesascope-core's tests/fuzz.rs; scripts/fuzz.sh runs many more.

use arbitrary::Unstructured;
use mesascope_core::rng::{mix, Rng};
use mesascope_learn::checkpoint::{self, weights_hash, META_FILE, WEIGHTS_FILE};
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn agent_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../agents/exit-vs-green-7")
}

fn hostile_value(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=11)? {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1_000_000_000u64),
        3 => json!(u64::MAX),
        4 => json!(4096),
        5 => json!(65),
        6 => json!(1e300),
        7 => json!("conv"),
        8 => Value::Null,
        9 => json!([["size", 1e9]]),
        10 => json!(u.arbitrary::<u16>()?),
        _ => json!(u.arbitrary::<f32>()?),
    })
}

/// Paths to every leaf of `v`.
fn leaves(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                leaves(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                leaves(x, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        Value::Object(m) => m.get_mut(k).unwrap(),
        _ => unreachable!(),
    })
}

fn edited(
    u: &mut Unstructured,
    meta: &Value,
    weights: &[u8],
) -> arbitrary::Result<(String, Vec<u8>)> {
    let mut meta = meta.clone();
    let mut weights = weights.to_vec();
    let mut paths = Vec::new();
    leaves(&meta, &mut Vec::new(), &mut paths);
    for _ in 0..u.int_in_range(1..=3)? {
        let path = u.choose(&paths)?.clone();
        match u.int_in_range(0..=5)? {
            0 => {
                // Drop the key (or the array element's value).
                *get_mut(&mut meta, &path) = Value::Null;
            }
            1 => {
                if let Value::Object(m) = &mut meta {
                    m.insert("extra".into(), hostile_value(u)?);
                }
            }
            _ => *get_mut(&mut meta, &path) = hostile_value(u)?,
        }
    }
    if u.ratio(1, 4)? && !weights.is_empty() {
        let at = u.choose_index(weights.len())?;
        if u.ratio(1, 2)? {
            weights.truncate(at);
        } else {
            weights[at] = u.arbitrary()?;
        }
    }
    if u.ratio(3, 4)? {
        meta["weights_fnv64"] = json!(weights_hash(&weights));
    }
    Ok((meta.to_string(), weights))
}

fn check(dir: &Path, meta: &str, weights: &[u8]) {
    std::fs::write(dir.join(META_FILE), meta).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), weights).unwrap();
    let _ = checkpoint::load(dir, &mesascope_learn::device());
}

#[test]
fn fuzz_checkpoint_loader() {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(agent_dir().join(META_FILE)).unwrap()).unwrap();
    let weights = std::fs::read(agent_dir().join(WEIGHTS_FILE)).unwrap();
    let first = env_u64("MESASCOPE_FUZZ_SEED", 0);
    let cases = env_u64("MESASCOPE_FUZZ_CASES", 120);
    let dir = std::env::temp_dir().join(format!("mesascope-fuzz-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for seed in first..first + cases {
        let mut rng = Rng::new(mix(&[0xc4e0, seed]));
        let raw: Vec<u8> = (0..1024).map(|_| rng.below(256) as u8).collect();
        let mut u = Unstructured::new(&raw);
        let Ok((m, w)) = edited(&mut u, &meta, &weights) else {
            continue;
        };
        if catch_unwind(AssertUnwindSafe(|| check(&dir, &m, &w))).is_err() {
            panic!(
                "fuzz case {seed} panicked (rerun: MESASCOPE_FUZZ_SEED={seed} MESASCOPE_FUZZ_CASES=1); model.json: {m}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Crashers the fuzzer found, kept as found: a grid width of u64::MAX overflowed the cell count
/// (case 1485).
#[test]
fn checkpoint_loader_regressions() {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(agent_dir().join(META_FILE)).unwrap()).unwrap();
    let weights = std::fs::read(agent_dir().join(WEIGHTS_FILE)).unwrap();
    let dir = std::env::temp_dir().join(format!("mesascope-ckpt-regr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = meta.clone();
    m["policy"]["width"] = json!(u64::MAX);
    check(&dir, &m.to_string(), &weights);
    let e = checkpoint::load(&dir, &mesascope_learn::device())
        .err()
        .unwrap();
    assert!(e.to_string().contains("larger than the limit"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Headers that asked for gigabytes before the loader bounded them (issue 22), and edits the
/// loader used to ignore: each a clear checkpoint error now.
#[test]
fn hostile_headers_are_refused_before_allocation() {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(agent_dir().join(META_FILE)).unwrap()).unwrap();
    let weights = std::fs::read(agent_dir().join(WEIGHTS_FILE)).unwrap();
    let dir = std::env::temp_dir().join(format!("mesascope-hostile-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>, &str)> = vec![
        (
            "n_actions",
            Box::new(|m| m["policy"]["n_actions"] = json!(1_000_000_000u64)),
            "policy.n_actions is 1000000000",
        ),
        (
            "num_envs",
            Box::new(|m| m["ppo"]["num_envs"] = json!(1_000_000_000u64)),
            "ppo.num_envs is 1000000000",
        ),
        (
            "64x64 hidden 4096",
            Box::new(|m| {
                m["policy"]["height"] = json!(64);
                m["policy"]["width"] = json!(64);
                m["policy"]["hidden"] = json!(4096);
                m["ppo"]["hidden"] = json!(4096);
            }),
            "needs at least",
        ),
        (
            "garbage knob",
            Box::new(|m| m["knobs"][1] = json!(["colour", 3.0])),
            "unknown knob 'colour'",
        ),
        (
            "knob out of range",
            Box::new(|m| m["knobs"][0][1] = json!(1e9)),
            "do not build",
        ),
    ];
    for (what, edit, says) in cases {
        let mut m = meta.clone();
        edit(&mut m);
        std::fs::write(dir.join(META_FILE), m.to_string()).unwrap();
        std::fs::write(dir.join(WEIGHTS_FILE), &weights).unwrap();
        let e = match checkpoint::load(&dir, &mesascope_learn::device()) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(says), "{what}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
