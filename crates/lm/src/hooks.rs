//! Named hook points in the forward pass, and what a hook does there: read (cache the activation)
//! or write (add a vector times a coefficient, or project a direction out).
//!
//! Per block `i` the points are `blocks.{i}.resid_pre` (the residual stream entering the block),
//! `blocks.{i}.attn_out` (the attention sublayer's output, before it joins the stream),
//! `blocks.{i}.mlp_out` (the MLP's output) and `blocks.{i}.resid_post` (the stream leaving the block).
//! Each is a `[tokens, d_model]` activation. At a point, writes apply first and reads see the result.

use crate::error::{LmError, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Where in a block a hook attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    ResidPre,
    AttnOut,
    MlpOut,
    ResidPost,
}

impl Site {
    pub const ALL: [Site; 4] = [Site::ResidPre, Site::AttnOut, Site::MlpOut, Site::ResidPost];

    pub fn as_str(self) -> &'static str {
        match self {
            Site::ResidPre => "resid_pre",
            Site::AttnOut => "attn_out",
            Site::MlpOut => "mlp_out",
            Site::ResidPost => "resid_post",
        }
    }
}

/// A hook point: a site in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HookPoint {
    pub layer: usize,
    pub site: Site,
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocks.{}.{}", self.layer, self.site.as_str())
    }
}

/// Every hook point of a model with `n_layers` blocks, in forward order.
pub fn hook_names(n_layers: usize) -> Vec<String> {
    (0..n_layers)
        .flat_map(|layer| Site::ALL.map(|site| HookPoint { layer, site }.to_string()))
        .collect()
}

impl HookPoint {
    /// Parses `blocks.{i}.{site}` for a model with `n_layers` blocks; anything else is an error that
    /// lists the valid names.
    pub fn parse(name: &str, n_layers: usize) -> Result<HookPoint> {
        let parsed = name
            .strip_prefix("blocks.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(layer, site)| {
                let layer: usize = layer.parse().ok()?;
                let site = Site::ALL.into_iter().find(|s| s.as_str() == site)?;
                (layer < n_layers).then_some(HookPoint { layer, site })
            });
        parsed.ok_or_else(|| LmError::UnknownHook {
            name: name.to_string(),
            valid: format!(
                "blocks.{{0..{}}}.{{resid_pre, attn_out, mlp_out, resid_post}} ({} layers)",
                n_layers.saturating_sub(1),
                n_layers
            ),
        })
    }
}

/// Which token positions a hook acts on. Positions count from the start of the sequence (the
/// prompt's first token is 0), so they mean the same with and without a KV cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    /// Every token.
    All,
    /// The last token of each forward call: the prompt's last token, then each generated one.
    Last,
    /// These positions only.
    At(Vec<usize>),
}

impl Positions {
    fn selects(&self, position: usize, last: usize) -> bool {
        match self {
            Positions::All => true,
            Positions::Last => position == last,
            Positions::At(ps) => ps.contains(&position),
        }
    }
}

/// A write into the forward pass.
#[derive(Debug, Clone)]
pub enum EditOp {
    /// `x <- x + coefficient * vector`.
    Add { vector: Vec<f32>, coefficient: f32 },
    /// `x <- x - (x . u) u` with `u = direction / |direction|`.
    ProjectOut { direction: Vec<f32> },
}

#[derive(Debug, Clone)]
pub struct Edit {
    pub point: HookPoint,
    pub positions: Positions,
    pub op: EditOp,
}

/// The hooks of a forward pass (or of a whole generation): edits to apply and points to read.
/// Reads append one row per selected token to `captured`, keyed by the point's name.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub edits: Vec<Edit>,
    pub reads: Vec<HookPoint>,
    pub read_positions: Option<Positions>,
    pub captured: BTreeMap<String, Vec<Vec<f32>>>,
}

impl Hooks {
    pub fn none() -> Hooks {
        Hooks::default()
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.reads.is_empty()
    }

    /// Checks every point and vector against the model's shape before anything runs.
    pub(crate) fn validate(&self, n_layers: usize, d_model: usize) -> Result<()> {
        let points = self
            .edits
            .iter()
            .map(|e| e.point)
            .chain(self.reads.iter().copied());
        for p in points {
            HookPoint::parse(&p.to_string(), n_layers)?;
        }
        for e in &self.edits {
            let v = match &e.op {
                EditOp::Add { vector, .. } => vector,
                EditOp::ProjectOut { direction } => direction,
            };
            if v.len() != d_model {
                return Err(LmError::InvalidArgument(format!(
                    "the vector for {} has {} entries; the model's width is {d_model}",
                    e.point,
                    v.len()
                )));
            }
            if let EditOp::ProjectOut { direction } = &e.op {
                if direction.iter().all(|&x| x == 0.0) || direction.iter().any(|x| !x.is_finite()) {
                    return Err(LmError::InvalidArgument(format!(
                        "the direction projected out at {} is zero or not finite",
                        e.point
                    )));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn touches(&self, point: HookPoint) -> bool {
        self.reads.contains(&point) || self.edits.iter().any(|e| e.point == point)
    }

    /// Applies this point's edits to `x` (`rows` tokens of width `d`, the first at sequence position
    /// `start`), then records the reads.
    pub(crate) fn apply(&mut self, point: HookPoint, x: &mut [f32], d: usize, start: usize) {
        let rows = x.len() / d;
        let last = start + rows - 1;
        for e in self.edits.iter().filter(|e| e.point == point) {
            for (r, row) in x.chunks_exact_mut(d).enumerate() {
                if !e.positions.selects(start + r, last) {
                    continue;
                }
                match &e.op {
                    EditOp::Add {
                        vector,
                        coefficient,
                    } => {
                        for (xi, vi) in row.iter_mut().zip(vector) {
                            *xi += coefficient * vi;
                        }
                    }
                    EditOp::ProjectOut { direction } => project_out(row, direction),
                }
            }
        }
        if self.reads.contains(&point) {
            let positions = self.read_positions.clone().unwrap_or(Positions::All);
            let rows_read: Vec<Vec<f32>> = x
                .chunks_exact(d)
                .enumerate()
                .filter(|(r, _)| positions.selects(start + r, last))
                .map(|(_, row)| row.to_vec())
                .collect();
            self.captured
                .entry(point.to_string())
                .or_default()
                .extend(rows_read);
        }
    }
}

/// Removes the component of `x` along `direction`, in f64 so the remainder is zero to f32 precision.
pub fn project_out(x: &mut [f32], direction: &[f32]) {
    let norm2: f64 = direction.iter().map(|&u| (u as f64) * (u as f64)).sum();
    let dot: f64 = x
        .iter()
        .zip(direction)
        .map(|(&a, &u)| a as f64 * u as f64)
        .sum();
    let scale = dot / norm2;
    for (xi, &u) in x.iter_mut().zip(direction) {
        *xi = (*xi as f64 - scale * u as f64) as f32;
    }
}
