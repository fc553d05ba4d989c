//! Checkpoint blobs: files named by their sha256, written to a temp file, fsynced, verified and
//! renamed into place, so a registered checkpoint always has a complete file behind it.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A blob operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Not 64 lowercase hex digits.
    #[error("`{0}` is not a sha256 (64 lowercase hex digits)")]
    BadName(String),
    /// The data's hash is not the one announced.
    #[error("checksum mismatch: announced {expected}, got {actual}")]
    Mismatch {
        /// Announced.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// More bytes than allowed.
    #[error("blob larger than the {0}-byte limit")]
    TooLarge(u64),
    /// The store's size limit leaves no room for this blob.
    #[error(
        "checkpoint store full: {used} of {limit} bytes used, {need} more needed; raise \
         max_store_mib or delete old sweeps' checkpoints"
    )]
    StoreFull {
        /// Bytes stored.
        used: u64,
        /// The limit.
        limit: u64,
        /// Bytes of the refused blob.
        need: u64,
    },
    /// No such blob.
    #[error("no checkpoint {0}")]
    NotFound(String),
    /// Filesystem failure.
    #[error("blob io: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether `s` is a valid blob name.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every file under the shard directories of `root` (`<root>/<2 hex>/<name>`): name and size.
fn stored(root: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for shard in fs::read_dir(root)? {
        let shard = shard?.path();
        if shard.is_dir() {
            for f in fs::read_dir(&shard)? {
                let f = f?;
                out.push((
                    f.file_name().to_string_lossy().into_owned(),
                    f.metadata()?.len(),
                ));
            }
        }
    }
    Ok(out)
}

/// The blob directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of the stored blobs (shared by every clone).
    used: Arc<AtomicU64>,
    /// Most bytes the store may hold (0: no limit).
    limit: u64,
}

impl Blobs {
    /// Opens (creating) the directory; leftover temp files of a crash are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, BlobError> {
        fs::create_dir_all(dir.join("sha256"))?;
        let tmp = dir.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let used = stored(&dir.join("sha256"))?
            .iter()
            .map(|(_, len)| len)
            .sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            used: Arc::new(AtomicU64::new(used)),
            limit: 0,
        })
    }

    /// Sets the most bytes the store may hold (0: no limit).
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Bytes stored, and the limit (0: none).
    pub fn usage(&self) -> (u64, u64) {
        (self.used.load(Ordering::Relaxed), self.limit)
    }

    /// Refuses a new blob of `size` bytes that would take the store past its limit.
    pub fn check_room(&self, sha: &str, size: u64) -> Result<(), BlobError> {
        let used = self.used.load(Ordering::Relaxed);
        if self.limit > 0 && !self.contains(sha) && used.saturating_add(size) > self.limit {
            return Err(BlobError::StoreFull {
                used,
                limit: self.limit,
                need: size,
            });
        }
        Ok(())
    }

    /// Every stored blob's name.
    pub fn list(&self) -> Result<Vec<String>, BlobError> {
        Ok(stored(&self.dir.join("sha256"))?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| valid_sha256(name))
            .collect())
    }

    /// Deletes a blob (no record may name it any more); a missing one is not an error.
    pub fn remove(&self, sha: &str) -> Result<(), BlobError> {
        let p = self.path(sha)?;
        match fs::metadata(&p) {
            Ok(m) => {
                fs::remove_file(&p)?;
                self.used.fetch_sub(
                    m.len().min(self.used.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a blob lives (the name is validated, so no path escapes the directory).
    pub fn path(&self, sha: &str) -> Result<PathBuf, BlobError> {
        if !valid_sha256(sha) {
            return Err(BlobError::BadName(sha.to_string()));
        }
        Ok(self.dir.join("sha256").join(&sha[..2]).join(sha))
    }

    /// Whether a blob is stored.
    pub fn contains(&self, sha: &str) -> bool {
        self.path(sha).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, sha: &str) -> Result<File, BlobError> {
        let p = self.path(sha)?;
        File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::NotFound(sha.to_string()),
            _ => BlobError::Io(e),
        })
    }

    /// Starts a new blob; `expected` is the announced sha256.
    pub fn writer(&self, expected: &str) -> Result<BlobWriter, BlobError> {
        let final_path = self.path(expected)?;
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{expected}.{:016x}", rand::random::<u64>()));
        Ok(BlobWriter {
            file: Some(File::create(&tmp)?),
            tmp,
            final_path,
            expected: expected.to_string(),
            hasher: Sha256::new(),
            size: 0,
            max_bytes: self.max_bytes,
            used: self.used.clone(),
        })
    }

    /// Writes a whole blob from memory (tests, small files); returns its sha256.
    pub fn put_bytes(&self, data: &[u8]) -> Result<String, BlobError> {
        let sha = hex::encode(Sha256::digest(data));
        let mut w = self.writer(&sha)?;
        w.write(data)?;
        w.finish()?;
        Ok(sha)
    }
}

/// A blob being written; dropped unfinished, its temp file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    final_path: PathBuf,
    expected: String,
    hasher: Sha256,
    size: u64,
    max_bytes: u64,
    used: Arc<AtomicU64>,
}

impl BlobWriter {
    /// Appends data.
    pub fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.size += data.len() as u64;
        if self.size > self.max_bytes {
            return Err(BlobError::TooLarge(self.max_bytes));
        }
        self.hasher.update(data);
        match &mut self.file {
            Some(f) => Ok(f.write_all(data)?),
            None => Err(BlobError::Io(std::io::Error::other("writer finished"))),
        }
    }

    /// Verifies the hash, fsyncs, renames into place and fsyncs the directory; returns the size.
    pub fn finish(mut self) -> Result<u64, BlobError> {
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected {
            return Err(BlobError::Mismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("writer finished"))?;
        file.sync_all()?;
        drop(file);
        let parent = self
            .final_path
            .parent()
            .ok_or_else(|| std::io::Error::other("no parent"))?;
        fs::create_dir_all(parent)?;
        let existed = self.final_path.is_file();
        fs::rename(&self.tmp, &self.final_path)?;
        if !existed {
            self.used.fetch_add(self.size, Ordering::Relaxed);
        }
        File::open(parent)?.sync_all()?;
        Ok(self.size)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_verify_read() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path(), 1 << 20).unwrap();
        let sha = b.put_bytes(b"weights").unwrap();
        assert!(b.contains(&sha));
        let mut s = String::new();
        std::io::Read::read_to_string(&mut b.open_blob(&sha).unwrap(), &mut s).unwrap();
        assert_eq!(s, "weights");
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn mismatch_and_size_limit_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path(), 4).unwrap();
        let fake = "a".repeat(64);
        let mut w = b.writer(&fake).unwrap();
        w.write(b"abc").unwrap();
        assert!(matches!(w.finish(), Err(BlobError::Mismatch { .. })));
        assert!(!b.contains(&fake));
        let mut w = b.writer(&fake).unwrap();
        assert!(matches!(w.write(b"too long"), Err(BlobError::TooLarge(4))));
        drop(w);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn names_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path(), 10).unwrap();
        for bad in [
            "../etc/passwd",
            "",
            &"A".repeat(64),
            &"a".repeat(63),
            &format!("{}/", "a".repeat(63)),
        ] {
            assert!(matches!(b.path(bad), Err(BlobError::BadName(_))), "{bad}");
        }
    }
}
