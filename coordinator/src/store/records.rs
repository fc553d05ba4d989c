//! The records the scheduler keeps in the store (encoded by [`codec`](super::codec): binary,
//! positional; older versions wrote JSON, which still decodes).

use crate::manifest::{DeviceReq, KeepCheckpoints};
use crate::plan::JobKey;
use ausweep_proto::job::WeightsNeed;
use ausweep_proto::JobSpec;
use serde::{Deserialize, Serialize};

/// A submitted sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// Hash of the canonical manifest.
    pub id: String,
    /// Manifest name.
    pub name: String,
    /// 1 for the first manifest of this name, then 2, 3, ...
    pub version: u32,
    /// Submission time, ms since the Unix epoch.
    pub created_ms: u64,
    /// The canonical manifest (JSON).
    pub canonical: String,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for its dependencies or a device.
    Pending,
    /// An attempt holds a lease.
    Leased,
    /// Completed with a result.
    Succeeded,
    /// Out of attempts, or a failure that cannot be retried.
    Failed,
    /// Cancelled by the admin.
    Cancelled,
}

impl JobState {
    /// Succeeded, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// An attempt's claim on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Holder.
    pub worker: String,
    /// Device index on the holder.
    pub device: u32,
    /// Fencing token: unique, increasing; reports carrying another token are stale.
    pub token: u64,
    /// Expiry, ms since the Unix epoch.
    pub deadline_ms: u64,
    /// When the attempt started, ms.
    pub started_ms: u64,
    /// The checkpoint the attempt was told to resume from (progress is a newer one).
    #[serde(default, with = "crate::store::codec::sha_opt")]
    pub resume_from: Option<String>,
}

/// A job of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id (the key).
    #[serde(with = "crate::store::codec::from_key")]
    pub id: String,
    /// Sweep id (the job id's first part).
    #[serde(with = "crate::store::codec::from_key")]
    pub sweep: String,
    /// Position in the sweep.
    pub key: JobKey,
    /// Grid point label.
    pub grid_label: String,
    /// Epochs of its spec (the spec itself is in [`Tree::Specs`](crate::store::Tree::Specs),
    /// written once at submit: transitions rewrite only this small record).
    #[serde(default)]
    pub epochs: u32,
    /// The weight files a worker needs for it.
    #[serde(default)]
    pub needs: WeightsNeed,
    /// Its spec's differences from its sweep's base spec (JSON; kept in
    /// [`Tree::SweepSpecs`](crate::store::Tree::SweepSpecs), not in this record); `None` in
    /// stores that kept each spec whole.
    #[serde(skip)]
    pub spec_patch: Option<Box<str>>,
    /// Jobs this waits on.
    pub depends_on: Vec<String>,
    /// Device kind needed.
    pub device: DeviceReq,
    /// Least GPU memory, MiB; raised after an out-of-memory failure.
    pub min_gpu_memory_mib: u64,
    /// Higher first.
    pub priority: i32,
    /// Creation order (age).
    pub seq: u64,
    /// Attempts allowed (raised by resubmit-failed).
    pub max_attempts: u32,
    /// Attempts each submission grants (retries + 1).
    pub attempts_per_run: u32,
    /// State.
    pub state: JobState,
    /// Attempts started so far (the current one when leased).
    pub attempt: u32,
    /// The current lease.
    pub lease: Option<Lease>,
    /// Workers that failed the last attempt: avoided for the next one.
    pub avoid_workers: Vec<String>,
    /// Why the last attempt failed.
    pub last_error: String,
    /// Newest checkpoint any attempt uploaded (resume point).
    #[serde(with = "crate::store::codec::sha_opt")]
    pub newest_checkpoint: Option<String>,
    /// The final checkpoint (set on success).
    #[serde(with = "crate::store::codec::sha_opt")]
    pub final_checkpoint: Option<String>,
    /// Attempts that failed (they use up `max_attempts`).
    #[serde(default)]
    pub failures: u32,
    /// Attempts lost to the infrastructure (they do not use up `max_attempts`).
    #[serde(default)]
    pub lost: u32,
    /// Lost attempts in a row without a newer checkpoint.
    #[serde(default)]
    pub lost_streak: u32,
    /// Cap on `lost_streak` before the job fails.
    #[serde(default = "default_max_lost")]
    pub max_lost: u32,
    /// Checkpoint retention once the job succeeded.
    #[serde(default)]
    pub keep: KeepCheckpoints,
    /// The last failure's signature (resume point and reason): the same twice is not transient.
    #[serde(default)]
    pub last_failure: String,
}

fn default_max_lost() -> u32 {
    10
}

/// The spec that job records of stores written before specs had their own tree carry (JSON).
#[derive(Debug, Deserialize)]
pub struct LegacySpec {
    /// The spec, when the record has one; loading moves it to [`Tree::Specs`](super::Tree::Specs).
    #[serde(default)]
    pub spec: Option<Box<JobSpec>>,
}

/// One attempt's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Job id (the key's part before `#`).
    #[serde(with = "crate::store::codec::from_key")]
    pub job: String,
    /// 1-based attempt.
    pub attempt: u32,
    /// Worker.
    pub worker: String,
    /// Fencing token.
    pub token: u64,
    /// Start, ms.
    pub started_ms: u64,
    /// End, ms (0 while running).
    pub ended_ms: u64,
    /// `running`, `succeeded`, `failed: ...`, `expired`, `cancelled`.
    pub outcome: String,
}

/// A device a worker offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Index on the node.
    pub index: u32,
    /// CUDA (true) or CPU.
    pub cuda: bool,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Model name.
    pub name: String,
    /// Unhealthy devices get no work.
    pub healthy: bool,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Worker id (its name).
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Devices.
    pub devices: Vec<DeviceRecord>,
    /// sha256 of the session token, hex.
    #[serde(with = "crate::store::codec::sha")]
    pub session_hash: String,
    /// Registration time, ms.
    pub registered_ms: u64,
    /// An admin asked this session to drain (cleared when it registers again).
    #[serde(default)]
    pub draining: bool,
    /// The weight files it holds (jobs needing others are not leased to it).
    #[serde(default)]
    pub weights: Vec<HeldWeights>,
}

/// A weight file a worker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWeights {
    /// Catalog name (`mobilenet_v2`, `mtcnn_pnet`, ...).
    pub name: String,
    /// sha256 of the file, hex.
    #[serde(with = "crate::store::codec::sha")]
    pub sha256: String,
}

impl WorkerRecord {
    /// Whether it holds every weight file `names` lists.
    pub fn holds(&self, names: &[&str]) -> bool {
        names
            .iter()
            .all(|n| self.weights.iter().any(|w| w.name == *n))
    }
}

/// One AU's test scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuScoreRecord {
    /// AU number.
    pub au: u32,
    /// F1.
    pub f1: f64,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// Decision threshold.
    pub threshold: f64,
}

/// A completed job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// Job id (the key).
    #[serde(with = "crate::store::codec::from_key")]
    pub job: String,
    /// The attempt that produced it.
    pub attempt: u32,
    /// Per-AU scores.
    pub aus: Vec<AuScoreRecord>,
    /// Mean F1 over AUs.
    pub avg_f1: f64,
    /// Parameters.
    pub params_total: u64,
    /// Trainable parameters.
    pub params_trainable: u64,
    /// Training time, s.
    pub train_seconds: f64,
    /// Throughput.
    pub images_per_sec: f64,
    /// Final checkpoint sha256.
    #[serde(with = "crate::store::codec::sha")]
    pub checkpoint: String,
    /// What the model was trained on (absent in records of older versions).
    #[serde(default)]
    pub dataset: Option<DatasetRecord>,
    /// An intensity job's scores (binary tag 2; `None` in older records).
    #[serde(default)]
    pub intensity: Option<IntensityRecord>,
}

/// An intensity job's test-fold scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntensityRecord {
    /// Per AU.
    pub aus: Vec<AuIntensityRecord>,
    /// Mean ICC(3,1) over AUs.
    pub avg_icc: f64,
    /// Mean MAE.
    pub avg_mae: f64,
    /// Mean Pearson's r.
    pub avg_pcc: f64,
}

/// One AU's intensity scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuIntensityRecord {
    /// AU number.
    pub au: u32,
    /// ICC(3,1).
    pub icc: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Pearson's r.
    pub pcc: f64,
    /// Frames with the AU present.
    pub support: u64,
    /// Frames scored.
    pub n: u64,
}

impl IntensityRecord {
    fn from_wire(r: &ausweep_proto::v1::IntensityResult) -> Self {
        IntensityRecord {
            aus: r
                .aus
                .iter()
                .take(64)
                .map(|a| AuIntensityRecord {
                    au: a.au,
                    icc: a.icc,
                    mae: a.mae,
                    pcc: a.pcc,
                    support: a.support,
                    n: a.n,
                })
                .collect(),
            avg_icc: r.avg_icc,
            avg_mae: r.avg_mae,
            avg_pcc: r.avg_pcc,
        }
    }

    fn to_wire(&self) -> ausweep_proto::v1::IntensityResult {
        ausweep_proto::v1::IntensityResult {
            aus: self
                .aus
                .iter()
                .map(|a| ausweep_proto::v1::AuIntensity {
                    au: a.au,
                    icc: a.icc,
                    mae: a.mae,
                    pcc: a.pcc,
                    support: a.support,
                    n: a.n,
                })
                .collect(),
            avg_icc: self.avg_icc,
            avg_mae: self.avg_mae,
            avg_pcc: self.avg_pcc,
        }
    }
}

impl ResultRecord {
    /// A worker's result of job `job` from the wire, bounded (at most 64 AUs); the attempt is
    /// the scheduler's to fill in.
    pub fn from_wire(job: &str, r: &ausweep_proto::v1::JobResult) -> Self {
        ResultRecord {
            job: job.to_string(),
            attempt: 0,
            aus: r
                .aus
                .iter()
                .take(64)
                .map(|a| AuScoreRecord {
                    au: a.au,
                    f1: a.f1,
                    precision: a.precision,
                    recall: a.recall,
                    threshold: a.threshold,
                })
                .collect(),
            avg_f1: r.avg_f1,
            params_total: r.params_total,
            params_trainable: r.params_trainable,
            train_seconds: r.train_seconds,
            images_per_sec: r.images_per_sec,
            checkpoint: r.checkpoint_sha256.clone(),
            dataset: r.dataset.as_ref().map(DatasetRecord::from_wire),
            intensity: r.intensity.as_ref().map(IntensityRecord::from_wire),
        }
    }

    /// The record as the wire carries it.
    pub fn to_wire(&self) -> ausweep_proto::v1::JobResult {
        ausweep_proto::v1::JobResult {
            aus: self
                .aus
                .iter()
                .map(|a| ausweep_proto::v1::AuScore {
                    au: a.au,
                    f1: a.f1,
                    precision: a.precision,
                    recall: a.recall,
                    threshold: a.threshold,
                })
                .collect(),
            avg_f1: self.avg_f1,
            params_total: self.params_total,
            params_trainable: self.params_trainable,
            train_seconds: self.train_seconds,
            images_per_sec: self.images_per_sec,
            checkpoint_sha256: self.checkpoint.clone(),
            dataset: self.dataset.as_ref().map(DatasetRecord::to_wire),
            intensity: self.intensity.as_ref().map(IntensityRecord::to_wire),
        }
    }
}

/// A training dataset's identity, as a worker reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// `synthetic`, `disfa`, `disfa_videos` or `list`.
    pub kind: String,
    /// Content hash of the packed dataset.
    pub content_hash: String,
    /// Frames.
    pub frames: u64,
    /// AU columns.
    pub aus: Vec<u32>,
    /// Crop geometry: eyes, five, centre_square or as_given.
    pub crop: String,
    /// Crop side, pixels.
    pub size: u32,
    /// Input normalisation.
    pub normalisation: String,
}

impl DatasetRecord {
    /// From the wire, bounded (strings cut to 256 bytes, at most 64 AUs).
    pub fn from_wire(d: &ausweep_proto::v1::DatasetIdentity) -> Self {
        let cut = |s: &str| s.chars().take(256).collect::<String>();
        DatasetRecord {
            kind: cut(&d.kind),
            content_hash: cut(&d.content_hash),
            frames: d.frames,
            aus: d.aus.iter().take(64).copied().collect(),
            crop: cut(&d.crop),
            size: d.size,
            normalisation: cut(&d.normalisation),
        }
    }

    /// To the wire.
    pub fn to_wire(&self) -> ausweep_proto::v1::DatasetIdentity {
        ausweep_proto::v1::DatasetIdentity {
            kind: self.kind.clone(),
            content_hash: self.content_hash.clone(),
            frames: self.frames,
            aus: self.aus.clone(),
            crop: self.crop.clone(),
            size: self.size,
            normalisation: self.normalisation.clone(),
        }
    }
}

/// A stored checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// sha256, hex (the blob's name; the key).
    #[serde(with = "crate::store::codec::from_key")]
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Job that wrote it.
    pub job: String,
    /// Attempt that wrote it.
    pub attempt: u32,
    /// Epoch it was taken at.
    pub epoch: u32,
    /// Time, ms.
    pub created_ms: u64,
    /// The final weights of a result (never a resume point).
    #[serde(default)]
    pub final_result: bool,
    /// A trainer could not resume from it: never offered again.
    #[serde(default)]
    pub bad: bool,
    /// Validation mean F1 at its epoch, when known (retention `best`).
    #[serde(default)]
    pub val_f1: Option<f64>,
}

impl crate::store::Record for JobRecord {
    fn fill_from_key(&mut self, key: &str) {
        if self.id.is_empty() {
            self.id = key.to_string();
        }
        if self.sweep.is_empty() {
            self.sweep = key.split_once('.').map_or(key, |(s, _)| s).to_string();
        }
    }
}

impl crate::store::Record for AttemptRecord {
    fn fill_from_key(&mut self, key: &str) {
        if self.job.is_empty() {
            self.job = key.rsplit_once('#').map_or(key, |(j, _)| j).to_string();
        }
    }
}

impl crate::store::Record for ResultRecord {
    /// Tag 1 had no `intensity`: its `None`.
    const V1_SUFFIX: &'static [u8] = &[0];

    fn fill_from_key(&mut self, key: &str) {
        if self.job.is_empty() {
            self.job = key.to_string();
        }
    }
}

impl crate::store::Record for CheckpointRecord {
    fn fill_from_key(&mut self, key: &str) {
        if self.sha256.is_empty() {
            self.sha256 = key.to_string();
        }
    }
}

impl crate::store::Record for SweepRecord {}
impl crate::store::Record for WorkerRecord {}

#[cfg(test)]
mod tests {
    use super::*;
    use ausweep_proto::v1;

    fn wire(aus: u32) -> v1::JobResult {
        v1::JobResult {
            aus: (1..=aus)
                .map(|au| v1::AuScore {
                    au,
                    f1: 0.5 + f64::from(au) / 1000.0,
                    precision: 0.25,
                    recall: 0.75,
                    threshold: 0.4,
                })
                .collect(),
            avg_f1: 0.61,
            params_total: 2_236_682,
            params_trainable: 10_248,
            train_seconds: 12.5,
            images_per_sec: 310.0,
            checkpoint_sha256: "ab".repeat(32),
            dataset: Some(v1::DatasetIdentity {
                kind: "synthetic".into(),
                content_hash: "cd".repeat(32),
                frames: 480,
                aus: vec![1, 2, 4],
                crop: "eyes".into(),
                size: 64,
                normalisation: "imagenet".into(),
            }),
            intensity: Some(v1::IntensityResult {
                aus: (1..=aus)
                    .map(|au| v1::AuIntensity {
                        au,
                        icc: 0.6 + f64::from(au) / 1000.0,
                        mae: 0.3,
                        pcc: -0.1,
                        support: 7,
                        n: 100,
                    })
                    .collect(),
                avg_icc: 0.6,
                avg_mae: 0.3,
                avg_pcc: -0.1,
            }),
        }
    }

    #[test]
    fn a_result_goes_to_the_store_and_back_to_the_wire_unchanged() {
        let w = wire(8);
        let r = ResultRecord::from_wire("job-1", &w);
        assert_eq!((r.job.as_str(), r.attempt, r.aus.len()), ("job-1", 0, 8));
        assert_eq!(r.to_wire(), w);
    }

    #[test]
    fn a_result_from_the_wire_keeps_at_most_64_aus() {
        let r = ResultRecord::from_wire("job-1", &wire(100));
        assert_eq!(r.aus.len(), 64);
        assert_eq!(r.aus.last().map(|a| a.au), Some(64));
        let i = r.intensity.expect("intensity kept");
        assert_eq!((i.aus.len(), i.aus.last().map(|a| a.au)), (64, Some(64)));
    }
}
