//! Strict loading of safetensors files into a VarStore, and the weights directory.

use super::error::TrainError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

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

/// Reads a safetensors file into a name → tensor map.
pub fn read_tensors(file: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    if !file.is_file() {
        return Err(TrainError::Io {
            path: file.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    Ok(Tensor::read_safetensors(file)?.into_iter().collect())
}

/// Copies `tensors[prefix + name]` into every variable of `vs`; a missing or mis-shaped tensor is
/// an error naming it. Tensors under `prefix` that the model lacks are an error unless they start
/// with `prefix + ignore` (e.g. the ImageNet classifier when only the features are built).
pub fn load_into(
    vs: &nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    ignore: Option<&str>,
    file: &Path,
) -> Result<(), TrainError> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let key = format!("{prefix}{name}");
        let src = tensors.get(&key).ok_or_else(|| TrainError::MissingTensor {
            file: file.into(),
            key: key.clone(),
        })?;
        let mut dst = vars[name].shallow_clone();
        if src.size() != dst.size() {
            return Err(TrainError::ShapeMismatch {
                file: file.into(),
                key,
                expected: dst.size(),
                found: src.size(),
            });
        }
        tch::no_grad(|| dst.f_copy_(&src.to_kind(dst.kind())))?;
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter_map(|k| k.strip_prefix(prefix).map(|rest| (k, rest)))
        .filter(|(_, rest)| !vars.contains_key(*rest))
        .filter(|(_, rest)| !rest.ends_with("num_batches_tracked"))
        .filter(|(_, rest)| ignore.is_none_or(|ig| !rest.starts_with(ig)))
        .map(|(k, _)| k)
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let n = extra.len();
        let mut keys: Vec<String> = extra.into_iter().take(5).cloned().collect();
        if n > 5 {
            keys.push(format!("… ({n} in all)"));
        }
        return Err(TrainError::UnexpectedTensors {
            file: file.into(),
            keys: keys.join(", "),
        });
    }
    Ok(())
}

/// Loads a whole file strictly into `vs` (names without prefix).
pub fn load_file(vs: &nn::VarStore, file: &Path, ignore: Option<&str>) -> Result<(), TrainError> {
    let tensors = read_tensors(file)?;
    load_into(vs, &tensors, "", ignore, file)
}

/// The variables of `vs` under `prefix`, for writing into a checkpoint.
pub fn named_with_prefix(vs: &nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (format!("{prefix}{k}"), t))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
