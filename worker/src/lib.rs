//! ausweep's worker: the trainer (backbones, head, loss, metrics, checkpoints) and, later, the agent.

pub mod train;
