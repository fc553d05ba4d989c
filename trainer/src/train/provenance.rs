//! Where a model's training data came from, recorded in every checkpoint and result: the
//! dataset's kind and content hash, its frames and AUs, and how its faces were cropped, so
//! `ausweep predict` can crop new faces the same way and a report can say what it measured.

use ausweep_data::pack::PackedCache;
use ausweep_proto::job::{CropTemplate, DataSource, DataSpec};

pub use ausweep_proto::trainer::result::{CropKind, DatasetIdentity, IMAGENET_NORMALISATION};

/// The identity of `data` as read from `pack`.
pub fn identity(data: &DataSpec, pack: &PackedCache) -> DatasetIdentity {
    use ausweep_vision::prepare::Template;
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
