//! The ONNX engine: an exported AU model and the exported MTCNN nets in ONNX Runtime (its
//! library opened at run time), with the crop computed in plain Rust; no libtorch.

use super::engine::{Engine, Found, ModelInfo};
use anyhow::{Context, Result};
use ausweep_edge::crop::Crop;
use ausweep_edge::model::AuOnnxModel;
use ausweep_edge::mtcnn::{Detector, DetectorConfig};
use ausweep_edge::pixels::{sample_affine_into, Planes};
use image::RgbImage;
use std::path::Path;

/// Model, detector and crop.
pub struct OnnxEngine {
    detector: Detector,
    model: AuOnnxModel,
    crop: Crop,
    threads: usize,
}

/// Settings of [`OnnxEngine::open`].
pub struct OnnxSettings<'a> {
    /// The folder with `mtcnn_{pnet,rnet,onet}.onnx`.
    pub detector_dir: &'a Path,
    /// ONNX Runtime's library (`None`: searched).
    pub library: Option<&'a Path>,
    /// Threads per session (0: all cores).
    pub threads: usize,
    /// The detector's settings.
    pub detector: DetectorConfig,
    /// Crop overrides.
    pub eye_distance: Option<f64>,
    /// Crop overrides.
    pub eye_y: Option<f64>,
}

impl OnnxEngine {
    /// Opens `model` and the detector; a note when the crop was assumed or overridden.
    pub fn open(model: &Path, s: &OnnxSettings) -> Result<(Self, Option<String>)> {
        ausweep_edge::runtime::init(s.library)?;
        let model = AuOnnxModel::open(model, s.threads)
            .with_context(|| format!("loading the model {}", model.display()))?;
        let (crop, note) = Crop::of(model.info().crop.as_ref(), s.eye_distance, s.eye_y)
            .map_err(anyhow::Error::msg)?;
        let detector = Detector::open(s.detector_dir, s.detector, s.threads)?;
        Ok((
            OnnxEngine {
                detector,
                model,
                crop,
                threads: s.threads,
            },
            note,
        ))
    }
}

impl Engine for OnnxEngine {
    fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    fn thresholds(&self) -> &[f64] {
        self.model.thresholds()
    }

    fn device(&self) -> String {
        match self.threads {
            0 => "the CPU (ONNX Runtime, all cores)".into(),
            n => format!("the CPU (ONNX Runtime, {n} thread(s))"),
        }
    }

    fn run(&mut self, frames: &[&RgbImage]) -> Result<Found> {
        let planes = frames
            .iter()
            .map(|f| Planes::from_rgb(f.as_raw(), f.width() as usize, f.height() as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let found = self.detector.detect(&planes)?;
        let size = self.model.info().input_size;
        let mut crops = Vec::new();
        let mut n = 0;
        for (img, faces) in planes.iter().zip(&found) {
            for f in faces {
                let (theta, largest) = self.crop.affine(f, img.w as f64, img.h as f64, size);
                sample_affine_into(img, &theta, size as usize, largest, &mut crops);
                n += 1;
            }
        }
        let preds = self.model.predict(&crops, n)?;
        Ok(super::engine::pair(found, preds))
    }
}
