//! Checkpoint blobs: files named by their sha256, written to a temp file, verified, made durable
//! and renamed into place, so a registered checkpoint always has a complete file behind it.
//! Uploads are made durable in rounds (group commit, [`BlobWriter::commit`]): one thread syncs the
//! filesystem once for every blob finished since its last round instead of two fsyncs per blob.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Most blobs one durability round takes.
const MAX_ROUND: usize = 4096;

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

/// Name prefix of a blob being written: it sits in its shard directory (so the rename into place
/// stays in one directory and uploads spread over 256 directory locks) until it is durable.
pub const TEMP_PREFIX: &str = ".tmp.";

/// Removes what earlier versions left in `<root>/tmp` (`<sha256>.<16 hex>` files), and the
/// directory once empty; anything else there is left alone (the root may be a user's directory).
fn remove_old_temp_files(tmp: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(tmp) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for f in entries {
        let f = f?;
        let name = f.file_name().to_string_lossy().into_owned();
        let ours = name.split_once('.').is_some_and(|(sha, tail)| {
            valid_sha256(sha) && tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if ours && f.file_type()?.is_file() {
            fs::remove_file(f.path())?;
        }
    }
    let _ = fs::remove_dir(tmp);
    Ok(())
}

/// Every blob file under the shard directories of `root` (`<root>/<2 hex>/<name>`): name and
/// size. With `clean`, temp files (a crash's leftovers) are removed on the way.
fn stored(root: &Path, clean: bool) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for shard in fs::read_dir(root)? {
        let shard = shard?.path();
        if shard.is_dir() {
            for f in fs::read_dir(&shard)? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    if clean {
                        fs::remove_file(f.path())?;
                    }
                    continue;
                }
                out.push((name, f.metadata()?.len()));
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
    /// The durability rounds' thread (it ends when the last clone is dropped).
    rounds: mpsc::Sender<Queued>,
}

/// A blob whose data is written and verified but not yet durable (its file is closed: a round of
/// many uploads holds no descriptors).
#[derive(Debug)]
struct Sealed {
    tmp: PathBuf,
    final_path: PathBuf,
    size: u64,
    used: Arc<AtomicU64>,
}

/// A sealed blob waiting for its round, with whom to tell.
type Queued = (Sealed, oneshot::Sender<Result<u64, BlobError>>);

/// Syncs the filesystem that holds `dir` (Linux `syncfs`): every file written there is durable.
fn sync_filesystem(dir: &File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `dir` is an open file descriptor for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Err(std::io::Error::other("syncfs needs Linux"))
    }
}

/// Renames a durable blob into place (in its shard directory) and counts its bytes if it is new.
/// Blobs do not use `ausweep_fsutil::commit`: a durability round fsyncs many uploads with one
/// `syncfs` before any of them is placed (docs/stress.md), which one-file commits would undo.
fn place(s: &Sealed) -> Result<(), BlobError> {
    let existed = s.final_path.is_file();
    fs::rename(&s.tmp, &s.final_path)?;
    if !existed {
        s.used.fetch_add(s.size, Ordering::Relaxed);
    }
    Ok(())
}

/// Makes one blob durable alone: fsync the file, rename it, fsync its directory.
fn make_one_durable(s: &Sealed) -> Result<u64, BlobError> {
    File::open(&s.tmp)?.sync_all()?;
    place(s)?;
    if let Some(parent) = s.final_path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(s.size)
}

/// Makes a round of blobs durable together: one filesystem sync for their data, the renames, one
/// sync for the renames. A failed sync fails the whole round (no blob of it is promised).
fn make_round_durable(root: &Path, round: &[Sealed]) -> Vec<Result<u64, BlobError>> {
    if round.len() == 1 || !cfg!(target_os = "linux") {
        return round.iter().map(make_one_durable).collect();
    }
    let synced = File::open(root).and_then(|d| {
        sync_filesystem(&d)?;
        Ok(d)
    });
    let dir = match synced {
        Ok(d) => d,
        Err(e) => return failed_round(round.len(), &e),
    };
    let placed: Vec<Result<u64, BlobError>> =
        round.iter().map(|s| place(s).map(|()| s.size)).collect();
    match sync_filesystem(&dir) {
        Ok(()) => placed,
        Err(e) => failed_round(round.len(), &e),
    }
}

/// The same failure for each of a round's `n` blobs.
fn failed_round(n: usize, e: &std::io::Error) -> Vec<Result<u64, BlobError>> {
    (0..n)
        .map(|_| Err(BlobError::Io(std::io::Error::new(e.kind(), e.to_string()))))
        .collect()
}

/// The rounds' thread: waits for a sealed blob, takes every other one already queued, makes them
/// durable together, answers each. New blobs queue while a round syncs, so rounds grow with load.
/// Returns how many rounds it ran once every sender is gone.
fn run_rounds(root: PathBuf, rx: mpsc::Receiver<Queued>) -> usize {
    let mut rounds = 0;
    while let Ok(first) = rx.recv() {
        rounds += 1;
        let mut queued = vec![first];
        while queued.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(q) => queued.push(q),
                Err(_) => break,
            }
        }
        let (sealed, replies): (Vec<Sealed>, Vec<_>) = queued.into_iter().unzip();
        for (reply, outcome) in replies.into_iter().zip(make_round_durable(&root, &sealed)) {
            // An upload whose caller went away leaves an unnamed blob: the next start removes it.
            let _ = reply.send(outcome);
        }
        // A temp file left by a failed rename is removed when the store next opens.
        drop(sealed);
    }
    rounds
}

impl Blobs {
    /// Opens (creating) the directory; leftover temp files of a crash are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, BlobError> {
        Ok(Self::open_listing(dir, max_bytes)?.0)
    }

    /// [`Blobs::open`], also returning the name of every blob found (one walk of the directory).
    pub fn open_listing(dir: &Path, max_bytes: u64) -> Result<(Self, Vec<String>), BlobError> {
        fs::create_dir_all(dir.join("sha256"))?;
        remove_old_temp_files(&dir.join("tmp"))?;
        let found = stored(&dir.join("sha256"), true)?;
        let used = found.iter().map(|(_, len)| len).sum();
        let names = found
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| valid_sha256(name))
            .collect();
        let (rounds, rx) = mpsc::channel();
        let root = dir.to_path_buf();
        std::thread::Builder::new()
            .name("blob-durability".into())
            .spawn(move || {
                run_rounds(root, rx);
            })?;
        let blobs = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            used: Arc::new(AtomicU64::new(used)),
            limit: 0,
            rounds,
        };
        Ok((blobs, names))
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
        Ok(stored(&self.dir.join("sha256"), false)?
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
        let shard = final_path
            .parent()
            .ok_or_else(|| std::io::Error::other("no parent"))?;
        fs::create_dir_all(shard)?;
        let tmp = shard.join(format!(
            "{TEMP_PREFIX}{expected}.{:016x}",
            rand::random::<u64>()
        ));
        Ok(BlobWriter {
            file: Some(File::create(&tmp)?),
            tmp,
            final_path,
            expected: expected.to_string(),
            hasher: Sha256::new(),
            size: 0,
            max_bytes: self.max_bytes,
            used: self.used.clone(),
            rounds: self.rounds.clone(),
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
    rounds: mpsc::Sender<Queued>,
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

    /// Verifies the hash and closes the writing: the data is written, not yet durable.
    fn seal(mut self) -> Result<Sealed, BlobError> {
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected {
            return Err(BlobError::Mismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        // Closed here: its data is in the page cache, the round makes it durable.
        self.file
            .take()
            .ok_or_else(|| std::io::Error::other("writer finished"))?;
        Ok(Sealed {
            tmp: std::mem::take(&mut self.tmp),
            final_path: self.final_path.clone(),
            size: self.size,
            used: self.used.clone(),
        })
    }

    /// Verifies the hash, fsyncs, renames into place and fsyncs the directory; returns the size.
    pub fn finish(self) -> Result<u64, BlobError> {
        make_one_durable(&self.seal()?)
    }

    /// Verifies the hash and makes the blob durable in the next round with every other blob
    /// finished meanwhile (one filesystem sync for them all); returns the size once it is durable.
    pub async fn commit(self) -> Result<u64, BlobError> {
        let (tx, rx) = oneshot::channel();
        let rounds = self.rounds.clone();
        let sealed = self.seal()?;
        if let Err(mpsc::SendError((sealed, _))) = rounds.send((sealed, tx)) {
            // The rounds' thread is gone (it cannot be while a `Blobs` lives): do it here.
            return tokio::task::spawn_blocking(move || make_one_durable(&sealed))
                .await
                .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?;
        }
        rx.await
            .map_err(|_| BlobError::Io(std::io::Error::other("durability round lost")))?
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // A sealed writer handed its temp file on (its path is empty now).
        if !self.tmp.as_os_str().is_empty() {
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
        assert_eq!(temp_files(dir.path()), 0);
    }

    /// Temp files anywhere under the blob directory.
    fn temp_files(root: &Path) -> usize {
        let mut n = 0;
        for shard in fs::read_dir(root.join("sha256")).unwrap() {
            for f in fs::read_dir(shard.unwrap().path()).unwrap() {
                n += usize::from(
                    f.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(TEMP_PREFIX),
                );
            }
        }
        n
    }

    #[test]
    fn blobs_finished_together_are_made_durable_in_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path(), 1 << 20).unwrap();
        // Eight uploads finish while the rounds' thread is busy: they queue, then go as one round.
        let (tx, rx) = mpsc::channel();
        let mut answers = Vec::new();
        let mut shas = Vec::new();
        for i in 0..8u8 {
            let data = vec![i; 100 + usize::from(i)];
            let sha = hex::encode(Sha256::digest(&data));
            let mut w = b.writer(&sha).unwrap();
            w.write(&data).unwrap();
            let (reply, answer) = oneshot::channel();
            tx.send((w.seal().unwrap(), reply)).unwrap();
            answers.push(answer);
            shas.push((sha, data));
        }
        assert_eq!(temp_files(dir.path()), 8, "sealed blobs wait as temp files");
        assert!(
            shas.iter().all(|(sha, _)| !b.contains(sha)),
            "in place before durable"
        );
        drop(tx);
        assert_eq!(run_rounds(dir.path().to_path_buf(), rx), 1);
        for (mut answer, (sha, data)) in answers.into_iter().zip(&shas) {
            assert_eq!(answer.try_recv().unwrap().unwrap(), data.len() as u64);
            assert_eq!(fs::read(b.path(sha).unwrap()).unwrap(), *data);
        }
        assert_eq!(temp_files(dir.path()), 0);
        let total: u64 = shas.iter().map(|(_, d)| d.len() as u64).sum();
        assert_eq!(b.usage().0, total);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path(), 1 << 20).unwrap();
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let data = i.to_le_bytes().repeat(10);
                let sha = hex::encode(Sha256::digest(&data));
                let mut w = b.writer(&sha).unwrap();
                w.write(&data).unwrap();
                (w.commit().await.unwrap(), sha)
            }));
        }
        for t in tasks {
            let (size, sha) = t.await.unwrap();
            assert_eq!(size, 40);
            assert!(b.contains(&sha));
        }
        assert_eq!(b.usage().0, 64 * 40);
        assert_eq!(temp_files(dir.path()), 0);
        // A store reopened counts the same bytes, and a crash's temp file is removed.
        let leftover = dir
            .path()
            .join("sha256")
            .join("ab")
            .join(format!("{TEMP_PREFIX}x"));
        fs::create_dir_all(leftover.parent().unwrap()).unwrap();
        fs::write(&leftover, b"half").unwrap();
        let again = Blobs::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again.usage().0, 64 * 40);
        assert!(!leftover.exists());
        assert_eq!(again.list().unwrap().len(), 64);
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
        assert_eq!(temp_files(dir.path()), 0);
    }

    #[test]
    fn only_our_old_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let ours = tmp.join(format!("{}.{:016x}", "a".repeat(64), 7));
        fs::write(&ours, b"half").unwrap();
        fs::write(tmp.join("notes.txt"), b"a user's file").unwrap();
        Blobs::open(dir.path(), 10).unwrap();
        assert!(!ours.exists());
        assert!(tmp.join("notes.txt").is_file());
        fs::remove_file(tmp.join("notes.txt")).unwrap();
        fs::write(&ours, b"half").unwrap();
        Blobs::open(dir.path(), 10).unwrap();
        assert!(!tmp.exists(), "an emptied tmp/ stays");
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
