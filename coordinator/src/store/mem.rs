//! The in-memory store: for tests and for a coordinator that needs no durability.
//! Clones share the data, so a "restarted" scheduler can reopen the same store.

use super::{Batch, Op, Store, StoreError, Tree};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

type Data = BTreeMap<(Tree, String), Vec<u8>>;

/// A store held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    data: Arc<Mutex<Data>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Data>, StoreError> {
        self.data
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

impl Store for MemStore {
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut data = self.lock()?;
        for op in &batch.ops {
            match op {
                Op::Put(t, k, v) => {
                    data.insert((*t, k.clone()), v.clone());
                }
                Op::Delete(t, k) => {
                    data.remove(&(*t, k.clone()));
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn get(&self, tree: Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.get(&(tree, key.to_string())).cloned())
    }

    fn scan(&self, tree: Tree) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()?
            .range((tree, String::new())..)
            .take_while(|((t, _), _)| *t == tree)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run(&super::MemStore::new());
    }
}
