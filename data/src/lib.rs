//! ausweep's datasets: readers for DISFA and list-format data, subject-exclusive folds,
//! a synthetic DISFA renderer, and a packed uint8 cache the trainer reads from.

#![warn(missing_docs)]

pub mod disfa;
pub mod error;
pub mod folds;
pub mod frame;
pub mod list;
mod loader;
pub mod pack;
mod raster;
pub mod samples;
pub mod skip;
pub mod source_hash;
pub mod synth;

pub use disfa::{DisfaLayout, FrameExt, ReadOptions};
pub use error::{DataError, Result};
pub use folds::{FoldScheme, FoldSplit};
pub use samples::{Samples, DISFA_AUS};
pub use skip::{SkipReason, SkipReport};
