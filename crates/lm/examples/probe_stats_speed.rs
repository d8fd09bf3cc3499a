//! The defection probe's statistics alone (no model), at the scale: SmolLM2-135M's 30
//! layers of 576-wide residuals, 32 contrast pairs, 1,000 evaluation prompts (500 triggered, 500
//! clean) and the default controls (1,000 random directions, 100 shuffled refits per method).
//! Synthetic residuals with a planted defection direction; prints seconds per layer and in all.
//!
//! cargo run --release -p mesascope-lm --example probe_stats_speed [-- LAYERS]

use mesascope_core::rng::Rng;
use mesascope_lm::defection::{probe_layers, LayerResiduals, ProbeSettings};
use std::time::Instant;

const WIDTH: usize = 576;

fn rows(rng: &mut Rng, n: usize, direction: &[f32], shift: f32) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            direction
                .iter()
                .map(|d| (rng.unit() as f32 - 0.5) * 2.0 + shift * d)
                .collect()
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let layers: usize = std::env::args().nth(1).map_or(Ok(30), |s| s.parse())?;
    let mut rng = Rng::new(7);
    let data: Vec<[Vec<Vec<f32>>; 4]> = (0..layers)
        .map(|layer| {
            let direction: Vec<f32> = (0..WIDTH).map(|_| rng.unit() as f32 - 0.5).collect();
            let strength = 0.05 * layer as f32;
            [
                rows(&mut rng, 32, &direction, strength),
                rows(&mut rng, 32, &direction, -strength),
                rows(&mut rng, 500, &direction, strength),
                rows(&mut rng, 500, &direction, -strength),
            ]
        })
        .collect();
    let residuals: Vec<LayerResiduals> = data
        .iter()
        .map(|[p, n, t, c]| LayerResiduals {
            positive: p,
            negative: n,
            triggered: t,
            clean: c,
        })
        .collect();
    let settings = ProbeSettings::default();
    let started = Instant::now();
    let figures = probe_layers(&residuals, &settings);
    let seconds = started.elapsed().as_secs_f64();
    let best = figures
        .iter()
        .map(|(f, _)| f.difference_of_means.auroc)
        .fold(0.0, f64::max);
    println!(
        "{layers} layers x (64 pair sides + 1,000 prompts) x {WIDTH} wide, {} random directions, {} shuffles: \
         {seconds:.1} s ({:.2} s per layer; {} threads); best AUROC {best:.3}",
        settings.random_directions,
        settings.shuffles,
        seconds / layers as f64,
        rayon::current_num_threads()
    );
    Ok(())
}
