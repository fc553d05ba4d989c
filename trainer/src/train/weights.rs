//! The weights directory and ImageNet files; strict safetensors loading is
//! `ausweep_vision::tensors`, re-exported here.

use super::error::TrainError;
use std::path::{Path, PathBuf};

pub use ausweep_vision::tensors::{load_file, load_into, named_with_prefix, read_tensors};
use ausweep_weights::dirs::cache_dir;
pub use ausweep_weights::dirs::{bundled, weights_dir};

/// Default folder of data packs: `$AUSWEEP_DATA_CACHE`, else `~/.cache/ausweep/data`.
pub fn data_cache_dir() -> PathBuf {
    cache_dir("AUSWEEP_DATA_CACHE", "data")
}

/// The ImageNet weights file of `backbone` in `dir`, or an error listing what is there.
pub fn imagenet_file(dir: &Path, backbone: &str) -> Result<PathBuf, TrainError> {
    let f = dir.join(format!("{backbone}.safetensors"));
    if f.is_file() {
        return Ok(f);
    }
    let mut available: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".safetensors").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    available.sort();
    Err(TrainError::NoWeights {
        backbone: backbone.into(),
        dir: dir.into(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}
