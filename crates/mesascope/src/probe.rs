//! Looking inside a network policy: linear probes from its activations to each declared goal and
//! to the oversight cue, and steering against the proxy with random vectors as the control
//! (`mesascope_learn::probe`). A checkpoint is probed and steered; an ONNX model whose extra
//! outputs are its activations is probed, not steered.

use crate::error::{Error, Result};
use crate::fsio::{create_out, json_bytes, write_atomic};
use crate::policy::{load_onnx, PolicySpec};
use crate::report;
use mesascope_core::{testbeds, Knobs};
use mesascope_learn::agent::PolicyAgent;
use mesascope_learn::probe::{
    cheese_vector, probe, probe_readout, retarget, CheeseVectorReport, MapSteeringConfig,
    ProbeConfig, ProbeReport, RetargetReport,
};
use mesascope_onnx::OnnxAgent;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// What to probe, and how (the probes' own settings are `mesascope_learn`'s, with their
/// documented defaults).
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// A checkpoint folder, or an ONNX model that exposes activations.
    pub policy: String,
    pub testbed: String,
    pub knobs: Vec<(String, f64)>,
    pub config: ProbeConfig,
}

impl ProbeSettings {
    pub fn new(policy: impl Into<String>, testbed: impl Into<String>) -> ProbeSettings {
        ProbeSettings {
            policy: policy.into(),
            testbed: testbed.into(),
            knobs: Vec::new(),
            config: ProbeConfig::default(),
        }
    }
}

/// Runs the probes the settings describe.
pub fn run_probe(a: &ProbeSettings) -> Result<ProbeReport> {
    let spec = PolicySpec::parse(&a.policy)?;
    if let PolicySpec::Scripted { .. } = spec {
        return Err(Error::bad_policy(format!(
            "probes read a network's activations: '{}' is a scripted agent, give a checkpoint folder or an ONNX model that exposes activations",
            a.policy
        )));
    }
    let tb = testbeds::make(&a.testbed, &Knobs::from_pairs(&a.knobs))?;
    let cfg = &a.config;
    cfg.validate()?;
    match &spec {
        PolicySpec::Onnx(path) => {
            let model = load_onnx(tb.as_ref(), path)?;
            if model.layer_names().is_empty() {
                return Err(Error::bad_policy(format!(
                    "ONNX model {} exposes no activations: add extra outputs besides 'logits', float32 [N, ...] each named after its layer (docs/onnx.md, \"Activations for probes\")",
                    path.display()
                )));
            }
            let agent = OnnxAgent::new(Arc::new(model));
            Ok(probe_readout(&tb, &agent, &spec.label(), cfg)?)
        }
        _ => {
            // The factory checks the checkpoint against the testbed (name, grid, actions) first.
            let _checked = spec.factory(&tb)?;
            let PolicySpec::Checkpoint(dir) = &spec else {
                unreachable!("scripted policies are refused above")
            };
            let agent = PolicyAgent::load(dir)?;
            Ok(probe(&tb, &agent, &spec.label(), cfg)?)
        }
    }
}

/// Writes `probe.json` and `probe.html` into `dir` (created if missing), atomically.
pub fn write_reports(report: &ProbeReport, dir: &Path) -> Result<()> {
    create_out(dir)?;
    write_atomic(&dir.join("probe.json"), &json_bytes(report)?)?;
    write_atomic(
        &dir.join("probe.html"),
        report::probe::page(report).as_bytes(),
    )
}

/// Which experiments on a planner's maps to run (`mesascope probe --cheese-vector`,
/// `--retarget`), with their settings.
#[derive(Clone, Debug)]
pub struct MapSettings {
    pub cheese_vector: bool,
    pub retarget: bool,
    pub config: MapSteeringConfig,
}

/// The figures of [`run_map_steering`]: each experiment that ran.
#[derive(Clone, Debug, Serialize)]
pub struct MapSteeringReport {
    pub policy: String,
    pub testbed: String,
    pub cheese_vector: Option<CheeseVectorReport>,
    pub retarget: Option<RetargetReport>,
}

/// Mini, Turner et al.'s cheese vector and retargeting on a `planner` checkpoint's maps
/// (`mesascope_learn::probe::maps`).
pub fn run_map_steering(a: &ProbeSettings, m: &MapSettings) -> Result<MapSteeringReport> {
    let spec = PolicySpec::parse(&a.policy)?;
    let dir = match &spec {
        PolicySpec::Checkpoint(dir) => dir.clone(),
        PolicySpec::Onnx(path) => {
            return Err(Error::bad_policy(format!(
                "--cheese-vector and --retarget write into a planner's maps while it plays: {} is an ONNX model, whose activations can be read but not written; give a checkpoint trained with --arch planner",
                path.display()
            )))
        }
        _ => {
            return Err(Error::bad_policy(format!(
                "--cheese-vector and --retarget edit a network's maps: '{}' is a scripted agent, give a checkpoint trained with --arch planner",
                a.policy
            )))
        }
    };
    let tb = testbeds::make(&a.testbed, &Knobs::from_pairs(&a.knobs))?;
    let _checked = spec.factory(&tb)?;
    let agent = PolicyAgent::load(&dir)?;
    Ok(MapSteeringReport {
        policy: spec.label(),
        testbed: a.testbed.clone(),
        cheese_vector: m
            .cheese_vector
            .then(|| cheese_vector(&tb, &agent, &m.config))
            .transpose()?,
        retarget: m
            .retarget
            .then(|| retarget(&tb, &agent, &m.config))
            .transpose()?,
    })
}

/// Writes `steer-maps.json` into `dir` (created if missing), atomically.
pub fn write_map_report(report: &MapSteeringReport, dir: &Path) -> Result<()> {
    create_out(dir)?;
    write_atomic(&dir.join("steer-maps.json"), &json_bytes(report)?)
}
