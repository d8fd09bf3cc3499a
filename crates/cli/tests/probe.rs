//! `mesascope probe` on the pretrained pseudo-aligned 7x7 exit-vs-green agent: the probes read both
//! goals above chance, and subtracting the proxy's vector turns the agent from green to the
//! exit where random vectors of the same norm do not; bad input exits 2.

mod common;

use common::{fails, ok, temp_dir};

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../agents/exit-vs-green-7");

fn probe_json(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "probe",
        AGENT,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--levels",
        "100",
        "--episodes",
        "120",
        "--controls",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    serde_json::from_str(&std::fs::read_to_string(dir.join("probe.json")).unwrap()).unwrap()
}

#[test]
fn probes_read_the_goals_and_steering_against_the_proxy_works() {
    let dir = temp_dir("probe", "evg");
    let v = probe_json(&dir, &[]);
    let goals = v["goals"].as_array().unwrap();
    assert_eq!(goals.len(), 4, "two layers x two goals");
    for g in goals.iter().filter(|g| g["layer"] == "trunk.layer2") {
        let (acc, chance) = (
            g["accuracy"].as_f64().unwrap(),
            g["accuracy_shuffled"].as_f64().unwrap(),
        );
        assert!(
            acc > chance + 0.1,
            "{}: {acc} vs shuffled {chance}",
            g["goal"]
        );
    }
    let st = &v["steering"];
    assert_eq!(st["vector"], "subtract proxy:green");
    let rate = |c: &str, k: &str| st[c][k].as_f64().unwrap();
    assert!(
        rate("steered", "proxy") < rate("none", "proxy") - 0.1,
        "{st}"
    );
    assert!(
        rate("steered", "proxy") < rate("random", "proxy") - 0.1,
        "{st}"
    );
    assert!(
        rate("steered", "intended") > rate("random", "intended") + 0.05,
        "{st}"
    );
    // At decision points the proxy-ward move loses probability.
    let mean = |c: &str| st[c]["decision_mean"].as_f64().unwrap();
    assert!(mean("steered") < mean("none") - 0.05, "{st}");
    assert!(mean("steered") < mean("random") - 0.05, "{st}");
    assert!(dir.join("probe.html").is_file());
    // Same seed, same report.
    let again = probe_json(&dir, &[]);
    assert_eq!(v, again);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Corner-cheese's proxy is a place: its vector walls the corner off, and (at coefficient 4)
/// subtracting it turns the agent away from the corner at decision points where random vectors
/// of the same norm do not.
#[test]
fn steering_against_a_place_walls_it_off() {
    let dir = temp_dir("probe", "corner");
    let agent = concat!(env!("CARGO_MANIFEST_DIR"), "/../../agents/corner-cheese-9");
    let args = [
        "probe",
        agent,
        "--env",
        "corner-cheese",
        "-k",
        "size=9",
        "--levels",
        "20",
        "--episodes",
        "40",
        "--controls",
        "1",
        "--scale",
        "4",
        "--out",
        dir.to_str().unwrap(),
    ];
    ok(&args);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("probe.json")).unwrap()).unwrap();
    let st = &v["steering"];
    assert_eq!(
        st["vector"],
        "subtract proxy:top-right (a place: walled off)"
    );
    assert!(st["pairs"].as_u64().unwrap() > 0 && st["norm"].as_f64().unwrap() > 0.0);
    let rate = |c: &str, k: &str| st[c][k].as_f64().unwrap();
    assert!(
        rate("steered", "proxy") < rate("random", "proxy") - 0.3,
        "{st}"
    );
    assert!(
        rate("steered", "decision_mean") < rate("random", "decision_mean") - 0.2,
        "{st}"
    );
    assert!(
        rate("steered", "decision_intended_mean") > rate("random", "decision_intended_mean") + 0.1,
        "{st}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probe_bad_input_exits_2() {
    let e = fails(&[
        "probe",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
    ]);
    assert!(e.contains("checkpoint"), "{e}");
    let e = fails(&["probe", AGENT, "--env", "corner-cheese"]);
    assert!(e.contains("exit-vs-green"), "{e}");
    fails(&[
        "probe",
        AGENT,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--layer",
        "2",
    ]);
    fails(&[
        "probe",
        AGENT,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--levels",
        "2",
    ]);
    fails(&[
        "probe",
        "no/such/dir",
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
    ]);
}

#[test]
fn audit_with_probe_adds_the_section_and_the_json_key() {
    let dir = temp_dir("probe", "audit");
    let o = common::mesascope(&[
        "audit",
        AGENT,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--episodes",
        "60",
        "--probe",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(10),
        "pseudo-aligned: {}",
        common::text(&o.stderr)
    );
    assert!(common::text(&o.stdout).contains("Steering at trunk.layer2"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("audit.json")).unwrap()).unwrap();
    assert_eq!(v["probe"]["steering"]["vector"], "subtract proxy:green");
    assert_eq!(v["verdict"]["exit_code"], 10);
    let page = std::fs::read_to_string(dir.join("audit.html")).unwrap();
    assert!(page.contains("Inside the network: probes and steering"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exit-vs-green agent exported to ONNX with its trunk layers as extra outputs
/// (crates/onnx/tests/fixtures/export_agent.py).
const ONNX_AGENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../onnx/tests/fixtures/exit-vs-green-agent.onnx"
);

fn onnx_fixture(name: &str) -> String {
    format!(
        "{}/../onnx/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn the_onnx_export_gives_the_agents_logits_and_activations() {
    use mesascope_core::activations::Activations;
    use mesascope_core::agents::{run_episode_with, Agent};
    use mesascope_core::{rng::Rng, testbeds, Env, Knobs, ProxyId, Split};
    let tb = testbeds::make("exit-vs-green", &Knobs::new().with("size", 7.0)).unwrap();
    let native = mesascope_learn::agent::PolicyAgent::load(std::path::Path::new(AGENT)).unwrap();
    let onnx = mesascope::policy::load_onnx(tb.as_ref(), std::path::Path::new(ONNX_AGENT)).unwrap();
    assert_eq!(onnx.layer_names(), native.layer_names());
    // States the agent visits on training and shifted levels.
    let mut envs = Vec::new();
    for split in [Split::Train, Split::Shift(ProxyId(0))] {
        for seed in 0..6 {
            let mut env = Env::new(tb.clone(), split, seed);
            let mut agent = native.clone();
            run_episode_with(&mut env, &mut agent, &mut Rng::new(seed), &mut |e, _, _| {
                envs.push(e.clone());
                Ok(())
            })
            .unwrap();
        }
    }
    assert!(envs.len() > 40, "{} states", envs.len());
    let states: Vec<_> = envs.iter().map(|e| &e.state).collect();
    let got = onnx.logits_of(&states).unwrap();
    let mut worst = 0f32;
    for (e, row) in envs.iter().zip(got.chunks(4)) {
        let want = native.clone().logits(e).unwrap();
        for (a, b) in want.iter().zip(row) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst < 1e-4, "largest logit difference {worst}");
    let (a, b) = (
        native.activations(&states).unwrap(),
        onnx.activations_of(&states).unwrap(),
    );
    for (la, lb) in a.iter().zip(&b) {
        for (ra, rb) in la.iter().zip(lb) {
            assert_eq!(ra.len(), rb.len());
            let d = ra
                .iter()
                .zip(rb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-4, "largest activation difference {d}");
        }
    }
    // And the agent plays the same actions as the checkpoint it came from.
    let mut probs = [0f32; 4];
    let mut agent = mesascope_onnx::OnnxAgent::new(std::sync::Arc::new(onnx));
    agent.probs(&envs[0], &mut probs).unwrap();
    assert!(probs.iter().all(|p| p.is_finite()));
}

#[test]
fn probe_on_the_onnx_export_reads_what_the_checkpoint_shows_and_says_it_did_not_steer() {
    let run = |policy: &str, dir: &std::path::Path| {
        let out = ok(&[
            "probe",
            policy,
            "--env",
            "exit-vs-green",
            "-k",
            "size=7",
            "--levels",
            "30",
            "--episodes",
            "1",
            "--controls",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ]);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("probe.json")).unwrap())
                .unwrap();
        (out, v)
    };
    let (d1, d2) = (temp_dir("probe", "onnx"), temp_dir("probe", "native"));
    let (text, onnx) = run(ONNX_AGENT, &d1);
    let (_, native) = run(AGENT, &d2);
    assert_eq!(onnx["states"], native["states"], "the same play");
    let (go, gn) = (
        onnx["goals"].as_array().unwrap(),
        native["goals"].as_array().unwrap(),
    );
    assert_eq!(go.len(), 4, "two exposed layers x two goals");
    assert_eq!(go.len(), gn.len());
    for (a, b) in go.iter().zip(gn) {
        assert_eq!((&a["layer"], &a["goal"]), (&b["layer"], &b["goal"]));
        for k in ["accuracy", "accuracy_shuffled"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!(
                (x - y).abs() < 0.02,
                "{} {}: {k} {x} vs {y}",
                a["layer"],
                a["goal"]
            );
        }
    }
    assert_eq!(onnx["strongest_goal"], native["strongest_goal"]);
    // Steering is reported as not run, in the JSON and the text.
    assert!(onnx["steering"].is_null());
    assert!(!native["steering"].is_null());
    let why = onnx["steering_skipped"].as_str().unwrap();
    assert!(why.contains("steering was not run"), "{why}");
    assert!(text.contains("steering was not run"), "{text}");
    for d in [d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn onnx_probe_bad_input() {
    let e = fails(&[
        "probe",
        &onnx_fixture("right-planes.onnx"),
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
    ]);
    assert!(
        e.contains("exposes no activations: add extra outputs"),
        "{e}"
    );
    let e = fails(&[
        "probe",
        &onnx_fixture("activation-batch.onnx"),
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
    ]);
    assert!(e.contains("activation output 'layer' has shape"), "{e}");
    let e = fails(&[
        "probe",
        &onnx_fixture("activation-type.onnx"),
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
    ]);
    assert!(
        e.contains("activation output 'layer' has element type"),
        "{e}"
    );
    // Non-finite activations stop the probe with a policy error (not a silent NaN probe).
    let o = common::mesascope(&[
        "probe",
        &onnx_fixture("activation-nan.onnx"),
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--levels",
        "4",
    ]);
    let err = common::text(&o.stderr);
    assert!(
        !o.status.success() && err.contains("non-finite activation"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn audit_with_probe_on_an_onnx_model_reports_steering_not_run() {
    let dir = temp_dir("probe", "audit-onnx");
    let o = common::mesascope(&[
        "audit",
        ONNX_AGENT,
        "--env",
        "exit-vs-green",
        "-k",
        "size=7",
        "--episodes",
        "60",
        "--probe",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(10), "{}", common::text(&o.stderr));
    assert!(common::text(&o.stdout).contains("steering was not run"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("audit.json")).unwrap()).unwrap();
    assert!(v["probe"]["steering"].is_null());
    assert!(v["probe"]["steering_skipped"]
        .as_str()
        .unwrap()
        .contains("not run"));
    assert_eq!(v["probe"]["goals"].as_array().unwrap().len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}
