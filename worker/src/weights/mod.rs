//! The weights directory: the catalog of published files, `ausweep weights fetch` (download,
//! pinned hash, convert), `ausweep weights import` (a file the user has), and what a worker holds.

pub mod catalog;
mod convert;
pub mod fetch;
pub mod held;
pub mod import;
mod manifest;

use std::path::PathBuf;

/// What stops a fetch or an import; nothing in the weights directory changes when one fails.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The name is not in the catalog.
    #[error("unknown weights `{name}`, expected one of: {known}")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// The catalog's names.
        known: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// Where from.
        url: String,
        /// Why.
        message: String,
    },
    /// The file is not the pinned one.
    #[error("{what}: sha256 {found} does not match the pinned {expected} (a different or corrupted file; nothing was installed)")]
    HashMismatch {
        /// The URL or file.
        what: String,
        /// The pin (a full hash or torchvision's prefix).
        expected: String,
        /// The file's hash.
        found: String,
    },
    /// A pickled PyTorch file could not be turned into tensors.
    #[error("{file}: converting with {python}: {message}")]
    Convert {
        /// The file.
        file: PathBuf,
        /// The interpreter used.
        python: String,
        /// Why (the interpreter's last lines).
        message: String,
    },
    /// The tensors are not the named network's.
    #[error("{file} is not {name}: {message}")]
    Mismatch {
        /// The file imported.
        file: PathBuf,
        /// The catalog name.
        name: String,
        /// The first difference (a missing, extra or mis-shaped tensor).
        message: String,
    },
    /// The directory's manifest.json is unreadable.
    #[error("{path}: {message}")]
    Manifest {
        /// manifest.json.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A libtorch call failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl WeightsError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| WeightsError::Io { path, source }
    }
}

/// sha256 of a file, hex, read in 1 MiB pieces.
pub fn sha256_file(path: &std::path::Path) -> Result<String, WeightsError> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(WeightsError::io(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(WeightsError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
