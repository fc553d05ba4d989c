//! Progress events, one JSON object per line on the trainer's stdout, which the agent relays.

use super::result::{AuScore, Scores};
use serde::{Deserialize, Serialize};

/// One progress event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The job started: data sizes and parameter counts.
    Start {
        /// Job name.
        job: String,
        /// Backbone.
        backbone: String,
        /// Stage.
        stage: u8,
        /// Fold.
        fold: u32,
        /// Frames in train / validation / test.
        frames: [usize; 3],
        /// All parameters of backbone + head.
        params_total: i64,
        /// Parameters this stage trains.
        params_trainable: i64,
        /// Device name.
        device: String,
        /// Whether stage 1 trains on cached pooled features.
        feature_cache: bool,
        /// libtorch's intra-op threads (a worker's CPU slot sets them to its share).
        #[serde(default)]
        threads: usize,
    },
    /// Training continues from a checkpoint.
    Resume {
        /// Epochs already done.
        epoch: u32,
        /// The checkpoint.
        checkpoint: String,
    },
    /// A training step (every few steps).
    Step {
        /// Epoch (1-based).
        epoch: u32,
        /// Step within the epoch (1-based).
        step: usize,
        /// Steps in the epoch.
        steps: usize,
        /// Loss of this step.
        loss: f64,
        /// Training throughput so far this epoch.
        images_per_sec: f64,
    },
    /// An epoch finished.
    Epoch {
        /// Epoch (1-based).
        epoch: u32,
        /// Mean training loss.
        loss: f64,
        /// Validation average F1 at 0.5 (None without validation subjects).
        val_f1: Option<f64>,
        /// Validation per-AU F1.
        val_per_au: Vec<AuScore>,
        /// Validation mean ICC(3,1) of an intensity job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        val_icc: Option<f64>,
        /// Training images per second.
        images_per_sec: f64,
        /// Seconds this epoch took.
        seconds: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Epoch it holds.
        epoch: u32,
        /// The file.
        path: String,
        /// Its sha256.
        sha256: String,
    },
    /// Early stopping ended training.
    EarlyStop {
        /// Last epoch trained.
        epoch: u32,
    },
    /// The job finished; the same scores are in result.json.
    Done {
        /// Test scores.
        test: Scores,
    },
}

/// Prints an event as one JSON line on stdout (a closed stdout is ignored: training goes on).
pub fn print(e: &Event) {
    use std::io::Write;
    if let Ok(s) = serde_json::to_string(e) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}").and_then(|_| out.flush());
    }
}
