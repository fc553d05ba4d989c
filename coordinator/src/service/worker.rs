//! The worker service: register (join token), then heartbeat, lease, progress, complete, fail
//! and checkpoint transfer with the per-worker session credential. Every call carries the
//! protocol version.

use super::{convert, status};
use crate::auth::{self, TokenHash};
use crate::metrics::Metrics;
use crate::sched::{
    FailureKind, Fenced, LeaseOutcome, NodeUpdate, Registration, Scheduler, Timing, Upload,
};
use crate::store::blobs::{valid_sha256, Blobs};
use crate::store::records::ResultRecord;
use ausweep_proto::v1::{self, worker_server::Worker};
use ausweep_proto::wire::{CHUNK_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION, WORKER_HEADER};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

/// Session hashes by worker id, mirrored from the store for cheap checks.
pub type Sessions = Arc<RwLock<HashMap<String, TokenHash>>>;

/// The worker service.
pub struct WorkerSvc {
    sched: Scheduler,
    join: TokenHash,
    sessions: Sessions,
    blobs: Blobs,
    timing: Timing,
    metrics: Arc<Metrics>,
}

/// Most devices one worker may register.
const MAX_DEVICES: usize = 64;

impl WorkerSvc {
    /// A service checking registrations against the join token's hash.
    pub fn new(
        sched: Scheduler,
        join: TokenHash,
        sessions: Sessions,
        blobs: Blobs,
        timing: Timing,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sched,
            join,
            sessions,
            blobs,
            timing,
            metrics,
        }
    }

    /// Checks the protocol version, the worker id and its session token; returns the id.
    fn session(&self, meta: &MetadataMap) -> Result<String, Status> {
        protocol(meta)?;
        let id = meta
            .get(WORKER_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|id| auth::valid_id(id, 64))
            .ok_or_else(|| Status::unauthenticated(format!("missing or bad `{WORKER_HEADER}`")))?
            .to_string();
        let token = auth::bearer(meta)?;
        let sessions = self
            .sessions
            .read()
            .map_err(|_| Status::internal("session table poisoned"))?;
        match sessions.get(&id) {
            Some(h) if h.matches(token) => Ok(id),
            _ => Err(Status::unauthenticated(
                "bad worker session; register again",
            )),
        }
    }
}

fn protocol(meta: &MetadataMap) -> Result<(), Status> {
    let v = meta
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match v {
        Some(PROTOCOL_VERSION) => Ok(()),
        Some(other) => Err(Status::failed_precondition(format!(
            "worker speaks protocol {other}, this coordinator speaks {PROTOCOL_VERSION}; upgrade the older side"
        ))),
        None => Err(Status::failed_precondition(format!("missing `{PROTOCOL_HEADER}` (this coordinator speaks {PROTOCOL_VERSION})"))),
    }
}

fn job_arg(id: &str) -> Result<String, Status> {
    if auth::valid_id(id, 200) {
        Ok(id.to_string())
    } else {
        Err(Status::invalid_argument("bad job id"))
    }
}

fn devices(list: &[v1::Device]) -> Result<Vec<crate::store::records::DeviceRecord>, Status> {
    if list.len() > MAX_DEVICES {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_DEVICES} devices"
        )));
    }
    Ok(list.iter().map(convert::device_in).collect())
}

/// The most weight files a worker may advertise.
const MAX_WEIGHTS: usize = 256;

fn held(list: &[v1::HeldWeights]) -> Result<Vec<crate::store::records::HeldWeights>, Status> {
    if list.len() > MAX_WEIGHTS {
        return Err(Status::invalid_argument(format!(
            "weights: at most {MAX_WEIGHTS} files"
        )));
    }
    list.iter()
        .map(|w| {
            if !auth::valid_id(&w.name, 64) {
                return Err(Status::invalid_argument(
                    "weights.name: 1-64 letters, digits, `.`, `_`, `-`",
                ));
            }
            if w.sha256.len() != 64 || !w.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Status::invalid_argument(format!(
                    "weights `{}`: sha256 must be 64 hex digits",
                    w.name
                )));
            }
            Ok(crate::store::records::HeldWeights {
                name: w.name.clone(),
                sha256: w.sha256.to_ascii_lowercase(),
            })
        })
        .collect()
}

use super::ChunkStream;

#[tonic::async_trait]
impl Worker for WorkerSvc {
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterReply>, Status> {
        protocol(req.metadata())?;
        auth::require(req.metadata(), &self.join, "join")?;
        let r = req.into_inner();
        if !auth::valid_id(&r.worker_name, 64) {
            return Err(Status::invalid_argument(
                "worker_name: 1-64 letters, digits, `.`, `_`, `-`",
            ));
        }
        let reg = Registration {
            id: r.worker_name.clone(),
            hostname: r.hostname.chars().take(255).collect(),
            devices: devices(&r.devices)?,
            weights: held(&r.weights)?,
        };
        let token = auth::new_token();
        let hash = TokenHash::of(&token);
        let hex = hash.to_hex();
        self.sched
            .call(move |st, now, b| st.register(reg, hex, now, b))
            .await
            .map_err(status)?;
        self.sessions
            .write()
            .map_err(|_| Status::internal("session table poisoned"))?
            .insert(r.worker_name.clone(), hash);
        Ok(Response::new(v1::RegisterReply {
            worker_id: r.worker_name,
            session_token: token,
            heartbeat_interval_ms: self.timing.heartbeat_ms,
            lease_ms: self.timing.lease_ms,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatReply>, Status> {
        let worker = self.session(req.metadata())?;
        let r = req.into_inner();
        let devs = if r.devices.is_empty() {
            None
        } else {
            Some(devices(&r.devices)?)
        };
        let weights = match &r.weights {
            Some(list) => Some(held(&list.items)?),
            None => None,
        };
        if r.leases.len() > 1024 {
            return Err(Status::invalid_argument("too many leases"));
        }
        let leases: Vec<(String, u64)> = r
            .leases
            .into_iter()
            .map(|l| (l.job_id, l.fencing_token))
            .collect();
        let host: String = r.hostname.chars().take(255).collect();
        let t = std::time::Instant::now();
        let out = self
            .sched
            .call(move |st, now, b| {
                st.heartbeat(
                    &worker,
                    NodeUpdate {
                        hostname: host,
                        devices: devs,
                        weights,
                    },
                    &leases,
                    now,
                    b,
                )
            })
            .await
            .map_err(status)?;
        self.metrics.observe_sched("heartbeat", t.elapsed());
        Ok(Response::new(v1::HeartbeatReply {
            reregister: out.reregister,
            abort_job_ids: out.abort,
            drain: out.drain,
        }))
    }

    async fn lease(
        &self,
        req: Request<v1::LeaseRequest>,
    ) -> Result<Response<v1::LeaseReply>, Status> {
        let worker = self.session(req.metadata())?;
        let device = req.get_ref().device_index;
        let t = std::time::Instant::now();
        let out = self
            .sched
            .call(move |st, now, b| st.lease(&worker, device, now, b))
            .await
            .map_err(status)?;
        // Committed, not yet answered: a crash-window test can kill the coordinator here.
        if matches!(out, LeaseOutcome::Assigned(_)) {
            ausweep_proto::fault::point("coordinator-lease");
        }
        let spec_json = match &out {
            LeaseOutcome::Assigned(a) => match &a.spec {
                Some((base, patch)) => crate::store::specs::render(base, patch, &a.job_id)
                    .map_err(|e| status(e.into()))?,
                None => self.sched.spec_json(&a.job_id).map_err(status)?,
            },
            LeaseOutcome::Nothing(_) => String::new(),
        };
        self.metrics.observe_sched("lease", t.elapsed());
        Ok(Response::new(match out {
            LeaseOutcome::Assigned(a) => v1::LeaseReply {
                assignment: Some(v1::Assignment {
                    job_id: a.job_id,
                    attempt: a.attempt,
                    fencing_token: a.token,
                    deadline_unix_ms: a.deadline_ms,
                    job_spec_json: spec_json,
                    init_checkpoint_sha256: a.init_checkpoint.unwrap_or_default(),
                    resume_checkpoint_sha256: a.resume_checkpoint.unwrap_or_default(),
                    device_index: a.device,
                }),
                reason: String::new(),
            },
            LeaseOutcome::Nothing(reason) => v1::LeaseReply {
                assignment: None,
                reason,
            },
        }))
    }

    async fn report_progress(
        &self,
        req: Request<v1::ProgressRequest>,
    ) -> Result<Response<v1::ProgressReply>, Status> {
        let worker = self.session(req.metadata())?;
        let r = req.into_inner();
        let job = job_arg(&r.job_id)?;
        let p = convert::progress_in(r.progress.unwrap_or_default());
        let token = r.fencing_token;
        let f = self
            .sched
            .call(move |st, now, b| st.progress(&worker, &job, token, p, now, b))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::ProgressReply {
            abort: f == Fenced::Stale,
        }))
    }

    async fn complete(
        &self,
        req: Request<v1::CompleteRequest>,
    ) -> Result<Response<v1::CompleteReply>, Status> {
        let worker = self.session(req.metadata())?;
        let r = req.into_inner();
        let job = job_arg(&r.job_id)?;
        let result = ResultRecord::from_wire(
            &job,
            r.result
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("result missing"))?,
        );
        if !valid_sha256(&result.checkpoint) {
            return Err(Status::invalid_argument(
                "result.checkpoint_sha256 is not a sha256",
            ));
        }
        let token = r.fencing_token;
        let f = self
            .sched
            .call(move |st, now, b| st.complete(&worker, &job, token, result, now, b))
            .await
            .map_err(status)?;
        // Committed, not yet answered: a crash-window test can kill the coordinator here.
        ausweep_proto::fault::point("coordinator-complete");
        Ok(Response::new(match f {
            Fenced::Current => v1::CompleteReply {
                accepted: true,
                message: "completed".into(),
            },
            Fenced::Stale => v1::CompleteReply {
                accepted: false,
                message: "attempt was fenced off; result discarded".into(),
            },
        }))
    }

    async fn fail(&self, req: Request<v1::FailRequest>) -> Result<Response<v1::FailReply>, Status> {
        let worker = self.session(req.metadata())?;
        let r = req.into_inner();
        let job = job_arg(&r.job_id)?;
        let kind = match r.kind() {
            v1::FailureKind::OutOfMemory => FailureKind::OutOfMemory,
            v1::FailureKind::BadConfig => FailureKind::BadConfig,
            v1::FailureKind::BadCheckpoint => FailureKind::BadCheckpoint,
            v1::FailureKind::Lost => FailureKind::Lost,
            v1::FailureKind::Node => FailureKind::Node,
            _ => FailureKind::Transient,
        };
        let reason: String = r.reason.chars().take(4096).collect();
        let token = r.fencing_token;
        let out = self
            .sched
            .call(move |st, now, b| st.fail(&worker, &job, token, kind, &reason, now, b))
            .await
            .map_err(status)?;
        // Committed, not yet answered: a crash-window test can kill the coordinator here.
        ausweep_proto::fault::point("coordinator-fail");
        Ok(Response::new(v1::FailReply {
            accepted: out.fenced == Fenced::Current,
            will_retry: out.will_retry,
        }))
    }

    async fn upload_checkpoint(
        &self,
        req: Request<Streaming<v1::CheckpointChunk>>,
    ) -> Result<Response<v1::UploadReply>, Status> {
        let worker = self.session(req.metadata())?;
        let mut stream = req.into_inner();
        let header = match stream.next().await {
            Some(Ok(v1::CheckpointChunk {
                part: Some(v1::checkpoint_chunk::Part::Header(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first chunk must be the header",
                ))
            }
        };
        let job = job_arg(&header.job_id)?;
        if !valid_sha256(&header.sha256) {
            return Err(Status::invalid_argument("header.sha256 is not a sha256"));
        }
        if let Err(e) = self.blobs.check_room(&header.sha256, header.size) {
            return Err(blob_status(e));
        }
        // File work on tokio's blocking threads: a disk slow to take gigabytes of checkpoints
        // must not stall the heartbeats the runtime serves meanwhile.
        let (blobs, sha) = (self.blobs.clone(), header.sha256.clone());
        let mut w = off_runtime(move || blobs.writer(&sha)).await?;
        while let Some(chunk) = stream.next().await {
            match chunk?.part {
                Some(v1::checkpoint_chunk::Part::Data(d)) => {
                    if d.len() > CHUNK_BYTES {
                        return Err(Status::invalid_argument(format!(
                            "chunks are at most {CHUNK_BYTES} bytes"
                        )));
                    }
                    w = off_runtime(move || w.write(&d).map(|()| w)).await?;
                }
                _ => return Err(Status::invalid_argument("only one header per upload")),
            }
        }
        let size = w.commit().await.map_err(blob_status)?;
        if header.size != 0 && header.size != size {
            return Err(Status::invalid_argument(format!(
                "header said {} bytes, got {size}",
                header.size
            )));
        }
        // The blob is durable, its record not yet written: a crash-window test can kill here.
        ausweep_proto::fault::point("coordinator-upload-stored");
        let up = Upload {
            sha: header.sha256.clone(),
            size,
            epoch: header.epoch,
            final_result: header.kind() == v1::CheckpointKind::Final,
            val_f1: header.val_f1.filter(|v| v.is_finite()),
        };
        let token = header.fencing_token;
        let f = self
            .sched
            .call(move |st, now, b| st.checkpoint(&worker, &job, token, up, now, b))
            .await
            .map_err(status)?;
        // Committed, not yet answered: a crash-window test can kill the coordinator here.
        ausweep_proto::fault::point("coordinator-checkpoint");
        Ok(Response::new(v1::UploadReply {
            sha256: header.sha256,
            size,
            accepted: f == Fenced::Current,
        }))
    }

    async fn report_device_stats(
        &self,
        req: Request<v1::DeviceStatsRequest>,
    ) -> Result<Response<v1::DeviceStatsReply>, Status> {
        let worker = self.session(req.metadata())?;
        let r = req.into_inner();
        if r.devices.len() > MAX_DEVICES {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_DEVICES} devices"
            )));
        }
        // Only devices the worker registered get series (bounded labels).
        let known: Vec<u32> = self
            .sched
            .call({
                let w = worker.clone();
                move |st, _, _| {
                    Ok(st
                        .workers
                        .get(&w)
                        .map(|x| x.rec.devices.iter().map(|d| d.index).collect())
                        .unwrap_or_default())
                }
            })
            .await
            .map_err(status)?;
        for d in r.devices.iter().filter(|d| known.contains(&d.index)) {
            self.metrics.observe_device(
                &worker,
                d.index,
                d.memory_free_mib,
                d.utilization,
                d.temperature_c,
            );
        }
        Ok(Response::new(v1::DeviceStatsReply {}))
    }

    type DownloadCheckpointStream = ChunkStream;

    async fn download_checkpoint(
        &self,
        req: Request<v1::DownloadRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        self.session(req.metadata())?;
        let sha = req.into_inner().sha256;
        Ok(Response::new(super::blob_stream(&self.blobs, sha)?))
    }
}

/// A blob error as a gRPC status: a full store is RESOURCE_EXHAUSTED (retry later), bad data is
/// INVALID_ARGUMENT.
fn blob_status(e: crate::store::blobs::BlobError) -> Status {
    use crate::store::blobs::BlobError;
    match e {
        BlobError::StoreFull { .. } => Status::resource_exhausted(e.to_string()),
        BlobError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            Status::resource_exhausted(format!("the coordinator's disk is full: {io}"))
        }
        BlobError::Io(io) => Status::internal(format!("checkpoint store: {io}")),
        other => Status::invalid_argument(other.to_string()),
    }
}

/// Runs blob file work on a blocking thread; its error as the RPC's status.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::blobs::BlobError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("blob write stopped: {e}")))?
        .map_err(blob_status)
}
