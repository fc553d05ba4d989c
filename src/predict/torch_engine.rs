//! The libtorch engine: a checkpoint's `AuModel` and the MTCNN safetensors on a CPU or GPU.

use super::engine::{Engine, Found, ModelInfo};
use super::geometry::{self, Crop};
use anyhow::{Context, Result};
use ausweep_trainer::predict::AuModel;
use ausweep_vision::face::{image_tensor, Detector, DetectorConfig, Face};
use image::RgbImage;
use std::path::Path;
use tch::{Device, Tensor};

/// Model, detector and crop.
pub struct TorchEngine {
    detector: Detector,
    model: AuModel,
    info: ModelInfo,
    crop: Crop,
}

impl TorchEngine {
    /// Loads the checkpoint `ckpt` and the MTCNN weights in `weights` onto `device`; a note
    /// when the crop was assumed or overridden.
    pub fn open(
        ckpt: &Path,
        weights: &Path,
        device: Device,
        detector: DetectorConfig,
        (eye_distance, eye_y): (Option<f64>, Option<f64>),
    ) -> Result<(Self, Option<String>)> {
        let model = AuModel::load(ckpt, device)
            .with_context(|| format!("loading the model {}", ckpt.display()))?;
        let meta = model.meta();
        let (crop, note) = geometry::of(meta, eye_distance, eye_y)?;
        let info = ModelInfo {
            backbone: meta.backbone.clone(),
            stage: u32::from(meta.stage),
            aus: meta.aus.clone(),
            thresholds: meta.thresholds.clone(),
            intensity: meta.objective == ausweep_proto::job::Objective::Intensity,
            input_size: meta.input_size,
            crop: geometry::origin(meta),
            int8: false,
        };
        let detector = Detector::load(weights, device, detector)?;
        Ok((
            TorchEngine {
                detector,
                model,
                info,
                crop,
            },
            note,
        ))
    }
}

impl Engine for TorchEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn thresholds(&self) -> &[f64] {
        self.model.thresholds()
    }

    fn device(&self) -> String {
        format!("{:?}", self.detector.device())
    }

    fn run(&mut self, frames: &[&RgbImage]) -> Result<Found> {
        let tensors: Vec<Tensor> = frames.iter().map(|f| image_tensor(f)).collect();
        let imgs = Tensor::stack(&tensors, 0).to_device(self.detector.device());
        let found = self.detector.detect(&imgs)?;
        let faces: Vec<(usize, &Face)> = found
            .iter()
            .enumerate()
            .flat_map(|(i, fs)| fs.iter().map(move |f| (i, f)))
            .collect();
        let size = i64::from(self.info.input_size);
        let preds = if faces.is_empty() {
            Vec::new()
        } else {
            let x = geometry::extract(&self.crop, &imgs, &faces, size)?;
            self.model.predict(&x)
        };
        Ok(super::engine::pair(found, preds))
    }
}
