//! A trained checkpoint loaded for inference: backbone + head, its AU list, input size and
//! tuned thresholds; aligned crops in, per-AU probabilities and decisions out.

use crate::train::checkpoint::{self, CheckpointMeta};
use crate::train::{Model, TrainError};
use ausweep_edge::aus::{self, AuPrediction};
use ausweep_proto::job::{Backbone, Objective};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The model and what its checkpoint says about it.
pub struct AuModel {
    model: Model,
    meta: CheckpointMeta,
    thresholds: Vec<f64>,
    device: Device,
    mean: Tensor,
    std: Tensor,
}

impl std::fmt::Debug for AuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuModel").field("meta", &self.meta).finish()
    }
}

impl AuModel {
    /// Loads `file` (`X.safetensors` with its `X.json`), verifying the recorded sha256.
    pub fn load(file: &Path, device: Device) -> Result<Self, TrainError> {
        let meta = checkpoint::read_meta(file)?;
        let bad = |message: String| TrainError::Checkpoint {
            path: file.into(),
            message,
        };
        let kind = Backbone::parse(&meta.backbone).map_err(bad)?;
        let intensity = meta.objective == Objective::Intensity;
        let thresholds = aus::thresholds(intensity, &meta.thresholds, meta.aus.len());
        if meta.aus.is_empty() || thresholds.len() != meta.aus.len() {
            return Err(bad(format!(
                "{} AUs but {} thresholds",
                meta.aus.len(),
                meta.thresholds.len()
            )));
        }
        let model = Model::new(kind, meta.aus.len(), device);
        let t = model.load_checkpoint(file)?;
        if let Some(fc) = t.get("head.fc.weight") {
            if fc.size()[0] != meta.aus.len() as i64 {
                return Err(bad(format!(
                    "the head has {} outputs but the metadata lists {} AUs",
                    fc.size()[0],
                    meta.aus.len()
                )));
            }
        }
        let (mean, std) = crate::train::imagenet::norm(device);
        Ok(AuModel {
            model,
            device,
            mean,
            std,
            meta,
            thresholds,
        })
    }

    /// The checkpoint's metadata (backbone, AUs, thresholds, input size, scores).
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// Per-AU decision thresholds on the sigmoid output: the checkpoint's tuned ones, or an
    /// intensity model's level 2 (0.4).
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Predictions for crops `[N,3,S,S]` in 0–255 (S = the checkpoint's input size).
    pub fn predict(&self, crops: &Tensor) -> Vec<AuPrediction> {
        let _guard = tch::no_grad_guard();
        let x = crops.to_device(self.device).to_kind(Kind::Float) / 255.0;
        let x = (x - &self.mean) / &self.std;
        let pooled = self.model.backbone.pooled(&x, false, 0);
        let p = self
            .model
            .head
            .forward_t(&pooled, false)
            .sigmoid()
            .to_device(Device::Cpu)
            .contiguous();
        let flat = Vec::<f32>::try_from(p.view([-1])).unwrap_or_default();
        aus::decide(
            &flat,
            &self.thresholds,
            self.meta.objective == Objective::Intensity,
        )
    }
}
