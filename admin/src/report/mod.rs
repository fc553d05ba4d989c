//! Reports: published baselines, the F1 protocol on any prediction file, and the sweep report
//! (tables and the Fig. 5 chart) next to the baselines, with AU intensity where jobs trained it.

pub use ausweep_coordinator::baselines;
pub mod chart;
pub mod cmd;
pub mod cost;
pub mod intensity;
pub mod model;
pub mod render;
pub mod score;
pub mod source;

#[cfg(test)]
mod tests;

pub use model::{build, Report, SweepInput};
