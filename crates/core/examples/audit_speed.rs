//! Times a full audit of each testbed's reference agents (release build):
//! `cargo run --release -p mesascope-core --example audit_speed -- [EPISODES] [AGENT]`.
//! Prints wall time split into policy inference and analysis; with `AUDIT_JSON_DIR` set, also
//! writes each report there.

use mesascope_core::agents::reference_agent;
use mesascope_core::audit::{audit, AuditConfig};
use mesascope_core::{testbeds, Knobs};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let episodes: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let agent = args.get(2).cloned().unwrap_or_else(|| "intended".into());
    println!(
        "{episodes} episodes per distribution, {} threads",
        rayon::current_num_threads()
    );
    for &name in testbeds::NAMES {
        let tb = testbeds::make(name, &Knobs::new()).expect("default knobs");
        let factory = || reference_agent(tb.as_ref(), &agent, f32::INFINITY);
        let cfg = AuditConfig::new(&agent, episodes, 0);
        let r = match audit(&tb, &factory, &cfg) {
            Ok(r) => r,
            Err(e) => {
                println!("{name}: {e}");
                continue;
            }
        };
        if let Ok(dir) = std::env::var("AUDIT_JSON_DIR") {
            let json = serde_json::to_string_pretty(&r).expect("serializable");
            std::fs::write(format!("{dir}/{name}.json"), json).expect("writable");
        }
        let t = &r.timing;
        println!(
            "{name:18} {:26} total {:6.2} s | policy {:5.2} s ({:.2} CPU-s) | analysis {:5.2} s: rollouts {:.2}, inverse planning {:.2}, oversight {:.2}, triggers {:.2}, heat maps {:.2}",
            r.verdict.label,
            t.total_s,
            t.policy_wall_s(),
            t.policy_cpu_s,
            t.analysis_s(),
            t.rollouts_s,
            t.inference_s,
            t.oversight_s,
            t.triggers_s,
            t.heatmaps_s
        );
    }
}
