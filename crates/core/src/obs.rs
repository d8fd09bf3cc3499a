//! Observations of the full grid, written into caller-supplied buffers.
//!
//! - `u8`: MiniGrid's encoding, `[H][W][3]` = (object, colour, state) with MiniGrid's index
//!   tables, row-major (MiniGrid's own `grid.encode()` is `[W][H][3]`, the transpose). The agent
//!   cell is (10, 0, keys carried).
//! - `planes`: float32 one-hot planes `[C][H][W]` (batched `[N, C, H, W]`), `C = PLANES`, in the
//!   order `plane_names()` gives: 11 object planes, 6 colour planes (set only for objects that
//!   have a colour), 3 state planes (door state; for the agent, keys carried capped at 2).

use crate::grid::{Cell, Colour, Grid, Object, STATE_COUNT};
use crate::state::EpisodeState;

pub const PLANES: usize = Object::COUNT + Colour::COUNT + STATE_COUNT;

const _: () = assert!(std::mem::size_of::<Cell>() == 3 && std::mem::align_of::<Cell>() == 1);

/// The planes in order, e.g. `object:wall`, `colour:green`, `state:1`.
pub fn plane_names() -> Vec<String> {
    let mut v: Vec<String> = Object::ALL
        .iter()
        .map(|o| format!("object:{}", o.name()))
        .collect();
    v.extend(Colour::ALL.iter().map(|c| format!("colour:{}", c.name())));
    v.extend((0..STATE_COUNT).map(|s| format!("state:{s}")));
    v
}

/// Bytes in one u8 observation.
pub fn u8_len(grid: &Grid) -> usize {
    grid.len() * 3
}

/// Floats in one plane observation.
pub fn planes_len(grid: &Grid) -> usize {
    grid.len() * PLANES
}

fn cells_as_bytes(cells: &[Cell]) -> &[u8] {
    // SAFETY: `Cell` is `repr(C)` of three `u8` (size 3, alignment 1, asserted above), so a slice
    // of cells is a slice of `3 * len` initialized bytes.
    unsafe { std::slice::from_raw_parts(cells.as_ptr() as *const u8, cells.len() * 3) }
}

/// The agent's cell as MiniGrid encodes it.
#[inline]
pub fn agent_cell(keys: u8) -> Cell {
    Cell::raw(Object::Agent, 0, keys)
}

/// Writes the u8 observation; `out.len()` must be `u8_len`.
#[inline]
pub fn encode_u8(state: &EpisodeState, out: &mut [u8]) {
    out.copy_from_slice(cells_as_bytes(&state.grid.cells));
    let a = agent_cell(state.keys);
    let i = state.agent * 3;
    out[i] = a.object;
    out[i + 1] = a.colour;
    out[i + 2] = a.state;
}

/// Writes the one-hot planes; `out.len()` must be `planes_len`.
pub fn encode_planes(state: &EpisodeState, out: &mut [f32]) {
    out.fill(0.0);
    let n = state.grid.len();
    for (p, &cell) in state.grid.cells.iter().enumerate() {
        let cell = if p == state.agent {
            agent_cell(state.keys)
        } else {
            cell
        };
        write_cell_planes(cell, p, n, out);
    }
}

/// Decodes one u8 triple into its planes (used for observations given as u8 and for encoding).
#[inline]
pub fn write_cell_planes(cell: Cell, p: usize, n: usize, out: &mut [f32]) {
    let obj = (cell.object as usize).min(Object::COUNT - 1);
    out[obj * n + p] = 1.0;
    let object = cell.object();
    if object.is_coloured() {
        let c = (cell.colour as usize).min(Colour::COUNT - 1);
        out[(Object::COUNT + c) * n + p] = 1.0;
    }
    if object == Object::Door || object == Object::Agent {
        let s = (cell.state as usize).min(STATE_COUNT - 1);
        out[(Object::COUNT + Colour::COUNT + s) * n + p] = 1.0;
    }
}

/// Converts u8 observations `[N][H][W][3]` to planes `[N][C][H][W]`.
pub fn u8_to_planes(obs: &[u8], cells: usize, out: &mut [f32]) {
    let n_obs = obs.len() / (cells * 3);
    out.fill(0.0);
    for i in 0..n_obs {
        let src = &obs[i * cells * 3..(i + 1) * cells * 3];
        let dst = &mut out[i * cells * PLANES..(i + 1) * cells * PLANES];
        for p in 0..cells {
            let cell = Cell {
                object: src[3 * p],
                colour: src[3 * p + 1],
                state: src[3 * p + 2],
            };
            write_cell_planes(cell, p, cells, dst);
        }
    }
}
