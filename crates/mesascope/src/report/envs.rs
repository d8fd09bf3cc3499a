//! `envs`' report: every testbed's declarations as text (wrapped to the terminal's width) or
//! JSON (these types).

use super::text::{num, table, wrap_hanging, Align};
use serde::Serialize;
use std::fmt::Write as _;

/// Version of the JSON layout of `envs --json`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct GoalInfo {
    pub name: String,
    /// `intended` or `proxy`.
    pub role: &'static str,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct KnobInfo {
    pub name: String,
    pub default: f64,
    /// The value in effect (the default unless set with `-k`).
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub integer: bool,
    pub odd: bool,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct OversightInfo {
    pub cue: String,
    pub present_means_watched: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ActionInfo {
    pub index: usize,
    pub name: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ObservationInfo {
    /// MiniGrid encoding `[H, W, 3]` = (object, colour, state), u8.
    pub u8_shape: [usize; 3],
    /// One-hot planes `[C, H, W]`, f32, in the order of `plane_names`.
    pub planes_shape: [usize; 3],
    /// Level shapes `[H, W]` seen over a few seeds of every split (more than one: sizes vary).
    pub level_shapes: Vec<[usize; 2]>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnvInfo {
    pub name: String,
    pub summary: String,
    pub base_objective: String,
    pub hidden_performance: String,
    /// The intended goal first, then the proxies.
    pub goals: Vec<GoalInfo>,
    pub splits: Vec<String>,
    pub knobs: Vec<KnobInfo>,
    pub oversight: Option<OversightInfo>,
    pub actions: Vec<ActionInfo>,
    pub observation: ObservationInfo,
    /// Names `mesascope show --agent` accepts.
    pub reference_agents: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnvsReport {
    pub schema_version: u32,
    pub testbeds: Vec<EnvInfo>,
    /// The float encoding's plane order (`object:*`, `colour:*`, `state:*`).
    pub plane_names: Vec<String>,
    /// MiniGrid's object table: index = the u8 encoding's object value.
    pub objects: Vec<&'static str>,
    /// MiniGrid's colour table: index = the u8 encoding's colour value.
    pub colours: Vec<&'static str>,
}

/// Text width descriptions wrap at.
const WIDTH: usize = 100;

fn range(k: &KnobInfo) -> String {
    let mut s = format!("{}..{}", num(k.min), num(k.max));
    if k.odd {
        s.push_str(", odd");
    } else if k.integer {
        s.push_str(", integer");
    }
    s
}

/// One testbed as text.
pub fn testbed_text(e: &EnvInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", e.name);
    let label_w = 20;
    let field = |s: &mut String, label: &str, value: &str| {
        let body = wrap_hanging(value, WIDTH - 2 - label_w, 2 + label_w);
        let _ = writeln!(s, "  {label:<label_w$}{body}");
    };
    field(&mut s, "summary", &e.summary);
    field(&mut s, "base objective", &e.base_objective);
    field(&mut s, "hidden performance", &e.hidden_performance);
    let _ = writeln!(s, "  goals");
    let rows: Vec<Vec<String>> = e
        .goals
        .iter()
        .map(|g| vec![g.name.clone(), g.role.to_string(), g.description.clone()])
        .collect();
    s.push_str(&table(
        &rows,
        &[Align::Left, Align::Left, Align::Left],
        "    ",
    ));
    field(&mut s, "splits", &e.splits.join(", "));
    if e.knobs.is_empty() {
        field(&mut s, "knobs", "none");
    } else {
        let _ = writeln!(s, "  knobs");
        // The value column only when some knob differs from its default.
        let changed = e.knobs.iter().any(|k| k.value != k.default);
        let mut header = vec!["name".to_string()];
        if changed {
            header.push("value".into());
        }
        header.extend(["default".into(), "range".into(), "description".into()]);
        let mut rows = vec![header];
        rows.extend(e.knobs.iter().map(|k| {
            let mut row = vec![k.name.clone()];
            if changed {
                row.push(num(k.value));
            }
            row.extend([num(k.default), range(k), k.description.clone()]);
            row
        }));
        let mut align = vec![Align::Left, Align::Right];
        if changed {
            align.push(Align::Right);
        }
        align.extend([Align::Left, Align::Left]);
        let t = table(&rows, &align, "    ");
        // Wrap the description column under itself.
        let desc_col = t
            .lines()
            .next()
            .and_then(|l| l.find("description"))
            .unwrap_or(0);
        for line in t.lines() {
            if line.chars().count() <= WIDTH || desc_col == 0 || desc_col >= WIDTH - 20 {
                let _ = writeln!(s, "{line}");
            } else {
                let (head, desc) = line.split_at(desc_col);
                let _ = writeln!(
                    s,
                    "{head}{}",
                    wrap_hanging(desc, WIDTH - desc_col, desc_col)
                );
            }
        }
    }
    let oversight = match &e.oversight {
        None => "none".to_string(),
        Some(o) => format!(
            "{} (shown means {})",
            o.cue,
            if o.present_means_watched {
                "watched"
            } else {
                "not watched"
            }
        ),
    };
    field(&mut s, "oversight cue", &oversight);
    let actions: Vec<String> = e
        .actions
        .iter()
        .map(|a| format!("{} {}", a.index, a.name))
        .collect();
    field(&mut s, "actions", &actions.join(", "));
    let o = &e.observation;
    let [h, w, _] = o.u8_shape;
    let varies = if o.level_shapes.len() > 1 {
        format!(
            " (level sizes vary: {})",
            o.level_shapes
                .iter()
                .map(|[h, w]| format!("{h}x{w}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        String::new()
    };
    field(
        &mut s,
        "observation",
        &format!(
            "u8 [{h}][{w}][3] (MiniGrid object, colour, state); f32 planes [{}][{h}][{w}]{varies}",
            o.planes_shape[0]
        ),
    );
    field(&mut s, "reference agents", &e.reference_agents.join(", "));
    s
}

/// The whole report as text: every testbed, then the encodings once.
pub fn text(r: &EnvsReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} testbeds (knobs: -k NAME=VALUE; levels: mesascope show TESTBED)\n",
        r.testbeds.len()
    );
    for e in &r.testbeds {
        s.push_str(&testbed_text(e));
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "u8 encoding [H][W][3], row-major: (object, colour, state) with MiniGrid's tables; the agent \
         cell is (10, 0, keys carried)."
    );
    let _ = writeln!(
        s,
        "  objects  {}",
        r.objects
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{i} {o}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "  colours  {}",
        r.colours
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "  states   doors: 0 open, 1 closed, 2 locked; agent: keys carried\n"
    );
    let _ = writeln!(
        s,
        "float plane order (f32 [C][H][W], batched [N][C][H][W], C = {}):",
        r.plane_names.len()
    );
    // Four columns of `index name`, filled column by column.
    let n = r.plane_names.len();
    let cols = 4;
    let per = n.div_ceil(cols);
    let rows: Vec<Vec<String>> = (0..per)
        .map(|i| {
            (0..cols)
                .filter_map(|c| {
                    let k = c * per + i;
                    r.plane_names.get(k).map(|p| format!("{k:>2} {p}"))
                })
                .collect()
        })
        .collect();
    s.push_str(&table(&rows, &[Align::Left; 4], "  "));
    s
}
