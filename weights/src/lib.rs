//! The weights directory, without libtorch: where it is, its `manifest.json`, the catalog of
//! published files and their pins, the pickle converter, and what a worker holds. Installing a
//! file (checking its tensors against a network) is the trainer's `install`.

pub mod catalog;
pub mod convert;
pub mod dirs;
pub mod held;
pub mod manifest;

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
    /// The tensor library failed reading or writing a file.
    #[error("tensors: {0}")]
    Tensors(String),
}

impl WeightsError {
    /// Wraps an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
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
