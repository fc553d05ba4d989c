//! The agent↔trainer contract: how a trainer exits, the progress events it prints, and the
//! result it writes; the agent reads all three as these types and never the trainer's words.

mod exit;
pub mod progress;
pub mod result;

pub use exit::TrainerExit;
