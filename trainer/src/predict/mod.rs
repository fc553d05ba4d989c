//! Inference with a trained checkpoint: the AU model on aligned face crops, and the emotions
//! the AU rules can decide from the AUs the model knows.

pub mod au_model;
pub use ausweep_edge::emotions;

pub use au_model::AuModel;
pub use ausweep_edge::aus::AuPrediction;
pub use emotions::{emotions, EmotionCall};
