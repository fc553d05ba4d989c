//! The evaluation metrics, one implementation that the trainer and `ausweep score` share:
//! pooled precision, recall and F1 of AU occurrence ([`f1`]), and ICC(3,1), MAE and Pearson's r
//! of AU intensity ([`intensity`]). Plain functions over slices; no I/O.

pub mod f1;
pub mod intensity;

pub use f1::f1_from_counts;
pub use intensity::{icc31, icc31_raters, mae, pcc, AuIntensity, IntensityScores};
