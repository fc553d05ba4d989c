//! The sled store's write-ahead log: one preallocated file of frames, each one applied batch,
//! made durable by a single `fdatasync` per scheduler round; sled itself is flushed only at a
//! checkpoint, after which the log starts a new generation from its head.
//!
//! Layout: a 16-byte head (`AUSWAL01`, then the generation, u64 little-endian), then frames:
//! body length (u32), CRC-32 of the generation and body (u32), generation (u64), body. A body is
//! its writes in order: `1`, key length (u32), key, value length (u32), value for an insert; `2`,
//! key length, key for a removal (keys are sled's, tree tag included). Reading stops at the first
//! frame that is torn, zeroed or of another generation, so a crash keeps a prefix of the frames.
//! The file is filled with zeros when created, so an append changes no file size or extent map
//! and `fdatasync` is one trip to the device.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The file's first eight bytes.
const MAGIC: &[u8; 8] = b"AUSWAL01";
/// The head: magic and generation.
const HEAD: u64 = 16;
/// A frame's own bytes before its body.
const FRAME_HEAD: usize = 16;
/// Write kinds in a body.
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// One write read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LoggedOp {
    /// Insert or replace.
    Put(Vec<u8>, Vec<u8>),
    /// Remove.
    Delete(Vec<u8>),
}

/// A log failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub(super) enum WalError {
    /// Reading or writing the file failed.
    #[error("the store's log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a log of this format.
    #[error("the store's log {0} is not an ausweep log (its head is not AUSWAL01)")]
    NotALog(PathBuf),
    /// A frame that passed its checksum does not decode: a bug, not a torn write.
    #[error("the store's log {path}: frame at byte {offset} does not decode")]
    BadFrame {
        /// The log file.
        path: PathBuf,
        /// Where the frame starts.
        offset: u64,
    },
}

/// The open log: where the next frame goes and which generation it belongs to.
#[derive(Debug)]
pub(super) struct Wal {
    file: std::sync::Arc<File>,
    path: PathBuf,
    capacity: u64,
    generation: u64,
    end: u64,
}

/// Appends one write to a frame body.
pub(super) fn encode_put(body: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    body.push(PUT);
    push_bytes(body, key);
    push_bytes(body, value);
}

/// Appends one removal to a frame body.
pub(super) fn encode_delete(body: &mut Vec<u8>, key: &[u8]) {
    body.push(DELETE);
    push_bytes(body, key);
}

fn push_bytes(body: &mut Vec<u8>, bytes: &[u8]) {
    body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    body.extend_from_slice(bytes);
}

fn checksum(generation: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&generation.to_le_bytes());
    h.update(body);
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes a frame body into its writes; None when it does not parse.
fn decode_body(body: &[u8]) -> Option<Vec<LoggedOp>> {
    let mut ops = Vec::new();
    let mut at = 0;
    let bytes = |at: &mut usize| -> Option<Vec<u8>> {
        let n = u32_at(body, *at)? as usize;
        let v = body.get(*at + 4..(*at + 4).checked_add(n)?)?.to_vec();
        *at += 4 + n;
        Some(v)
    };
    while at < body.len() {
        let kind = body[at];
        at += 1;
        let key = bytes(&mut at)?;
        ops.push(match kind {
            PUT => LoggedOp::Put(key, bytes(&mut at)?),
            DELETE => LoggedOp::Delete(key),
            _ => return None,
        });
    }
    Some(ops)
}

impl Wal {
    /// Opens the log at `path` (creating it, `capacity` bytes of zeros, when absent) and returns
    /// it with the batches of its current generation, in order.
    pub(super) fn open(path: &Path, capacity: u64) -> Result<(Self, Vec<Vec<LoggedOp>>), WalError> {
        let io = |source| WalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut wal = Self {
            file: std::sync::Arc::new(file),
            path: path.to_path_buf(),
            capacity: capacity.max(bytes.len() as u64),
            generation: 0,
            end: HEAD,
        };
        let fresh = bytes.len() < HEAD as usize || bytes[..HEAD as usize].iter().all(|b| *b == 0);
        let batches = if fresh {
            // New, or its creation was cut short before the head was written.
            wal.fill_zeros(bytes.len() as u64)?;
            wal.reset()?;
            Vec::new()
        } else {
            if &bytes[..8] != MAGIC {
                return Err(WalError::NotALog(path.to_path_buf()));
            }
            wal.generation = u64_at(&bytes, 8).unwrap_or(0);
            let batches = wal.read_frames(&bytes)?;
            if (bytes.len() as u64) < wal.capacity {
                wal.fill_zeros(bytes.len() as u64)?;
            }
            batches
        };
        Ok((wal, batches))
    }

    /// The frames of the current generation from the head on, until the first that is not.
    fn read_frames(&mut self, bytes: &[u8]) -> Result<Vec<Vec<LoggedOp>>, WalError> {
        let mut batches = Vec::new();
        let mut at = HEAD as usize;
        while let (Some(len), Some(sum), Some(generation)) = (
            u32_at(bytes, at),
            u32_at(bytes, at + 4),
            u64_at(bytes, at + 8),
        ) {
            let start = at + FRAME_HEAD;
            let Some(body) = start
                .checked_add(len as usize)
                .and_then(|stop| bytes.get(start..stop))
            else {
                break;
            };
            if len == 0 || generation != self.generation || checksum(generation, body) != sum {
                break;
            }
            let ops = decode_body(body).ok_or_else(|| WalError::BadFrame {
                path: self.path.clone(),
                offset: at as u64,
            })?;
            batches.push(ops);
            at = start + len as usize;
        }
        self.end = at as u64;
        Ok(batches)
    }

    /// Writes zeros from `from` to the capacity and syncs the file and its directory.
    fn fill_zeros(&self, from: u64) -> Result<(), WalError> {
        let io = |source| WalError::Io {
            path: self.path.clone(),
            source,
        };
        let chunk = vec![0u8; 1 << 20];
        let mut at = from;
        while at < self.capacity {
            let n = (self.capacity - at).min(chunk.len() as u64) as usize;
            self.file.write_all_at(&chunk[..n], at).map_err(io)?;
            at += n as u64;
        }
        self.file.sync_all().map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Appends one batch's body; false (nothing written) when it does not fit.
    pub(super) fn append(&mut self, body: &[u8]) -> Result<bool, WalError> {
        let n = (FRAME_HEAD + body.len()) as u64;
        if body.is_empty() || self.end + n > self.capacity {
            return Ok(body.is_empty());
        }
        let mut frame = Vec::with_capacity(n as usize);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&checksum(self.generation, body).to_le_bytes());
        frame.extend_from_slice(&self.generation.to_le_bytes());
        frame.extend_from_slice(body);
        self.file
            .write_all_at(&frame, self.end)
            .map_err(|source| WalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.end += n;
        Ok(true)
    }

    /// Starts a new generation: every frame before it is void. Call only once what they hold
    /// is durable elsewhere.
    pub(super) fn reset(&mut self) -> Result<(), WalError> {
        let io = |source| WalError::Io {
            path: self.path.clone(),
            source,
        };
        self.generation += 1;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&self.generation.to_le_bytes());
        self.file.write_all_at(&head, 0).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.end = HEAD;
        Ok(())
    }

    /// The file, to `fdatasync` without holding the log (appends may go on meanwhile).
    pub(super) fn file(&self) -> std::sync::Arc<File> {
        self.file.clone()
    }

    /// Bytes of frames in the current generation.
    pub(super) fn used(&self) -> u64 {
        self.end - HEAD
    }

    /// The current generation (one more at each start-over).
    #[cfg(test)]
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// The log's size on disk.
    pub(super) fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(ops: &[LoggedOp]) -> Vec<u8> {
        let mut b = Vec::new();
        for op in ops {
            match op {
                LoggedOp::Put(k, v) => encode_put(&mut b, k, v),
                LoggedOp::Delete(k) => encode_delete(&mut b, k),
            }
        }
        b
    }

    fn put(k: &str, v: &str) -> LoggedOp {
        LoggedOp::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn frames_read_back_in_order_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let batches = vec![
            vec![put("a", "1"), LoggedOp::Delete(b"b".to_vec())],
            vec![put("c", "")],
            vec![put("a", "2"), put("d", "4")],
        ];
        {
            let (mut wal, read) = Wal::open(&path, 4096).unwrap();
            assert!(read.is_empty());
            for b in &batches {
                assert!(wal.append(&body(b)).unwrap());
            }
        }
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4096,
            "preallocated"
        );
        let (wal, read) = Wal::open(&path, 4096).unwrap();
        assert_eq!(read, batches);
        let end = wal.end;
        drop(wal);
        // The last frame's last byte never reached the disk.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xFF], end - 1).unwrap();
        let (_, read) = Wal::open(&path, 4096).unwrap();
        assert_eq!(read, batches[..2]);
    }

    #[test]
    fn a_new_generation_voids_the_frames_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, _) = Wal::open(&path, 4096).unwrap();
        for k in ["a", "b", "c"] {
            wal.append(&body(&[put(k, "1")])).unwrap();
        }
        wal.reset().unwrap();
        assert_eq!(wal.used(), 0);
        // Same size as the old ones: the next frame on disk is the old "b", whole but void.
        wal.append(&body(&[put("z", "1")])).unwrap();
        drop(wal);
        let (_, read) = Wal::open(&path, 4096).unwrap();
        assert_eq!(
            read,
            vec![vec![put("z", "1")]],
            "older frames beyond it are void"
        );
    }

    #[test]
    fn a_full_log_takes_no_frame_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(&dir.path().join("log"), 256).unwrap();
        let b = body(&[put("k", &"v".repeat(50))]);
        let mut n = 0;
        while wal.append(&b).unwrap() {
            n += 1;
        }
        assert_eq!(n, (256 - HEAD as usize) / (FRAME_HEAD + b.len()));
        assert!(wal.used() + (FRAME_HEAD + b.len()) as u64 > 256 - HEAD);
    }

    #[test]
    fn a_file_that_is_not_a_log_is_named_and_one_cut_short_at_creation_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"{\"not\": \"a log at all\"}").unwrap();
        let e = Wal::open(&path, 4096).unwrap_err().to_string();
        assert!(e.contains("not an ausweep log") && e.contains("log"), "{e}");
        std::fs::write(&path, [0u8; 5]).unwrap();
        let (mut wal, read) = Wal::open(&path, 4096).unwrap();
        assert!(read.is_empty());
        assert!(wal.append(&body(&[put("k", "v")])).unwrap());
        drop(wal);
        assert_eq!(Wal::open(&path, 4096).unwrap().1, vec![vec![put("k", "v")]]);
    }
}
