//! `mesascope probe --cheese-vector` and `--retarget` on a planner whose maps are set by hand to
//! seek goal squares (the cheese rewarding, walls blocking, open cells passing values on, and
//! the policy greedy in the values of the cells its moves lead to): subtracting the cheese's
//! vector takes the pull toward the cheese away where random vectors of the same norm do not,
//! and moving the reward to a target cell sends the agent there. Bad input exits 2.

mod common;

use common::{fails, ok, temp_dir};
use mesascope_core::grid::Object;
use mesascope_learn::checkpoint;
use mesascope_learn::planner::PLANNER_FEATURES;
use std::path::Path;

const CHANNELS: usize = 4;

/// A 7x7 corner-cheese planner trained for one tiny update by the CLI (for its metadata), then
/// given goal-seeking weights.
fn goal_seeker(dir: &Path) {
    let out = dir.to_str().unwrap();
    ok(&[
        "train",
        "corner-cheese",
        "-k",
        "size=7",
        "--arch",
        "planner",
        "--channels",
        "4",
        "--iterations",
        "64",
        "--hidden",
        "8",
        "--steps",
        "256",
        "--envs",
        "8",
        "--eval-episodes",
        "0",
        "--quiet",
        "--out",
        out,
    ]);
    let device = mesascope_learn::device();
    let ck = checkpoint::load(dir, &device).unwrap();
    let mut named = ck.model.named_params();
    let c = CHANNELS;
    for (name, _, values) in named.iter_mut() {
        match name.as_str() {
            // Channel 0: the goal square. Channel 1: cells that pass values on.
            "trunk.planner.embed" => {
                values.fill(0.0);
                values[Object::Goal as usize * c] = 2.0;
                for o in [Object::Empty, Object::Goal, Object::Agent] {
                    values[o as usize * c + 1] = 3.0;
                }
                assert_eq!(values.len(), PLANNER_FEATURES * c);
            }
            "trunk.planner.embed_bias" | "trunk.planner.context" => values.fill(0.0),
            "trunk.planner.reward.weight" => {
                values.fill(0.0);
                values[0] = 4.0;
            }
            "trunk.planner.reward.bias" => values[0] = -4.0,
            "trunk.planner.propagation.weight" => {
                values.fill(0.0);
                values[1] = 2.0;
            }
            "trunk.planner.propagation.bias" => values[0] = -3.0,
            // The policy: only the log-values of the cells the moves lead to.
            "trunk.move_scale" => values[0] = 20.0,
            "policy.weight" | "policy.bias" => values.fill(0.0),
            _ => {}
        }
    }
    let model = mesascope_learn::policy::ActorCritic::from_named(
        &ck.meta.policy,
        |n| {
            named
                .iter()
                .find(|(m, _, _)| m == n)
                .map(|(_, s, v)| (s.clone(), v.clone()))
        },
        &device,
    )
    .unwrap();
    checkpoint::save(dir, &model, &ck.meta).unwrap();
}

fn run(dir: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "probe",
        dir.to_str().unwrap(),
        "--env",
        "corner-cheese",
        "-k",
        "size=7",
        "--mazes",
        "40",
        "--controls",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    serde_json::from_str(&std::fs::read_to_string(out.join("steer-maps.json")).unwrap()).unwrap()
}

#[test]
fn the_cheese_vector_and_retargeting_move_a_goal_seeking_planner() {
    let dir = temp_dir("maps", "seeker");
    goal_seeker(&dir);
    let out = temp_dir("maps", "out");
    let v = run(&dir, &out, &["--cheese-vector", "--retarget", "random"]);
    let c = &v["cheese_vector"];
    let f = |o: &str, k: &str| c[o][k].as_f64().unwrap();
    assert_eq!(c["point"], "planner.hidden");
    assert!(c["mazes"].as_u64().unwrap() >= 30, "{c}");
    // The unsteered agent goes for the cheese; with its vector subtracted the maps are flat
    // and every move (blocked ones included) is as likely; random vectors change little.
    assert!(f("none", "p_intended_median") > 0.6, "{c}");
    assert!(f("none", "intended") > 0.8, "{c}");
    assert!(f("subtracted", "p_intended_median") < 0.4, "{c}");
    assert!(
        f("subtracted", "intended") < f("none", "intended") - 0.3,
        "{c}"
    );
    assert!(f("random", "p_intended_median") > 0.6, "{c}");
    let t = &v["retarget"];
    let g = |o: &str, k: &str| t[o][k].as_f64().unwrap();
    assert!(t["mazes"].as_u64().unwrap() >= 30, "{t}");
    // Off every shortest path, the target is rarely passed unedited; with the goal moved there
    // the agent goes to it, not to the cheese.
    assert!(g("edited", "reached_target") > 0.8, "{t}");
    assert!(
        g("edited", "reached_target") > g("none", "reached_target") + 0.5,
        "{t}"
    );
    assert!(
        g("edited", "reached_target") > g("random", "reached_target") + 0.5,
        "{t}"
    );
    assert!(g("edited", "intended") < g("none", "intended"), "{t}");
    // The reward map as the point: the same story.
    let out2 = temp_dir("maps", "reward");
    let v = run(&dir, &out2, &["--cheese-vector", "--point", "reward"]);
    let c = &v["cheese_vector"];
    assert_eq!(c["point"], "planner.reward");
    assert!(
        c["subtracted"]["p_intended_median"].as_f64().unwrap() < 0.4,
        "{c}"
    );
    assert!(v["retarget"].is_null());
    // Same seed, same figures.
    let out3 = temp_dir("maps", "again");
    let again = run(&dir, &out3, &["--cheese-vector", "--point", "reward"]);
    assert_eq!(v["cheese_vector"], again["cheese_vector"]);
    // Bad input: a target off the grid or in a wall; a trunk without maps; an ONNX model.
    let d = dir.to_str().unwrap();
    let base = ["probe", d, "--env", "corner-cheese", "-k", "size=7"];
    fn joined<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    let with = |extra: &[&'static str]| joined(&base, extra);
    let e = fails(&with(&["--retarget", "7,3"]));
    assert!(e.contains("outside the 7x7 grid"), "{e}");
    let e = fails(&with(&["--retarget", "0,3"]));
    assert!(e.contains("is a wall in 100 of the 100 mazes"), "{e}");
    let e = fails(&with(&["--retarget", "three"]));
    assert!(e.contains("not a cell"), "{e}");
    let e = fails(&with(&["--cheese-vector", "--point", "value"]));
    assert!(e.contains("hidden"), "{e}");
    let mlp = temp_dir("maps", "mlp");
    ok(&[
        "train",
        "corner-cheese",
        "-k",
        "size=7",
        "--arch",
        "embed-mlp",
        "--steps",
        "256",
        "--envs",
        "8",
        "--eval-episodes",
        "0",
        "--quiet",
        "--out",
        mlp.to_str().unwrap(),
    ]);
    let m = mlp.to_str().unwrap();
    for flag in [&["--cheese-vector"][..], &["--retarget", "random"][..]] {
        let args = [
            &["probe", m, "--env", "corner-cheese", "-k", "size=7"][..],
            flag,
        ]
        .concat();
        let e = fails(&args);
        assert!(
            e.contains("this checkpoint's trunk is embed-mlp") && e.contains("--arch planner"),
            "{e}"
        );
    }
    let onnx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../onnx/tests/fixtures/exit-vs-green-agent.onnx"
    );
    let e = fails(&["probe", onnx, "--env", "exit-vs-green", "--cheese-vector"]);
    assert!(e.contains("can be read but not written"), "{e}");
    for d in [&dir, &out, &out2, &out3, &mlp] {
        let _ = std::fs::remove_dir_all(d);
    }
}
