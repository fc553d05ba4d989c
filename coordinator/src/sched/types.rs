//! The scheduler's inputs and outputs.

use crate::store::records::{DeviceRecord, HeldWeights, JobState};
use crate::store::StoreError;
use std::collections::BTreeMap;

/// Lease and liveness timings, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often workers should heartbeat.
    pub heartbeat_ms: u64,
    /// Lease length; at least 3 heartbeats.
    pub lease_ms: u64,
    /// With no worker seen for this long, pending jobs say so.
    pub no_worker_grace_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat_ms: 5_000,
            lease_ms: 30_000,
            no_worker_grace_ms: 120_000,
        }
    }
}

/// A scheduler call that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// No such sweep.
    #[error("no sweep `{0}`")]
    NoSweep(String),
    /// No sweep has this id, name or id prefix (an ambiguous prefix lists its matches).
    #[error("no sweep `{arg}` by id, name or unique id prefix; sweeps: {candidates}")]
    UnknownSweep {
        /// What was asked for.
        arg: String,
        /// The sweeps it could have meant (name, version, id).
        candidates: String,
    },
    /// No such job.
    #[error("no job `{0}`")]
    NoJob(String),
    /// The worker is not registered (call Register again).
    #[error("unknown worker `{0}`; register again")]
    UnknownWorker(String),
    /// The worker has no such device.
    #[error("worker `{worker}` has no device {device}")]
    NoDevice {
        /// Worker.
        worker: String,
        /// Index.
        device: u32,
    },
    /// A result names a checkpoint that was never uploaded.
    #[error("checkpoint {0} was not uploaded; upload it before completing")]
    MissingCheckpoint(String),
    /// The manifest expanded to a plan error.
    #[error("{0}")]
    Plan(String),
    /// The store failed; the change was not made.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The scheduler loop is gone (shutting down).
    #[error("scheduler stopped")]
    Stopped,
}

/// Why an attempt failed, as the worker classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Retry, preferably elsewhere.
    Transient,
    /// Retry only on a device with more memory.
    OutOfMemory,
    /// Never retry.
    BadConfig,
    /// The attempt's resume checkpoint cannot be resumed from: drop it, retry from an older one.
    BadCheckpoint,
    /// Lost to the infrastructure (drain, preemption): not the job's failure.
    Lost,
    /// The worker cannot run it (its data missing on that node): retried elsewhere; that
    /// worker is not offered it again until it registers anew.
    Node,
}

/// An uploaded checkpoint as the scheduler records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// sha256.
    pub sha: String,
    /// Bytes.
    pub size: u64,
    /// Epoch.
    pub epoch: u32,
    /// The final weights of a result, not a resume point.
    pub final_result: bool,
    /// Validation mean F1 at this epoch.
    pub val_f1: Option<f64>,
}

/// Trainer progress (kept in memory, not durable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Epoch.
    pub epoch: u32,
    /// Step.
    pub step: u64,
    /// Training loss.
    pub loss: f64,
    /// Throughput.
    pub images_per_sec: f64,
    /// Validation F1 by AU name.
    pub val_f1: BTreeMap<String, f64>,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Job id.
    pub job_id: String,
    /// 1-based attempt.
    pub attempt: u32,
    /// Fencing token.
    pub token: u64,
    /// Lease expiry, ms.
    pub deadline_ms: u64,
    /// The job's sweep's base spec and the job's patch of it
    /// ([`specs::render`](crate::store::specs::render) makes the spec); `None` for a store that
    /// kept the spec whole ([`Scheduler::spec_json`](super::Scheduler::spec_json)).
    pub spec: Option<(std::sync::Arc<serde_json::Value>, Box<str>)>,
    /// Stage 2: the dependency's final checkpoint.
    pub init_checkpoint: Option<String>,
    /// Retry: the newest checkpoint of an earlier attempt.
    pub resume_checkpoint: Option<String>,
    /// Device index.
    pub device: u32,
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseOutcome {
    /// A job.
    Assigned(Box<Assignment>),
    /// Nothing fits; why.
    Nothing(String),
}

/// The answer to a report (progress, complete, fail, checkpoint) of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The attempt holds the lease; the report counted.
    Current,
    /// The attempt was fenced off; the report is acknowledged and discarded.
    Stale,
}

/// The answer to Fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailOutcome {
    /// Current or stale.
    pub fenced: Fenced,
    /// Whether the job goes back to the queue.
    pub will_retry: bool,
}

/// The answer to Submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOutcome {
    /// Sweep id.
    pub sweep_id: String,
    /// Manifest name.
    pub name: String,
    /// Version among sweeps of that name.
    pub version: u32,
    /// False when the identical manifest was there already.
    pub created: bool,
    /// Jobs in the sweep.
    pub jobs: u32,
}

/// The answer to Heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatOutcome {
    /// Unknown worker: register again.
    pub reregister: bool,
    /// Leases to stop.
    pub abort: Vec<String>,
    /// The worker must drain.
    pub drain: bool,
}

/// A worker's registration as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Worker id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Devices.
    pub devices: Vec<DeviceRecord>,
    /// The weight files it holds.
    pub weights: Vec<HeldWeights>,
}

/// What a heartbeat says about its node; `None` and an empty host name leave that part as it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUpdate {
    /// Host name.
    pub hostname: String,
    /// Devices.
    pub devices: Option<Vec<DeviceRecord>>,
    /// The weight files it holds.
    pub weights: Option<Vec<HeldWeights>>,
}

/// A change watchers see.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Sweep.
    pub sweep: String,
    /// Job.
    pub job: String,
    /// New state.
    pub state: JobState,
    /// Attempt.
    pub attempt: u32,
    /// Progress, for progress events.
    pub progress: Option<Progress>,
    /// Detail.
    pub message: String,
}

/// Counts of a sweep's jobs by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// All jobs.
    pub total: u32,
    /// Pending.
    pub pending: u32,
    /// Leased.
    pub leased: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
}

/// A sweep with counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepView {
    /// The record.
    pub sweep: crate::store::records::SweepRecord,
    /// Counts.
    pub counts: Counts,
}

/// One job as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// The record.
    pub job: crate::store::records::JobRecord,
    /// The class of why it is pending (`Unspecified` otherwise).
    pub pending_class: ausweep_proto::v1::PendingClass,
    /// Why it is pending (empty otherwise).
    pub pending_reason: String,
    /// Latest progress.
    pub progress: Option<Progress>,
    /// Result, when succeeded.
    pub result: Option<crate::store::records::ResultRecord>,
}

/// A sweep with every job.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepDetail {
    /// Summary.
    pub view: SweepView,
    /// Jobs in plan order.
    pub jobs: Vec<JobView>,
    /// Sweep-wide notice (e.g. no worker connected).
    pub notice: String,
}

/// A worker as `workers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    /// The record.
    pub worker: crate::store::records::WorkerRecord,
    /// Last heartbeat or call, ms (0 = not since the coordinator started).
    pub last_seen_ms: u64,
    /// Seen within a lease length.
    pub alive: bool,
    /// Jobs it holds.
    pub leased: Vec<String>,
}
