//! A trained checkpoint as one self-contained ONNX model: crops in (RGB, 0–255, `[N,3,S,S]`,
//! any N), ImageNet normalisation, backbone, head and sigmoid inside the graph, per-AU
//! outputs out, and the checkpoint's identity in the file's metadata.

use crate::train::backbone;
use crate::train::checkpoint::{self, CheckpointMeta};
use crate::train::imagenet::{MEAN, STD};
use crate::train::loss::INTENSITY_SCALE;
use crate::train::TrainError;
use ausweep_onnx::{Binary, Dim, Graph};
use ausweep_proto::job::{Backbone, Objective};
use std::path::Path;

/// The graph's input: aligned face crops, RGB, 0–255, `[N, 3, S, S]`.
pub const INPUT: &str = "crops";
/// The output every model has: the sigmoid per AU, `[N, K]` (an intensity model's is
/// intensity / 5).
pub const PROBS: &str = "probs";
/// An intensity model's second output: intensity 0–5 per AU, `[N, K]`.
pub const INTENSITY: &str = "intensity";

/// The metadata keys every exported model carries (besides `ausweep.checkpoint`, the whole
/// checkpoint metadata as JSON).
pub const KEYS: [&str; 8] = [
    "ausweep.aus",
    "ausweep.thresholds",
    "ausweep.objective",
    "ausweep.backbone",
    "ausweep.input_size",
    "ausweep.normalisation",
    "ausweep.crop",
    "ausweep.source_sha256",
];

/// The ONNX model of checkpoint `file` (`X.safetensors` with its `X.json`, sha256 verified),
/// and the checkpoint's metadata.
pub fn au_model(file: &Path) -> Result<(Vec<u8>, CheckpointMeta), TrainError> {
    let meta = checkpoint::read_meta(file)?;
    let kind = Backbone::parse(&meta.backbone).map_err(|message| TrainError::Checkpoint {
        path: file.into(),
        message,
    })?;
    let named = ausweep_vision::tensors::onnx_weights(file, |n| {
        n.starts_with("backbone.") || n.starts_with("head.")
    })?;
    let mut g = Graph::new(&format!("ausweep_{}", meta.backbone), named);
    let s = i64::from(meta.input_size);
    let k = meta.aus.len() as i64;
    let crops = g.input(
        INPUT,
        &[
            Dim::Named("batch"),
            Dim::Fixed(3),
            Dim::Fixed(s),
            Dim::Fixed(s),
        ],
    );
    let scale = g.constant("pixel_scale", &[], &[255.0]);
    let mean = g.constant("imagenet_mean", &[1, 3, 1, 1], &MEAN);
    let std = g.constant("imagenet_std", &[1, 3, 1, 1], &STD);
    let x = g.binary(Binary::Div, &crops, &scale);
    let x = g.binary(Binary::Sub, &x, &mean);
    let x = g.binary(Binary::Div, &x, &std);
    let features = backbone::onnx(&mut g, &x, kind, "backbone.")?;
    // The head: GAP → BN → ReLU → (dropout: identity at inference) → Linear → sigmoid.
    let pooled = g.pooled(&features);
    let h = g.batch_norm(&pooled, "head.bn")?;
    let h = g.relu(&h);
    let logits = g.linear(&h, "head.fc")?;
    let probs = g.sigmoid(&logits);
    let out = [Dim::Named("batch"), Dim::Fixed(k)];
    g.output(&probs, PROBS, &out);
    if meta.objective == Objective::Intensity {
        let five = g.constant("intensity_scale", &[], &[INTENSITY_SCALE as f32]);
        let levels = g.binary(Binary::Mul, &probs, &five);
        g.output(&levels, INTENSITY, &out);
    }
    let bytes = g.finish("ausweep", &metadata(&meta))?;
    Ok((bytes, meta))
}

/// Writes [`au_model`] of `file` to `out` (atomically); the checkpoint's metadata.
pub fn write_au_model(file: &Path, out: &Path) -> Result<CheckpointMeta, TrainError> {
    let (bytes, meta) = au_model(file)?;
    ausweep_fsutil::write(out, &bytes).map_err(TrainError::io(out))?;
    Ok(meta)
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// The file's metadata: flat keys a runtime's user reads without JSON, then the whole record.
fn metadata(meta: &CheckpointMeta) -> Vec<(String, String)> {
    let crop = meta.dataset.as_ref().map_or_else(
        || "unknown (a checkpoint of an older version)".to_string(),
        |d| serde_json::json!({"crop": d.crop, "template_points": d.template_points, "dataset": d.kind, "content_hash": d.content_hash}).to_string(),
    );
    let values = [
        join(&meta.aus),
        join(&meta.thresholds),
        format!("{:?}", meta.objective).to_lowercase(),
        meta.backbone.clone(),
        meta.input_size.to_string(),
        crate::train::provenance::IMAGENET_NORMALISATION.to_string(),
        crop,
        meta.sha256.clone(),
    ];
    let mut v: Vec<(String, String)> = KEYS
        .iter()
        .zip(values)
        .map(|(k, v)| ((*k).to_string(), v))
        .collect();
    v.push((
        "ausweep.checkpoint".into(),
        serde_json::to_string(meta).unwrap_or_default(),
    ));
    v
}
