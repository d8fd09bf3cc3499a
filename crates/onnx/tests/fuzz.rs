//! Fuzzing of the ONNX loader on stable Rust: a bounded loop of seeded cases, each a fixture
//! model decoded, edited by `arbitrary` (operators swapped, attributes, shapes and initializers
//! set to hostile values, nodes dropped, bytes flipped) and loaded, then run on two states when
//! it loads. Loading or running may fail, never panic, abort or hang. `MESASCOPE_FUZZ_CASES` and
//! `MESASCOPE_FUZZ_SEED` as in mesascope-core's tests/fuzz.rs; scripts/fuzz.sh runs many more.

use arbitrary::Unstructured;
use mesascope_core::env::generate_level;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::{testbeds, Env, Knobs, Split};
use mesascope_onnx::OnnxPolicy;
use prost::Message;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use tract_onnx::pb;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const BASES: &[&str] = &[
    "right-planes.onnx",
    "right-u8.onnx",
    "right-spatial-symbols.onnx",
    "activation-right.onnx",
    "exit-vs-green-agent.onnx",
    "hostile-gather-index.onnx",
    "hostile-slice-step-zero.onnx",
    "hostile-expand-huge.onnx",
];

const OPS: &[&str] = &[
    "Gather",
    "Div",
    "Slice",
    "Transpose",
    "Reshape",
    "ConstantOfShape",
    "Expand",
    "Concat",
    "MatMul",
    "Gemm",
    "Conv",
    "Add",
    "Tile",
    "Pad",
    "Range",
    "Squeeze",
    "Unsqueeze",
    "Split",
    "ReduceSum",
    "Flatten",
    "Cast",
    "Relu",
    "Softmax",
    "TopK",
    "OneHot",
    "Resize",
    "Where",
];

const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    5,
    7,
    20,
    -7,
    100_000,
    3_000_000_000,
    i64::MAX,
    i64::MIN,
    1 << 31,
];

fn pick_int(u: &mut Unstructured) -> arbitrary::Result<i64> {
    if u.ratio(3, 4)? {
        Ok(*u.choose(INTS)?)
    } else {
        u.arbitrary()
    }
}

/// One edited model, as bytes.
fn edited(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let bytes = std::fs::read(fixture(u.choose(BASES)?)).unwrap();
    let mut model = pb::ModelProto::decode(&*bytes).unwrap();
    for _ in 0..u.int_in_range(1..=4)? {
        let graph = model.graph.as_mut().unwrap();
        match u.int_in_range(0..=7)? {
            0 if !graph.node.is_empty() => {
                let i = u.choose_index(graph.node.len())?;
                graph.node[i].op_type = u.choose(OPS)?.to_string();
            }
            1 if !graph.node.is_empty() => {
                let i = u.choose_index(graph.node.len())?;
                let node = &mut graph.node[i];
                if node.attribute.is_empty() || u.ratio(1, 3)? {
                    let name = *u.choose(&["axis", "perm", "axes", "to", "keepdims", "pads"])?;
                    node.attribute.push(pb::AttributeProto {
                        name: name.into(),
                        r#type: if name == "perm" || name == "pads" || name == "axes" {
                            7
                        } else {
                            2
                        },
                        ..Default::default()
                    });
                }
                let j = u.choose_index(node.attribute.len())?;
                let a = &mut node.attribute[j];
                a.i = pick_int(u)?;
                for _ in 0..u.int_in_range(0..=3)? {
                    a.ints.push(pick_int(u)?);
                }
                if u.ratio(1, 3)? {
                    a.ints.clear();
                }
            }
            2 if !graph.initializer.is_empty() => {
                let i = u.choose_index(graph.initializer.len())?;
                let t = &mut graph.initializer[i];
                if !t.dims.is_empty() {
                    let d = u.choose_index(t.dims.len())?;
                    t.dims[d] = pick_int(u)?;
                } else {
                    t.dims.push(pick_int(u)?);
                }
            }
            3 if !graph.initializer.is_empty() => {
                let i = u.choose_index(graph.initializer.len())?;
                let t = &mut graph.initializer[i];
                for v in t.int64_data.iter_mut() {
                    *v = pick_int(u)?;
                }
                if !t.raw_data.is_empty() {
                    let at = u.choose_index(t.raw_data.len())?;
                    t.raw_data[at] = u.arbitrary()?;
                    if u.ratio(1, 4)? {
                        t.raw_data.truncate(at);
                    }
                }
            }
            4 if graph.node.len() > 1 => {
                let i = u.choose_index(graph.node.len())?;
                graph.node.remove(i);
            }
            5 => {
                if let Some(input) = graph.input.first_mut() {
                    if let Some(pb::type_proto::Value::TensorType(t)) =
                        input.r#type.as_mut().and_then(|t| t.value.as_mut())
                    {
                        if let Some(shape) = t.shape.as_mut() {
                            if !shape.dim.is_empty() {
                                let d = u.choose_index(shape.dim.len())?;
                                shape.dim[d].value =
                                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(
                                        pick_int(u)?,
                                    ));
                            }
                        }
                    }
                }
            }
            6 => {
                if let Some(o) = model.opset_import.first_mut() {
                    o.version = *u.choose(&[1, 7, 9, 13, 18, 21, 28, 29, -1, 9999])?;
                }
            }
            _ if !graph.node.is_empty() => {
                let i = u.choose_index(graph.node.len())?;
                let node = &mut graph.node[i];
                if node.input.len() > 1 {
                    node.input.swap(0, 1);
                } else {
                    node.input
                        .push(node.input.first().cloned().unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    let mut out = model.encode_to_vec();
    for _ in 0..u.int_in_range(0..=2)? {
        if !out.is_empty() && u.ratio(1, 3)? {
            let at = u.choose_index(out.len())?;
            out[at] = u.arbitrary()?;
        }
    }
    Ok(out)
}

fn check_model(bytes: &[u8], path: &std::path::Path) {
    std::fs::write(path, bytes).unwrap();
    let tb = testbeds::make("exit-vs-green", &Knobs::new()).unwrap();
    let g = generate_level(tb.as_ref(), Split::Train, 0).grid;
    if let Ok(policy) = OnnxPolicy::load(path, tb.as_ref(), g.height, g.width) {
        let envs: Vec<Env> = (0..2)
            .map(|s| Env::new(tb.clone(), Split::Train, s))
            .collect();
        let states: Vec<_> = envs.iter().map(|e| &e.state).collect();
        let _ = policy.logits_of(&states);
        let _ = policy.activations_of(&states);
    }
}

#[test]
fn fuzz_onnx_loader() {
    let first = env_u64("MESASCOPE_FUZZ_SEED", 0);
    let cases = env_u64("MESASCOPE_FUZZ_CASES", 150);
    let dir = std::env::temp_dir().join(format!("mesascope-fuzz-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.onnx");
    for seed in first..first + cases {
        let mut rng = Rng::new(mix(&[0x0a1e, seed]));
        let raw: Vec<u8> = (0..4096).map(|_| rng.below(256) as u8).collect();
        let mut u = Unstructured::new(&raw);
        let Ok(bytes) = edited(&mut u) else { continue };
        let r = catch_unwind(AssertUnwindSafe(|| check_model(&bytes, &path)));
        if r.is_err() {
            let keep = dir.join(format!("crash-{seed}.onnx"));
            std::fs::write(&keep, &bytes).unwrap();
            panic!(
                "fuzz case {seed} panicked (rerun: MESASCOPE_FUZZ_SEED={seed} MESASCOPE_FUZZ_CASES=1); model kept at {}",
                keep.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
