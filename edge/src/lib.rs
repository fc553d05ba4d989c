//! Prediction without libtorch: the ONNX files `ausweep export` writes, run by ONNX Runtime
//! (its shared library opened at run time, so nothing is linked at build time), with MTCNN's
//! steps, the aligned crop and the AU decisions in plain Rust. The pure parts (boxes, NMS, crop
//! geometry, decisions, emotion rules, the ffmpeg decoder) are shared with the libtorch
//! predictor, so both builds find the same faces and decide alike.

pub mod aus;
pub mod crop;
pub mod emotions;
pub mod model;
pub mod mtcnn;
pub mod nms;
pub mod pixels;
pub mod runtime;
pub mod video;

/// Errors of the ONNX predictor.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// ONNX Runtime's library could not be found or opened.
    #[error("ONNX Runtime: {0}")]
    Library(String),
    /// ONNX Runtime refused a model or failed running it.
    #[error("ONNX Runtime: {path}: {message}")]
    Runtime {
        /// The model file.
        path: std::path::PathBuf,
        /// What it said.
        message: String,
    },
    /// A model file is not an ausweep export (its metadata is missing or malformed).
    #[error("{path}: {message}")]
    Model {
        /// The model file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An image or batch has the wrong shape.
    #[error("input: {0}")]
    Input(String),
}
