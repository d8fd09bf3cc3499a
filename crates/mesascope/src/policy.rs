//! Policies by name: a scripted reference agent (`scripted:<name>[@beta]`), a checkpoint folder
//! written by training, or an ONNX file; each checked against a testbed before any work and
//! turned into fresh [`Agent`]s. (Python callables are audited through the Python package,
//! which builds its own agent.)

use crate::error::{Error, ErrorKind, Result};
use mesascope_core::agents::{reference_agent, reference_agent_names, Agent};
use mesascope_core::{Split, Testbed};
use mesascope_learn::agent::PolicyAgent;
use mesascope_onnx::{OnnxAgent, OnnxPolicy};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Makes fresh instances of a checked policy (one per audit worker).
pub type AgentFactory = Box<dyn Fn() -> mesascope_core::Result<Box<dyn Agent>> + Sync>;

/// A policy named by a string; each variant needs only a way to build an [`Agent`]. (Python
/// callables are audited through the Python package, which builds its own agent.)
#[derive(Clone, Debug, PartialEq)]
pub enum PolicySpec {
    /// `scripted:<name>[@beta]`: a reference agent (`intended`, a proxy, `conditional:<proxy>`,
    /// `random`) with Boltzmann rationality `beta` (default `inf`).
    Scripted { name: String, beta: f32 },
    /// A folder written by `mesascope train` (`model.json` + `model.safetensors`).
    Checkpoint(PathBuf),
    /// An ONNX model file (`*.onnx`) meeting the contract of docs/onnx.md.
    Onnx(PathBuf),
}

const POLICY_FORMS: &str =
    "a checkpoint folder written by mesascope train, an ONNX file (*.onnx), or scripted:<name>[@beta], e.g. scripted:intended or scripted:green@2";

impl PolicySpec {
    /// `scripted:<name>[@beta]`, a checkpoint folder, or an ONNX file (`*.onnx`).
    pub fn parse(s: &str) -> Result<PolicySpec> {
        let Some(rest) = s.strip_prefix("scripted:") else {
            let dir = Path::new(s);
            if dir
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
            {
                if !dir.is_file() {
                    return Err(Error::bad_policy(format!("no such ONNX file '{s}'")));
                }
                return Ok(PolicySpec::Onnx(dir.to_path_buf()));
            }
            if dir.join("model.json").is_file() {
                return Ok(PolicySpec::Checkpoint(dir.to_path_buf()));
            }
            let why = if dir.is_dir() {
                format!("folder '{s}' holds no checkpoint (model.json)")
            } else {
                format!("unknown policy '{s}': no such checkpoint folder")
            };
            return Err(Error::bad_policy(format!(
                "{why} (accepted: {POLICY_FORMS})"
            )));
        };
        let (name, beta) = match rest.rsplit_once('@') {
            Some((n, b)) => {
                let beta: f32 = b.trim().parse().map_err(|_| {
                    Error::bad_policy(format!(
                        "policy '{s}': beta '{b}' is not a number (use inf for a fully rational agent)"
                    ))
                })?;
                if beta.is_nan() || beta < 0.0 {
                    return Err(Error::bad_policy(format!(
                        "policy '{s}': beta must be >= 0, found {b}"
                    )));
                }
                (n, beta)
            }
            None => (rest, f32::INFINITY),
        };
        if name.is_empty() {
            return Err(Error::bad_policy(format!(
                "policy '{s}' names no agent (accepted: {POLICY_FORMS})"
            )));
        }
        Ok(PolicySpec::Scripted {
            name: name.to_string(),
            beta,
        })
    }

    /// How reports name the policy: `scripted:green@2`, or the path.
    pub fn label(&self) -> String {
        match self {
            PolicySpec::Scripted { name, beta } if beta.is_infinite() => format!("scripted:{name}"),
            PolicySpec::Scripted { name, beta } => format!("scripted:{name}@{beta}"),
            PolicySpec::Checkpoint(dir) | PolicySpec::Onnx(dir) => dir.display().to_string(),
        }
    }

    /// Checks the policy against the testbed and returns a factory of fresh instances.
    pub fn factory(&self, tb: &Arc<dyn Testbed>) -> Result<AgentFactory> {
        match self {
            PolicySpec::Scripted { name, beta } => {
                if let Err(e) = reference_agent(tb.as_ref(), name, *beta) {
                    return Err(Error::bad_policy(format!(
                        "{e}; as a policy: scripted:<one of {}>",
                        reference_agent_names(tb.as_ref()).join(", ")
                    )));
                }
                let (tb, name, beta) = (tb.clone(), name.clone(), *beta);
                Ok(Box::new(move || reference_agent(tb.as_ref(), &name, beta)))
            }
            PolicySpec::Checkpoint(dir) => {
                // Checked once against the testbed's level shape; each audit worker then gets a
                // copy of the loaded network.
                let shape = mesascope_core::env::generate_level(tb.as_ref(), Split::Train, 0).grid;
                let agent = load_checkpoint(tb.as_ref(), dir, shape.height, shape.width)?;
                let template = Mutex::new(agent);
                Ok(Box::new(move || {
                    let agent = template
                        .lock()
                        .map_err(|_| mesascope_core::Error::Policy("policy copy failed".into()))?
                        .clone();
                    Ok(Box::new(agent) as Box<dyn Agent>)
                }))
            }
            PolicySpec::Onnx(path) => {
                // Loaded and checked once; every audit worker shares the optimized model.
                let policy = Arc::new(load_onnx(tb.as_ref(), path)?);
                Ok(Box::new(move || {
                    Ok(Box::new(OnnxAgent::new(policy.clone())) as Box<dyn Agent>)
                }))
            }
        }
    }
}

impl PolicySpec {
    /// A network policy (checkpoint or ONNX file) checked against `tb` and levels of
    /// `height` x `width`, as an agent; a scripted one as its reference agent.
    pub fn agent_for(
        &self,
        tb: &Arc<dyn Testbed>,
        height: usize,
        width: usize,
    ) -> Result<Box<dyn Agent>> {
        Ok(match self {
            PolicySpec::Scripted { name, beta } => reference_agent(tb.as_ref(), name, *beta)?,
            PolicySpec::Checkpoint(dir) => {
                Box::new(load_checkpoint(tb.as_ref(), dir, height, width)?)
            }
            PolicySpec::Onnx(path) => Box::new(OnnxAgent::new(Arc::new(load_onnx_at(
                tb.as_ref(),
                path,
                height,
                width,
            )?))),
        })
    }
}

/// A loader's bad-input errors are the policy file's problems (corrupt, of another testbed or
/// shape): a bad policy.
fn bad_policy(e: impl Into<Error>) -> Error {
    let e = e.into();
    if e.kind().is_bad_input() {
        e.with_kind(ErrorKind::BadPolicy)
    } else {
        e
    }
}

fn load_checkpoint(
    tb: &dyn Testbed,
    dir: &Path,
    height: usize,
    width: usize,
) -> Result<PolicyAgent> {
    PolicyAgent::load_for(dir, tb, height, width)
        .map_err(|e| bad_policy(e).context(format!("policy {}", dir.display())))
}

fn load_onnx_at(tb: &dyn Testbed, path: &Path, height: usize, width: usize) -> Result<OnnxPolicy> {
    OnnxPolicy::load(path, tb, height, width).map_err(bad_policy)
}

/// ONNX model `path`, checked against `tb` and its level shape.
pub fn load_onnx(tb: &dyn Testbed, path: &Path) -> Result<OnnxPolicy> {
    let g = mesascope_core::env::generate_level(tb, Split::Train, 0).grid;
    load_onnx_at(tb, path, g.height, g.width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_specs_parse() {
        assert_eq!(
            PolicySpec::parse("scripted:green@2").unwrap(),
            PolicySpec::Scripted {
                name: "green".into(),
                beta: 2.0
            }
        );
        let s = PolicySpec::parse("scripted:conditional:gold").unwrap();
        assert_eq!(s.label(), "scripted:conditional:gold");
        for bad in [
            "green",
            "scripted:",
            "scripted:x@-1",
            "scripted:x@fast",
            "onnx:x",
        ] {
            assert!(PolicySpec::parse(bad).is_err(), "{bad}");
        }
    }
}
