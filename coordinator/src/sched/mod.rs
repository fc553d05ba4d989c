//! The scheduler: one writer owns every state change.
//!
//! [`state::State`] is the pure state machine (leases, fencing, retries, placement, pending
//! reasons), driven with an explicit clock so it can be property-tested; [`actor::Scheduler`]
//! runs it as an event loop that commits each round's writes with one durable flush before any
//! caller of that round gets its answer.

pub mod actor;
mod reasons;
pub mod state;
pub mod types;

#[cfg(test)]
mod attempt_tests;
#[cfg(test)]
mod proptests;

pub use actor::Scheduler;
pub use state::State;
pub use types::*;

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests;
