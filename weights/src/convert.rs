//! Pickled PyTorch files (`.pth`, `.pt`) to safetensors, through the venv's torch: libtorch
//! cannot read Python's pickles, and `torch.load(weights_only=True)` runs no code from the file.

use super::WeightsError;
use std::path::{Path, PathBuf};

const SCRIPT: &str = include_str!("to_safetensors.py");

/// The Python with torch: `$AUSWEEP_PYTHON`, else the venv `make setup` built
/// (`~/.cache/ausweep/venv-torch-*/bin/python`, newest), else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AUSWEEP_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("AUSWEEP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ausweep")));
    if let Some(cache) = cache {
        let mut venvs: Vec<PathBuf> = std::fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("venv-torch-"))
            .map(|e| e.path().join("bin/python"))
            .filter(|p| p.is_file())
            .collect();
        venvs.sort();
        if let Some(p) = venvs.pop() {
            return p;
        }
    }
    PathBuf::from("python3")
}

/// Converts `src` (a pickled state dict) into the safetensors file `dst`.
pub fn pickle_to_safetensors(src: &Path, dst: &Path) -> Result<(), WeightsError> {
    let py = python();
    let err = |message: String| WeightsError::Convert {
        file: src.into(),
        python: py.display().to_string(),
        message,
    };
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| err(format!("cannot run it ({e}); set AUSWEEP_PYTHON to a Python with torch, or import a .safetensors file")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(err(tail.join(" | ")));
    }
    Ok(())
}
