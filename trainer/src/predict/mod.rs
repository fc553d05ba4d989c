//! Inference with a trained checkpoint: the AU model on aligned face crops, and the emotions
//! the AU rules can decide from the AUs the model knows.

pub mod au_model;
pub mod emotions;

pub use au_model::{AuModel, AuPrediction};
pub use emotions::{emotions, EmotionCall};
