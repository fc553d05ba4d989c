//! What turns a batch of frames into faces and AU outputs: a libtorch checkpoint (the full
//! build) or an exported ONNX model in ONNX Runtime (both builds). The rest of `predict`
//! (inputs, outputs, tally) is the same for both.

use anyhow::Result;
use ausweep_edge::aus::AuPrediction;
pub use ausweep_edge::model::ModelInfo;
use ausweep_edge::mtcnn::Face;
use image::RgbImage;

/// Each frame's faces, largest first, with their AU outputs.
pub type Found = Vec<Vec<(Face, AuPrediction)>>;

/// A model and its detector.
pub trait Engine {
    /// What the model is.
    fn info(&self) -> &ModelInfo;
    /// Its decision thresholds.
    fn thresholds(&self) -> &[f64];
    /// Where it runs, for the header line.
    fn device(&self) -> String;
    /// Detects, aligns and predicts one batch of same-size frames.
    fn run(&mut self, frames: &[&RgbImage]) -> Result<Found>;
}

/// Each frame's faces beside their predictions, `preds` in the order of the faces (frame by
/// frame, largest first).
pub fn pair(found: Vec<Vec<Face>>, preds: Vec<AuPrediction>) -> Found {
    let mut preds = preds.into_iter();
    found
        .into_iter()
        .map(|faces| {
            faces
                .into_iter()
                .filter_map(|f| Some((f, preds.next()?)))
                .collect()
        })
        .collect()
}
