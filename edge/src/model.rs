//! An exported AU model (`ausweep export`) in ONNX Runtime: what its metadata says (AUs,
//! thresholds, objective, input size, crop), and aligned crops in, decisions out.

use crate::aus::{self, AuPrediction};
use crate::crop::CropOrigin;
use crate::runtime::Net;
use crate::EdgeError;
use std::path::Path;

/// What an exported model says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Backbone name.
    pub backbone: String,
    /// Training stage (1 frozen backbone, 2 fine-tuned).
    pub stage: u32,
    /// AU numbers, in output order.
    pub aus: Vec<u32>,
    /// The tuned per-AU thresholds (occurrence).
    pub thresholds: Vec<f64>,
    /// An intensity model (0–5 levels); else occurrence.
    pub intensity: bool,
    /// Side of the square input crop, pixels.
    pub input_size: u32,
    /// How its training faces were cropped (`None`: not recorded).
    pub crop: Option<CropOrigin>,
    /// Whether its convolution and dense kernels are stored as int8 (`ausweep export --int8`).
    pub int8: bool,
}

/// The model in a session.
#[derive(Debug)]
pub struct AuOnnxModel {
    net: Net,
    info: ModelInfo,
    thresholds: Vec<f64>,
}

fn value<'a>(meta: &'a [(String, String)], key: &str) -> Option<&'a str> {
    meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Reads an exported model's metadata (no runtime needed).
pub fn read_info(path: &Path) -> Result<ModelInfo, EdgeError> {
    let bad = |message: String| EdgeError::Model {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let meta =
        ausweep_onnx::read_metadata(&bytes).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let get = |key: &str| {
        value(&meta, key).ok_or_else(|| {
            bad(format!(
                "no `{key}` in its metadata: not a model written by `ausweep export`"
            ))
        })
    };
    let list = |key: &str| -> Result<Vec<f64>, EdgeError> {
        get(key)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|e| bad(format!("`{key}` holds `{s}`: {e}")))
            })
            .collect()
    };
    let aus: Vec<u32> = list("ausweep.aus")?.into_iter().map(|a| a as u32).collect();
    let thresholds = list("ausweep.thresholds")?;
    let intensity = match get("ausweep.objective")? {
        "occurrence" => false,
        "intensity" => true,
        other => return Err(bad(format!("`ausweep.objective` is `{other}`"))),
    };
    let input_size = get("ausweep.input_size")?
        .parse::<u32>()
        .map_err(|e| bad(format!("`ausweep.input_size`: {e}")))?;
    let stage = value(&meta, "ausweep.checkpoint")
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|c| c.get("stage").and_then(|s| s.as_u64()))
        .unwrap_or(0) as u32;
    // An older checkpoint's export records its crop as a sentence, not JSON: unknown.
    let crop = serde_json::from_str::<CropOrigin>(get("ausweep.crop")?).ok();
    if aus.is_empty() || (!intensity && thresholds.len() != aus.len()) {
        return Err(bad(format!(
            "{} AUs but {} thresholds",
            aus.len(),
            thresholds.len()
        )));
    }
    Ok(ModelInfo {
        backbone: get("ausweep.backbone")?.to_string(),
        stage,
        aus,
        thresholds,
        intensity,
        input_size,
        crop,
        int8: value(&meta, "ausweep.kernels").is_some_and(|k| k.starts_with("int8")),
    })
}

impl AuOnnxModel {
    /// Opens `path` with `threads` threads (0: all cores); [`crate::runtime::init`] first.
    pub fn open(path: &Path, threads: usize) -> Result<Self, EdgeError> {
        let info = read_info(path)?;
        let thresholds = aus::thresholds(info.intensity, &info.thresholds, info.aus.len());
        Ok(AuOnnxModel {
            net: Net::open(path, threads)?,
            info,
            thresholds,
        })
    }

    /// What its metadata says.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The decision thresholds on its sigmoid outputs.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Predictions for `n` crops `[n,3,S,S]` (0–255, S the input size).
    pub fn predict(&mut self, crops: &[f32], n: usize) -> Result<Vec<AuPrediction>, EdgeError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let s = self.info.input_size as usize;
        let out = self.net.run("crops", [n, 3, s, s], crops, &["probs"])?;
        let (shape, probs) = &out[0];
        if probs.len() != n * self.info.aus.len() {
            return Err(EdgeError::Runtime {
                path: self.net.path().to_path_buf(),
                message: format!(
                    "`probs` has shape {shape:?} for {n} crop(s); its metadata lists {} AUs",
                    self.info.aus.len()
                ),
            });
        }
        Ok(aus::decide(probs, &self.thresholds, self.info.intensity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_an_ausweep_export_is_named_with_what_it_lacks() {
        let d = tempfile::tempdir().unwrap();
        let junk = d.path().join("junk.onnx");
        std::fs::write(&junk, b"\x08\x07not a model").unwrap();
        let e = read_info(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.onnx"), "{e}");
        // A valid ONNX file without ausweep's metadata: the missing key is named.
        let empty = d.path().join("empty.onnx");
        let g = ausweep_onnx::Graph::new("empty", Default::default());
        let meta = [("ausweep.backbone".to_string(), "mobilenet_v2".to_string())];
        std::fs::write(&empty, g.finish("test", &meta).unwrap()).unwrap();
        let e = read_info(&empty).unwrap_err().to_string();
        assert!(
            e.contains("`ausweep.aus`") && e.contains("ausweep export"),
            "{e}"
        );
    }
}
