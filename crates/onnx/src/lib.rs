//! ONNX policies, run by tract (pure Rust, no system library).
//!
//! The contract (docs/onnx.md): one input named `obs`, either float32 `[N, C, H, W]` one-hot
//! planes in the order `mesascope_core::obs::plane_names()` gives, or uint8 `[N, H, W, 3]`
//! (MiniGrid's encoding); the model's declared input element type says which. One output named
//! `logits`, float32 `[N, A]` with `A` the testbed's action count. The batch dimension may be
//! symbolic (any `N`) or fixed; the other input dimensions may be symbolic too, and are set
//! from the testbed's level shape. Everything is checked when the model is loaded, with a
//! message that says what was expected and what was found; non-finite logits are an error
//! when they occur.

use mesascope_core::agents::Agent;
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

/// A loaded, checked and optimized ONNX policy for one testbed and level shape.
pub struct OnnxPolicy {
    plan: Arc<TypedRunnableModel>,
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
        let n_actions = testbed.n_actions();
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
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
        if output_names != [OUTPUT_NAME] {
            return Err(bad(
                path,
                format!(
                    "expected one output named '{OUTPUT_NAME}', found {} ({})",
                    outputs.len(),
                    quoted(&output_names)
                ),
            ));
        }

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
        let typed = model.into_typed().map_err(|e| {
            bad(path, format!("tract cannot analyse it (unsupported operator or shapes that do not fit {}): {e:#}", encoding.describe(height, width)))
        })?;
        let out = typed.output_fact(0).map_err(|e| bad(path, e))?.clone();
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
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| bad(path, format!("tract cannot prepare it: {e:#}")))?;
        Ok(OnnxPolicy {
            plan,
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

    /// Logits `[n, A]` of `n` encoded observations (`obs_u8` for the u8 encoding, `obs_f32` for
    /// planes; the other is ignored).
    pub fn logits(&self, n: usize, obs_u8: &[u8], obs_f32: &[f32]) -> Result<Vec<f32>> {
        let k = self.obs_len();
        let chunk = self.fixed_batch.unwrap_or(n.max(1));
        let mut out = Vec::with_capacity(n * self.n_actions);
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
            let result = self
                .plan
                .run(tvec!(tensor.into()))
                .map_err(|e| Error::Policy(format!("{}: inference failed: {e:#}", self.label)))?;
            let view = result[0]
                .to_plain_array_view::<f32>()
                .map_err(|e| Error::Policy(format!("{}: {e:#}", self.label)))?;
            let vals: Vec<f32> = view.iter().copied().collect();
            if vals.len() != chunk * self.n_actions {
                return Err(Error::Policy(format!(
                    "{}: returned {} logits for a batch of {chunk}, expected {}",
                    self.label,
                    vals.len(),
                    chunk * self.n_actions
                )));
            }
            out.extend_from_slice(&vals[..m * self.n_actions]);
            start += m;
        }
        if let Some(i) = out.iter().position(|l| !l.is_finite()) {
            let row = i / self.n_actions;
            let a = self.n_actions;
            return Err(Error::Policy(format!(
                "{}: non-finite logits {:?} for observation {row}",
                self.label,
                &out[row * a..(row + 1) * a]
            )));
        }
        Ok(out)
    }

    /// Logits `[n, A]` of episode states, encoded as the model declares.
    pub fn logits_of(&self, states: &[&EpisodeState]) -> Result<Vec<f32>> {
        let k = self.obs_len();
        for s in states {
            if (s.grid.height, s.grid.width) != (self.height, self.width) {
                return Err(Error::Policy(format!(
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
                self.logits(states.len(), &buf, &[])
            }
            Encoding::Planes => {
                let mut buf = vec![0f32; states.len() * k];
                for (s, o) in states.iter().zip(buf.chunks_mut(k)) {
                    obs::encode_planes(s, o);
                }
                self.logits(states.len(), &[], &buf)
            }
        }
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

impl Agent for OnnxAgent {
    fn name(&self) -> String {
        self.policy.label.clone()
    }

    fn probs(&mut self, env: &Env, out: &mut [f32]) -> Result<()> {
        if env.n_actions() != self.policy.n_actions {
            return Err(Error::Policy(format!(
                "{} has {} actions, this testbed {}",
                self.policy.label,
                self.policy.n_actions,
                env.n_actions()
            )));
        }
        let logits = self.policy.logits_of(&[&env.state])?;
        // The softmax of the logits: a Boltzmann distribution at beta 1.
        mesascope_core::planner::boltzmann(&logits, 1.0, out);
        Ok(())
    }
}
