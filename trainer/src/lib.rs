//! ausweep's trainer, over `ausweep-vision`: backbones, head, loss, the training loop and
//! checkpoints (`train`), the AU model at inference (`predict`), and installing weight files
//! checked against their nets (`install`).

pub mod install;
pub mod predict;
pub mod train;
