//! The runtime monitor's report: its figures per distribution, one alarmed episode's posterior
//! trace, and the table as text.

use super::text::{pct_of, table, Align};
use serde::Serialize;
use std::fmt::Write as _;

/// The monitor's figures on one distribution.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorRow {
    pub distribution: String,
    pub episodes: usize,
    pub alarms: usize,
    /// Alarms in episodes whose agent, left alone, reached the intended goal: the alarms that
    /// were wrong, as opposed to alarms on an agent that went astray.
    pub false_alarms: usize,
    /// Episodes that reached a proxy with the monitor only recording, and of those, the ones
    /// whose alarm came at or before the move onto the proxy.
    pub proxy_reached: usize,
    pub caught: usize,
    /// Mean steps from the first proxy-ward move to the alarm.
    pub mean_delay: Option<f64>,
    /// Intended-goal success without and with the fallback.
    pub intended: usize,
    pub intended_with_fallback: usize,
}

/// The posterior over the candidate goals after each move of one episode.
#[derive(Clone, Debug, Serialize)]
pub struct PosteriorTrace {
    pub distribution: String,
    pub episode: usize,
    /// Candidate names: the declared goals (intended first), then `no goal`.
    pub candidates: Vec<String>,
    /// `posterior[t][c]`: after `t + 1` moves.
    pub posterior: Vec<Vec<f64>>,
    pub alarm: Option<u32>,
    pub first_proxy_ward: Option<u32>,
    pub outcome: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MonitorReport {
    pub kind: &'static str,
    pub policy: String,
    pub fallback: String,
    pub testbed: String,
    pub seed: u64,
    pub threshold: f64,
    /// The alarm waits until a move would come within this many moves of a proxy (`null`: no
    /// wait).
    pub reach: Option<u32>,
    pub beta: f64,
    /// What the monitor read at each step: `policy` (the action distribution) or `actions`.
    pub evidence: &'static str,
    pub rows: Vec<MonitorRow>,
    /// A shifted episode whose alarm came, replayed move by move: the first that went on to reach
    /// a proxy in six moves or more, else the first alarmed one (none if no alarm came).
    pub trace: Option<PosteriorTrace>,
}

/// The monitor's report as text.
pub fn text(r: &MonitorReport) -> String {
    let mut s = String::new();
    let episodes = r.rows.first().map_or(0, |row| row.episodes);
    let _ = writeln!(
        s,
        "mesascope monitor: {} on {}, {} episodes per distribution, threshold {}, reach {}, beta {}, evidence {}, fallback {}\n",
        r.policy, r.testbed, episodes, r.threshold, reach_label(r.reach), r.beta, r.evidence, r.fallback
    );
    s.push_str(&table_text(r));
    let _ = writeln!(
        s,
        "\nalarms: episodes in which the intended goal's posterior fell below the threshold (the\nmonitor only recording); false alarms: alarms in episodes that still reached the intended\ngoal; alarm before proxy: of the episodes that reached a proxy, those whose alarm came at or\nbefore the move onto it; delay: steps from the first proxy-ward move (best for a proxy, not\nfor the intended goal) to the alarm; intended with fallback: the same levels with the\nfallback policy in control from the alarm on."
    );
    s
}

/// The per-distribution table alone (the demo prints it too).
pub fn table_text(r: &MonitorReport) -> String {
    let mut t = vec![vec![
        "distribution".to_string(),
        "alarms".into(),
        "false alarms".into(),
        "proxy reached".into(),
        "alarm before proxy".into(),
        "mean delay".into(),
        "intended".into(),
        "intended with fallback".into(),
    ]];
    for row in &r.rows {
        t.push(vec![
            row.distribution.clone(),
            pct_of(row.alarms, row.episodes),
            pct_of(row.false_alarms, row.episodes),
            pct_of(row.proxy_reached, row.episodes),
            pct_of(row.caught, row.proxy_reached),
            row.mean_delay
                .map_or("-".into(), |d| format!("{d:.1} steps")),
            pct_of(row.intended, row.episodes),
            pct_of(row.intended_with_fallback, row.episodes),
        ]);
    }
    let mut align = vec![Align::Left];
    align.extend(std::iter::repeat_n(Align::Right, 7));
    table(&t, &align, "  ")
}

/// How a report names its reach: a number of moves, or `none`.
pub fn reach_label(reach: Option<u32>) -> String {
    reach.map_or_else(|| "none".to_string(), |n| n.to_string())
}
