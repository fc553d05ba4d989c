//! The sled store: one sled tree, each logical tree a one-byte key prefix, and a write-ahead log
//! of ausweep's own ([`super::wal`]). `apply` appends a batch to the log; `sync` makes the log
//! durable with one `fdatasync` and then applies its batches to sled (so sled never holds a write
//! the log could lose); sled is flushed, and its log `fdatasync`ed, only at a checkpoint, when
//! the log is half full, after which the log starts over. Opening replays the log into sled.

use super::wal::{self, LoggedOp, Wal};
use super::{Batch, Op, Store, StoreError, Tree};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// sled's page cache, bytes.
const CACHE_BYTES: u64 = 32 << 20;

/// The write-ahead log's size on disk; a checkpoint runs once half of it is used.
const WAL_BYTES: u64 = 8 << 20;

/// How often sled writes out what it holds, in the background (durable at a checkpoint).
const SLED_FLUSH_MS: u64 = 200;

/// The log's file name in the store's directory.
const WAL_FILE: &str = "ausweep.wal";

/// How long [`SledStore::open`] waits for the store's lock: sled's background threads hold a
/// dropped store's file (and its lock) for a moment after the last handle goes.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A store on disk (sled 0.34 behind a write-ahead log).
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, synced after each checkpoint's flush (see `SledStore::checkpoint`).
    log: Arc<std::fs::File>,
    /// sled's directory of pages too large for the log, and the files in it already synced.
    blobs: Arc<BlobFiles>,
    /// The write-ahead log and the batches in it not yet applied to sled.
    wal: Arc<Mutex<Logged>>,
    /// Held while batches move from the log into sled (by `sync` or a checkpoint), so they
    /// reach sled in the log's order.
    to_sled: Arc<Mutex<()>>,
    /// Set when a sync or checkpoint failed: what the log and sled hold is then unknown, so the
    /// store takes no more writes until the process restarts and replays the log.
    failed: Arc<Mutex<Option<String>>>,
}

/// The log and what it holds that sled does not have yet.
#[derive(Debug)]
struct Logged {
    wal: Wal,
    /// Batches appended to the log since the last sync, in order.
    pending: Vec<sled::Batch>,
}

/// sled 0.34 writes a page larger than a quarter of a log segment (128 KiB) to a file of its own
/// in `<db>/blobs/` and never syncs it, while the log's record pointing at it is synced: such a
/// page could be lost to a power cut. A checkpoint syncs new ones before the log starts over.
#[derive(Debug)]
struct BlobFiles {
    dir: std::path::PathBuf,
    synced: std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl BlobFiles {
    /// Syncs the files not synced yet, then the directory; returns how many.
    fn sync_new(&self) -> Result<usize, StoreError> {
        let err = |what: &str, e: std::io::Error| {
            StoreError::Backend(format!(
                "syncing sled's {what} in {}: {e}",
                self.dir.display()
            ))
        };
        let mut synced = self
            .synced
            .lock()
            .map_err(|_| StoreError::Backend("blob file list poisoned".into()))?;
        let mut present = std::collections::HashSet::new();
        let mut new = 0;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(err("blob directory", e)),
        };
        for entry in entries {
            let name = entry.map_err(|e| err("blob directory", e))?.file_name();
            if !synced.contains(&name) {
                match std::fs::File::open(self.dir.join(&name)).and_then(|f| f.sync_data()) {
                    Ok(()) => new += 1,
                    // sled removed it meanwhile (its page was rewritten).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(err("blob file", e)),
                }
            }
            present.insert(name);
        }
        if new > 0 {
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("blob directory", e))?;
        }
        *synced = present;
        Ok(new)
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn full_key(tree: Tree, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(tree.tag());
    k.extend_from_slice(key.as_bytes());
    k
}

impl SledStore {
    /// Opens (or creates) the store in a directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_log(dir, WAL_BYTES)
    }

    /// Opens the store with a write-ahead log of `wal_bytes`.
    fn open_with_log(dir: &Path, wal_bytes: u64) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            // The scheduler holds the whole state in memory and reads the store only when it
            // starts, so sled's page cache (1 GiB by default) would only hold copies: keep it small.
            // sled holds only what the log has made durable, so its own background flush may
            // write it out at any time; it keeps a checkpoint's flush short.
            match sled::Config::new()
                .path(dir)
                .flush_every_ms(Some(SLED_FLUSH_MS))
                .cache_capacity(CACHE_BYTES)
                .open()
            {
                Ok(db) => break db,
                // sled reports its lock as an `Other` I/O error; its text is the only sign.
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::InUse(dir.to_path_buf()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(backend(e)),
            }
        };
        let tree = db.open_tree("ausweep").map_err(backend)?;
        let log = std::fs::File::open(dir.join("db")).map_err(|e| {
            StoreError::Backend(format!(
                "opening sled's log {}: {e}",
                dir.join("db").display()
            ))
        })?;
        let (wal, logged) = Wal::open(&dir.join(WAL_FILE), wal_bytes)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let store = Self {
            db,
            tree,
            log: Arc::new(log),
            blobs: Arc::new(BlobFiles {
                dir: dir.join("blobs"),
                synced: Default::default(),
            }),
            wal: Arc::new(Mutex::new(Logged {
                wal,
                pending: Vec::new(),
            })),
            to_sled: Arc::new(Mutex::new(())),
            failed: Arc::new(Mutex::new(None)),
        };
        if !logged.is_empty() {
            // What the log holds since the last checkpoint, over what sled kept: every write in
            // it replaces or removes a whole value, so replaying the frames in order gives the
            // state at the log's last durable frame, whatever prefix of them sled already had.
            for ops in logged {
                let mut b = sled::Batch::default();
                for op in ops {
                    match op {
                        LoggedOp::Put(k, v) => b.insert(k, v),
                        LoggedOp::Delete(k) => b.remove(k),
                    }
                }
                store.tree.apply_batch(b).map_err(backend)?;
            }
            let _order = lock(&store.to_sled)?;
            let mut logged = lock(&store.wal)?;
            store.checkpoint(&mut logged)?;
        }
        Ok(store)
    }

    /// Bytes on disk, as sled reports them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(backend)
    }

    /// Makes sled hold everything logged, durably, and starts the log over. The caller holds
    /// `to_sled` and passes the locked log.
    fn checkpoint(&self, logged: &mut Logged) -> Result<(), StoreError> {
        if !logged.pending.is_empty() {
            logged.wal.file().sync_data().map_err(wal_io)?;
            for b in logged.pending.drain(..) {
                self.tree.apply_batch(b).map_err(backend)?;
            }
        }
        self.tree.flush().map_err(backend)?;
        // On Linux sled's flush writes its log with `sync_file_range`, which neither flushes the
        // disk's write cache nor makes a grown file's size durable: the fdatasync does. Pages
        // sled wrote to files of their own are synced before the log that holds them goes.
        self.log
            .sync_data()
            .map_err(|e| StoreError::Backend(format!("syncing sled's log: {e}")))?;
        self.blobs.sync_new()?;
        logged
            .wal
            .reset()
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Fails when an earlier sync failed; otherwise runs `f` and remembers its failure.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        if let Some(e) = lock(&self.failed)?.as_ref() {
            return Err(StoreError::Backend(format!(
                "the store takes no writes after an earlier failure (restart the coordinator; the log is replayed): {e}"
            )));
        }
        let r = f();
        if let Err(e) = &r {
            *lock(&self.failed)? = Some(e.to_string());
        }
        r
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::Backend("the store's log lock is poisoned".into()))
}

fn wal_io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("syncing the store's log: {e}"))
}

impl Store for SledStore {
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.guarded(|| {
            let mut body = Vec::new();
            let mut b = sled::Batch::default();
            for op in &batch.ops {
                match op {
                    Op::Put(t, k, v) => {
                        let key = full_key(*t, k);
                        wal::encode_put(&mut body, &key, v);
                        b.insert(key, v.as_slice());
                    }
                    Op::Delete(t, k) => {
                        let key = full_key(*t, k);
                        wal::encode_delete(&mut body, &key);
                        b.remove(key);
                    }
                }
            }
            let to_wal = |e: wal::WalError| StoreError::Backend(e.to_string());
            {
                let mut logged = lock(&self.wal)?;
                if logged.wal.append(&body).map_err(to_wal)? {
                    logged.pending.push(b);
                    return Ok(());
                }
            }
            // The log is full: checkpoint (after the sync in flight), then log the batch, or,
            // when it is larger than the whole log, apply it to sled and flush it there.
            let _order = lock(&self.to_sled)?;
            let mut logged = lock(&self.wal)?;
            self.checkpoint(&mut logged)?;
            if logged.wal.append(&body).map_err(to_wal)? {
                logged.pending.push(b);
                return Ok(());
            }
            self.tree.apply_batch(b).map_err(backend)?;
            self.checkpoint(&mut logged)
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.guarded(|| {
            let _order = lock(&self.to_sled)?;
            let (taken, file, used) = {
                let mut logged = lock(&self.wal)?;
                (
                    std::mem::take(&mut logged.pending),
                    logged.wal.file(),
                    logged.wal.used(),
                )
            };
            if taken.is_empty() {
                return Ok(());
            }
            // The commit point: one fdatasync, while the next round may append behind it.
            file.sync_data().map_err(wal_io)?;
            for b in taken {
                self.tree.apply_batch(b).map_err(backend)?;
            }
            let mut logged = lock(&self.wal)?;
            if used >= logged.wal.capacity() / 2 {
                self.checkpoint(&mut logged)?;
            }
            Ok(())
        })
    }

    fn get(&self, tree: Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(full_key(tree, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, tree: Tree) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.tree
            .scan_prefix([tree.tag()])
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                let key = String::from_utf8(k[1..].to_vec())
                    .map_err(|e| StoreError::Backend(format!("non-UTF-8 key: {e}")))?;
                Ok((key, v.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(&SledStore::open(dir.path()).unwrap());
    }

    /// Copies a store's files as the page cache holds them: what a killed process leaves.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn raw(s: &SledStore, tree: Tree) -> Vec<(String, Vec<u8>)> {
        s.scan(tree).unwrap()
    }

    #[test]
    fn answered_writes_survive_a_kill_before_sled_writes_them_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        let mut b = Batch::new();
        b.put_raw(Tree::Jobs, "j1", vec![1]);
        b.put_raw(Tree::Jobs, "j2", vec![2]);
        s.commit(&b).unwrap();
        let mut b = Batch::new();
        b.delete(Tree::Jobs, "j1");
        b.put_raw(Tree::Jobs, "j2", vec![3]);
        b.put_raw(Tree::Results, "j2", vec![4]);
        s.commit(&b).unwrap();
        copy_dir(&dir.path().join("db"), &dir.path().join("killed"));
        let k = SledStore::open(&dir.path().join("killed")).unwrap();
        assert_eq!(raw(&k, Tree::Jobs), [("j2".to_string(), vec![3])]);
        assert_eq!(raw(&k, Tree::Results), [("j2".to_string(), vec![4])]);
        // The replay was checkpointed: the log is empty and a second kill changes nothing.
        assert_eq!(lock(&k.wal).unwrap().wal.used(), 0);
        copy_dir(&dir.path().join("killed"), &dir.path().join("again"));
        let again = SledStore::open(&dir.path().join("again")).unwrap();
        assert_eq!(raw(&again, Tree::Jobs), [("j2".to_string(), vec![3])]);
    }

    #[test]
    fn the_log_starts_over_at_checkpoints_and_a_batch_larger_than_it_goes_to_sled() {
        let dir = tempfile::tempdir().unwrap();
        let log = 16 << 10;
        let s = SledStore::open_with_log(&dir.path().join("db"), log).unwrap();
        let start = lock(&s.wal).unwrap().wal.generation();
        for i in 0..100u8 {
            let mut b = Batch::new();
            b.put_raw(Tree::Results, &format!("r{i:03}"), vec![i; 500]);
            s.commit(&b).unwrap();
        }
        // ~53 KB of frames through a 16 KiB log, checkpointed once half full: ~6 times.
        let checkpoints = lock(&s.wal).unwrap().wal.generation() - start;
        assert!((5..=8).contains(&checkpoints), "{checkpoints} checkpoints");
        let big = vec![9u8; 64 << 10];
        let mut b = Batch::new();
        b.put_raw(Tree::Sweeps, "big", big.clone());
        b.put_raw(Tree::Meta, "after-big", vec![1]);
        s.commit(&b).unwrap();
        let mut b = Batch::new();
        b.put_raw(Tree::Meta, "last", vec![2]);
        s.commit(&b).unwrap();
        copy_dir(&dir.path().join("db"), &dir.path().join("killed"));
        let k = SledStore::open_with_log(&dir.path().join("killed"), log).unwrap();
        let results = raw(&k, Tree::Results);
        assert_eq!(results.len(), 100);
        assert!(results
            .iter()
            .enumerate()
            .all(|(i, (key, v))| *key == format!("r{i:03}") && *v == vec![i as u8; 500]));
        assert_eq!(k.get(Tree::Sweeps, "big").unwrap(), Some(big));
        assert_eq!(k.get(Tree::Meta, "after-big").unwrap(), Some(vec![1]));
        assert_eq!(k.get(Tree::Meta, "last").unwrap(), Some(vec![2]));
    }

    #[test]
    fn pages_sled_writes_to_files_of_their_own_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        // A log smaller than the large value below: it goes to sled and is checkpointed there.
        let s = SledStore::open_with_log(dir.path(), 64 << 10).unwrap();
        let mut b = Batch::new();
        b.put(Tree::Meta, "small", &1u32).unwrap();
        s.commit(&b).unwrap();
        assert!(s.blobs.synced.lock().unwrap().is_empty());
        // A 300 KiB value makes its page a blob file.
        let big = vec![7u8; 300 << 10];
        let mut b = Batch::new();
        b.put_raw(Tree::Sweeps, "big", big.clone());
        s.commit(&b).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!files.is_empty());
        let synced = s.blobs.synced.lock().unwrap().clone();
        assert!(
            files.iter().all(|f| synced.contains(f)),
            "{files:?} vs {synced:?}"
        );
        assert_eq!(s.blobs.sync_new().unwrap(), 0, "each file is synced once");
        drop(s);
        let s = SledStore::open_with_log(dir.path(), 64 << 10).unwrap();
        assert_eq!(s.get(Tree::Sweeps, "big").unwrap(), Some(big));
    }

    #[test]
    fn a_store_held_open_is_named_and_one_let_go_meanwhile_opens() {
        let dir = tempfile::tempdir().unwrap();
        let held = SledStore::open(dir.path()).unwrap();
        let t0 = std::time::Instant::now();
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::InUse(p) if p == dir.path()),
            "{err}"
        );
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(t0.elapsed() >= LOCK_WAIT, "it gave up before its wait");
        // A handle let go while the open waits (as sled's threads do after a drop): it opens.
        let mut b = Batch::new();
        b.put_raw(Tree::Meta, "kept", vec![7, 7]);
        held.commit(&b).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(LOCK_WAIT / 4);
            drop(held);
        });
        let s = SledStore::open(dir.path()).expect("opens once the lock is let go");
        release.join().unwrap();
        assert_eq!(s.get(Tree::Meta, "kept").unwrap(), Some(vec![7, 7]));
    }

    #[test]
    fn committed_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut b = Batch::new();
            b.put(Tree::Jobs, "j1", &"hello").unwrap();
            s.commit(&b).unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            s.get(Tree::Jobs, "j1").unwrap(),
            Some(crate::store::codec::encode(Tree::Jobs, "j1", &"hello").unwrap())
        );
    }
}
