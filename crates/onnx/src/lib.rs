//! ONNX policies, run by tract (pure Rust, no system library).
//!
//! The contract (docs/onnx.md): one input named `obs`, either float32 `[N, C, H, W]` one-hot
//! planes in the order `mesascope_core::obs::plane_names()` gives, or uint8 `[N, H, W, 3]`
//! (MiniGrid's encoding); the model's declared input element type says which. One output named
//! `logits`, float32 `[N, A]` with `A` the testbed's action count. The batch dimension may be
//! symbolic (any `N`) or fixed; the other input dimensions may be symbolic too, and are set
//! from the testbed's level shape. Any other output is an activation for probes: float32
//! `[N, ...]`, named after its layer, read flattened per observation. Everything is checked when
//! the model is loaded, with a message that says what was expected and what was found;
//! non-finite logits or activations are an error when they occur.
//!
//! A model file is foreign code: tract runs whatever operators it names on whatever shapes it
//! declares. So loading and inference run behind [`guarded`], which turns a panic inside tract
//! into an input error naming the file, and every tensor's declared size is checked against
//! [`MAX_TENSOR_ELEMENTS`] after shape analysis and before tract builds (or constant-folds)
//! anything, so that a graph declaring tens of gigabytes is refused rather than allocated.

use mesascope_core::activations::Activations;
use mesascope_core::agents::Agent;
pub use mesascope_core::limits::MAX_TENSOR_ELEMENTS;
use mesascope_core::state::EpisodeState;
use mesascope_core::{obs, Env, Error, Result, Testbed};
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid, ShapeFactoid};
use tract_onnx::tract_hir::internal::DimLike;

/// The input's required name.
pub const INPUT_NAME: &str = "obs";
/// The output's required name.
pub const OUTPUT_NAME: &str = "logits";

/// The observation encoding a model reads, declared by its input's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// float32 one-hot planes `[N, C, H, W]`.
    Planes,
    /// uint8 MiniGrid encoding `[N, H, W, 3]`.
    U8,
}

impl Encoding {
    fn dims(self, h: usize, w: usize) -> [usize; 3] {
        match self {
            Encoding::Planes => [obs::PLANES, h, w],
            Encoding::U8 => [h, w, 3],
        }
    }

    fn describe(self, h: usize, w: usize) -> String {
        let [a, b, c] = self.dims(h, w);
        match self {
            Encoding::Planes => format!("float32 [N, {a}, {b}, {c}]"),
            Encoding::U8 => format!("uint8 [N, {a}, {b}, {c}]"),
        }
    }
}

/// The highest version of the standard ONNX operator set accepted: the newest the `onnx` package
/// defines (1.23). tract is tested against versions 9 to 18; later ones load when their
/// operators are unchanged, and a version past any published one is a corrupt or hostile file.
pub const MAX_OPSET: i64 = 28;

/// Runs `f`, turning a panic inside it into an input error that starts with `who` and says what
/// was being done. tract is foreign code reading foreign data: an out-of-range index in a graph
/// must be a bad model, not a crashed process.
pub fn guarded<T>(who: &str, doing: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    mesascope_core::foreign::catch_panic(f).unwrap_or_else(|what| {
        Err(Error::Input(format!(
            "{who}: tract failed while {doing} (the model is malformed: {what})"
        )))
    })
}

/// Checks that no dimension is negative and no tensor holds more than [`MAX_TENSOR_ELEMENTS`]
/// elements once the batch symbol is `batch`. `facts` lists (node name, operator, output
/// index, dimensions), `None` for a dimension not known yet.
fn check_volumes(
    path: &Path,
    facts: impl Iterator<Item = (String, String, usize, Vec<Option<TDim>>)>,
    values: &SymbolValues,
) -> Result<()> {
    for (node, op, slot, dims) in facts {
        let mut volume: u64 = 1;
        for d in dims.iter().flatten() {
            let Ok(v) = d.eval(values).to_i64() else {
                continue;
            };
            if v < 0 {
                return Err(bad(
                    path,
                    format!(
                        "node '{node}' ({op}) declares a negative dimension {v} in output {slot}"
                    ),
                ));
            }
            volume = volume.saturating_mul(v as u64);
        }
        if volume > MAX_TENSOR_ELEMENTS {
            let shown: Vec<String> = dims
                .iter()
                .map(|d| d.as_ref().map_or("?".into(), |d| d.to_string()))
                .collect();
            return Err(bad(
                path,
                format!(
                    "node '{node}' ({op}) declares an output of shape [{}]: {volume} elements at a batch of {MAX_BATCH}, more than the limit of {MAX_TENSOR_ELEMENTS} (docs/limits.md)",
                    shown.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The integer values of initializer `name` of `graph`, when it is one (int64 or int32).
fn initializer_ints(graph: &tract_onnx::pb::GraphProto, name: &str) -> Option<Vec<i64>> {
    let t = graph.initializer.iter().find(|t| t.name == name)?;
    // ONNX data types: 7 = int64, 6 = int32.
    match t.data_type {
        7 if !t.int64_data.is_empty() => Some(t.int64_data.clone()),
        7 => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        6 if !t.int32_data.is_empty() => Some(t.int32_data.iter().map(|&v| v as i64).collect()),
        6 => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
        ),
        _ => None,
    }
}

/// Shapes the graph spells out in constants, checked before tract sees them: tract evaluates
/// operators on constant inputs while it analyses the graph, so a `ConstantOfShape` of
/// 1e5 x 1e5 or an `Expand` to [1, 3e9] would be allocated before any fact could be checked.
fn check_declared_shapes(path: &Path, proto: &tract_onnx::pb::ModelProto) -> Result<()> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    for node in &graph.node {
        // (operator, index of the input that holds an output shape or repeat counts)
        let at = match node.op_type.as_str() {
            "ConstantOfShape" => 0,
            "Expand" | "Tile" | "Reshape" => 1,
            _ => continue,
        };
        let Some(dims) = node
            .input
            .get(at)
            .and_then(|name| initializer_ints(graph, name))
        else {
            continue;
        };
        let name = match (node.name.as_str(), node.output.first()) {
            ("", Some(out)) => out.as_str(),
            (name, _) => name,
        };
        if node.op_type != "Reshape" {
            if let Some(&d) = dims.iter().find(|&&d| d < 0) {
                return Err(bad(
                    path,
                    format!(
                        "node '{name}' ({}) declares a negative dimension {d} in {:?}",
                        node.op_type, dims
                    ),
                ));
            }
        }
        let volume = dims
            .iter()
            .filter(|&&d| d > 0)
            .fold(1u64, |v, &d| v.saturating_mul(d as u64));
        if volume > MAX_TENSOR_ELEMENTS {
            return Err(bad(
                path,
                format!(
                    "node '{name}' ({}) declares an output of shape {:?}: {volume} elements, more than the limit of {MAX_TENSOR_ELEMENTS} (docs/limits.md)",
                    node.op_type, dims
                ),
            ));
        }
    }
    Ok(())
}

/// Observations per inference call when the batch dimension is free: bounds the memory of the
/// intermediate tensors when probes read activations for thousands of states.
const MAX_BATCH: usize = 1024;

/// An extra output of the model: a layer's activations.
#[derive(Clone, Debug)]
struct Layer {
    name: String,
    /// Index among the model's outputs.
    output: usize,
    /// Values per observation (the product of the dimensions after the batch).
    width: usize,
}

/// A loaded, checked and optimized ONNX policy for one testbed and level shape.
pub struct OnnxPolicy {
    plan: Arc<TypedRunnableModel>,
    /// Index of `logits` among the outputs.
    logits_at: usize,
    layers: Vec<Layer>,
    encoding: Encoding,
    height: usize,
    width: usize,
    n_actions: usize,
    /// `Some(b)` when the model's batch dimension is fixed to `b`.
    fixed_batch: Option<usize>,
    label: String,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("ONNX model {}: {msg}", path.display()))
}

fn dim_text(d: &GenericFactoid<TDim>) -> String {
    match d.concretize() {
        Some(t) => t.to_string(),
        None => "?".into(),
    }
}

fn shape_text(s: &ShapeFactoid) -> String {
    let dims: Vec<String> = s.dims().map(dim_text).collect();
    format!("[{}]", dims.join(", "))
}

impl OnnxPolicy {
    /// Loads `path` to act in `testbed` on levels of `height` x `width`, checking the model
    /// against the contract.
    pub fn load(path: &Path, testbed: &dyn Testbed, height: usize, width: usize) -> Result<Self> {
        let who = format!("ONNX model {}", path.display());
        guarded(&who, "loading it", || {
            Self::load_unguarded(path, testbed, height, width)
        })
    }

    fn load_unguarded(
        path: &Path,
        testbed: &dyn Testbed,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        let n_actions = testbed.n_actions();
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_path(path)
            .map_err(|e| bad(path, format!("cannot read it: {e:#}")))?;
        if let Some(v) = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .filter(|&v| !(1..=MAX_OPSET).contains(&v))
        {
            return Err(bad(
                path,
                format!("it declares ONNX operator set version {v}; mesascope reads versions 1 to {MAX_OPSET} (tract is tested with 9 to 18)"),
            ));
        }
        check_declared_shapes(path, &proto)?;
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| bad(path, format!("cannot read it: {e:#}")))?;
        let inputs = model.input_outlets().map_err(|e| bad(path, e))?.to_vec();
        let input_names: Vec<String> = inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        if input_names != [INPUT_NAME] {
            return Err(bad(
                path,
                format!(
                    "expected one input named '{INPUT_NAME}', found {} ({})",
                    inputs.len(),
                    quoted(&input_names)
                ),
            ));
        }
        let outputs = model.output_outlets().map_err(|e| bad(path, e))?.to_vec();
        let output_names: Vec<String> = outputs
            .iter()
            .map(|&o| {
                model
                    .outlet_label(o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let logits_at = match output_names.iter().position(|n| n == OUTPUT_NAME) {
            Some(i) if output_names.iter().filter(|n| *n == OUTPUT_NAME).count() == 1 => i,
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "expected one output named '{OUTPUT_NAME}', found {} ({}); outputs besides '{OUTPUT_NAME}' are read as activations",
                        outputs.len(),
                        quoted(&output_names)
                    ),
                ))
            }
        };

        let declared = model.input_fact(0).map_err(|e| bad(path, e))?.clone();
        let encoding = match declared.datum_type.concretize() {
            Some(DatumType::F32) => Encoding::Planes,
            Some(DatumType::U8) => Encoding::U8,
            other => {
                return Err(bad(
                    path,
                    format!(
                        "input '{INPUT_NAME}' has element type {}; expected float32 (one-hot planes {}) or uint8 (MiniGrid encoding {})",
                        other.map_or("unknown".to_string(), |t| format!("{t:?}").to_lowercase()),
                        Encoding::Planes.describe(height, width),
                        Encoding::U8.describe(height, width)
                    ),
                ))
            }
        };
        let want = encoding.dims(height, width);
        let found = shape_text(&declared.shape);
        let rank_ok = !declared.shape.is_open() && declared.shape.dims().count() == 4;
        let dims_ok = rank_ok
            && declared
                .shape
                .dims()
                .skip(1)
                .zip(want)
                // A symbolic height or width (an exporter's dynamic axis) is fixed below from the level size.
                .all(|(d, w)| {
                    d.concretize()
                        .is_none_or(|t| t.to_usize().map_or(true, |v| v == w))
                });
        if !dims_ok {
            return Err(bad(
                path,
                format!(
                    "input '{INPUT_NAME}' has shape {found}; expected {} for {} levels of {height}x{width}",
                    encoding.describe(height, width),
                    testbed.name()
                ),
            ));
        }
        let fixed_batch = declared
            .shape
            .dim(0)
            .and_then(|d| d.concretize())
            .and_then(|t| t.to_usize().ok());
        if fixed_batch == Some(0) {
            return Err(bad(
                path,
                format!("input '{INPUT_NAME}' has a batch dimension of 0"),
            ));
        }
        let batch: TDim = match fixed_batch {
            Some(b) => b.to_dim(),
            None => model.sym("N").to_dim(),
        };
        let dt = match encoding {
            Encoding::Planes => f32::datum_type(),
            Encoding::U8 => u8::datum_type(),
        };
        let shape: TVec<TDim> = std::iter::once(batch.clone())
            .chain(want.iter().map(|d| d.to_dim()))
            .collect();
        model
            .set_input_fact(0, InferenceFact::dt_shape(dt, shape))
            .map_err(|e| bad(path, e))?;
        // Sizes at the largest batch an inference call uses.
        let batch_values = match fixed_batch {
            Some(_) => SymbolValues::default(),
            None => SymbolValues::default().with(&model.sym("N"), MAX_BATCH as i64),
        };
        // Declared sizes, before tract builds anything of that size: the analysis only
        // propagates shapes (its failures are reported by `into_typed` below).
        let _ = model.analyse(false);
        check_volumes(
            path,
            model.nodes().iter().flat_map(|n| {
                n.outputs.iter().enumerate().map(move |(i, o)| {
                    let dims = if o.fact.shape.is_open() {
                        Vec::new()
                    } else {
                        o.fact.shape.dims().map(|d| d.concretize()).collect()
                    };
                    (n.name.clone(), n.op.name().to_string(), i, dims)
                })
            }),
            &batch_values,
        )?;
        let typed = model.into_typed().map_err(|e| {
            bad(path, format!("tract cannot analyse it (unsupported operator or shapes that do not fit {}): {e:#}", encoding.describe(height, width)))
        })?;
        let out = typed
            .output_fact(logits_at)
            .map_err(|e| bad(path, e))?
            .clone();
        let out_dims: Vec<TDim> = out.shape.iter().cloned().collect();
        let out_text = format!(
            "[{}]",
            out_dims
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if out.datum_type != f32::datum_type() {
            return Err(bad(
                path,
                format!(
                    "output '{OUTPUT_NAME}' has element type {:?}; expected float32 logits [N, {n_actions}]",
                    out.datum_type
                ),
            ));
        }
        // Symbols other than the batch's come from the data (NonZero, data-driven shapes): no
        // batch of observations fixes them, so say that rather than only "wrong shape".
        let batch_symbols = batch.symbols();
        let unresolved: Vec<String> = out_dims
            .iter()
            .filter(|d| d.symbols().iter().any(|s| !batch_symbols.contains(s)))
            .map(|d| d.to_string())
            .collect();
        if !unresolved.is_empty() {
            return Err(bad(
                path,
                format!(
                    "output '{OUTPUT_NAME}' has shape {out_text}, whose dimension(s) {} cannot be resolved from the input's shape (they depend on the data); expected [{batch}, {n_actions}]",
                    unresolved.join(", ")
                ),
            ));
        }
        if out_dims.len() != 2 || out_dims[0] != batch || out_dims[1] != n_actions.to_dim() {
            return Err(bad(
                path,
                format!(
                    "output '{OUTPUT_NAME}' has shape {out_text}; expected [{batch}, {n_actions}] (logits for the {n_actions} actions of {}), with the input's batch dimension",
                    testbed.name()
                ),
            ));
        }
        check_volumes(
            path,
            typed.nodes().iter().flat_map(|n| {
                n.outputs.iter().enumerate().map(move |(i, o)| {
                    (
                        n.name.clone(),
                        n.op.name().to_string(),
                        i,
                        o.fact.shape.iter().map(|d| Some(d.clone())).collect(),
                    )
                })
            }),
            &batch_values,
        )?;
        let mut layers = Vec::new();
        for (i, name) in output_names.iter().enumerate() {
            if i != logits_at {
                layers.push(check_layer(path, &typed, i, name, &batch)?);
            }
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| bad(path, format!("tract cannot prepare it: {e:#}")))?;
        Ok(OnnxPolicy {
            plan,
            logits_at,
            layers,
            encoding,
            height,
            width,
            n_actions,
            fixed_batch,
            label: format!("onnx {}", path.display()),
        })
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub fn n_actions(&self) -> usize {
        self.n_actions
    }

    /// Values of one observation.
    pub fn obs_len(&self) -> usize {
        self.height * self.width * self.encoding.dims(1, 1).iter().product::<usize>()
    }

    /// The layers the model exposes as extra outputs, in output order.
    pub fn layer_names(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.name.clone()).collect()
    }

    /// Runs `n` encoded observations (`obs_u8` for the u8 encoding, `obs_f32` for planes; the
    /// other is ignored) and returns outputs `wanted` (indices among the model's outputs), each
    /// flattened, `width` values per observation.
    fn run(
        &self,
        n: usize,
        obs_u8: &[u8],
        obs_f32: &[f32],
        wanted: &[(usize, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        let k = self.obs_len();
        let chunk = self.fixed_batch.unwrap_or(n.clamp(1, MAX_BATCH));
        let mut out: Vec<Vec<f32>> = wanted
            .iter()
            .map(|&(_, w)| Vec::with_capacity(n * w))
            .collect();
        let mut start = 0;
        while start < n {
            let m = chunk.min(n - start);
            let dims: Vec<usize> = std::iter::once(chunk)
                .chain(self.encoding.dims(self.height, self.width))
                .collect();
            // A fixed batch larger than what is left is padded with copies of the last row.
            let tensor = match self.encoding {
                Encoding::U8 => padded(&obs_u8[start * k..(start + m) * k], k, chunk, &dims)?,
                Encoding::Planes => padded(&obs_f32[start * k..(start + m) * k], k, chunk, &dims)?,
            };
            let result = guarded(&self.label, "running it", || {
                self.plan
                    .run(tvec!(tensor.into()))
                    .map_err(|e| Error::Policy(format!("{}: inference failed: {e:#}", self.label)))
            })?;
            for (o, &(at, width)) in out.iter_mut().zip(wanted) {
                let view = result[at]
                    .to_plain_array_view::<f32>()
                    .map_err(|e| Error::Policy(format!("{}: {e:#}", self.label)))?;
                let vals: Vec<f32> = view.iter().copied().collect();
                if vals.len() != chunk * width {
                    return Err(Error::Policy(format!(
                        "{}: output {at} returned {} values for a batch of {chunk}, expected {}",
                        self.label,
                        vals.len(),
                        chunk * width
                    )));
                }
                o.extend_from_slice(&vals[..m * width]);
            }
            start += m;
        }
        Ok(out)
    }

    /// Logits `[n, A]` of `n` encoded observations (`obs_u8` for the u8 encoding, `obs_f32` for
    /// planes; the other is ignored).
    pub fn logits(&self, n: usize, obs_u8: &[u8], obs_f32: &[f32]) -> Result<Vec<f32>> {
        let a = self.n_actions;
        let out = self
            .run(n, obs_u8, obs_f32, &[(self.logits_at, a)])?
            .remove(0);
        if let Some(i) = out.iter().position(|l| !l.is_finite()) {
            let row = i / a;
            return Err(Error::Policy(format!(
                "{}: non-finite logits {:?} for observation {row}",
                self.label,
                &out[row * a..(row + 1) * a]
            )));
        }
        Ok(out)
    }

    /// The exposed layers' activations of episode states, `[layer][state][unit]`.
    pub fn activations_of(&self, states: &[&EpisodeState]) -> Result<Vec<Vec<Vec<f32>>>> {
        let wanted: Vec<(usize, usize)> = self.layers.iter().map(|l| (l.output, l.width)).collect();
        let flat = self.with_encoded(states, |n, u8s, f32s| self.run(n, u8s, f32s, &wanted))?;
        let mut out = Vec::with_capacity(self.layers.len());
        for (layer, vals) in self.layers.iter().zip(flat) {
            if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
                return Err(Error::Policy(format!(
                    "{}: non-finite activation {} in output '{}' for observation {}",
                    self.label,
                    vals[i],
                    layer.name,
                    i / layer.width
                )));
            }
            out.push(vals.chunks(layer.width).map(|r| r.to_vec()).collect());
        }
        Ok(out)
    }

    /// Logits `[n, A]` of episode states, encoded as the model declares.
    pub fn logits_of(&self, states: &[&EpisodeState]) -> Result<Vec<f32>> {
        self.with_encoded(states, |n, u8s, f32s| self.logits(n, u8s, f32s))
    }

    /// Encodes `states` as the model declares and hands them to `f` (count, u8, planes).
    fn with_encoded<T>(
        &self,
        states: &[&EpisodeState],
        f: impl FnOnce(usize, &[u8], &[f32]) -> Result<T>,
    ) -> Result<T> {
        let k = self.obs_len();
        for s in states {
            if (s.grid.height, s.grid.width) != (self.height, self.width) {
                return Err(Error::Input(format!(
                    "{} reads {}x{} grids, this level is {}x{}",
                    self.label, self.height, self.width, s.grid.height, s.grid.width
                )));
            }
        }
        match self.encoding {
            Encoding::U8 => {
                let mut buf = vec![0u8; states.len() * k];
                for (s, o) in states.iter().zip(buf.chunks_mut(k)) {
                    obs::encode_u8(s, o);
                }
                f(states.len(), &buf, &[])
            }
            Encoding::Planes => {
                let mut buf = vec![0f32; states.len() * k];
                for (s, o) in states.iter().zip(buf.chunks_mut(k)) {
                    obs::encode_planes(s, o);
                }
                f(states.len(), &[], &buf)
            }
        }
    }
}

/// Checks extra output `i`, named `name`, against the activation contract: float32 `[N, ...]`
/// with the input's batch dimension first and the others known.
fn check_layer(
    path: &Path,
    typed: &TypedModel,
    i: usize,
    name: &str,
    batch: &TDim,
) -> Result<Layer> {
    let fact = typed.output_fact(i).map_err(|e| bad(path, e))?;
    let dims: Vec<TDim> = fact.shape.iter().cloned().collect();
    let text = format!(
        "[{}]",
        dims.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if fact.datum_type != f32::datum_type() {
        return Err(bad(
            path,
            format!(
                "activation output '{name}' has element type {}; expected float32 [{batch}, ...] (outputs besides '{OUTPUT_NAME}' are read as activations)",
                // tract may carry integer outputs as symbolic dimensions (TDim): i64 in ONNX.
                if fact.datum_type == DatumType::TDim {
                    "i64".to_string()
                } else {
                    format!("{:?}", fact.datum_type).to_lowercase()
                }
            ),
        ));
    }
    let rest: Option<Vec<usize>> = dims.iter().skip(1).map(|d| d.to_usize().ok()).collect();
    match rest {
        Some(rest) if dims.len() >= 2 && dims[0] == *batch && rest.iter().all(|&d| d > 0) => {
            Ok(Layer {
                name: name.to_string(),
                output: i,
                width: rest.iter().product(),
            })
        }
        _ => Err(bad(
            path,
            format!(
                "activation output '{name}' has shape {text}; expected [{batch}, ...]: the input's batch dimension first, then known, non-zero dimensions"
            ),
        )),
    }
}

fn padded<T: Datum + Copy>(rows: &[T], k: usize, chunk: usize, dims: &[usize]) -> Result<Tensor> {
    let mut data = rows.to_vec();
    while data.len() < chunk * k {
        let last = data[data.len() - k..].to_vec();
        data.extend_from_slice(&last);
    }
    Tensor::from_shape(dims, &data).map_err(|e| Error::Input(format!("observation tensor: {e:#}")))
}

fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An ONNX policy as a core [`Agent`]: the softmax of its logits in the current state.
/// Copies share the loaded model.
#[derive(Clone)]
pub struct OnnxAgent {
    policy: Arc<OnnxPolicy>,
}

impl OnnxAgent {
    pub fn new(policy: Arc<OnnxPolicy>) -> OnnxAgent {
        OnnxAgent { policy }
    }
}

/// The model's extra outputs, for probes. An ONNX graph's activations can be read but not
/// written, so these policies are probed but not steered.
impl Activations for OnnxAgent {
    fn layer_names(&self) -> Vec<String> {
        self.policy.layer_names()
    }

    fn activations(&self, states: &[&EpisodeState]) -> Result<Vec<Vec<Vec<f32>>>> {
        self.policy.activations_of(states)
    }

    fn player(&self) -> Box<dyn Agent> {
        Box::new(self.clone())
    }
}

impl Agent for OnnxAgent {
    fn name(&self) -> String {
        self.policy.label.clone()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()> {
        self.probs_batch(&[env], out)
    }

    /// The model is a function of the observation: one instance serves every episode.
    fn batched(&self) -> bool {
        true
    }

    /// One inference call (or one per [`MAX_BATCH`] states) for the whole batch.
    fn probs_batch(&mut self, envs: &[&Env], out: &mut [f32]) -> Result<()> {
        let a = self.policy.n_actions;
        if let Some(env) = envs.iter().find(|e| e.n_actions() != a) {
            return Err(Error::Policy(format!(
                "{} has {a} actions, this testbed {}",
                self.policy.label,
                env.n_actions()
            )));
        }
        let states: Vec<&EpisodeState> = envs.iter().map(|e| &e.state).collect();
        let logits = self.policy.logits_of(&states)?;
        for (l, o) in logits.chunks(a).zip(out.chunks_mut(a)) {
            // The softmax of the logits: a Boltzmann distribution at beta 1.
            mesascope_core::planner::boltzmann(l, 1.0, o);
        }
        Ok(())
    }
}
