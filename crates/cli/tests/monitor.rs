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
    assert_eq!(row[3], "100.0%", "alarm before proxy: {out}");
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
        assert_eq!(cells[1], "0.0%", "false alarms: {out}");
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
        "--fallback",
        "/no/such/checkpoint",
    ]);
    assert!(e.contains("/no/such/checkpoint"), "{e}");
}
