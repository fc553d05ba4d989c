//! Strict loading of safetensors files into a VarStore: every variable found with its shape, no
//! tensor left over. The trainer's checkpoints, ImageNet weights and MTCNN nets load through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// Why a weights file does not fit a model.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// A weights or checkpoint file lacks a parameter the model has.
    #[error("{file}: missing tensor `{key}` (the model needs it; is this the right backbone?)")]
    MissingTensor {
        /// The file.
        file: PathBuf,
        /// The parameter name.
        key: String,
    },
    /// A tensor in the file has a different shape than the model's parameter.
    #[error("{file}: tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The file.
        file: PathBuf,
        /// The parameter name.
        key: String,
        /// The model's shape.
        expected: Vec<i64>,
        /// The file's shape.
        found: Vec<i64>,
    },
    /// The file has tensors the model does not.
    #[error("{file}: unexpected tensors not in the model: {keys}")]
    UnexpectedTensors {
        /// The file.
        file: PathBuf,
        /// The first few names.
        keys: String,
    },
    /// The file is not there.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// libtorch could not read or copy a tensor.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Reads a safetensors file into a name → tensor map.
pub fn read_tensors(file: &Path) -> Result<HashMap<String, Tensor>, TensorError> {
    if !file.is_file() {
        return Err(TensorError::Io {
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
) -> Result<(), TensorError> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let key = format!("{prefix}{name}");
        let src = tensors
            .get(&key)
            .ok_or_else(|| TensorError::MissingTensor {
                file: file.into(),
                key: key.clone(),
            })?;
        let mut dst = vars[name].shallow_clone();
        if src.size() != dst.size() {
            return Err(TensorError::ShapeMismatch {
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
        return Err(TensorError::UnexpectedTensors {
            file: file.into(),
            keys: keys.join(", "),
        });
    }
    Ok(())
}

/// Loads a whole file strictly into `vs` (names without prefix).
pub fn load_file(vs: &nn::VarStore, file: &Path, ignore: Option<&str>) -> Result<(), TensorError> {
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

/// The tensors of `file` whose names `keep` accepts, as f32 weights for an ONNX graph.
pub fn onnx_weights(
    file: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<std::collections::BTreeMap<String, ausweep_onnx::Weight>, TensorError> {
    let mut out = std::collections::BTreeMap::new();
    for (name, t) in read_tensors(file)? {
        if keep(&name) {
            let t = t.to_kind(tch::Kind::Float).contiguous();
            let dims = t.size();
            let data = Vec::<f32>::try_from(t.view([-1]))?;
            out.insert(name, ausweep_onnx::Weight { dims, data });
        }
    }
    Ok(out)
}
