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

pub mod int8;

/// How an exported file stores its convolution and dense kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// f32, as trained.
    Fp32,
    /// int8 per output channel, restored by `DequantizeLinear` (`ausweep export --int8` keeps
    /// such a file only under [`int8::Int8Drop::check`]).
    Int8,
}

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

/// An exported AU model.
#[derive(Debug, Clone)]
pub struct AuOnnx {
    /// The ONNX file's bytes.
    pub bytes: Vec<u8>,
    /// The checkpoint's metadata.
    pub meta: CheckpointMeta,
    /// Multiply-adds per face at the checkpoint's input size (convolutions and dense layers).
    pub macs: u64,
    /// For an int8 file: what int8 kernels cost the checkpoint's test fold, where it was measured.
    pub int8: Option<int8::Int8Drop>,
}

/// The ONNX model of checkpoint `file` (`X.safetensors` with its `X.json`, sha256 verified)
/// with `kernels`.
pub fn au_model(file: &Path, kernels: Kernels) -> Result<AuOnnx, TrainError> {
    let meta = checkpoint::read_meta(file)?;
    let drop = int8::Int8Drop::of(&meta).filter(|_| kernels == Kernels::Int8);
    let kind = Backbone::parse(&meta.backbone).map_err(|message| TrainError::Checkpoint {
        path: file.into(),
        message,
    })?;
    let named = ausweep_vision::tensors::onnx_weights(file, |n| {
        n.starts_with("backbone.") || n.starts_with("head.")
    })?;
    let mut g = Graph::new(&format!("ausweep_{}", meta.backbone), named);
    if kernels == Kernels::Int8 {
        g = g.with_int8_kernels();
    }
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
    // Every input dimension but the batch is fixed, so the count is known.
    let macs = g.macs().unwrap_or(0);
    let mut entries = metadata(&meta);
    entries.push(("ausweep.macs_per_face".into(), macs.to_string()));
    entries.push((
        "ausweep.kernels".into(),
        match drop {
            None => "fp32".into(),
            Some(d) => format!(
                "int8 (weight-only, per output channel, symmetric); test-fold average F1 {:.2} %                  (fp32 {:.2} %)",
                d.int8_f1, d.fp32_f1
            ),
        },
    ));
    let bytes = g.finish("ausweep", &entries)?;
    Ok(AuOnnx {
        bytes,
        meta,
        macs,
        int8: drop,
    })
}

/// Writes [`au_model`] of `file` to `out` (atomically); what it wrote, `bytes` emptied.
pub fn write_au_model(file: &Path, out: &Path, kernels: Kernels) -> Result<AuOnnx, TrainError> {
    let mut m = au_model(file, kernels)?;
    ausweep_fsutil::write(out, &m.bytes).map_err(TrainError::io(out))?;
    m.bytes = Vec::new();
    Ok(m)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Model;
    use tch::Device;

    fn macs_at_224(kind: Backbone) -> u64 {
        let d = tempfile::tempdir().unwrap();
        let m = Model::new(kind, 8, Device::Cpu);
        let meta = CheckpointMeta::untrained(kind.name(), &[1, 2, 4, 6, 9, 12, 25, 26], 224);
        checkpoint::write(d.path(), "final", &m.named_tensors(), meta).unwrap();
        au_model(&d.path().join("final.safetensors"), Kernels::Fp32)
            .unwrap()
            .macs
    }

    /// The papers' multiply-adds at 224 px, less their 1000-way classifier, plus our 8-AU head.
    #[test]
    fn multiply_adds_match_the_mobilenet_papers() {
        // Howard et al. 2017, Table 1: 569 M (the classifier: 1024 × 1000).
        let v1 = macs_at_224(Backbone::MobilenetV1) as f64;
        let want = 569e6 - 1024.0 * 1000.0 + 1024.0 * 8.0;
        assert!(
            (v1 / want - 1.0).abs() < 0.01,
            "MobileNet-v1: {v1} vs {want}"
        );
        // Sandler et al. 2018, Table 4: 300 M (the classifier: 1280 × 1000).
        let v2 = macs_at_224(Backbone::MobilenetV2) as f64;
        let want = 300e6 - 1280.0 * 1000.0 + 1280.0 * 8.0;
        assert!(
            (v2 / want - 1.0).abs() < 0.01,
            "MobileNet-v2: {v2} vs {want}"
        );
    }
}
