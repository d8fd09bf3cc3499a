//! Text layout and number formatting shared by every report: aligned tables, word wrapping,
//! percentages and numbers.

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Lays out rows as aligned columns separated by two spaces, each line prefixed by `indent`.
/// The last column is not padded; trailing spaces are trimmed.
pub fn table(rows: &[Vec<String>], align: &[Align], indent: &str) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            let last = c + 1 == row.len();
            match align.get(c).copied().unwrap_or(Align::Left) {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Greedy word wrap to `width` characters (a longer word stands on its own line).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` wrapped to `width`, continuation lines indented by `hang` spaces.
pub fn wrap_hanging(text: &str, width: usize, hang: usize) -> String {
    wrap(text, width).join(&format!("\n{}", " ".repeat(hang)))
}

/// A number without a needless fraction: `9`, `0.2`, `100000`.
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Knob settings as `name=value` joined by `sep`: `size=9, loops=0.5`.
pub fn knob_pairs(pairs: &[(String, f64)], sep: &str) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={}", num(*v)))
        .collect::<Vec<_>>()
        .join(sep)
}

/// A share as a percentage with one decimal: `0.256` is `25.6%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A share as a whole percentage: `0.256` is `26%`.
pub fn pct0(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// A share as a percentage with the digits it has (`0.01%`, `3%`), for shares swept over decades.
pub fn pct_exact(x: f64) -> String {
    let p = format!("{:.6}", 100.0 * x);
    format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
}

/// `n` of `d` as a percentage with one decimal, `-` when `d` is 0.
pub fn pct_of(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        pct(n as f64 / d as f64)
    }
}

/// Prefixes every line of `text` with `prefix` (trimming the trailing space on empty lines).
pub fn prefix_lines(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = format!("{prefix}{line}");
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let rows = vec![
            vec!["a".to_string(), "1".into(), "x".into()],
            vec!["long".to_string(), "100".into(), "y".into()],
        ];
        let t = table(&rows, &[Align::Left, Align::Right, Align::Left], "  ");
        assert_eq!(t, "  a       1  x\n  long  100  y\n");
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("", 5), vec![""]);
        assert_eq!(wrap_hanging("aa bb cc", 5, 2), "aa bb\n  cc");
        assert_eq!(num(9.0), "9");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(pct(0.256), "25.6%");
        assert_eq!(pct0(0.256), "26%");
        assert_eq!(pct_of(1, 4), "25.0%");
        assert_eq!(pct_of(1, 0), "-");
    }
}
