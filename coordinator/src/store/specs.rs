//! Job specs in the store: JSON, one value per job, written once at submit and read at each
//! lease. Encoding a sweep's specs is CPU work proportional to the sweep, so it is done before
//! the scheduler's turn ([`encode_sweep`]), not inside it.
//!
//! (Specs stored once per sweep, as a base and per-job differences, were measured: 2x less on
//! disk, but sled 0.34 then held ~290 MiB more in memory for 100,000 jobs; see docs/stress.md.)

use super::{Batch, Store, StoreError, Tree};
use serde::Serialize;

fn codec(key: &str, message: impl ToString) -> StoreError {
    StoreError::Codec {
        tree: Tree::Specs,
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// A sweep's specs encoded for the store, ready to commit.
#[derive(Debug, Default)]
pub struct Encoded(Vec<(String, Vec<u8>)>);

impl Encoded {
    /// Adds the values to a batch.
    pub fn put(self, batch: &mut Batch) {
        for (k, v) in self.0 {
            batch.put_raw(Tree::Specs, &k, v);
        }
    }
}

/// Encodes a sweep's specs (JSON, by job id).
pub fn encode_sweep<T: Serialize>(jobs: &[(&str, &T)]) -> Result<Encoded, StoreError> {
    jobs.iter()
        .map(|(id, spec)| {
            let bytes = serde_json::to_vec(spec).map_err(|e| codec(id, e))?;
            Ok((id.to_string(), bytes))
        })
        .collect::<Result<_, _>>()
        .map(Encoded)
}

/// A job's spec (JSON), or `None` when the store has none for it.
pub fn get(store: &dyn Store, job: &str) -> Result<Option<String>, StoreError> {
    store
        .get(Tree::Specs, job)?
        .map(|b| String::from_utf8(b).map_err(|e| codec(job, e)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use serde_json::json;

    #[test]
    fn specs_read_back_as_written_and_a_damaged_one_is_named() {
        let store = MemStore::default();
        let (a, b) = (json!({"name": "s/a", "fold": 1}), json!({"name": "s/b"}));
        let mut batch = Batch::new();
        encode_sweep(&[("s.a", &a), ("s.b", &b)])
            .unwrap()
            .put(&mut batch);
        batch.put_raw(Tree::Specs, "s.bad", vec![b'{', 0xff]);
        store.commit(&batch).unwrap();
        let read = |k: &str| -> serde_json::Value {
            serde_json::from_str(&get(&store, k).unwrap().unwrap()).unwrap()
        };
        assert_eq!((read("s.a"), read("s.b")), (a, b));
        assert_eq!(get(&store, "s.none").unwrap(), None);
        let e = get(&store, "s.bad").unwrap_err().to_string();
        assert!(e.contains("Specs/s.bad"), "{e}");
    }
}
