//! An in-process coordinator and the worker-side calls tests make by hand: register, lease,
//! upload a checkpoint, complete, read a sweep, download a blob.

use crate::wait::{self, Seen};
use crate::{ADMIN, HEARTBEAT_MS, JOIN, LEASE_MS};
use ausweep_coordinator::client;
use ausweep_coordinator::sched::Timing;
use ausweep_coordinator::{serve, Config, Handle};
use ausweep_proto::v1;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A coordinator served in this process, with a channel and an admin client to it.
pub struct InProcess {
    /// The server; `shutdown()` it to stop.
    pub handle: Handle,
    /// `http://ADDR`.
    pub url: String,
    /// A channel to it.
    pub ch: Channel,
    /// An admin client on `ch`.
    pub admin: client::Admin,
}

/// The test config: loopback on port 0, the test tokens and timings, state in `dir` (in memory
/// when `None`).
pub fn config(dir: Option<&Path>) -> Config {
    let mut cfg = Config::local(ADMIN, JOIN, dir.map(Path::to_path_buf));
    cfg.timing = Timing {
        heartbeat_ms: HEARTBEAT_MS,
        lease_ms: LEASE_MS,
        no_worker_grace_ms: 120_000,
    };
    cfg.expiry_every = Duration::from_millis(200);
    cfg
}

impl InProcess {
    /// Serves `cfg` (see [`config`]) and connects an admin client.
    pub async fn start(cfg: Config) -> Self {
        let handle = serve(cfg).await.expect("serve the coordinator");
        let url = format!("http://{}", handle.addr);
        let ch = client::connect(&url, None).await.expect("connect");
        let admin = client::admin(ch.clone(), ADMIN).expect("admin client");
        InProcess {
            handle,
            url,
            ch,
            admin,
        }
    }

    /// Submits a manifest; returns the sweep id.
    pub async fn submit(&mut self, yaml: &str) -> String {
        submit(&mut self.admin, yaml).await
    }
}

/// Submits a manifest; returns the sweep id (panics with the coordinator's error).
pub async fn submit(admin: &mut client::Admin, yaml: &str) -> String {
    admin
        .submit(v1::SubmitRequest {
            manifest_yaml: yaml.into(),
            file_name: "test.yaml".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("submit refused: {}", s.message()))
        .into_inner()
        .sweep_id
}

/// A registered worker: its session client and credentials.
pub struct Registered {
    /// A client carrying the worker's session.
    pub client: client::Worker,
    /// The id the coordinator gave it.
    pub worker_id: String,
    /// Its session token.
    pub session: String,
}

/// One CPU device.
pub fn cpu() -> v1::Device {
    v1::Device {
        index: 0,
        kind: v1::DeviceKind::Cpu as i32,
        memory_mib: 0,
        name: "cpu".into(),
        healthy: true,
    }
}

/// Registers a worker named `name` with `devices` on host `node1`.
pub async fn register_with(ch: &Channel, name: &str, devices: Vec<v1::Device>) -> Registered {
    let mut w = client::worker(ch.clone(), None, JOIN).expect("join client");
    let r = w
        .register(v1::RegisterRequest {
            worker_name: name.into(),
            hostname: "node1".into(),
            devices,
            weights: held_all(),
        })
        .await
        .unwrap_or_else(|s| panic!("register {name}: {}", s.message()))
        .into_inner();
    Registered {
        client: client::worker(ch.clone(), Some(&r.worker_id), &r.session_token)
            .expect("session client"),
        worker_id: r.worker_id,
        session: r.session_token,
    }
}

/// Registers a worker with one CPU device; returns its session client.
pub async fn register(ch: &Channel, name: &str) -> client::Worker {
    register_with(ch, name, vec![cpu()]).await.client
}

/// Leases on device 0; panics when no job is offered.
pub async fn lease(w: &mut client::Worker) -> v1::Assignment {
    w.lease(v1::LeaseRequest { device_index: 0 })
        .await
        .unwrap_or_else(|s| panic!("lease: {}", s.message()))
        .into_inner()
        .assignment
        .expect("the coordinator offered no job")
}

/// How a test checkpoint upload is labelled.
#[derive(Debug, Clone, Copy)]
pub struct Upload {
    /// Epoch in the header.
    pub epoch: u32,
    /// Epoch or final checkpoint.
    pub kind: v1::CheckpointKind,
    /// Validation F1 in the header.
    pub val_f1: Option<f64>,
    /// Bytes per data chunk.
    pub chunk: usize,
}

impl Default for Upload {
    fn default() -> Self {
        Upload {
            epoch: 1,
            kind: v1::CheckpointKind::Epoch,
            val_f1: None,
            chunk: 1000,
        }
    }
}

/// The hex SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The upload stream of `data` as `a`'s checkpoint (a header, then `how.chunk`-byte parts)
/// and its SHA-256.
pub fn chunks(a: &v1::Assignment, data: &[u8], how: Upload) -> (Vec<v1::CheckpointChunk>, String) {
    let sha = sha256(data);
    let mut chunks = vec![v1::CheckpointChunk {
        part: Some(v1::checkpoint_chunk::Part::Header(v1::CheckpointHeader {
            job_id: a.job_id.clone(),
            fencing_token: a.fencing_token,
            sha256: sha.clone(),
            size: data.len() as u64,
            epoch: how.epoch,
            kind: how.kind as i32,
            val_f1: how.val_f1,
        })),
    }];
    for c in data.chunks(how.chunk.max(1)) {
        chunks.push(v1::CheckpointChunk {
            part: Some(v1::checkpoint_chunk::Part::Data(c.to_vec())),
        });
    }
    (chunks, sha)
}

/// Uploads `data` as `a`'s checkpoint; returns its SHA-256, or the coordinator's refusal.
/// Panics when the upload is fenced (not accepted).
pub async fn upload(
    w: &mut client::Worker,
    a: &v1::Assignment,
    data: &[u8],
    how: Upload,
) -> Result<String, tonic::Status> {
    let (chunks, sha) = chunks(a, data, how);
    let r = w
        .upload_checkpoint(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    assert!(r.accepted, "upload of {} was fenced", a.job_id);
    Ok(sha)
}

/// A result with `f1` on each of `aus`, naming checkpoint `sha`.
pub fn result(sha: &str, aus: &[u32], f1: f64) -> v1::JobResult {
    v1::JobResult {
        aus: aus
            .iter()
            .map(|&au| v1::AuScore {
                au,
                f1,
                precision: f1,
                recall: f1,
                threshold: 0.5,
            })
            .collect(),
        avg_f1: f1,
        params_total: 100,
        params_trainable: 10,
        train_seconds: 1.0,
        images_per_sec: 50.0,
        checkpoint_sha256: sha.into(),
        dataset: None,
        intensity: None,
    }
}

/// Completes `a` with `result`: whether the coordinator accepted it (a fenced attempt is not);
/// panics on an RPC error.
pub async fn complete(w: &mut client::Worker, a: &v1::Assignment, result: v1::JobResult) -> bool {
    w.complete(v1::CompleteRequest {
        job_id: a.job_id.clone(),
        fencing_token: a.fencing_token,
        result: Some(result),
    })
    .await
    .unwrap_or_else(|s| panic!("complete {}: {}", a.job_id, s.message()))
    .into_inner()
    .accepted
}

/// The sweep's status (panics with the coordinator's error).
pub async fn sweep(admin: &mut client::Admin, id: &str) -> v1::SweepStatus {
    admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: id.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("get sweep {id}: {}", s.message()))
        .into_inner()
}

/// One line per job: id, state, attempt, worker, pending reason, last error.
pub fn describe(st: &v1::SweepStatus) -> String {
    st.jobs
        .iter()
        .map(|j| {
            format!(
                "{} {:?} attempt {} worker {:?} pending {:?} error {:?}",
                j.job_id,
                j.state(),
                j.attempt,
                j.worker_id,
                j.pending_reason,
                j.last_error
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether every job of the sweep succeeded.
pub fn all_succeeded(st: &v1::SweepStatus) -> bool {
    !st.jobs.is_empty() && st.jobs.iter().all(|j| j.state() == v1::JobState::Succeeded)
}

/// Polls the sweep until `pred` holds; fails at once when a job failed, or after `limit`, with
/// the jobs it last saw and `context()` (e.g. worker logs).
pub async fn wait_sweep(
    admin: &mut client::Admin,
    id: &str,
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    pred: impl Fn(&v1::SweepStatus) -> bool,
) -> v1::SweepStatus {
    wait::until(what, limit, Duration::from_millis(100), || {
        let mut admin = admin.clone();
        let (pred, context) = (&pred, &context);
        async move {
            let st = match admin
                .get_sweep(v1::GetSweepRequest {
                    sweep_id: id.into(),
                })
                .await
            {
                Ok(st) => st.into_inner(),
                // The coordinator may be restarting; keep waiting.
                Err(s) => return Seen::Not(format!("get sweep: {}\n{}", s.message(), context())),
            };
            if pred(&st) {
                Seen::Done(st)
            } else if st.jobs.iter().any(|j| j.state() == v1::JobState::Failed) {
                Seen::Never(format!("a job failed:\n{}\n{}", describe(&st), context()))
            } else {
                Seen::Not(format!("{}\n{}", describe(&st), context()))
            }
        }
    })
    .await
}

/// Downloads a checkpoint blob through the admin API.
pub async fn download(admin: &mut client::Admin, sha: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut s = admin
        .download_checkpoint(v1::DownloadRequest { sha256: sha.into() })
        .await?
        .into_inner();
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        if let Some(v1::checkpoint_chunk::Part::Data(d)) = c?.part {
            got.extend(d);
        }
    }
    Ok(got)
}

/// Every weight file a job can need, as a simulated worker holding them all advertises it.
pub fn held_all() -> Vec<v1::HeldWeights> {
    ausweep_proto::job::all_weight_names()
        .into_iter()
        .map(|n| v1::HeldWeights {
            name: n.into(),
            sha256: "0".repeat(64),
        })
        .collect()
}
