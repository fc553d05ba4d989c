//! What a worker advertises: the weight files its directory holds, by name and hash.

use super::manifest;
use super::WeightsError;
use std::path::Path;

/// One held file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Catalog name.
    pub name: String,
    /// sha256 of the safetensors file, as the manifest records it.
    pub sha256: String,
}

/// The files `dir`'s manifest lists and that exist, sorted by name (empty without a manifest).
pub fn held(dir: &Path) -> Result<Vec<Held>, WeightsError> {
    Ok(manifest::records(dir)?
        .into_iter()
        .filter(|(_, r)| r.sha256.len() == 64)
        .map(|(name, r)| Held {
            name,
            sha256: r.sha256,
        })
        .collect())
}
