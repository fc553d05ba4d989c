//! Job specs, stored once per sweep. A sweep's jobs share almost all of their spec, so the
//! store keeps, per sweep, a few values in [`Tree::SweepSpecs`]: the first job's spec whole (the
//! base) and, per job, the object fields where its spec differs from the base (a patch: its
//! backbone, fold, stage, grid values), in chunks of a few KiB. The scheduler holds the parsed base and each job's patch
//! in memory and a lease renders the spec from them, outside the scheduler's loop.
//!
//! Stores of older versions kept each job's spec whole in [`Tree::Specs`]; those still read.
//! (One store value per job's patch was measured and not kept: sled 0.34 holds many more B-tree
//! node versions in memory when values are small, +290 MiB for 100,000 jobs; docs/stress.md.)

use super::{codec, Batch, Store, StoreError, Tree};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Bytes of patches per stored chunk: values stay far below the size at which sled 0.34 writes
/// a page to a file of its own.
pub const CHUNK_BYTES: usize = 4096;

/// A job's spec as its differences from its sweep's base.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Patch {
    /// Fields set (added or changed): path of object keys, value.
    #[serde(default, rename = "s", skip_serializing_if = "Vec::is_empty")]
    set: Vec<(Vec<String>, Value)>,
    /// Fields the base has and the spec has not.
    #[serde(default, rename = "u", skip_serializing_if = "Vec::is_empty")]
    unset: Vec<Vec<String>>,
}

/// A sweep's specs as stored: the base (JSON) and each job's patch (JSON), by job id.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Stored {
    base: String,
    jobs: Vec<(String, String)>,
}

/// Job ids and their patches (JSON).
pub type Patches = Vec<(String, Box<str>)>;

/// A sweep's specs, in memory: the parsed base and each job's patch.
#[derive(Debug, Default)]
pub struct SweepSpecs {
    /// The base spec.
    pub base: Arc<Value>,
    /// Job id and its patch (JSON), in plan order.
    pub patches: Patches,
}

impl SweepSpecs {
    /// Encodes a sweep's specs: the first job's as the base, every job's as a patch of it. (CPU
    /// work proportional to the sweep: done before the scheduler's turn, not inside it.)
    pub fn encode<T: Serialize>(sweep: &str, jobs: &[(&str, &T)]) -> Result<Self, StoreError> {
        let err = |key: &str, e: serde_json::Error| codec::codec_error(Tree::SweepSpecs, key, e);
        let Some((_, first)) = jobs.first() else {
            return Ok(Self::default());
        };
        let base = serde_json::to_value(first).map_err(|e| err(sweep, e))?;
        let mut patches = Vec::with_capacity(jobs.len());
        for (id, spec) in jobs {
            let target = serde_json::to_value(spec).map_err(|e| err(id, e))?;
            let mut patch = Patch::default();
            diff(&base, &target, &mut Vec::new(), &mut patch);
            // The patch must give the spec back exactly.
            if apply(base.clone(), &patch) != target {
                return Err(codec::codec_error(
                    Tree::SweepSpecs,
                    id,
                    "the spec cannot be written as a patch of its sweep's first spec",
                ));
            }
            let json = serde_json::to_string(&patch).map_err(|e| err(id, e))?;
            patches.push((id.to_string(), json.into_boxed_str()));
        }
        Ok(Self {
            base: Arc::new(base),
            patches,
        })
    }

    /// Adds the sweep's values to a batch: chunks of about [`CHUNK_BYTES`] under
    /// `<sweep>#<n>`, the base in the first.
    pub fn put(&self, batch: &mut Batch, sweep: &str) -> Result<(), StoreError> {
        let mut chunk = Stored {
            base: serde_json::to_string(&*self.base)
                .map_err(|e| codec::codec_error(Tree::SweepSpecs, sweep, e))?,
            jobs: Vec::new(),
        };
        let mut bytes = chunk.base.len();
        let mut n = 0;
        for (id, p) in &self.patches {
            if bytes > CHUNK_BYTES {
                batch.put(Tree::SweepSpecs, &chunk_key(sweep, n), &chunk)?;
                chunk = Stored::default();
                bytes = 0;
                n += 1;
            }
            bytes += id.len() + p.len() + 2;
            chunk.jobs.push((id.clone(), p.to_string()));
        }
        batch.put(Tree::SweepSpecs, &chunk_key(sweep, n), &chunk)
    }

    /// Every sweep's specs in the store, by sweep id.
    pub fn load_all(store: &dyn Store) -> Result<Vec<(String, SweepSpecs)>, StoreError> {
        let mut out: Vec<(String, Option<Value>, Patches)> = Vec::new();
        // Keys sort by sweep, then chunk: each sweep's chunks are consecutive, the base first.
        for (key, bytes) in store.scan(Tree::SweepSpecs)? {
            let (sweep, _) = key.rsplit_once('#').ok_or_else(|| {
                codec::codec_error(Tree::SweepSpecs, &key, "the key has no `#<chunk>`")
            })?;
            let s: Stored = codec::decode(Tree::SweepSpecs, &key, &bytes)?;
            if out.last().is_none_or(|(last, _, _)| last != sweep) {
                out.push((sweep.to_string(), None, Vec::new()));
            }
            let Some(cur) = out.last_mut() else { continue };
            if !s.base.is_empty() {
                let base: Value = serde_json::from_str(&s.base)
                    .map_err(|e| codec::codec_error(Tree::SweepSpecs, &key, e))?;
                cur.1 = Some(base);
            }
            cur.2
                .extend(s.jobs.into_iter().map(|(id, p)| (id, p.into_boxed_str())));
        }
        out.into_iter()
            .map(|(sweep, base, patches)| {
                let base = base.ok_or_else(|| {
                    codec::codec_error(
                        Tree::SweepSpecs,
                        &sweep,
                        "no chunk holds the sweep's base spec",
                    )
                })?;
                Ok((
                    sweep,
                    SweepSpecs {
                        base: Arc::new(base),
                        patches,
                    },
                ))
            })
            .collect()
    }
}

/// A chunk's key: chunks sort in order.
fn chunk_key(sweep: &str, n: usize) -> String {
    format!("{sweep}#{n:06}")
}

/// A job's spec (JSON) from its sweep's base and its patch.
pub fn render(base: &Value, patch: &str, job: &str) -> Result<String, StoreError> {
    let p: Patch =
        serde_json::from_str(patch).map_err(|e| codec::codec_error(Tree::SweepSpecs, job, e))?;
    serde_json::to_string(&apply(base.clone(), &p))
        .map_err(|e| codec::codec_error(Tree::SweepSpecs, job, e))
}

/// A job's whole spec (JSON) as older stores kept it, or `None` when there is none.
pub fn get_whole(store: &dyn Store, job: &str) -> Result<Option<String>, StoreError> {
    store
        .get(Tree::Specs, job)?
        .map(|b| String::from_utf8(b).map_err(|e| codec::codec_error(Tree::Specs, job, e)))
        .transpose()
}

/// Adds to `patch` what turns `base` into `target` below `path`.
fn diff(base: &Value, target: &Value, path: &mut Vec<String>, patch: &mut Patch) {
    match (base, target) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, tv) in t {
                path.push(k.clone());
                match b.get(k) {
                    Some(bv) => diff(bv, tv, path, patch),
                    None => patch.set.push((path.clone(), tv.clone())),
                }
                path.pop();
            }
            for k in b.keys().filter(|k| !t.contains_key(*k)) {
                let mut p = path.clone();
                p.push(k.clone());
                patch.unset.push(p);
            }
        }
        _ if base == target => {}
        _ => patch.set.push((path.clone(), target.clone())),
    }
}

/// The base with the patch applied (paths through non-objects make objects of them).
fn apply(mut base: Value, patch: &Patch) -> Value {
    for (path, v) in &patch.set {
        match path.split_last() {
            None => base = v.clone(),
            Some((last, parents)) => {
                let mut at = &mut base;
                for k in parents {
                    at = object(at).entry(k.clone()).or_insert(Value::Null);
                }
                object(at).insert(last.clone(), v.clone());
            }
        }
    }
    for path in &patch.unset {
        if let Some((last, parents)) = path.split_last() {
            let mut at = Some(&mut base);
            for k in parents {
                at = at.and_then(|v| v.get_mut(k.as_str()));
            }
            if let Some(Value::Object(m)) = at {
                m.remove(last);
            }
        }
    }
    base
}

fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use serde_json::json;

    #[test]
    fn every_spec_renders_back_equal_and_patches_hold_only_the_differences() {
        let base = json!({"name": "s/a", "backbone": "densenet121", "fold": 1,
            "train": {"lr": 0.001, "epochs": 3, "batch_size": 32}, "init": null,
            "data": {"aus": [1, 2, 4], "source": {"kind": "synthetic", "seed": 0}}});
        let mut other = base.clone();
        other["name"] = json!("s/b");
        other["train"]["lr"] = json!(0.002);
        other["data"]["aus"] = json!([1, 2]);
        other["init"] = json!("abc");
        other["extra"] = json!({"x": [null]});
        other["data"]["source"]
            .as_object_mut()
            .unwrap()
            .remove("seed");
        let mut scalar_to_object = base.clone();
        scalar_to_object["fold"] = json!({"k": 3});
        let jobs = [
            ("sw.a", base.clone()),
            ("sw.b", other.clone()),
            ("sw.c", scalar_to_object.clone()),
        ];
        let refs: Vec<(&str, &Value)> = jobs.iter().map(|(k, v)| (*k, v)).collect();
        let specs = SweepSpecs::encode("sw", &refs).unwrap();
        // Stored and loaded back, one value for the sweep.
        let store = MemStore::default();
        let mut b = Batch::new();
        specs.put(&mut b, "sw").unwrap();
        assert_eq!(b.ops.len(), 1, "three small patches fit one chunk");
        store.commit(&b).unwrap();
        let loaded = SweepSpecs::load_all(&store).unwrap();
        assert_eq!(loaded.len(), 1);
        let (sweep, loaded) = &loaded[0];
        assert_eq!(sweep, "sw");
        assert_eq!(loaded.patches, specs.patches);
        for ((id, spec), (pid, patch)) in jobs.iter().zip(&loaded.patches) {
            assert_eq!(id, pid);
            let got: Value =
                serde_json::from_str(&render(&loaded.base, patch, id).unwrap()).unwrap();
            assert_eq!(&got, spec, "{id}");
        }
        let patch = |i: usize| -> Patch { serde_json::from_str(&specs.patches[i].1).unwrap() };
        assert_eq!(patch(0), Patch::default());
        assert_eq!(&*specs.patches[0].1, "{}");
        assert_eq!(patch(1).set.len(), 5, "{:?}", patch(1));
        assert_eq!(patch(1).unset, vec![vec!["data", "source", "seed"]]);
        assert!(
            specs.patches[2].1.len() * 4 < serde_json::to_vec(&scalar_to_object).unwrap().len()
        );
    }

    #[test]
    fn a_large_sweep_is_stored_in_small_chunks_and_loads_in_order() {
        let specs: Vec<(String, Value)> = (0..2000)
            .map(|i| {
                (
                    format!("big.j{i}"),
                    json!({"name": format!("j{i}"), "lr": 0.001, "fold": 1}),
                )
            })
            .collect();
        let refs: Vec<(&str, &Value)> = specs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let small: Vec<(&str, &Value)> = refs[..2].to_vec();
        let store = MemStore::default();
        let mut b = Batch::new();
        SweepSpecs::encode("big", &refs)
            .unwrap()
            .put(&mut b, "big")
            .unwrap();
        SweepSpecs::encode("a", &small)
            .unwrap()
            .put(&mut b, "a")
            .unwrap();
        store.commit(&b).unwrap();
        let values = store.scan(Tree::SweepSpecs).unwrap();
        assert!(values.len() > 5, "{}", values.len());
        assert!(values.iter().all(|(_, v)| v.len() < 2 * CHUNK_BYTES));
        let loaded = SweepSpecs::load_all(&store).unwrap();
        let names: Vec<&str> = loaded.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["a", "big"]);
        let big = &loaded[1].1;
        assert_eq!(big.patches.len(), 2000);
        for ((id, spec), (pid, patch)) in specs.iter().zip(&big.patches) {
            assert_eq!(id, pid);
            let got: Value = serde_json::from_str(&render(&big.base, patch, id).unwrap()).unwrap();
            assert_eq!(&got, spec);
        }
        // A store that lost the base chunk says so.
        let mut b = Batch::new();
        b.delete(Tree::SweepSpecs, &chunk_key("big", 0));
        store.commit(&b).unwrap();
        let e = SweepSpecs::load_all(&store).unwrap_err().to_string();
        assert!(e.contains("SweepSpecs/big") && e.contains("base"), "{e}");
    }

    #[test]
    fn whole_specs_of_older_stores_still_read_and_bad_values_are_named() {
        let store = MemStore::default();
        let mut b = Batch::new();
        b.put_raw(Tree::Specs, "old.job", b"{\"name\":\"x\"}".to_vec());
        b.put_raw(Tree::Specs, "old.bad", vec![b'{', 0xff]);
        b.put_raw(Tree::SweepSpecs, "broken#000000", b"{\"base\":1}".to_vec());
        store.commit(&b).unwrap();
        assert_eq!(
            get_whole(&store, "old.job").unwrap().unwrap(),
            "{\"name\":\"x\"}"
        );
        assert_eq!(get_whole(&store, "old.none").unwrap(), None);
        let e = get_whole(&store, "old.bad").unwrap_err().to_string();
        assert!(e.contains("Specs/old.bad"), "{e}");
        let e = SweepSpecs::load_all(&store).unwrap_err().to_string();
        assert!(e.contains("SweepSpecs/broken#000000"), "{e}");
        let e = render(&json!({}), "not json", "sw.j")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sw.j"), "{e}");
    }
}
