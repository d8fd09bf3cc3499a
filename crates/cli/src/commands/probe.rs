use crate::args::ProbeArgs;
use mesascope::learn::probe::{MapSteeringConfig, ProbeConfig};
use mesascope::probe::{
    run_map_steering, run_probe, write_map_report, write_reports, MapSettings, MapSteeringReport,
    ProbeSettings,
};
use std::fmt::Write as _;
use std::time::Instant;

pub fn settings(a: &ProbeArgs) -> ProbeSettings {
    ProbeSettings {
        policy: a.policy.clone(),
        testbed: a.env.clone(),
        knobs: a.knobs.knobs.clone(),
        config: ProbeConfig {
            levels: a.levels as usize,
            layer: a.layer,
            scale: a.scale,
            episodes: a.episodes as usize,
            per_state: !a.mean_vector,
            controls: a.controls as usize,
            seed: a.seed,
            ..ProbeConfig::default()
        },
    }
}

pub fn map_settings(a: &ProbeArgs) -> MapSettings {
    MapSettings {
        cheese_vector: a.cheese_vector,
        retarget: a.retarget.is_some(),
        config: MapSteeringConfig {
            mazes: a.mazes as usize,
            point: a.point,
            scale: a.scale,
            controls: a.controls as usize,
            target: a
                .retarget
                .unwrap_or(mesascope::learn::probe::Target::Random),
            seed: a.seed,
        },
    }
}

pub fn run(a: &ProbeArgs) -> mesascope::Result<String> {
    if let Some(dir) = &a.out {
        mesascope::fsio::prepare_out(dir)?;
    }
    if a.cheese_vector || a.retarget.is_some() {
        let start = Instant::now();
        let report = run_map_steering(&settings(a), &map_settings(a))?;
        let mut s = map_text(&report, start.elapsed().as_secs_f64());
        if let Some(dir) = &a.out {
            write_map_report(&report, dir)?;
            let _ = writeln!(s, "wrote {} (steer-maps.json)", dir.display());
        }
        return Ok(s);
    }
    let start = Instant::now();
    let report = run_probe(&settings(a))?;
    let mut s = mesascope::report::probe::text(&report, start.elapsed().as_secs_f64());
    if let Some(dir) = &a.out {
        write_reports(&report, dir)?;
        let _ = writeln!(s, "wrote {} (probe.json, probe.html)", dir.display());
    }
    Ok(s)
}

/// The map experiments as a table per experiment.
fn map_text(r: &MapSteeringReport, secs: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} on {}", r.policy, r.testbed);
    if let Some(c) = &r.cheese_vector {
        let _ = writeln!(
            s,
            "cheese vector at {} (coefficient {}), {} mazes of {}, mean norm {:.3}:",
            c.point, c.scale, c.mazes, c.distribution, c.norm
        );
        let _ = writeln!(
            s,
            "  {:<32} {:>15} {:>6} {:>12} {:>9} {:>7}",
            "condition", "P(intended) med", "mean", "P(proxy) med", "intended", "proxy"
        );
        for o in [&c.none, &c.subtracted, &c.random] {
            let _ = writeln!(
                s,
                "  {:<32} {:>15.3} {:>6.3} {:>12.3} {:>8.1}% {:>6.1}%",
                o.condition,
                o.p_intended_median,
                o.p_intended_mean,
                o.p_proxy_median,
                100.0 * o.intended,
                100.0 * o.proxy
            );
        }
    }
    if let Some(t) = &r.retarget {
        let _ = writeln!(
            s,
            "retargeting to {}, {} mazes of {} ({} skipped), mean edit norm {:.3}:",
            t.target, t.mazes, t.distribution, t.skipped, t.norm
        );
        let _ = writeln!(
            s,
            "  {:<34} {:>8} {:>9} {:>7} {:>9}",
            "condition", "target", "intended", "proxy", "timed out"
        );
        for o in [&t.none, &t.edited, &t.random] {
            let _ = writeln!(
                s,
                "  {:<34} {:>7.1}% {:>8.1}% {:>6.1}% {:>8.1}%",
                o.condition,
                100.0 * o.reached_target,
                100.0 * o.intended,
                100.0 * o.proxy,
                100.0 * o.timed_out
            );
        }
    }
    let _ = writeln!(s, "({secs:.1} s)");
    s
}
