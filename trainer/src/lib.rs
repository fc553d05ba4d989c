//! ausweep's trainer and vision, the half of a worker node that links libtorch: the trainer
//! (backbones, head, loss, metrics, checkpoints), face detection and alignment, dataset
//! preparation from videos, inference, and installing weight files checked against their nets.

pub mod face;
pub mod install;
pub mod predict;
pub mod prepare;
pub mod train;
