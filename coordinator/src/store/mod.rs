//! Durable state: a small key-value `Store` trait (sled and in-memory implementations), the
//! record types kept in it, and the checkpoint blob directory.
//!
//! Trees: sweeps, jobs, attempts, workers, results, checkpoints, meta. A [`Batch`] applies
//! atomically and is durable once a `sync` that began after it returns (`commit` does both): the
//! scheduler applies once per round of events and syncs its rounds on a thread of its own, so
//! many transitions share one flush and the next round's work overlaps the last one's flush.

pub mod blobs;
pub mod codec;
mod mem;
pub mod records;
mod sled_store;
pub mod specs;

#[cfg(test)]
mod conformance;

pub use mem::MemStore;
pub use sled_store::SledStore;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The logical trees of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// Sweep records by sweep id.
    Sweeps,
    /// Job records by job id.
    Jobs,
    /// Attempt records by `<job id>#<attempt>`.
    Attempts,
    /// Worker records by worker id.
    Workers,
    /// Result records by job id.
    Results,
    /// Checkpoint metadata by sha256.
    Checkpoints,
    /// Counters (fencing token, job sequence).
    Meta,
    /// Whole job specs (JSON) by job id, as older versions stored them ([`specs`]).
    Specs,
    /// Each sweep's specs by sweep id: its base spec and each job's differences ([`specs`]).
    SweepSpecs,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 9] = [
        Tree::Sweeps,
        Tree::Jobs,
        Tree::Attempts,
        Tree::Workers,
        Tree::Results,
        Tree::Checkpoints,
        Tree::Meta,
        Tree::Specs,
        Tree::SweepSpecs,
    ];

    /// A one-byte prefix for stores that keep every tree in one keyspace.
    pub fn tag(self) -> u8 {
        self as u8 + b'a'
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing database failed.
    #[error("store backend: {0}")]
    Backend(String),
    /// Another process (a coordinator, a `report --data-dir`) holds the store's lock.
    #[error("the store {} is in use by another process (is a coordinator running on it?)", .0.display())]
    InUse(std::path::PathBuf),
    /// A record could not be encoded or decoded.
    #[error("store record {tree:?}/{key}: {message}")]
    Codec {
        /// Tree.
        tree: Tree,
        /// Key.
        key: String,
        /// Cause.
        message: String,
    },
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert or replace.
    Put(Tree, String, Vec<u8>),
    /// Remove (absent keys are fine).
    Delete(Tree, String),
}

/// Writes committed together, atomically and durably.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// The writes, in order.
    pub ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record, binary-encoded ([`codec`]).
    pub fn put<T: Serialize>(
        &mut self,
        tree: Tree,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = codec::encode(tree, key, value)?;
        self.ops.push(Op::Put(tree, key.to_string(), bytes));
        Ok(())
    }

    /// Adds a value as given.
    pub fn put_raw(&mut self, tree: Tree, key: &str, bytes: Vec<u8>) {
        self.ops.push(Op::Put(tree, key.to_string(), bytes));
    }

    /// Adds a removal.
    pub fn delete(&mut self, tree: Tree, key: &str) {
        self.ops.push(Op::Delete(tree, key.to_string()));
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends another batch.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

/// A durable key-value store with named trees; one writer (the scheduler) uses it.
pub trait Store: Send + Sync + 'static {
    /// Applies the batch atomically; readers see it at once, a crash may still lose it.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Makes every batch applied before this call durable (may run beside a later `apply`).
    fn sync(&self) -> Result<(), StoreError>;
    /// Applies the batch and makes it durable: when this returns Ok the writes survive a crash.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.apply(batch)?;
        self.sync()
    }
    /// One value.
    fn get(&self, tree: Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every (key, value) of a tree, in key order.
    fn scan(&self, tree: Tree) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// A value kept in the store. Fields that repeat the record's key are not stored in the binary
/// form ([`codec::from_key`]); decoding fills them in from the key.
pub trait Record: Serialize + DeserializeOwned {
    /// What a binary record of tag 1 lacks to decode as tag 2 (the encoded defaults of the
    /// fields tag 2 added at its end; empty when the type did not change).
    const V1_SUFFIX: &'static [u8] = &[];

    /// Fills the fields the key gives (a no-op for most values).
    fn fill_from_key(&mut self, _key: &str) {}
}

impl Record for u64 {}
impl Record for u32 {}
impl Record for String {}

/// Decodes one record (binary, or JSON as older versions wrote it).
pub fn decode<T: Record>(tree: Tree, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let mut v: T = codec::decode_upgrading(tree, key, bytes, T::V1_SUFFIX)?;
    v.fill_from_key(key);
    Ok(v)
}

/// Reads and decodes every record of a tree.
pub fn load_all<T: Record>(store: &dyn Store, tree: Tree) -> Result<Vec<T>, StoreError> {
    store
        .scan(tree)?
        .into_iter()
        .map(|(k, v)| decode(tree, &k, &v))
        .collect()
}
