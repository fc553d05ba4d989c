//! How records are encoded in the store: compact binary (postcard after a one-byte version tag),
//! and JSON, which older versions wrote and which still decodes.
//!
//! The binary form is positional: a field or an enum variant can only be added by defining a
//! new version tag (the old tag keeps decoding into the same fields), never by editing a record
//! type in place. The store's tests decode a record of every type written by this version.
//!
//! Tag 2 added `ResultRecord::intensity`, a trailing `Option`: a tag-1 result decodes as tag 2
//! with that field's `None` (one 0 byte, [`Record::V1_SUFFIX`](super::Record::V1_SUFFIX))
//! appended. Every other record is the same under both tags. A coordinator of tag 1 cannot read
//! what tag 2 wrote: upgrades go forward only.

use super::{StoreError, Tree};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first byte of a binary record of the first version (no JSON text starts with it).
pub const BINARY_V1: u8 = 1;
/// The first byte of a binary record as this version writes it.
pub const BINARY_V2: u8 = 2;

/// A [`StoreError::Codec`] for a record.
pub(crate) fn codec_error(tree: Tree, key: &str, message: impl ToString) -> StoreError {
    StoreError::Codec {
        tree,
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// Encodes a record in the binary form.
pub fn encode<T: Serialize>(tree: Tree, key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![BINARY_V2]).map_err(|e| codec_error(tree, key, e))
}

/// Whether a stored value is JSON (written by an older version, or a job spec).
pub fn is_json(bytes: &[u8]) -> bool {
    !matches!(bytes.first(), Some(&BINARY_V1 | &BINARY_V2))
}

/// Decodes a record in either form; trailing bytes after a binary record are an error.
pub fn decode<T: DeserializeOwned>(tree: Tree, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    decode_upgrading(tree, key, bytes, &[])
}

/// [`decode`], a tag-1 record read as tag 2 with `v1_suffix` (the fields tag 2 added)
/// appended to it.
pub fn decode_upgrading<T: DeserializeOwned>(
    tree: Tree,
    key: &str,
    bytes: &[u8],
    v1_suffix: &[u8],
) -> Result<T, StoreError> {
    let upgraded;
    let body = match bytes.split_first() {
        Some((&BINARY_V1, body)) if !v1_suffix.is_empty() => {
            upgraded = [body, v1_suffix].concat();
            Some(&upgraded[..])
        }
        Some((&BINARY_V1 | &BINARY_V2, body)) => Some(body),
        _ => None,
    };
    match body {
        Some(body) => {
            let (v, rest) =
                postcard::take_from_bytes(body).map_err(|e| codec_error(tree, key, e))?;
            if !rest.is_empty() {
                return Err(codec_error(
                    tree,
                    key,
                    format!("{} bytes left after the record", rest.len()),
                ));
            }
            Ok(v)
        }
        _ => serde_json::from_slice(bytes).map_err(|e| codec_error(tree, key, e)),
    }
}

/// A sha256 in hex as a record field: 32 bytes in the binary form, the hex text in JSON
/// (`#[serde(with = "codec::sha")]`); text that is not lowercase 64-hex is kept as text.
pub mod sha {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The binary form's value.
    #[derive(Serialize, Deserialize)]
    pub(super) enum Compact {
        /// 64 lowercase hex digits.
        Sha([u8; 32]),
        /// Anything else, as given.
        Text(String),
    }

    impl Compact {
        pub(super) fn of(s: &str) -> Self {
            let mut b = [0u8; 32];
            let lower = s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            match hex::decode_to_slice(s, &mut b) {
                Ok(()) if lower => Compact::Sha(b),
                _ => Compact::Text(s.to_string()),
            }
        }

        pub(super) fn text(self) -> String {
            match self {
                Compact::Sha(b) => hex::encode(b),
                Compact::Text(s) => s,
            }
        }
    }

    /// Serializes a hex sha256.
    pub fn serialize<S: Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
        if ser.is_human_readable() {
            ser.serialize_str(s)
        } else {
            Compact::of(s).serialize(ser)
        }
    }

    /// Deserializes a hex sha256.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)
        } else {
            Compact::deserialize(d).map(Compact::text)
        }
    }
}

/// A field that repeats the record's key: the value in JSON, nothing (an empty string) in the
/// binary form, where [`Record::fill_from_key`](super::Record::fill_from_key) restores it.
pub mod from_key {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes the field (empty in the binary form).
    pub fn serialize<S: Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
        let text = if ser.is_human_readable() { s } else { "" };
        ser.serialize_str(text)
    }

    /// Deserializes the field (empty from the binary form, until the key fills it).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        String::deserialize(d)
    }
}

/// [`sha`] for an optional field.
pub mod sha_opt {
    use super::sha::Compact;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes an optional hex sha256.
    pub fn serialize<S: Serializer>(s: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
        if ser.is_human_readable() {
            s.serialize(ser)
        } else {
            s.as_deref().map(Compact::of).serialize(ser)
        }
    }

    /// Deserializes an optional hex sha256.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        if d.is_human_readable() {
            Option::<String>::deserialize(d)
        } else {
            Option::<Compact>::deserialize(d).map(|c| c.map(Compact::text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::*;

    fn roundtrip<T: crate::store::Record + PartialEq + std::fmt::Debug>(key: &str, v: T) -> usize {
        let bin = encode(Tree::Jobs, key, &v).unwrap();
        assert!(!is_json(&bin));
        assert_eq!(crate::store::decode::<T>(Tree::Jobs, key, &bin).unwrap(), v);
        let json = serde_json::to_vec(&v).unwrap();
        assert!(is_json(&json));
        assert_eq!(
            crate::store::decode::<T>(Tree::Jobs, key, &json).unwrap(),
            v
        );
        assert!(bin.len() < json.len(), "{} >= {}", bin.len(), json.len());
        bin.len()
    }

    fn sample_job() -> JobRecord {
        JobRecord {
            id: "0d0cfc3fc1215f58.densenet121.f1.s2.g0".into(),
            sweep: "0d0cfc3fc1215f58".into(),
            key: crate::plan::JobKey {
                backbone: ausweep_proto::job::Backbone::Densenet121,
                fold: 1,
                stage: 2,
                grid: 0,
            },
            grid_label: "seed=0,train.lr=0.001".into(),
            epochs: 3,
            needs: ausweep_proto::job::WeightsNeed::Mtcnn,
            spec_patch: None,
            depends_on: vec!["0d0cfc3fc1215f58.densenet121.f1.s1.g0".into()],
            device: crate::manifest::DeviceReq::Cuda,
            min_gpu_memory_mib: 8_000,
            priority: -2,
            seq: 40_000,
            max_attempts: 3,
            attempts_per_run: 3,
            state: JobState::Succeeded,
            attempt: 1,
            lease: None,
            avoid_workers: Vec::new(),
            last_error: String::new(),
            newest_checkpoint: Some("6e".repeat(32)),
            final_checkpoint: Some("6e".repeat(32)),
            failures: 0,
            lost: 0,
            lost_streak: 0,
            max_lost: 10,
            keep: crate::manifest::KeepCheckpoints::Best,
            last_failure: String::new(),
        }
    }

    #[test]
    // Long function: one sample of every record type, each a literal with every field set.
    fn every_record_type_decodes_in_both_forms_and_binary_is_smaller() {
        let mut job = sample_job();
        let key = job.id.clone();
        roundtrip(&key, job.clone());
        job.lease = Some(Lease {
            worker: "w".into(),
            device: 3,
            token: 1 << 40,
            deadline_ms: 1_796_000_000_000,
            started_ms: 1_795_000_000_000,
            resume_from: Some("ab".repeat(32)),
        });
        job.state = JobState::Leased;
        job.avoid_workers = vec!["x".into()];
        let n = roundtrip(&key, job.clone());
        // The id and sweep come from the key, not from the bytes.
        let bin = encode(Tree::Jobs, &key, &job).unwrap();
        assert!(!bin.windows(job.id.len()).any(|w| w == job.id.as_bytes()));
        let other: JobRecord =
            crate::store::decode(Tree::Jobs, "ab12.vgg19.f2.s1.g3", &bin).unwrap();
        assert_eq!(
            (other.id.as_str(), other.sweep.as_str()),
            ("ab12.vgg19.f2.s1.g3", "ab12")
        );
        assert!(n * 2 < serde_json::to_vec(&job).unwrap().len(), "{n}");
        roundtrip(
            "s.j#0002",
            AttemptRecord {
                job: "s.j".into(),
                attempt: 2,
                worker: "w".into(),
                token: 7,
                started_ms: 1,
                ended_ms: 2,
                outcome: "failed: x".into(),
            },
        );
        roundtrip(
            &"cd".repeat(32),
            CheckpointRecord {
                sha256: "cd".repeat(32),
                size: 1 << 33,
                job: "s.j".into(),
                attempt: 1,
                epoch: 4,
                created_ms: 5,
                final_result: true,
                bad: false,
                val_f1: Some(0.625),
            },
        );
        roundtrip(
            "s.j",
            ResultRecord {
                job: "s.j".into(),
                attempt: 1,
                aus: vec![AuScoreRecord {
                    au: 12,
                    f1: 0.1 + 0.2,
                    precision: f64::MIN_POSITIVE,
                    recall: 1.0,
                    threshold: 0.5,
                }],
                avg_f1: 0.3,
                params_total: 2_000_000,
                params_trainable: 10_000,
                train_seconds: 12.5,
                images_per_sec: 300.25,
                checkpoint: "ef".repeat(32),
                dataset: Some(DatasetRecord {
                    kind: "disfa".into(),
                    content_hash: "01".repeat(32),
                    frames: 130_814,
                    aus: vec![1, 2, 4],
                    crop: "eyes".into(),
                    size: 224,
                    normalisation: "imagenet".into(),
                }),
                intensity: Some(IntensityRecord {
                    aus: vec![AuIntensityRecord {
                        au: 12,
                        icc: 0.71,
                        mae: 0.4,
                        pcc: -0.25,
                        support: 30,
                        n: 120,
                    }],
                    avg_icc: 0.71,
                    avg_mae: 0.4,
                    avg_pcc: -0.25,
                }),
            },
        );
        roundtrip(
            "w",
            WorkerRecord {
                id: "w".into(),
                hostname: "node1".into(),
                devices: vec![DeviceRecord {
                    index: 0,
                    cuda: true,
                    memory_mib: 81_559,
                    name: "NVIDIA H100".into(),
                    healthy: true,
                }],
                session_hash: "aa".repeat(32),
                registered_ms: 9,
                draining: true,
                weights: vec![HeldWeights {
                    name: "mobilenet_v2".into(),
                    sha256: "bb".repeat(32),
                }],
            },
        );
        roundtrip(
            "0d0cfc3fc1215f58",
            SweepRecord {
                id: "0d0cfc3fc1215f58".into(),
                name: "n".into(),
                version: 2,
                created_ms: 3,
                canonical: "{\"name\":\"n\"}".into(),
                cancelled: true,
            },
        );
    }

    #[test]
    fn a_result_written_before_intensity_still_decodes() {
        // The result record as tag 1 laid it out, before `intensity`.
        #[derive(Serialize)]
        struct ResultV1 {
            #[serde(with = "from_key")]
            job: String,
            attempt: u32,
            aus: Vec<AuScoreRecord>,
            avg_f1: f64,
            params_total: u64,
            params_trainable: u64,
            train_seconds: f64,
            images_per_sec: f64,
            #[serde(with = "sha")]
            checkpoint: String,
            dataset: Option<DatasetRecord>,
        }
        let old = ResultV1 {
            job: "s.j".into(),
            attempt: 2,
            aus: vec![AuScoreRecord {
                au: 6,
                f1: 0.5,
                precision: 0.4,
                recall: 0.75,
                threshold: 0.3,
            }],
            avg_f1: 0.5,
            params_total: 9,
            params_trainable: 3,
            train_seconds: 1.5,
            images_per_sec: 2.5,
            checkpoint: "cd".repeat(32),
            dataset: None,
        };
        let v1 = postcard::to_extend(&old, vec![BINARY_V1]).unwrap();
        let r: ResultRecord = crate::store::decode(Tree::Results, "s.j", &v1).unwrap();
        assert_eq!(
            (
                r.job.as_str(),
                r.attempt,
                r.aus[0].recall,
                r.checkpoint.as_str()
            ),
            ("s.j", 2, 0.75, &*"cd".repeat(32))
        );
        assert_eq!(r.intensity, None);
        // Read without the upgrade, the old bytes end early: the suffix is what makes it work.
        let e = decode::<ResultRecord>(Tree::Results, "s.j", &v1).unwrap_err();
        assert!(e.to_string().contains("Results/s.j"), "{e}");
        // What this version writes is tag 2, and reads back whole.
        let again = encode(Tree::Results, "s.j", &r).unwrap();
        assert_eq!(again[0], BINARY_V2);
        assert_eq!(
            crate::store::decode::<ResultRecord>(Tree::Results, "s.j", &again).unwrap(),
            r
        );
    }

    #[test]
    fn shas_take_32_bytes_and_anything_else_is_kept_as_text() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct R {
            #[serde(with = "sha")]
            a: String,
            #[serde(with = "sha_opt")]
            b: Option<String>,
        }
        let hex = "0123456789abcdef".repeat(4);
        let r = R {
            a: hex.clone(),
            b: Some(hex.clone()),
        };
        let bin = encode(Tree::Results, "k", &r).unwrap();
        assert_eq!(bin.len(), 1 + 2 * 33 + 1, "{bin:?}");
        assert_eq!(decode::<R>(Tree::Results, "k", &bin).unwrap(), r);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(&hex), "{json}");
        for odd in [
            "",
            "short",
            &hex.to_uppercase(),
            &format!("{hex}00"),
            &"zz".repeat(32),
        ] {
            let r = R {
                a: odd.to_string(),
                b: None,
            };
            let bin = encode(Tree::Results, "k", &r).unwrap();
            assert_eq!(decode::<R>(Tree::Results, "k", &bin).unwrap(), r, "{odd}");
        }
    }

    #[test]
    fn a_damaged_binary_record_is_an_error_naming_it() {
        let mut bin = encode(Tree::Results, "s.j", &(1u32, "x".to_string())).unwrap();
        bin.push(0);
        let e = decode::<(u32, String)>(Tree::Results, "s.j", &bin).unwrap_err();
        assert!(
            e.to_string().contains("Results/s.j") && e.to_string().contains("1 bytes left"),
            "{e}"
        );
        let e = decode::<(u32, String)>(Tree::Results, "s.j", &bin[..3]).unwrap_err();
        assert!(e.to_string().contains("Results/s.j"), "{e}");
    }
}
