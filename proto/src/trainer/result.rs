//! What a finished trainer reports (`result.json`, the `done` event): test and validation scores,
//! the final checkpoint and the identity of the data it was trained on.

use serde::{Deserialize, Serialize};

/// An intensity job's test-fold scores as the wire carries them.
pub fn intensity_to_wire(s: &ausweep_metrics::IntensityScores) -> crate::v1::IntensityResult {
    crate::v1::IntensityResult {
        aus: s
            .per_au
            .iter()
            .map(|a| crate::v1::AuIntensity {
                au: a.au,
                icc: a.icc,
                mae: a.mae,
                pcc: a.pcc,
                support: a.support,
                n: a.n,
            })
            .collect(),
        avg_icc: s.avg_icc,
        avg_mae: s.avg_mae,
        avg_pcc: s.avg_pcc,
    }
}

/// What a finished job reports (also written as `result.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Job name.
    pub job: String,
    /// Backbone.
    pub backbone: String,
    /// Stage.
    pub stage: u8,
    /// Fold.
    pub fold: u32,
    /// AUs in output order.
    pub aus: Vec<u32>,
    /// Per-AU decision thresholds used for the test scores.
    pub thresholds: Vec<f64>,
    /// Test-fold scores.
    pub test: Scores,
    /// Validation scores at the chosen thresholds (None without validation subjects).
    pub val: Option<Scores>,
    /// Parameters of backbone + head.
    pub params_total: i64,
    /// Parameters this stage trained.
    pub params_trainable: i64,
    /// Epochs trained in all (including those before a resume).
    pub epochs: u32,
    /// Epoch this run resumed after, if it resumed.
    pub resumed_from_epoch: Option<u32>,
    /// Seconds spent training.
    pub train_seconds: f64,
    /// Mean training throughput.
    pub images_per_sec: f64,
    /// The final checkpoint.
    pub checkpoint: String,
    /// Its sha256.
    pub checkpoint_sha256: String,
    /// Frames in train / validation / test.
    pub frames: [usize; 3],
    /// An intensity job's test-fold scores (ICC(3,1), MAE, PCC per AU); `test` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity: Option<ausweep_metrics::IntensityScores>,
    /// An intensity job's validation scores (None without validation subjects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_intensity: Option<ausweep_metrics::IntensityScores>,
    /// The trainer's peak resident memory (VmHWM) when it wrote this result, bytes.
    #[serde(default)]
    pub peak_rss_bytes: u64,
    /// The training data's identity and crop geometry.
    #[serde(default)]
    pub dataset: Option<DatasetIdentity>,
    /// The test fold scored with the int8 kernels `ausweep export --int8` writes, at the same
    /// thresholds (occurrence jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_test: Option<Scores>,
}

/// Scores of one AU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuScore {
    /// The AU number.
    pub au: u32,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1 = 2PR/(P+R), 0 when both are 0.
    pub f1: f64,
    /// Frames where the AU is present.
    pub support: u64,
}

/// Per-AU scores plus their average F1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// One entry per AU, in AU order.
    pub per_au: Vec<AuScore>,
    /// Mean F1 over the AUs.
    pub avg_f1: f64,
}

/// How the training frames were cropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropKind {
    /// Eye centres placed on two template points (ausweep's synthetic frames and `eyes`).
    Eyes,
    /// Five landmarks fitted to the `five` template.
    Five,
    /// The centre square of whole frames (DISFA frames as given; no face alignment).
    CentreSquare,
    /// Whatever the listed images were (unknown to ausweep).
    AsGiven,
}

/// The dataset identity a checkpoint and a job result carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    /// `synthetic`, `disfa`, `disfa_videos` or `list`.
    pub kind: String,
    /// The packed dataset's source hash (content of labels and videos or frames, and settings).
    pub content_hash: String,
    /// Frames in the dataset.
    pub frames: u64,
    /// AU columns of the dataset.
    pub aus: Vec<u32>,
    /// How faces were cropped.
    pub crop: CropKind,
    /// The crop template's points (landmark index, side fractions); empty without one.
    pub template_points: Vec<(usize, [f64; 2])>,
    /// Crop side, pixels.
    pub size: u32,
    /// Input normalisation.
    pub normalisation: String,
}

/// The normalisation every backbone input gets.
pub const IMAGENET_NORMALISATION: &str =
    "imagenet: (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]";

/// The stem of epoch `e`'s checkpoint in an output folder's `checkpoints/`.
pub fn epoch_stem(e: u32) -> String {
    format!("epoch-{e:04}")
}
