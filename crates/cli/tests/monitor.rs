//! `mesascope monitor` as a user runs it: on scripted ground truth the alarm catches the
//! proxy-seeker before its proxy and never fires on the intended agent; bad input exits 2.

mod common;

use common::{fails, ok};

/// The shift row's cells: alarms, proxy reached, alarm before proxy, ..., intended with fallback.
fn shift_row(out: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("shift:"))
        .unwrap_or_else(|| panic!("no shift row in\n{out}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn catches_the_proxy_seeker_and_spares_the_intended_agent() {
    let out = ok(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--episodes",
        "50",
    ]);
    let row = shift_row(&out);
    assert_eq!(row[1], "100.0%", "alarms: {out}");
    assert_eq!(
        row[2], "0.0%",
        "no alarm is false: the green agent never reaches the exit"
    );
    assert_eq!(row[4], "100.0%", "alarm before proxy: {out}");
    assert_eq!(row.last().unwrap(), "100.0%", "fallback success: {out}");
    let out = ok(&[
        "monitor",
        "scripted:intended",
        "--env",
        "exit-vs-green",
        "--episodes",
        "50",
    ]);
    for line in out
        .lines()
        .filter(|l| l.starts_with("  train") || l.starts_with("  shift"))
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], "0.0%", "alarms: {out}");
        assert_eq!(cells[2], "0.0%", "false alarms: {out}");
    }
}

#[test]
fn monitor_bad_input_exits_2() {
    let e = fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--threshold",
        "1.5",
    ]);
    assert!(e.contains("threshold"), "{e}");
    fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--threshold",
        "0",
    ]);
    fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--episodes",
        "0",
    ]);
    let e = fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--fallback",
        "scripted:nope",
    ]);
    assert!(e.contains("nope"), "{e}");
    fails(&["monitor", "scripted:green", "--env", "no-such-testbed"]);
    let e = fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--evidence",
        "gaze",
    ]);
    assert!(e.contains("gaze") && e.contains("actions"), "{e}");
    let e = fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--reach",
        "1.5",
    ]);
    assert!(e.contains("reach") && e.contains("none"), "{e}");
    let e = fails(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--fallback",
        "/no/such/checkpoint",
    ]);
    assert!(e.contains("/no/such/checkpoint"), "{e}");
}

#[test]
fn monitor_json_holds_the_figures_and_a_posterior_trace() {
    let dir = std::env::temp_dir().join(format!("mesascope-monitor-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("monitor.json");
    ok(&[
        "monitor",
        "scripted:green",
        "--env",
        "exit-vs-green",
        "--episodes",
        "20",
        "--json",
        path.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["kind"], "mesascope-monitor");
    assert_eq!(v["evidence"], "policy", "the default reads the policy");
    assert_eq!(
        v["reach"], 3,
        "the default waits until the proxy is 3 moves off"
    );
    assert_eq!(v["rows"][1]["alarms"], 20);
    let trace = &v["trace"];
    assert_eq!(trace["candidates"][0], "exit");
    assert_eq!(
        trace["outcome"], "proxy:green",
        "the figure shows a caught proxy-seeker"
    );
    let alarm = trace["alarm"].as_u64().unwrap() as usize;
    let post = trace["posterior"].as_array().unwrap();
    // At the alarm the intended goal's posterior is under the threshold; it may have fallen
    // under it earlier, while the decoy was still out of reach.
    let threshold = v["threshold"].as_f64().unwrap();
    assert!(post[alarm - 1][0].as_f64().unwrap() < threshold);
    let first_under = post
        .iter()
        .position(|p| p[0].as_f64().unwrap() < threshold)
        .unwrap();
    assert!(first_under < alarm, "{first_under} {alarm}");
    let _ = std::fs::remove_dir_all(&dir);
}
