//! Where a model's training data came from, recorded in every checkpoint and result: the
//! dataset's kind and content hash, its frames and AUs, and how its faces were cropped, so
//! `ausweep predict` can crop new faces the same way and a report can say what it measured.

use ausweep_data::pack::PackedCache;
use ausweep_proto::job::{CropTemplate, DataSource, DataSpec};
use serde::{Deserialize, Serialize};

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

/// The identity of `data` as read from `pack`.
pub fn identity(data: &DataSpec, pack: &PackedCache) -> DatasetIdentity {
    use crate::prepare::Template;
    let (kind, crop, points) = match &data.source {
        DataSource::Synthetic { .. } => ("synthetic", CropKind::Eyes, Template::Eyes.points()),
        DataSource::Disfa { .. } => ("disfa", CropKind::CentreSquare, Vec::new()),
        DataSource::DisfaVideos { template, .. } => match template {
            CropTemplate::Eyes => ("disfa_videos", CropKind::Eyes, Template::Eyes.points()),
            CropTemplate::Five => ("disfa_videos", CropKind::Five, Template::Five.points()),
        },
        DataSource::List { .. } => ("list", CropKind::AsGiven, Vec::new()),
    };
    DatasetIdentity {
        kind: kind.into(),
        content_hash: pack.source_hash().to_string(),
        frames: pack.len() as u64,
        aus: pack.aus().to_vec(),
        crop,
        template_points: points,
        size: pack.size(),
        normalisation: IMAGENET_NORMALISATION.into(),
    }
}
