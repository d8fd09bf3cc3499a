//! Cells with MiniGrid's (object, colour, state) vocabulary, and the grid that holds them.
//!
//! The index tables are MiniGrid's (`minigrid.core.constants`), so an encoded observation reads the
//! same to a MiniGrid user. The one departure: mesascope agents have no facing direction, so the
//! agent cell's state field carries the number of keys it holds.

use serde::{Deserialize, Serialize};

/// MiniGrid `OBJECT_TO_IDX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Object {
    Unseen = 0,
    Empty = 1,
    Wall = 2,
    Floor = 3,
    Door = 4,
    Key = 5,
    Ball = 6,
    Box = 7,
    Goal = 8,
    Lava = 9,
    Agent = 10,
}

impl Object {
    pub const ALL: [Object; 11] = [
        Object::Unseen,
        Object::Empty,
        Object::Wall,
        Object::Floor,
        Object::Door,
        Object::Key,
        Object::Ball,
        Object::Box,
        Object::Goal,
        Object::Lava,
        Object::Agent,
    ];
    pub const COUNT: usize = 11;

    pub fn from_index(i: u8) -> Option<Object> {
        Object::ALL.get(i as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Object::Unseen => "unseen",
            Object::Empty => "empty",
            Object::Wall => "wall",
            Object::Floor => "floor",
            Object::Door => "door",
            Object::Key => "key",
            Object::Ball => "ball",
            Object::Box => "box",
            Object::Goal => "goal",
            Object::Lava => "lava",
            Object::Agent => "agent",
        }
    }

    /// Whether the object's colour means something (MiniGrid stores colour 0 for the others).
    pub fn is_coloured(self) -> bool {
        !matches!(self, Object::Unseen | Object::Empty | Object::Agent)
    }
}

/// MiniGrid `COLOR_TO_IDX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Colour {
    Red = 0,
    Green = 1,
    Blue = 2,
    Purple = 3,
    Yellow = 4,
    Grey = 5,
}

impl Colour {
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Purple,
        Colour::Yellow,
        Colour::Grey,
    ];
    pub const COUNT: usize = 6;

    pub fn from_index(i: u8) -> Option<Colour> {
        Colour::ALL.get(i as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Purple => "purple",
            Colour::Yellow => "yellow",
            Colour::Grey => "grey",
        }
    }

    /// The letter used in ASCII levels (grey is `E`, since `G` is green).
    pub fn glyph(self) -> char {
        match self {
            Colour::Red => 'R',
            Colour::Green => 'G',
            Colour::Blue => 'B',
            Colour::Purple => 'P',
            Colour::Yellow => 'Y',
            Colour::Grey => 'E',
        }
    }

    pub fn from_glyph(c: char) -> Option<Colour> {
        Colour::ALL
            .iter()
            .copied()
            .find(|col| col.glyph() == c.to_ascii_uppercase())
    }
}

/// MiniGrid `STATE_TO_IDX` (doors).
pub const DOOR_OPEN: u8 = 0;
pub const DOOR_CLOSED: u8 = 1;
pub const DOOR_LOCKED: u8 = 2;
/// Number of distinct state values (MiniGrid's door states).
pub const STATE_COUNT: usize = 3;

/// One grid cell, laid out exactly as MiniGrid's encoding triple so that the u8 observation is a
/// copy of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Cell {
    pub object: u8,
    pub colour: u8,
    pub state: u8,
}

impl Cell {
    pub const EMPTY: Cell = Cell::raw(Object::Empty, 0, 0);
    pub const WALL: Cell = Cell::raw(Object::Wall, Colour::Grey as u8, 0);
    pub const LAVA: Cell = Cell::raw(Object::Lava, Colour::Red as u8, 0);

    pub const fn raw(object: Object, colour: u8, state: u8) -> Cell {
        Cell {
            object: object as u8,
            colour,
            state,
        }
    }

    pub const fn new(object: Object, colour: Colour) -> Cell {
        Cell::raw(object, colour as u8, 0)
    }

    pub fn door(colour: Colour, state: u8) -> Cell {
        Cell::raw(Object::Door, colour as u8, state)
    }

    #[inline]
    pub fn object(self) -> Object {
        Object::from_index(self.object).unwrap_or(Object::Unseen)
    }

    #[inline]
    pub fn colour(self) -> Colour {
        Colour::from_index(self.colour).unwrap_or(Colour::Red)
    }

    #[inline]
    pub fn is(self, object: Object, colour: Colour) -> bool {
        self.object == object as u8 && self.colour == colour as u8
    }

    /// Whether the agent can stand here. Keys, boxes, goals and lava are entered (and act on
    /// entry); walls, balls and closed doors block.
    #[inline]
    pub fn walkable(self) -> bool {
        // Non-short-circuit operators: this sits on the step's hot path, where a random policy
        // makes a branch on it unpredictable.
        WALKABLE[self.object as usize & 15]
            & ((self.object != Object::Door as u8) | (self.state == DOOR_OPEN))
    }
}

const WALKABLE: [bool; 16] = {
    let mut w = [false; 16];
    w[Object::Empty as usize] = true;
    w[Object::Floor as usize] = true;
    w[Object::Door as usize] = true; // open doors only, checked in `walkable`
    w[Object::Key as usize] = true;
    w[Object::Box as usize] = true;
    w[Object::Goal as usize] = true;
    w[Object::Lava as usize] = true;
    w
};

/// A cell index into a row-major grid: `row * width + col`.
pub type Pos = usize;

/// The four moves, in action order: up (north), right (east), down (south), left (west).
pub const MOVE_NAMES: [&str; 4] = ["up", "right", "down", "left"];
pub const N_MOVES: usize = 4;

/// A row-major grid of cells, `height` rows of `width`.
#[derive(Debug, PartialEq, Eq)]
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub cells: Vec<Cell>,
}

impl Clone for Grid {
    fn clone(&self) -> Grid {
        Grid {
            width: self.width,
            height: self.height,
            cells: self.cells.clone(),
        }
    }

    /// Reuses this grid's buffer: every environment reset goes through here.
    fn clone_from(&mut self, source: &Grid) {
        self.width = source.width;
        self.height = source.height;
        self.cells.clone_from(&source.cells);
    }
}

impl Grid {
    pub fn new(width: usize, height: usize, fill: Cell) -> Grid {
        Grid {
            width,
            height,
            cells: vec![fill; width * height],
        }
    }

    /// A room: walls on the border, empty inside.
    pub fn room(width: usize, height: usize) -> Grid {
        let mut g = Grid::new(width, height, Cell::EMPTY);
        for r in 0..height {
            for c in 0..width {
                if r == 0 || c == 0 || r + 1 == height || c + 1 == width {
                    g.cells[r * width + c] = Cell::WALL;
                }
            }
        }
        g
    }

    #[inline]
    pub fn pos(&self, row: usize, col: usize) -> Pos {
        row * self.width + col
    }

    #[inline]
    pub fn row_col(&self, p: Pos) -> (usize, usize) {
        (p / self.width, p % self.width)
    }

    #[inline]
    pub fn get(&self, p: Pos) -> Cell {
        self.cells[p]
    }

    #[inline]
    pub fn set(&mut self, p: Pos, c: Cell) {
        self.cells[p] = c;
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn is_border(&self, p: Pos) -> bool {
        let (r, c) = self.row_col(p);
        r == 0 || c == 0 || r + 1 == self.height || c + 1 == self.width
    }

    /// The border's cells, clockwise from the top-left corner, without a division per cell
    /// (testbeds look for cues there at every reset).
    pub fn border_cells(&self) -> impl Iterator<Item = Pos> + '_ {
        let (w, h) = (self.width, self.height);
        let top = 0..w;
        let right = (1..h).map(move |r| r * w + w - 1);
        let bottom = (0..w - 1).rev().map(move |c| (h - 1) * w + c);
        let left = (1..h - 1).rev().map(move |r| r * w);
        top.chain(right).chain(bottom).chain(left)
    }

    /// Offsets of the four moves in cell indices. Valid from any interior cell because the
    /// border never lets the agent stand on it (checked when a level is built).
    #[inline]
    pub fn move_offsets(&self) -> [isize; 4] {
        let w = self.width as isize;
        [-w, 1, w, -1]
    }

    /// The neighbour of an interior cell `p` in direction `m`.
    #[inline]
    pub fn neighbour(&self, p: Pos, m: usize) -> Pos {
        (p as isize + self.move_offsets()[m]) as usize
    }

    /// Positions holding cells that satisfy `f`, in row-major order.
    pub fn find(&self, mut f: impl FnMut(Cell) -> bool) -> Vec<Pos> {
        (0..self.cells.len())
            .filter(|&p| f(self.cells[p]))
            .collect()
    }

    /// Manhattan distance between two cells.
    pub fn manhattan(&self, a: Pos, b: Pos) -> usize {
        let (ra, ca) = self.row_col(a);
        let (rb, cb) = self.row_col(b);
        ra.abs_diff(rb) + ca.abs_diff(cb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_cells_are_the_border_once_each() {
        for (w, h) in [(3, 3), (5, 4), (9, 9), (4, 7)] {
            let g = Grid::room(w, h);
            let mut cells: Vec<Pos> = g.border_cells().collect();
            assert_eq!(cells.len(), 2 * w + 2 * h - 4, "{w}x{h}");
            assert!(cells.iter().all(|&p| g.is_border(p)));
            cells.sort_unstable();
            cells.dedup();
            assert_eq!(cells.len(), 2 * w + 2 * h - 4, "{w}x{h}: duplicates");
        }
    }

    #[test]
    fn walkability_follows_the_physics_table() {
        assert!(Cell::EMPTY.walkable() && Cell::LAVA.walkable());
        assert!(!Cell::WALL.walkable());
        assert!(Cell::new(Object::Key, Colour::Yellow).walkable());
        assert!(!Cell::new(Object::Ball, Colour::Blue).walkable());
        assert!(Cell::door(Colour::Red, DOOR_OPEN).walkable());
        assert!(!Cell::door(Colour::Red, DOOR_CLOSED).walkable());
        assert!(!Cell::door(Colour::Red, DOOR_LOCKED).walkable());
    }
}
