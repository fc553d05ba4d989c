//! ausweep's vision, the libtorch layer under the trainer: MTCNN face detection and alignment
//! (`face`), preparing aligned-face datasets from videos with the one ffmpeg decoder
//! (`prepare`), and strict loading of safetensors files into a VarStore (`tensors`).

pub mod face;
pub mod prepare;
pub mod tensors;
