//! Face detection and alignment for `ausweep predict`: MTCNN (P-, R-, O-net) in libtorch with the
//! weights of PyPI facenet-pytorch, and an eye-aligned crop that matches the training frames.

pub mod align;
pub mod detect;
pub mod export;
pub mod nets;
pub use ausweep_edge::nms;

pub use align::{AlignSpec, FaceCrop};
pub use detect::{Detector, DetectorConfig, Face};

/// Errors of the face pipeline.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// The MTCNN weights could not be loaded.
    #[error("MTCNN weights {path}: {message} (run `make setup`, which converts them from facenet-pytorch)")]
    Weights {
        /// The weights file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An input tensor has the wrong shape.
    #[error("image batch: {0}")]
    Input(String),
    /// libtorch failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// An RGB image as a `[3,H,W]` u8 tensor (CPU).
pub fn image_tensor(img: &image::RgbImage) -> tch::Tensor {
    let (w, h) = img.dimensions();
    tch::Tensor::from_slice(img.as_raw())
        .view([i64::from(h), i64::from(w), 3])
        .permute([2, 0, 1])
        .contiguous()
}
