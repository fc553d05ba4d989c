//! ausweep's worker: the agent (devices, coordinator session, supervised trainers, checkpoint
//! transfer, drain) and the trainer (backbones, head, loss, metrics, checkpoints).

pub mod agent;
pub mod face;
pub mod predict;
pub mod prepare;
pub mod train;
pub mod weights;
