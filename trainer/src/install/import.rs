//! `ausweep weights import NAME FILE`: a file the user has (torchvision `.pth`, timm
//! `.safetensors`, facenet-pytorch `.pt`) checked against the named network, tensor by tensor,
//! and installed as `<dir>/<NAME>.safetensors` with its source and hashes in the manifest.

use crate::train::backbone::BackboneNet;
use crate::train::weights::load_into;
use ausweep_vision::face::nets::{ONet, PNet, RNet};
use ausweep_weights::catalog::{self, Net};
use ausweep_weights::{convert, manifest, sha256_file, WeightsError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

/// ImageNet's class names, which `ausweep weights check` prints; written beside the weights.
const IMAGENET_CLASSES: &str = include_str!("imagenet_classes.txt");

/// What an import installed.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// Catalog name.
    pub name: String,
    /// The installed safetensors file.
    pub file: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// sha256 of the file imported.
    pub source_sha256: String,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors renamed from an older layout (torchvision's pre-0.3 DenseNet names).
    pub renamed: usize,
}

/// A libtorch error as the weights directory reports it.
fn tensors_err(e: tch::TchError) -> WeightsError {
    WeightsError::Tensors(e.to_string())
}

/// Removes a scratch directory when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Imports `file` as `name` into `dir`, recording `source` (default: the file's name) and
/// `extra` manifest fields. The file is checked before anything in `dir` changes.
pub fn import(
    name: &str,
    file: &Path,
    dir: &Path,
    source: Option<&str>,
    extra: &[(&str, serde_json::Value)],
) -> Result<Imported, WeightsError> {
    let entry = catalog::lookup(name)?;
    if !file.is_file() {
        return Err(WeightsError::io(file)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        )));
    }
    let source_sha256 = sha256_file(file)?;
    std::fs::create_dir_all(dir).map_err(WeightsError::io(dir))?;
    let scratch = Scratch(dir.join(format!(".import-{name}-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(WeightsError::io(&scratch.0))?;

    let raw = if is_safetensors(file)? {
        file.to_path_buf()
    } else {
        let out = scratch.0.join("raw.safetensors");
        convert::pickle_to_safetensors(file, &out)?;
        out
    };
    let read: HashMap<String, Tensor> = Tensor::read_safetensors(&raw)
        .map_err(|e| WeightsError::Convert {
            file: file.into(),
            python: "-".into(),
            message: format!("not a safetensors or PyTorch state-dict file: {e}"),
        })?
        .into_iter()
        .collect();
    let (tensors, renamed) = normalise(read, entry.net);
    let staged = scratch.0.join(format!("{name}.safetensors"));
    verify(entry.net, &tensors, file, name, &staged)?;

    let _lock = manifest::lock(dir)?;
    let dst = dir.join(format!("{name}.safetensors"));
    ausweep_fsutil::commit(&staged, &dst).map_err(WeightsError::io(&dst))?;
    let sha256 = sha256_file(&dst)?;
    let rec = manifest::Record {
        file: format!("{name}.safetensors"),
        source: source.map(str::to_string).unwrap_or_else(|| {
            file.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        }),
        source_sha256: source_sha256.clone(),
        sha256: sha256.clone(),
        tensors: tensors.len(),
    };
    manifest::put(dir, name, &rec, extra)?;
    let classes = dir.join("imagenet_classes.txt");
    if !classes.is_file() {
        std::fs::write(&classes, IMAGENET_CLASSES).map_err(WeightsError::io(&classes))?;
    }
    Ok(Imported {
        name: name.into(),
        file: dst,
        sha256,
        source_sha256,
        tensors: tensors.len(),
        renamed,
    })
}

/// A safetensors file starts with its header's length (8 bytes, little-endian) and then `{`.
fn is_safetensors(file: &Path) -> Result<bool, WeightsError> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(file).map_err(WeightsError::io(file))?;
    let n = f.read(&mut head).map_err(WeightsError::io(file))?;
    Ok(n == 9 && head[8] == b'{')
}

/// Drops BatchNorm's step counters and a `module.` (DataParallel) prefix, and renames
/// torchvision's legacy DenseNet names (`denselayer1.norm.1.weight` → `denselayer1.norm1.weight`).
fn normalise(read: HashMap<String, Tensor>, net: Net) -> (Vec<(String, Tensor)>, usize) {
    let mut renamed = 0;
    let mut out: Vec<(String, Tensor)> = read
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, t)| {
            let k = k.strip_prefix("module.").map(str::to_string).unwrap_or(k);
            match net {
                Net::Backbone(_) => match legacy_densenet_name(&k) {
                    Some(new) => {
                        renamed += 1;
                        (new, t)
                    }
                    None => (k, t),
                },
                _ => (k, t),
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, renamed)
}

/// `…denselayerN.{norm,relu,conv}.{1,2}.{weight,bias,running_mean,running_var}` → joined.
fn legacy_densenet_name(k: &str) -> Option<String> {
    let parts: Vec<&str> = k.split('.').collect();
    let n = parts.len();
    if n < 4 {
        return None;
    }
    let (layer, kind, idx, leaf) = (parts[n - 4], parts[n - 3], parts[n - 2], parts[n - 1]);
    let ok = layer.starts_with("denselayer")
        && ["norm", "relu", "conv"].contains(&kind)
        && ["1", "2"].contains(&idx)
        && ["weight", "bias", "running_mean", "running_var"].contains(&leaf);
    ok.then(|| {
        let mut p: Vec<String> = parts[..n - 3].iter().map(|s| s.to_string()).collect();
        p.push(format!("{kind}{idx}"));
        p.push(leaf.to_string());
        p.join(".")
    })
}

/// Writes the tensors to `staged` and loads them into a fresh `net`: every parameter and buffer
/// present with its shape, nothing extra.
fn verify(
    net: Net,
    tensors: &[(String, Tensor)],
    file: &Path,
    name: &str,
    staged: &Path,
) -> Result<(), WeightsError> {
    let mismatch = |message: String| WeightsError::Mismatch {
        file: file.into(),
        name: name.into(),
        message,
    };
    let strip = |m: String| {
        let prefix = format!("{}: ", file.display());
        m.strip_prefix(&prefix).map(str::to_string).unwrap_or(m)
    };
    match net {
        Net::Backbone(b) => {
            let vs = nn::VarStore::new(Device::Cpu);
            let _model = BackboneNet::new(&vs.root(), b, true);
            let map: HashMap<String, Tensor> = tensors
                .iter()
                .map(|(k, t)| (k.clone(), t.shallow_clone()))
                .collect();
            load_into(&vs, &map, "", None, file).map_err(|e| mismatch(strip(e.to_string())))?;
            Tensor::write_safetensors(tensors, staged).map_err(tensors_err)?;
        }
        Net::Pnet | Net::Rnet | Net::Onet => {
            Tensor::write_safetensors(tensors, staged).map_err(tensors_err)?;
            let r = match net {
                Net::Pnet => PNet::load(staged, Device::Cpu).map(|_| ()),
                Net::Rnet => RNet::load(staged, Device::Cpu).map(|_| ()),
                _ => ONet::load(staged, Device::Cpu).map(|_| ()),
            };
            r.map_err(|e| match e {
                ausweep_vision::face::FaceError::Weights { message, .. } => {
                    mismatch(strip(message))
                }
                other => mismatch(other.to_string()),
            })?;
        }
    }
    let f = std::fs::File::open(staged).map_err(WeightsError::io(staged))?;
    f.sync_all().map_err(WeightsError::io(staged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_densenet_names_are_renamed_and_others_kept() {
        assert_eq!(
            legacy_densenet_name("features.denseblock1.denselayer1.norm.1.weight").as_deref(),
            Some("features.denseblock1.denselayer1.norm1.weight")
        );
        assert_eq!(
            legacy_densenet_name("features.denseblock4.denselayer16.conv.2.weight").as_deref(),
            Some("features.denseblock4.denselayer16.conv2.weight")
        );
        assert_eq!(
            legacy_densenet_name("features.denseblock1.denselayer1.norm1.weight"),
            None
        );
        assert_eq!(
            legacy_densenet_name("features.transition1.norm.weight"),
            None
        );
        assert_eq!(
            legacy_densenet_name("features.denseblock1.denselayer1.norm.3.weight"),
            None
        );
    }
}
