//! A grid of runs: testbeds times knobs times shares of decorrelated levels times seeds times
//! methods (Langosco et al. 2022, figure 2), each cell one trial: train (or take a source
//! checkpoint), fine-tune where its method asks, audit. The grid file's format is in
//! docs/distributed.md; the Python package reads the same files and runs the same trials on Ray
//! Tune, with the same figures.
//!
//! Every cell is checked before any trial starts. The output folder receives `grid.json` (the
//! cells), one folder per trial (`trials/trial-NNNN`: its checkpoints, `audit.json`,
//! `audit.html`, `row.json`), and the table, `sweep.csv` and `sweep.json`, and the figure,
//! `sweep.html`, all written atomically. An interrupted sweep resumes: finished trials keep
//! their rows, a trial cut short in training resumes from its checkpoint.

use crate::audit::{run_audit, write_reports, AuditSettings};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::fsio::{json_bytes, write_atomic};
use crate::mitigate::{mitigate, Method, MitigateSettings};
use crate::progress::Progress;
use crate::report::table::{table_csv, AuditFigures, Rate};
use crate::train::{train, Curriculum, TrainSettings};
use mesascope_core::{testbeds, Knobs};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The keys of a grid file.
pub const GRID_KEYS: [&str; 12] = [
    "testbed",
    "knobs",
    "seeds",
    "shares",
    "methods",
    "arch",
    "curriculum",
    "steps",
    "mitigate_steps",
    "episodes",
    "checkpoint_every",
    "source",
];

/// Audit episodes per distribution when the grid names none.
pub const DEFAULT_EPISODES: usize = 200;
/// PPO updates between a trial's training checkpoints when the grid names none.
pub const DEFAULT_CHECKPOINT_EVERY: u32 = 20;

/// One trial: a point of the grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub testbed: String,
    /// The testbed's knobs, by name, without `decorrelate` (that is `share`).
    pub knobs: Vec<(String, f64)>,
    pub seed: u64,
    /// Share of decorrelated levels: of the training levels (method `none`) or of the
    /// fine-tuning levels.
    pub share: f64,
    /// `none`, `diversify` or `adversarial`.
    pub method: String,
    /// The trained network's trunk (`embed-mlp`, `conv`, `planner`); `None`: the default.
    #[serde(default)]
    pub arch: Option<String>,
    /// How training draws its levels: `uniform` or `regret` (`train::Curriculum`).
    #[serde(default = "uniform")]
    pub curriculum: String,
    /// Training env steps; `None`: the testbed's default.
    pub steps: Option<u64>,
    /// Fine-tuning env steps; `None`: the testbed's training length.
    pub mitigate_steps: Option<u64>,
    pub episodes: usize,
    pub checkpoint_every: u32,
    /// A checkpoint the trial fine-tunes instead of training one.
    pub source: Option<PathBuf>,
}

fn uniform() -> String {
    Curriculum::Uniform.name().to_string()
}

/// A number as the grid shows it: `5`, not `5.0`.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Cell {
    /// `testbed=exit-vs-green size=5 seed=0 share=0.2 method=none`: how errors and reports
    /// name the cell.
    pub fn label(&self) -> String {
        let mut s = format!("testbed={}", self.testbed);
        for (k, v) in &self.knobs {
            s.push_str(&format!(" {k}={}", num(*v)));
        }
        s.push_str(&format!(
            " seed={} share={} method={}",
            self.seed,
            num(self.share),
            self.method
        ));
        if let Some(arch) = &self.arch {
            s.push_str(&format!(" arch={arch}"));
        }
        if self.curriculum != uniform() {
            s.push_str(&format!(" curriculum={}", self.curriculum));
        }
        if let Some(src) = &self.source {
            s.push_str(&format!(" source={}", src.display()));
        }
        s
    }

    fn mitigation(&self) -> Option<Method> {
        Method::parse(&self.method).ok()
    }

    fn check(&self) -> Result<()> {
        let fail = |kind: ErrorKind, msg: String| -> Result<()> {
            Err(Error::new(
                kind,
                format!("grid cell {}: {msg}", self.label()),
            ))
        };
        if self.method != "none" && self.mitigation().is_none() {
            return fail(
                ErrorKind::BadSetting,
                format!(
                    "unknown method '{}'; the methods are none, diversify, adversarial",
                    self.method
                ),
            );
        }
        if let Some(arch) = &self.arch {
            if let Err(e) = mesascope_learn::policy::Arch::parse(arch) {
                return fail(ErrorKind::BadSetting, e.to_string());
            }
        }
        if let Err(e) = Curriculum::parse(&self.curriculum) {
            return fail(e.kind(), e.to_string());
        }
        if self.source.is_some() && (self.arch.is_some() || self.curriculum != uniform()) {
            return fail(
                ErrorKind::BadSetting,
                "`arch` and `curriculum` shape training; a `source` checkpoint is not trained"
                    .into(),
            );
        }
        // The testbed's own checks of its name, its knobs and the share (its `decorrelate`).
        let mut knobs = Knobs::from_pairs(&self.knobs);
        knobs.set("decorrelate", self.share);
        if let Err(e) = testbeds::make(&self.testbed, &knobs) {
            let e = Error::from(e);
            return fail(e.kind(), e.to_string());
        }
        if let Some(src) = &self.source {
            if self.method == "none" {
                return fail(
                    ErrorKind::BadSetting,
                    "a `source` checkpoint is mitigated; method none would only audit it (use audit-many)".into(),
                );
            }
            match mesascope_learn::checkpoint::read_meta(src) {
                Err(e) => {
                    return fail(
                        ErrorKind::BadPolicy,
                        format!(
                            "source {} is not a readable checkpoint folder ({e})",
                            src.display()
                        ),
                    )
                }
                Ok(meta) if meta.testbed != self.testbed => {
                    return fail(
                        ErrorKind::BadPolicy,
                        format!(
                            "source {} was trained on {}, not {}",
                            src.display(),
                            meta.testbed,
                            self.testbed
                        ),
                    )
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a grid.

/// The checked cells of the grid file at `path`, in the table's order.
pub fn read_grid(path: &Path) -> Result<Vec<Cell>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::BadSetting
        } else {
            ErrorKind::Io
        };
        Error::new(
            kind,
            format!("grid {}: cannot read it: {e}", path.display()),
        )
    })?;
    parse_grid(&text, &path.display().to_string())
}

/// The checked cells of a grid given as TOML text; `origin` names it in errors.
pub fn parse_grid(text: &str, origin: &str) -> Result<Vec<Cell>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" (at line {line}, column {column})")
            })
            .unwrap_or_default();
        Error::bad_setting(format!(
            "grid {origin} does not parse: {}{at}",
            e.message().trim_end()
        ))
    })?;
    expand(&table)
}

/// The checked cells of a grid given as a JSON object with the grid file's keys (how the
/// Python package hands over a grid given as a dict).
pub fn grid_from_json(json: &str) -> Result<Vec<Cell>> {
    let table: toml::Table =
        serde_json::from_str(json).map_err(|e| Error::bad_setting(format!("grid: {e}")))?;
    expand(&table)
}

fn as_list<'a>(key: &str, v: &'a toml::Value) -> Result<Vec<&'a toml::Value>> {
    let values: Vec<&toml::Value> = match v {
        toml::Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    if values.is_empty() {
        return Err(Error::bad_setting(format!(
            "grid key \"{key}\": an empty list leaves no trial to run"
        )));
    }
    Ok(values)
}

fn int(key: &str, v: &toml::Value, least: i64) -> Result<u64> {
    match v {
        toml::Value::Integer(i) if *i >= least => Ok(*i as u64),
        v => Err(Error::bad_setting(format!(
            "grid key \"{key}\": {v} is not an integer >= {least}"
        ))),
    }
}

fn number(key: &str, v: &toml::Value) -> Result<f64> {
    let x = match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        _ => f64::NAN,
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Error::bad_setting(format!(
            "grid key \"{key}\": {v} is not a finite number"
        )))
    }
}

fn string(key: &str, v: &toml::Value) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::bad_setting(format!("grid key \"{key}\": {v} is not a string")))
}

/// Every value of `key` (one value or a list), or `default` when the grid leaves it out.
fn axis<T>(
    g: &toml::Table,
    key: &str,
    default: Vec<T>,
    read: impl Fn(&toml::Value) -> Result<T>,
) -> Result<Vec<T>> {
    match g.get(key) {
        None => Ok(default),
        Some(v) => as_list(key, v)?.into_iter().map(read).collect(),
    }
}

/// The cross product of a grid's axes, each cell checked.
pub fn expand(g: &toml::Table) -> Result<Vec<Cell>> {
    let unknown: Vec<&str> = g
        .keys()
        .map(String::as_str)
        .filter(|k| !GRID_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::bad_setting(format!(
            "grid: unknown key(s) {}; the keys are {}",
            unknown.join(", "),
            GRID_KEYS.join(", ")
        )));
    }
    if !g.contains_key("testbed") {
        return Err(Error::bad_setting("grid: \"testbed\" is required"));
    }
    let testbeds = axis(g, "testbed", vec![], |v| string("testbed", v))?;
    let mut knob_axes: Vec<(String, Vec<f64>)> = Vec::new();
    if let Some(k) = g.get("knobs") {
        let t = k.as_table().ok_or_else(|| {
            Error::bad_setting("grid key \"knobs\": a table of knob = number or [numbers]")
        })?;
        if t.contains_key("decorrelate") {
            return Err(Error::bad_setting(
                "grid key \"knobs\": set decorrelate through \"shares\", the share of decorrelated levels",
            ));
        }
        for (name, vs) in t {
            let key = format!("knobs.{name}");
            let values = as_list(&key, vs)?
                .into_iter()
                .map(|v| number(&key, v))
                .collect::<Result<_>>()?;
            knob_axes.push((name.clone(), values));
        }
        knob_axes.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let seeds = axis(g, "seeds", vec![0], |v| int("seeds", v, 0))?;
    let shares = axis(g, "shares", vec![0.0], |v| number("shares", v))?;
    let methods = axis(g, "methods", vec!["none".to_string()], |v| {
        string("methods", v)
    })?;
    let archs = axis(g, "arch", vec![None], |v| string("arch", v).map(Some))?;
    let curricula = axis(g, "curriculum", vec![uniform()], |v| {
        string("curriculum", v)
    })?;
    let steps = axis(g, "steps", vec![None], |v| int("steps", v, 1).map(Some))?;
    let mitigate_steps = axis(g, "mitigate_steps", vec![None], |v| {
        int("mitigate_steps", v, 1).map(Some)
    })?;
    let episodes = axis(g, "episodes", vec![DEFAULT_EPISODES], |v| {
        int("episodes", v, 1).map(|e| e as usize)
    })?;
    let checkpoint_every = match g.get("checkpoint_every") {
        None => DEFAULT_CHECKPOINT_EVERY,
        Some(v) => u32::try_from(int("checkpoint_every", v, 0)?).map_err(|_| {
            Error::bad_setting(format!("grid key \"checkpoint_every\": {v} is too large"))
        })?,
    };
    let source = match g.get("source") {
        None => None,
        Some(v) => {
            let p = PathBuf::from(string("source", v)?);
            Some(std::path::absolute(&p).unwrap_or(p))
        }
    };

    // The knobs' cross product, each a list of (name, value) by name.
    let mut knob_points: Vec<Vec<(String, f64)>> = vec![vec![]];
    for (name, values) in &knob_axes {
        knob_points = knob_points
            .iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((name.clone(), *v));
                    p
                })
            })
            .collect();
    }
    let mut cells = Vec::new();
    for testbed in &testbeds {
        for knobs in &knob_points {
            for &share in &shares {
                for &seed in &seeds {
                    for method in &methods {
                        for arch in &archs {
                            for curriculum in &curricula {
                                for &steps in &steps {
                                    for &mitigate_steps in &mitigate_steps {
                                        for &episodes in &episodes {
                                            let cell = Cell {
                                                testbed: testbed.clone(),
                                                knobs: knobs.clone(),
                                                seed,
                                                share,
                                                method: method.clone(),
                                                arch: arch.clone(),
                                                curriculum: curriculum.clone(),
                                                steps,
                                                mitigate_steps,
                                                episodes,
                                                checkpoint_every,
                                                source: source.clone(),
                                            };
                                            cell.check()?;
                                            cells.push(cell);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(cells)
}

// ---------------------------------------------------------------------------------------------
// The result table.

/// One trial's row of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub cell: Cell,
    /// The audit's verdict (`pseudo-aligned`, ...), the proxy it names, its label and exit code.
    pub verdict: String,
    pub proxy: Option<String>,
    pub label: String,
    pub exit_code: i64,
    /// Intended-goal and proxy rates on every audited distribution.
    pub rates: Vec<Rate>,
    /// Env steps of the trained (or source) checkpoint.
    pub trained_steps: Option<u64>,
    /// Env steps of fine-tuning (mitigated trials).
    pub extra_steps: Option<u64>,
    /// Mitigated trials: the verdict before fine-tuning.
    pub label_before: Option<String>,
    pub exit_code_before: Option<i64>,
    // Bookkeeping: differs between runs of the same cell.
    pub seconds: f64,
    pub restarts: u32,
    pub resumed_from: Option<String>,
    pub checkpoint: Option<String>,
}

impl Row {
    /// The row as the table's (column, value) pairs, in its order (the Python package's
    /// DataFrame columns): the grid's values, a column per knob, the figures, the bookkeeping.
    pub fn columns(&self) -> Vec<(String, Value)> {
        let c = &self.cell;
        let mut cols: Vec<(String, Value)> = vec![("testbed".into(), c.testbed.clone().into())];
        for (k, v) in &c.knobs {
            cols.push((k.clone(), number_value(*v)));
        }
        cols.extend([
            ("seed".into(), c.seed.into()),
            ("share".into(), c.share.into()),
            ("method".into(), c.method.clone().into()),
            ("arch".into(), c.arch.clone().into()),
            ("curriculum".into(), c.curriculum.clone().into()),
            ("steps".into(), c.steps.into()),
            ("mitigate_steps".into(), c.mitigate_steps.into()),
            ("episodes".into(), c.episodes.into()),
            (
                "source".into(),
                c.source.as_ref().map(|p| p.display().to_string()).into(),
            ),
            ("verdict".into(), self.verdict.clone().into()),
            ("proxy".into(), self.proxy.clone().into()),
            ("label".into(), self.label.clone().into()),
            ("exit_code".into(), self.exit_code.into()),
        ]);
        cols.extend(self.rates.iter().flat_map(Rate::columns));
        cols.extend([
            ("trained_steps".into(), self.trained_steps.into()),
            ("label_before".into(), self.label_before.clone().into()),
            ("exit_code_before".into(), self.exit_code_before.into()),
            ("extra_steps".into(), self.extra_steps.into()),
            ("seconds".into(), self.seconds.into()),
            ("restarts".into(), self.restarts.into()),
            ("resumed_from".into(), self.resumed_from.clone().into()),
            ("checkpoint".into(), self.checkpoint.clone().into()),
        ]);
        cols
    }
}

fn number_value(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Running the grid in this process.

/// A sweep's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSettings {
    pub cells: Vec<Cell>,
    /// The output folder.
    pub out: PathBuf,
    /// Continue the sweep in `out` (its finished trials keep their rows). Without it, a folder
    /// that holds a sweep is refused.
    pub resume: bool,
}

/// What a sweep did.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub rows: Vec<Row>,
    /// Trials run (or finished) by this call; the others were done before it.
    pub ran: usize,
    pub out: PathBuf,
    pub seconds: f64,
}

/// Where a trial stands, in `trial-NNNN/state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TrialState {
    /// `start`, `trained` or `done`.
    stage: String,
    seconds: f64,
    restarts: u32,
    resumed_from: Option<String>,
}

const GRID_FILE: &str = "grid.json";

/// Runs every cell one after another (each trial uses all the machine's cores), resuming what a
/// previous call left unfinished when `resume`; writes the table and the figure.
pub fn sweep(s: &SweepSettings, progress: &dyn Progress) -> Result<Sweep> {
    if s.cells.is_empty() {
        return Err(Error::bad_setting("the grid has no cell"));
    }
    let out = &s.out;
    let grid_file = out.join(GRID_FILE);
    if grid_file.exists() {
        if !s.resume {
            return Err(Error::bad_setting(format!(
                "{} already holds a sweep; pass `resume` to continue it or choose another `out`",
                out.display()
            )));
        }
        let held: Vec<Cell> = serde_json::from_slice(
            &std::fs::read(&grid_file)
                .with_context(|| format!("cannot read {}", grid_file.display()))?,
        )
        .map_err(|e| Error::bad_setting(format!("{}: {e}", grid_file.display())))?;
        if held != s.cells {
            return Err(Error::bad_setting(format!(
                "`resume`: {} holds a sweep of another grid ({} cells); choose another `out`",
                out.display(),
                held.len()
            )));
        }
    }
    let _lock = crate::fsio::lock_out(out)?;
    write_atomic(&grid_file, &json_bytes(&s.cells)?)?;
    let start = Instant::now();
    let mut rows = Vec::new();
    let mut ran = 0;
    let total = s.cells.len();
    for (i, cell) in s.cells.iter().enumerate() {
        let dir = out.join("trials").join(format!("trial-{i:04}"));
        if let Some(row) = finished_row(&dir)? {
            rows.push(row);
            continue;
        }
        if progress.should_stop() {
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "sweep interrupted after {} of {total} trials; `resume` continues it",
                    rows.len()
                ),
            ));
        }
        progress.stage(&format!(
            "trial {}/{total}: {} ({:.0} s so far) ...",
            i + 1,
            cell.label(),
            start.elapsed().as_secs_f64()
        ));
        rows.push(run_trial(cell, &dir, progress)?);
        ran += 1;
    }
    let table: Vec<Vec<(String, Value)>> = rows.iter().map(Row::columns).collect();
    write_table(out, &table)?;
    Ok(Sweep {
        rows,
        ran,
        out: out.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes `sweep.csv`, `sweep.json` (a list of rows, each an object of columns) and
/// `sweep.html` (the figure) into `out`, atomically.
pub fn write_table(out: &Path, table: &[Vec<(String, Value)>]) -> Result<()> {
    let objects: Vec<serde_json::Map<String, Value>> =
        table.iter().map(|r| r.iter().cloned().collect()).collect();
    write_atomic(&out.join("sweep.csv"), table_csv(table).as_bytes())?;
    write_atomic(&out.join("sweep.json"), &json_bytes(&OrderedRows(table))?)?;
    write_figure(out, &objects)
}

/// Writes `sweep.html`, the figure of a table's rows (this library's or the Python package's),
/// into `out`, atomically.
pub fn write_figure(out: &Path, rows: &[serde_json::Map<String, Value>]) -> Result<()> {
    let points = crate::report::sweep::points(rows);
    write_atomic(
        &out.join("sweep.html"),
        crate::report::sweep::page(&out.display().to_string(), &points).as_bytes(),
    )
}

/// Rows serialized with their columns in the table's order.
struct OrderedRows<'a>(&'a [Vec<(String, Value)>]);

impl Serialize for OrderedRows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&OrderedRow(r))?;
        }
        seq.end()
    }
}

struct OrderedRow<'a>(&'a [(String, Value)]);

impl Serialize for OrderedRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The row of a trial that finished before.
fn finished_row(dir: &Path) -> Result<Option<Row>> {
    let path = dir.join("row.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Row>(&bytes)
            .map(Some)
            .map_err(|e| Error::bad_setting(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from(e).context(format!("cannot read {}", path.display()))),
    }
}

fn read_state(dir: &Path) -> TrialState {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(TrialState {
            stage: "start".into(),
            ..TrialState::default()
        })
}

/// Runs one cell in `dir`, continuing what an earlier run of it left there.
pub fn run_trial(cell: &Cell, dir: &Path, progress: &dyn Progress) -> Result<Row> {
    crate::fsio::create_out(dir)?;
    let start = Instant::now();
    let mut state = read_state(dir);
    let train_dir = dir.join("train");
    let in_training = state.stage == "start" && mesascope_learn::checkpoint::exists(&train_dir);
    if state.stage != "start" || in_training {
        state.restarts += 1;
        state.resumed_from = Some(if in_training {
            let meta = mesascope_learn::checkpoint::read_meta(&train_dir)?;
            format!("training@{}", meta.steps)
        } else {
            format!("{}@", state.stage)
        });
    }
    let base = state.seconds;
    let save = |state: &mut TrialState, stage: &str| -> Result<()> {
        state.stage = stage.to_string();
        state.seconds = base + start.elapsed().as_secs_f64();
        write_atomic(&dir.join("state.json"), &json_bytes(state)?)
    };
    // 1. Train (or take the source checkpoint).
    let trained = match &cell.source {
        Some(src) => src.clone(),
        None => {
            if state.stage == "start" {
                let mut t = TrainSettings::new(cell.testbed.clone());
                t.knobs = cell.knobs.clone();
                t.decorrelate = Some(if cell.method == "none" {
                    cell.share
                } else {
                    0.0
                });
                t.steps = cell.steps;
                t.out = Some(train_dir.clone());
                t.resume = in_training;
                t.seed = if in_training { None } else { Some(cell.seed) };
                t.checkpoint_every = if cell.checkpoint_every == 0 {
                    DEFAULT_CHECKPOINT_EVERY
                } else {
                    cell.checkpoint_every
                };
                t.eval_episodes = 0;
                t.arch = cell.arch.clone();
                t.curriculum = Curriculum::parse(&cell.curriculum)?;
                train(&t, progress)?;
                save(&mut state, "trained")?;
            }
            train_dir.clone()
        }
    };
    let trained_steps = mesascope_learn::checkpoint::read_meta(&trained)?.steps;
    // 2. Mitigate where the method asks: the audit after is the row's; 3. else audit.
    let (report, before, extra_steps, checkpoint) = match cell.mitigation() {
        Some(method) => {
            let folder = dir.join("mitigated");
            // A fine-tuning cut short starts again (it is not resumable).
            if folder.exists() {
                std::fs::remove_dir_all(&folder).with_context(|| {
                    format!(
                        "cannot clear the unfinished fine-tuning in {}",
                        folder.display()
                    )
                })?;
            }
            let m = mitigate(
                &MitigateSettings {
                    policy: trained.clone(),
                    testbed: cell.testbed.clone(),
                    method,
                    decorrelate: Some(cell.share),
                    steps: cell.mitigate_steps,
                    seed: cell.seed,
                    episodes: cell.episodes,
                    out: Some(folder.clone()),
                },
                progress,
            )?;
            let before = (
                m.before.verdict.label.clone(),
                m.before.verdict.exit_code as i64,
            );
            (m.after, Some(before), Some(m.extra_steps), folder)
        }
        None => {
            progress.stage(&format!("auditing {} ...", trained.display()));
            let mut a = AuditSettings::new(trained.display().to_string(), cell.testbed.clone());
            a.knobs = cell.knobs.clone();
            a.episodes = cell.episodes;
            a.seed = cell.seed;
            let report = run_audit(&a)?;
            write_reports(&report, dir, None)?;
            (report, None, None, trained.clone())
        }
    };
    let f = AuditFigures::of(&report)?;
    state.seconds = base + start.elapsed().as_secs_f64();
    let row = Row {
        cell: cell.clone(),
        verdict: f.kind,
        proxy: f.proxy,
        label: f.label,
        exit_code: f.exit_code,
        rates: f.rates,
        trained_steps: Some(trained_steps),
        extra_steps,
        label_before: before.as_ref().map(|b| b.0.clone()),
        exit_code_before: before.map(|b| b.1),
        seconds: state.seconds,
        restarts: state.restarts,
        resumed_from: state.resumed_from.clone(),
        checkpoint: Some(checkpoint.display().to_string()),
    };
    write_atomic(&dir.join("row.json"), &json_bytes(&row)?)?;
    save(&mut state, "done")?;
    Ok(row)
}

/// Langosco et al.'s shares of decorrelated levels: `mitigate --sweep`'s default.
pub const DEFAULT_SHARES: [f64; 6] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2];

/// `mitigate --sweep`, as a grid: the checkpoint `m.policy` fine-tuned by `m.method` with each
/// share of decorrelated levels (0: the control, the same fine-tuning without one) and `seeds`
/// seeds (`m.seed`, `m.seed + 1`, ...), each audited after.
pub fn mitigation_grid(m: &MitigateSettings, shares: &[f64], seeds: u32) -> Result<Vec<Cell>> {
    if shares.is_empty() || shares.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::bad_setting(format!(
            "`shares` must be values in [0, 1], found {shares:?}"
        )));
    }
    if seeds == 0 {
        return Err(Error::bad_setting("`seeds` must be positive"));
    }
    if m.episodes == 0 {
        return Err(Error::bad_setting("`episodes` must be positive"));
    }
    let source = std::path::absolute(&m.policy).unwrap_or_else(|_| m.policy.clone());
    let mut cells = Vec::new();
    for &share in shares {
        for k in 0..seeds as u64 {
            let cell = Cell {
                testbed: m.testbed.clone(),
                knobs: vec![],
                seed: m.seed + k,
                share,
                method: m.method.name().to_string(),
                arch: None,
                curriculum: uniform(),
                steps: None,
                mitigate_steps: Some(m.fine_tuning_steps()?),
                episodes: m.episodes,
                checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
                source: Some(source.clone()),
            };
            cell.check()?;
            cells.push(cell);
        }
    }
    Ok(cells)
}
