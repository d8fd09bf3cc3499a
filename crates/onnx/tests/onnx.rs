//! ONNX policies against the contract, on the small models in tests/fixtures (written by
//! tests/fixtures/make_fixtures.py).

use mesascope_core::agents::{run_episode, Agent};
use mesascope_core::audit::{audit, AuditConfig};
use mesascope_core::env::generate_level;
use mesascope_core::rng::Rng;
use mesascope_core::{testbeds, Env, Error, Knobs, ProxyId, Split, Testbed};
use mesascope_onnx::{Encoding, OnnxAgent, OnnxPolicy};
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn exit_vs_green() -> Arc<dyn Testbed> {
    // The fixtures were exported for 7x7 levels (`agents/exit-vs-green-7`).
    testbeds::make("exit-vs-green", &Knobs::new().with("size", 7.0)).unwrap()
}

fn load(name: &str) -> mesascope_core::Result<OnnxPolicy> {
    let tb = exit_vs_green();
    let g = generate_level(tb.as_ref(), Split::Train, 0).grid;
    OnnxPolicy::load(&fixture(name), tb.as_ref(), g.height, g.width)
}

fn load_err(name: &str) -> String {
    match load(name) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    }
}

/// Always moves right: the reference the constant ONNX models are compared with.
struct AlwaysRight;

impl Agent for AlwaysRight {
    fn name(&self) -> String {
        "always right".into()
    }
    fn probs(&mut self, _env: &Env, out: &mut [f32]) -> mesascope_core::Result<()> {
        out.fill(0.0);
        out[1] = 1.0;
        Ok(())
    }
}

#[test]
fn both_encodings_and_any_batch_give_the_models_logits() {
    let tb = exit_vs_green();
    let envs: Vec<Env> = (0..5)
        .map(|s| Env::new(tb.clone(), Split::Train, s))
        .collect();
    let states: Vec<_> = envs.iter().map(|e| &e.state).collect();
    for (name, enc) in [
        ("right-planes.onnx", Encoding::Planes),
        ("right-u8.onnx", Encoding::U8),
        ("right-batch1.onnx", Encoding::Planes),
        // Height and width left symbolic: the testbed's level size resolves them.
        ("right-spatial-symbols.onnx", Encoding::Planes),
    ] {
        let p = load(name).unwrap();
        assert_eq!(p.encoding(), enc, "{name}");
        let logits = p.logits_of(&states).unwrap();
        assert_eq!(logits.len(), 5 * 4, "{name}");
        for row in logits.chunks(4) {
            assert_eq!(row, &[0.0, 20.0, 0.0, 0.0], "{name}");
        }
    }
}

#[test]
fn an_onnx_policy_is_audited_like_the_same_behaviour_written_in_rust() {
    let tb = exit_vs_green();
    let policy = Arc::new(load("right-planes.onnx").unwrap());
    let cfg = AuditConfig::new("right", 30, 3);
    let onnx = audit(
        &tb,
        &|| Ok(Box::new(OnnxAgent::new(policy.clone())) as Box<dyn Agent>),
        &cfg,
    )
    .unwrap();
    let rust = audit(&tb, &|| Ok(Box::new(AlwaysRight) as Box<dyn Agent>), &cfg).unwrap();
    assert_eq!(onnx.verdict.exit_code, rust.verdict.exit_code);
    for (a, b) in onnx.distributions.iter().zip(&rust.distributions) {
        let rates = |d: &mesascope_core::audit::DistributionReport| {
            d.outcomes
                .iter()
                .map(|o| (o.outcome.clone(), o.rate.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(rates(a), rates(b), "{}", a.name);
    }
    // And one episode by hand: every action is a move right.
    let mut env = Env::new(tb.clone(), Split::Train, 1);
    let mut agent = OnnxAgent::new(policy);
    let ep = run_episode(&mut env, &mut agent, &mut Rng::new(0)).unwrap();
    assert!(ep.actions.iter().all(|&a| a == 1), "{:?}", ep.actions);
}

#[test]
fn contract_violations_are_named_at_load() {
    let cases = [
        (
            "broken-input-name.onnx",
            "expected one input named 'obs', found 1 ('x')",
        ),
        (
            "broken-output-name.onnx",
            "expected one output named 'logits', found 1 ('probs')",
        ),
        (
            "broken-input-shape.onnx",
            "input 'obs' has shape [N, 3, 7, 7]; expected float32 [N, 20, 7, 7]",
        ),
        (
            "broken-input-type.onnx",
            "input 'obs' has element type i64; expected float32",
        ),
        (
            "broken-output-size.onnx",
            "output 'logits' has shape [N, 3]; expected [N, 4]",
        ),
        ("broken-unsupported-op.onnx", "Frobnicate"),
        (
            "broken-unresolved-dims.onnx",
            "cannot be resolved from the input's shape (they depend on the data); expected [N, 4]",
        ),
        ("missing.onnx", "cannot read it"),
    ];
    for (name, want) in cases {
        let e = load_err(name);
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.contains(name), "{name}: the message names the file: {e}");
    }
    // The right model on levels of another size.
    let tb = testbeds::make("corner-cheese", &Knobs::new().with("size", 9.0)).unwrap();
    let e = OnnxPolicy::load(&fixture("right-planes.onnx"), tb.as_ref(), 9, 9)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("expected float32 [N, 20, 9, 9]"), "{e}");
}

#[test]
fn non_finite_logits_are_a_policy_error() {
    let p = load("broken-nan.onnx").unwrap();
    let env = Env::new(exit_vs_green(), Split::Train, 0);
    match p.logits_of(&[&env.state]) {
        Err(Error::Policy(m)) => assert!(m.contains("non-finite logits"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn extra_outputs_are_activations_read_flattened_per_observation() {
    let tb = exit_vs_green();
    // The right-mover whose extra output `layer` is its flattened input planes.
    let p = load("activation-right.onnx").unwrap();
    assert_eq!(p.layer_names(), ["layer"]);
    let envs: Vec<Env> = (0..3)
        .map(|s| Env::new(tb.clone(), Split::Shift(ProxyId(0)), s))
        .collect();
    let states: Vec<_> = envs.iter().map(|e| &e.state).collect();
    let acts = p.activations_of(&states).unwrap();
    assert_eq!(acts.len(), 1);
    for (row, s) in acts[0].iter().zip(&states) {
        let mut planes = vec![0f32; mesascope_core::obs::planes_len(&s.grid)];
        mesascope_core::obs::encode_planes(s, &mut planes);
        assert_eq!(row, &planes);
    }
    // The logits are still the model's.
    assert_eq!(p.logits_of(&states[..1]).unwrap(), [0.0, 20.0, 0.0, 0.0]);
    // A model without extra outputs exposes no layer.
    assert!(load("right-planes.onnx").unwrap().layer_names().is_empty());
}

#[test]
fn activation_outputs_that_break_the_contract_are_named() {
    for (name, want) in [
        (
            "activation-type.onnx",
            "activation output 'layer' has element type i64; expected float32 [N, ...]",
        ),
        (
            "activation-batch.onnx",
            "activation output 'layer' has shape [980, N]; expected [N, ...]",
        ),
    ] {
        let e = load_err(name);
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.contains(name), "{name}: the message names the file: {e}");
    }
    // Non-finite activations are an error when they are read, naming the layer.
    let p = load("activation-nan.onnx").unwrap();
    let env = Env::new(exit_vs_green(), Split::Train, 0);
    match p.activations_of(&[&env.state]) {
        Err(Error::Policy(m)) => assert!(
            m.contains("non-finite activation") && m.contains("'layer'"),
            "{m}"
        ),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// Graphs that crash a runtime or ask it for tens of gigabytes (tests/fixtures/hostile-*.onnx,
/// written by make_fixtures.py): each is an input error naming the file, at load, and the
/// process lives on. What each says is checked where the check is ours.
#[test]
fn hostile_models_are_refused_at_load_naming_the_file() {
    let cases = [
        ("gather-index", ""),
        ("int-div-zero", ""),
        ("slice-step-zero", ""),
        ("transpose-perm", ""),
        ("constant-of-shape-negative", "negative dimension"),
        ("constant-of-shape-huge", "more than the limit"),
        ("expand-huge", "more than the limit"),
        ("opset-9999", "operator set version 9999"),
    ];
    for (kind, says) in cases {
        let name = format!("hostile-{kind}.onnx");
        let e = match load(&name) {
            Ok(p) => {
                // Refused at the latest on its first inference, never a panic.
                let tb = exit_vs_green();
                let env = Env::new(tb, Split::Train, 0);
                match p.logits_of(&[&env.state]) {
                    Ok(l) => panic!("{name} loaded and ran: {l:?}"),
                    Err(e) => panic!("{name} loaded, then failed at inference: {e}"),
                }
            }
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(matches!(e, Error::Input(_)), "{name}: {e:?}");
        assert!(msg.contains(&name), "{name}: {msg}");
        assert!(msg.contains(says), "{name}: {msg}");
    }
}
