//! Line charts as inline SVG for the HTML reports (training curves, losses over training, sweeps).
//! Written by hand like the audit's bar charts: no font libraries, no script.

use super::html::esc;
use super::text::pct0;
use std::fmt::Write as _;

/// One line of a chart: a label, a colour and its points (non-finite points are skipped).
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub colour: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at every point (for short series such as sweeps).
    pub markers: bool,
}

impl Series {
    pub fn new(label: impl Into<String>, colour: &'static str, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            colour,
            points,
            markers: false,
        }
    }

    pub fn with_markers(mut self) -> Series {
        self.markers = true;
        self
    }
}

/// Axes of a line chart. `y_range` fixes the y axis (else it spans the data); `log_y` plots
/// log10 of y (values <= 0 are skipped); `log_x` plots log10 of x, with x = 0 drawn a decade
/// left of the smallest positive x and labelled 0 (a sweep's control beside its shares).
#[derive(Clone, Debug, Default)]
pub struct Axes {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub y_range: Option<(f64, f64)>,
    pub log_y: bool,
    pub log_x: bool,
    /// Show y tick labels as percentages of 1.
    pub y_percent: bool,
    /// Labelled vertical lines at these x values (an alarm, where fine-tuning began).
    pub marks: Vec<(f64, String)>,
}

/// A palette for series without a meaning of their own.
pub const PALETTE: [&str; 6] = [
    "#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457",
];

/// Round tick positions covering `[lo, hi]`, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Short tick label: 1.5M, 20k, 0.25.
fn tick_label(v: f64, percent: bool) -> String {
    if percent {
        return pct0(v);
    }
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// A line chart of `series` in a `width` × 260 box, with a legend under it.
pub fn line_chart(series: &[Series], axes: &Axes, width: f64) -> String {
    let (left, right, top, h) = (62.0, 16.0, 28.0, 200.0);
    let plot_w = (width - left - right).max(50.0);
    let ty = |y: f64| if axes.log_y { y.log10() } else { y };
    let smallest_x = series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.0)
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold(f64::MAX, f64::min);
    let zero_x = if smallest_x < f64::MAX {
        smallest_x.log10().floor() - 1.0
    } else {
        0.0
    };
    let tx = |x: f64| match (axes.log_x, x > 0.0) {
        (false, _) => x,
        (true, true) => x.log10(),
        (true, false) => zero_x,
    };
    let pts: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(|(x, y)| {
                    x.is_finite()
                        && y.is_finite()
                        && (!axes.log_y || *y > 0.0)
                        && (!axes.log_x || *x >= 0.0)
                })
                .map(|&(x, y)| (tx(x), ty(y)))
                .collect()
        })
        .collect();
    let all = pts.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((lo, hi)) = axes.y_range {
        (y0, y1) = (ty(lo), ty(hi));
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let px = |x: f64| left + plot_w * (x - x0) / (x1 - x0);
    let py = |y: f64| top + h * (1.0 - (y - y0) / (y1 - y0));
    let legend_rows = series.len().div_ceil(3);
    let height = top + h + 44.0 + 18.0 * legend_rows as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0}' height='{height:.0}' role='img' aria-label='{}'>",
        esc(&axes.title)
    );
    let _ = write!(
        s,
        "<text x='{left}' y='16' font-size='13' font-weight='bold'>{}</text>",
        esc(&axes.title)
    );
    let yt: Vec<f64> = if axes.log_y {
        (y0.ceil() as i32..=y1.floor() as i32)
            .map(f64::from)
            .collect()
    } else {
        ticks(y0, y1, 4)
    };
    for t in yt {
        let y = py(t);
        let label = if axes.log_y {
            tick_label(10f64.powf(t), false)
        } else {
            tick_label(t, axes.y_percent)
        };
        let _ = write!(
            s,
            "<line x1='{left}' x2='{:.1}' y1='{y:.1}' y2='{y:.1}' stroke='#e0e0e0'/><text x='{:.1}' y='{:.1}' font-size='11' text-anchor='end'>{}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0,
            esc(&label)
        );
    }
    let xt: Vec<(f64, String)> = if axes.log_x {
        let zero = pts.iter().flatten().any(|p| p.0 == zero_x);
        zero.then(|| (zero_x, "0".to_string()))
            .into_iter()
            .chain(
                (x0.ceil() as i32..=x1.floor() as i32)
                    .map(f64::from)
                    .filter(|&t| !(zero && t == zero_x))
                    .map(|t| (t, tick_label(10f64.powf(t), false))),
            )
            .collect()
    } else {
        ticks(x0, x1, 5)
            .into_iter()
            .map(|t| (t, tick_label(t, false)))
            .collect()
    };
    for (t, label) in xt {
        let x = px(t);
        let _ = write!(
            s,
            "<line x1='{x:.1}' x2='{x:.1}' y1='{:.1}' y2='{:.1}' stroke='#999'/><text x='{x:.1}' y='{:.1}' font-size='11' text-anchor='middle'>{}</text>",
            top + h,
            top + h + 4.0,
            top + h + 16.0,
            esc(&label)
        );
    }
    let _ = write!(
        s,
        "<line x1='{left}' x2='{:.1}' y1='{:.1}' y2='{:.1}' stroke='#999'/><text x='{:.1}' y='{:.1}' font-size='11' text-anchor='middle'>{}</text><text x='12' y='{:.1}' font-size='11' text-anchor='middle' transform='rotate(-90 12 {:.1})'>{}</text>",
        left + plot_w,
        top + h,
        top + h,
        left + plot_w / 2.0,
        top + h + 32.0,
        esc(&axes.x_label),
        top + h / 2.0,
        top + h / 2.0,
        esc(&axes.y_label)
    );
    for (i, (x, label)) in axes.marks.iter().enumerate() {
        let x = &tx(*x);
        if !(x.is_finite() && *x >= x0 && *x <= x1) {
            continue;
        }
        // Each label on its own line, so that marks close together stay readable.
        let label_y = top + 10.0 + 13.0 * i as f64;
        let _ = write!(
            s,
            "<line x1='{0:.1}' x2='{0:.1}' y1='{top}' y2='{1:.1}' stroke='#555' stroke-dasharray='4 3'/><text x='{2:.1}' y='{3:.1}' font-size='11'>{4}</text>",
            px(*x),
            top + h,
            px(*x) + 3.0,
            label_y,
            esc(label)
        );
    }
    for (ser, p) in series.iter().zip(&pts) {
        if p.is_empty() {
            continue;
        }
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y.clamp(y0, y1))))
            .collect();
        let _ = write!(
            s,
            "<polyline fill='none' stroke='{}' stroke-width='1.8' points='{}'><title>{}</title></polyline>",
            ser.colour,
            path.join(" "),
            esc(&ser.label)
        );
        if ser.markers {
            for &(x, y) in p {
                let _ = write!(
                    s,
                    "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{}'/>",
                    px(x),
                    py(y.clamp(y0, y1)),
                    ser.colour
                );
            }
        }
    }
    for (i, ser) in series.iter().enumerate() {
        let (col, row) = (i % 3, i / 3);
        let x = left + col as f64 * (plot_w / 3.0);
        let y = top + h + 44.0 + 18.0 * row as f64;
        let _ = write!(
            s,
            "<line x1='{x:.1}' x2='{:.1}' y1='{:.1}' y2='{:.1}' stroke='{}' stroke-width='3'/><text x='{:.1}' y='{y:.1}' font-size='11'>{}</text>",
            x + 16.0,
            y - 4.0,
            y - 4.0,
            ser.colour,
            x + 20.0,
            esc(&ser.label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 4), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = ticks(0.0, 3_000_000.0, 5);
        assert_eq!(t.first(), Some(&0.0));
        assert_eq!(t.last(), Some(&3_000_000.0));
        assert_eq!(tick_label(1_500_000.0, false), "1.5M");
        assert_eq!(tick_label(20_000.0, false), "20k");
        assert_eq!(tick_label(0.25, true), "25%");
    }

    #[test]
    fn a_log_x_axis_puts_zero_a_decade_left_of_the_smallest_share() {
        let shares = vec![(0.0, 0.9), (0.01, 0.8), (0.1, 0.5), (1.0, 0.2), (10.0, 0.0)];
        let svg = line_chart(
            &[Series::new("proxy", "#000", shares).with_markers()],
            &Axes {
                log_x: true,
                ..Axes::default()
            },
            500.0,
        );
        let ticks: Vec<&str> = svg
            .split("text-anchor='middle'>")
            .skip(1)
            .map(|t| t.split('<').next().unwrap())
            .collect();
        assert_eq!(&ticks[..5], ["0", "0.01", "0.1", "1", "10"]);
        let xs: Vec<f64> = svg
            .split("<circle cx='")
            .skip(1)
            .map(|c| c.split('\'').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 5);
        let steps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            steps.iter().all(|d| (d - steps[0]).abs() < 0.2),
            "equal steps per decade, zero included: {xs:?}"
        );
    }

    #[test]
    fn chart_draws_each_series_and_skips_bad_points() {
        let a = Series::new("success", "#2e7d32", vec![(0.0, 0.1), (1.0, 0.9)]);
        let b =
            Series::new("loss <x>", "#e65100", vec![(0.0, f64::NAN), (0.5, 0.3)]).with_markers();
        let svg = line_chart(
            &[a, b],
            &Axes {
                title: "curves".into(),
                y_range: Some((0.0, 1.0)),
                y_percent: true,
                ..Axes::default()
            },
            500.0,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(
            svg.matches("<circle").count(),
            1,
            "the NaN point is skipped"
        );
        assert!(svg.contains("loss &lt;x&gt;"), "labels are escaped");
        assert!(svg.contains(">100%<"));
        let marked = line_chart(
            &[Series::new("a", "#000", vec![(0.0, 0.0), (10.0, 1.0)])],
            &Axes {
                marks: vec![(4.0, "alarm".into()), (99.0, "off the axis".into())],
                ..Axes::default()
            },
            300.0,
        );
        assert!(marked.contains(">alarm<") && !marked.contains("off the axis"));
        // A log axis with no positive values still gives a well-formed chart.
        let empty = line_chart(
            &[Series::new("z", "#000", vec![(0.0, 0.0)])],
            &Axes {
                log_y: true,
                ..Axes::default()
            },
            300.0,
        );
        assert!(empty.ends_with("</svg>") && !empty.contains("NaN"));
    }
}
