//! ausweep's trainer, over `ausweep-vision`: backbones, head, loss, the training loop and
//! checkpoints (`train`), the AU model at inference (`predict`), the AU model as an ONNX file
//! (`export`), and installing weight files checked against their nets (`install`).

pub mod export;
pub mod install;
pub mod predict;
pub mod train;
