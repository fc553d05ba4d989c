//! The sled store: one sled tree, each logical tree a one-byte key prefix, so a [`Batch`] is one
//! atomic `apply_batch` (sled's large-page files synced after it), and a sync is a `flush` and an
//! `fdatasync` of sled's log (the commit point).

use super::{Batch, Op, Store, StoreError, Tree};
use std::path::Path;

/// sled's page cache, bytes.
const CACHE_BYTES: u64 = 32 << 20;

/// How long [`SledStore::open`] waits for the store's lock: sled's background threads hold a
/// dropped store's file (and its lock) for a moment after the last handle goes.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A store on disk (sled 0.34).
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, synced after each flush (see `SledStore::sync`).
    log: std::sync::Arc<std::fs::File>,
    /// sled's directory of pages too large for the log, and the files in it already synced.
    blobs: std::sync::Arc<BlobFiles>,
}

/// sled 0.34 writes a page larger than a quarter of a log segment (128 KiB) to a file of its own
/// in `<db>/blobs/` and never syncs it, while the log's record pointing at it is synced: such a
/// page could be lost to a power cut. `SledStore::apply` syncs new ones before the log is.
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
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            // The scheduler holds the whole state in memory and reads the store only when it
            // starts, so sled's page cache (1 GiB by default) would only hold copies: keep it small.
            match sled::Config::new()
                .path(dir)
                .flush_every_ms(None)
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
        Ok(Self {
            db,
            tree,
            log: std::sync::Arc::new(log),
            blobs: std::sync::Arc::new(BlobFiles {
                dir: dir.join("blobs"),
                synced: Default::default(),
            }),
        })
    }

    /// Bytes on disk, as sled reports them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(backend)
    }
}

impl Store for SledStore {
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for op in &batch.ops {
            match op {
                Op::Put(t, k, v) => b.insert(full_key(*t, k), v.as_slice()),
                Op::Delete(t, k) => b.remove(full_key(*t, k)),
            }
        }
        self.tree.apply_batch(b).map_err(backend)?;
        // A large page's file is written while the batch is applied (when sled reserves the
        // page's log space; its flush writes none): durable before the log record pointing at
        // it. Synced here, by the one writer, so no file is listed while sled still writes it.
        self.blobs.sync_new()?;
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.tree.flush().map_err(backend)?;
        // On Linux sled's flush writes its log with `sync_file_range`, which neither flushes the
        // disk's write cache nor makes a grown file's size durable: a power cut could lose an
        // answered commit. One fdatasync per commit (a scheduler round, not a call) closes that.
        self.log
            .sync_data()
            .map_err(|e| StoreError::Backend(format!("syncing sled's log: {e}")))?;
        Ok(())
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

    #[test]
    fn pages_sled_writes_to_files_of_their_own_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
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
        let s = SledStore::open(dir.path()).unwrap();
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
