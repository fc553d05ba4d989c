//! `manifest.json` of a weights directory: name → file, source, hashes; updated under a lock.

use super::WeightsError;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One file's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// File name in the directory.
    pub file: String,
    /// Who published it (catalog source, URL, or the imported file's name).
    pub source: String,
    /// sha256 of what was downloaded or imported.
    pub source_sha256: String,
    /// sha256 of the converted safetensors file.
    pub sha256: String,
    /// Tensors in it.
    pub tensors: usize,
}

/// `<dir>/manifest.json`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("manifest.json")
}

/// The records, name → JSON object (unknown fields kept); empty when there is no manifest.
pub fn read(dir: &Path) -> Result<Map<String, Value>, WeightsError> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(WeightsError::io(&p)(e)),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(WeightsError::Manifest {
            path: p,
            message: "not a JSON object of name → record".into(),
        }),
        Err(e) => Err(WeightsError::Manifest {
            path: p,
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        }),
    }
}

/// Takes `<dir>/.manifest.lock` until the value is dropped, so two imports never lose a record.
pub fn lock(dir: &Path) -> Result<ausweep_fsutil::FileLock, WeightsError> {
    let p = dir.join(".manifest.lock");
    ausweep_fsutil::FileLock::take(&p).map_err(WeightsError::io(&p))
}

/// Sets `name`'s record (other names and fields kept), writing the file atomically. The caller
/// holds the lock.
pub fn put(
    dir: &Path,
    name: &str,
    rec: &Record,
    extra: &[(&str, Value)],
) -> Result<(), WeightsError> {
    let mut m = read(dir)?;
    let mut o = Map::new();
    o.insert("file".into(), rec.file.clone().into());
    o.insert("source".into(), rec.source.clone().into());
    o.insert("source_sha256".into(), rec.source_sha256.clone().into());
    o.insert("sha256".into(), rec.sha256.clone().into());
    o.insert("tensors".into(), rec.tensors.into());
    for (k, v) in extra {
        o.insert((*k).into(), v.clone());
    }
    m.insert(name.into(), Value::Object(o));
    let p = path(dir);
    let mut text =
        serde_json::to_string_pretty(&Value::Object(m)).map_err(|e| WeightsError::Manifest {
            path: p.clone(),
            message: e.to_string(),
        })?;
    text.push('\n');
    ausweep_fsutil::write(&p, text.as_bytes()).map_err(WeightsError::io(&p))
}

/// The records whose file exists, sorted by name.
pub fn records(dir: &Path) -> Result<Vec<(String, Record)>, WeightsError> {
    let m = read(dir)?;
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut out: Vec<(String, Record)> = m
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                Record {
                    file: s(v, "file"),
                    source: s(v, "source"),
                    source_sha256: s(v, "source_sha256"),
                    sha256: s(v, "sha256"),
                    tensors: v.get("tensors").and_then(Value::as_u64).unwrap_or(0) as usize,
                },
            )
        })
        .filter(|(_, r)| !r.file.is_empty() && !r.file.contains('/') && dir.join(&r.file).is_file())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
