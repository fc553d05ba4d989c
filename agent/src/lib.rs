//! The worker agent (`ausweep worker`): finds its devices, registers with the coordinator,
//! leases one job per free device, runs each as a supervised child trainer, relays progress,
//! transfers checkpoints, heartbeats, and drains on SIGTERM.

pub mod checkpoints;
pub mod devices;
pub mod job;
pub mod session;
pub mod supervisor;

use ausweep_proto::client::ClientTls;
use ausweep_proto::v1;
use checkpoints::Cache;
use devices::Devices;
use job::{Control, Ctx};
use session::{Retry, Session};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use supervisor::TrainerCmd;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the agent runs (the binary's `ausweep worker` flags fill it).
#[derive(Debug, Clone)]
pub struct Config {
    /// Coordinator URL (`http://host:port`, or `https://` with TLS).
    pub coordinator: String,
    /// File holding the worker join token.
    pub join_token_file: PathBuf,
    /// GPU indices to offer (default: all NVML lists), e.g. `0,2`.
    pub devices: Option<Vec<u32>>,
    /// Offer the CPU when no GPU is found.
    pub allow_cpu: bool,
    /// With --allow-cpu: offer the CPU as this many devices, each trainer on an equal share of
    /// the cores (two one-thread trainers train ~1.5x the images of one two-thread trainer on
    /// small images).
    pub cpu_slots: u16,
    /// With --allow-cpu: cores this worker's trainers share (default: all the process may use),
    /// for nodes that other workers or services share.
    pub cpu_cores: Option<u16>,
    /// Working directory: attempt directories and the checkpoint cache.
    pub work_dir: PathBuf,
    /// Most jobs run at once (default: one per device).
    pub max_jobs: Option<usize>,
    /// Worker name, unique per node (default: the host name).
    pub name: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate; enables TLS (`https://`
    /// without it uses the system's roots). `--ca` as for every client command.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --tls-key).
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Server name to verify in the coordinator's certificate.
    pub tls_domain: Option<String>,
    /// Heartbeat interval in ms (default: what the coordinator asks for).
    pub heartbeat_ms: Option<u64>,
    /// Longest wait, seconds, for running jobs to reach their next checkpoint on SIGTERM.
    pub drain_timeout_s: u64,
    /// Exit (0) after this many seconds without a job (`ausweep launch` sets it for the workers
    /// it starts); never when absent.
    pub idle_exit_s: Option<u64>,
    /// Lease nothing while the work directory's disk has less free space than this, MiB.
    pub min_free_disk_mib: u64,
    /// How long to keep trying to reach the coordinator at start, seconds.
    pub connect_timeout_s: u64,
    /// Weights directory the trainers read and the worker advertises (default: $AUSWEEP_WEIGHTS,
    /// else ~/.cache/ausweep/weights). Files added with `ausweep weights fetch/import` are
    /// advertised at the next heartbeat.
    pub weights_dir: Option<PathBuf>,
    /// Trainer executable (default: this binary's `train`); for tests and wrappers.
    pub trainer: Option<PathBuf>,
}

/// Why the agent or one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No usable device.
    #[error("devices: {0}")]
    Devices(String),
    /// Bad flags or files.
    #[error("config: {0}")]
    Config(String),
    /// The job cannot run here or anywhere (never retried).
    #[error("{0}")]
    BadJob(String),
    /// This node cannot run the job (its data path is missing here): another node may.
    #[error("{0}")]
    Node(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The coordinator's checkpoint store is full (RESOURCE_EXHAUSTED).
    #[error("coordinator store full: {0}")]
    StoreFull(String),
    /// A checkpoint could not be packed, transferred or unpacked.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The coordinator refused or could not be reached.
    #[error("coordinator: {}", .0.message())]
    Rpc(#[from] tonic::Status),
}

impl AgentError {
    /// How a failed attempt is reported.
    pub fn failure_kind(&self) -> v1::FailureKind {
        match self {
            AgentError::BadJob(_) => v1::FailureKind::BadConfig,
            AgentError::Node(_) => v1::FailureKind::Node,
            // The infrastructure's limit, not the job's fault.
            AgentError::StoreFull(_) => v1::FailureKind::Lost,
            _ => v1::FailureKind::Transient,
        }
    }
}

struct Running {
    fencing_token: u64,
    device: u32,
    control: watch::Sender<Control>,
}

/// Free space on the filesystem of `dir`, MiB (None when it cannot be read).
fn free_mib(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64) >> 20)
}

/// The weight files `dir` holds, as the worker advertises them (none when unreadable, said once
/// per distinct error).
fn held_weights(dir: &std::path::Path) -> Vec<v1::HeldWeights> {
    static LAST_ERROR: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    match ausweep_weights::held::held(dir) {
        Ok(h) => h
            .into_iter()
            .map(|w| v1::HeldWeights {
                name: w.name,
                sha256: w.sha256,
            })
            .collect(),
        Err(e) => {
            let msg = e.to_string();
            if let Ok(mut last) = LAST_ERROR.lock() {
                if *last != msg {
                    eprintln!("ausweep worker: weights: {msg}; advertising none");
                    *last = msg;
                }
            }
            Vec::new()
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// This node as the agent found it at start: devices, work folder, checkpoint cache, weights and
/// the trainer command.
struct Node {
    devices: Devices,
    work_dir: PathBuf,
    cache: Cache,
    weights_dir: PathBuf,
    weights: Vec<v1::HeldWeights>,
    trainer: TrainerCmd,
}

impl Node {
    /// Finds the devices, cleans what earlier runs left in the work folder, lists the weights.
    fn prepare(args: &Config) -> Result<Node, AgentError> {
        let devices = Devices::discover(
            args.devices.as_deref(),
            args.allow_cpu,
            usize::from(args.cpu_slots),
            args.cpu_cores.map(usize::from),
        )?;
        for line in devices.describe() {
            eprintln!("ausweep worker: {line}");
        }
        let work_dir = std::path::absolute(&args.work_dir).map_err(|e| AgentError::Io {
            path: args.work_dir.clone(),
            source: e,
        })?;
        let cache = Cache::open(work_dir.join("cache"))?;
        let freed = job::purge_stale(&work_dir.join("jobs"));
        let cached = cache.clear();
        if freed > 0 || cached > 0 {
            eprintln!(
                "ausweep worker: freed the weight files of {freed} earlier attempt(s) and {} MiB of cached checkpoints",
                cached >> 20
            );
        }
        // Packs of the jobs' data are built once per node and shared by its trainers.
        let prefix = vec![
            "train".to_string(),
            "--data-cache".to_string(),
            work_dir.join("data").display().to_string(),
        ];
        let weights_dir = match &args.weights_dir {
            Some(d) => std::path::absolute(d).map_err(|e| AgentError::Io {
                path: d.clone(),
                source: e,
            })?,
            None => ausweep_weights::dirs::weights_dir(),
        };
        let weights = held_weights(&weights_dir);
        eprintln!(
            "ausweep worker: weights {}: {}",
            weights_dir.display(),
            if weights.is_empty() {
                "none (jobs that start from ImageNet weights or prepare videos will not be leased here)"
                    .to_string()
            } else {
                weights
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let trainer = match &args.trainer {
            Some(p) => TrainerCmd {
                program: p.clone(),
                prefix,
                weights_dir: weights_dir.clone(),
            },
            None => TrainerCmd {
                program: std::env::current_exe().map_err(|e| AgentError::Io {
                    path: "current_exe".into(),
                    source: e,
                })?,
                prefix,
                weights_dir: weights_dir.clone(),
            },
        };
        Ok(Node {
            devices,
            work_dir,
            cache,
            weights_dir,
            weights,
            trainer,
        })
    }
}

/// Runs the agent until SIGTERM/SIGINT (then drains and returns `Ok`).
pub fn run(args: Config) -> Result<(), AgentError> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| AgentError::Config(format!("tokio runtime: {e}")))?;
    rt.block_on(agent(args))?;
    Ok(())
}

async fn agent(args: Config) -> Result<(), AgentError> {
    checkpoints::init_faults();
    let join_token = std::fs::read_to_string(&args.join_token_file)
        .map_err(|e| AgentError::Io {
            path: args.join_token_file.clone(),
            source: e,
        })?
        .trim()
        .to_string();
    let Node {
        devices,
        work_dir,
        cache,
        weights_dir,
        weights,
        trainer,
    } = Node::prepare(&args)?;
    let tls = (args.tls_ca.is_some() || args.coordinator.starts_with("https")).then(|| ClientTls {
        ca: args.tls_ca.clone(),
        identity: args.tls_cert.clone().zip(args.tls_key.clone()),
        domain: args.tls_domain.clone(),
    });
    let host = hostname();
    let request = v1::RegisterRequest {
        worker_name: args.name.clone().unwrap_or_else(|| host.clone()),
        hostname: host,
        devices: devices.to_proto(),
        weights,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::Config(format!("SIGTERM handler: {e}")))?;
    let session = tokio::select! {
        s = Session::open(
            &args.coordinator,
            tls.as_ref(),
            join_token,
            request,
            Duration::from_secs(args.connect_timeout_s),
        ) => Arc::new(s?),
        _ = sigterm.recv() => return Ok(()),
    };
    let ctx = Arc::new(Ctx {
        session: session.clone(),
        cache,
        jobs_dir: work_dir.join("jobs"),
        trainer,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
    });
    let max_jobs = args.max_jobs.unwrap_or(usize::MAX).max(1);
    let heartbeat_every = args
        .heartbeat_ms
        .map(Duration::from_millis)
        .unwrap_or_else(|| session.heartbeat_interval());
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    let mut lease_poll = tokio::time::interval(Duration::from_millis(500));
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut draining = false;
    let mut last_reason = String::new();
    let mut idle_since = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = sigterm.recv(), if !draining => {
                draining = drain(&running, "SIGTERM", args.drain_timeout_s);
            }
            _ = tokio::signal::ctrl_c(), if !draining => {
                draining = drain(&running, "Ctrl-C", args.drain_timeout_s);
            }
            done = tasks.join_next(), if !tasks.is_empty() => {
                if let Some(Ok(job_id)) = done {
                    running.remove(&job_id);
                }
                lease_poll.reset_immediately();
            }
            _ = heartbeat.tick() => {
                if beat(&session, &devices, &weights_dir, &running).await && !draining {
                    draining = drain(&running, "the coordinator asks", args.drain_timeout_s);
                }
            }
            _ = lease_poll.tick(), if !draining => {
                lease_round(&args, &work_dir, &devices, &session, &ctx, max_jobs, &mut running, &mut tasks, &mut last_reason).await;
            }
        }
        if !running.is_empty() || !tasks.is_empty() {
            idle_since = std::time::Instant::now();
        } else if let Some(limit) = args.idle_exit_s.filter(|_| !draining) {
            if idle_since.elapsed() >= Duration::from_secs(limit) {
                eprintln!("ausweep worker: no job for {limit} s (--idle-exit-s); exiting");
                draining = true;
            }
        }
        if draining && running.is_empty() && tasks.is_empty() {
            break;
        }
    }
    // One last heartbeat so the coordinator sees no lease left.
    beat(&session, &devices, &weights_dir, &running).await;
    eprintln!("ausweep worker: drained; exiting");
    Ok(())
}

/// One look for work: leases a job for each free healthy device (none while the work folder's
/// disk is short of space) and starts its attempt.
#[allow(clippy::too_many_arguments)] // the agent loop's state, borrowed for one round
async fn lease_round(
    args: &Config,
    work_dir: &Path,
    devices: &Devices,
    session: &Arc<Session>,
    ctx: &Arc<Ctx>,
    max_jobs: usize,
    running: &mut HashMap<String, Running>,
    tasks: &mut JoinSet<String>,
    last_reason: &mut String,
) {
    if let Some(free) = free_mib(work_dir).filter(|&f| f < args.min_free_disk_mib) {
        let why = format!(
            "not leasing: {free} MiB free on the disk of {}, below --min-free-disk-mib {}",
            work_dir.display(),
            args.min_free_disk_mib
        );
        if why != *last_reason {
            eprintln!("ausweep worker: {why}");
            *last_reason = why;
        }
        return;
    }
    let d = devices.clone();
    let healthy: Vec<bool> = tokio::task::spawn_blocking(move || {
        d.list
            .iter()
            .map(|dev| d.health(dev.index).healthy)
            .collect()
    })
    .await
    .unwrap_or_default();
    for (i, dev) in devices.list.iter().enumerate() {
        if running.len() >= max_jobs {
            break;
        }
        if running.values().any(|r| r.device == dev.index)
            || !healthy.get(i).copied().unwrap_or(false)
        {
            continue;
        }
        let req = v1::LeaseRequest {
            device_index: dev.index,
        };
        let reply = session
            .call(Retry::Once, |mut c| async move { c.lease(req).await })
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                if e.message() != last_reason.as_str() {
                    eprintln!("ausweep worker: lease: {}", e.message());
                    *last_reason = e.message().to_string();
                }
                break;
            }
        };
        let Some(a) = reply.assignment else {
            if reply.reason != *last_reason {
                eprintln!(
                    "ausweep worker: no job for device {}: {}",
                    dev.index, reply.reason
                );
                *last_reason = reply.reason;
            }
            continue;
        };
        last_reason.clear();
        eprintln!(
            "ausweep worker: leased {} attempt {} on device {}",
            a.job_id, a.attempt, dev.index
        );
        let (tx, rx) = watch::channel(Control::Run);
        running.insert(
            a.job_id.clone(),
            Running {
                fencing_token: a.fencing_token,
                device: dev.index,
                control: tx,
            },
        );
        let (ctx, dev, id) = (ctx.clone(), dev.clone(), a.job_id.clone());
        tasks.spawn(async move {
            job::run(ctx, a, dev, rx).await;
            id
        });
    }
}

/// Starts draining: every running attempt stops at its next checkpoint (`why` is logged).
/// Returns true, the agent's new draining state.
fn drain(running: &HashMap<String, Running>, why: &str, timeout_s: u64) -> bool {
    eprintln!(
        "ausweep worker: {why}: draining {} running job(s) (at most {timeout_s} s)",
        running.len()
    );
    for r in running.values() {
        let _ = r.control.send(Control::Drain);
    }
    true
}

/// Sends one heartbeat; re-registers when asked; aborts attempts whose lease is gone. True when
/// the coordinator asks this worker to drain.
async fn beat(
    session: &Session,
    devices: &Devices,
    weights_dir: &std::path::Path,
    running: &HashMap<String, Running>,
) -> bool {
    let mut drain = false;
    let mut reg = session.registration().await;
    // NVML queries and the weights folder's listing block: on a blocking thread.
    let (d, w) = (devices.clone(), weights_dir.to_path_buf());
    let (protos, held, stats) =
        tokio::task::spawn_blocking(move || (d.to_proto(), held_weights(&w), d.stats()))
            .await
            .unwrap_or_default();
    reg.devices = protos;
    reg.weights = held;
    session
        .set_devices(reg.devices.clone(), reg.weights.clone())
        .await;
    let req = v1::HeartbeatRequest {
        hostname: reg.hostname,
        devices: reg.devices,
        weights: Some(v1::HeldWeightsList { items: reg.weights }),
        leases: running
            .iter()
            .map(|(id, r)| v1::ActiveLease {
                job_id: id.clone(),
                fencing_token: r.fencing_token,
            })
            .collect(),
    };
    match session
        .call(Retry::Once, |mut c| {
            let req = req.clone();
            async move { c.heartbeat(req).await }
        })
        .await
    {
        Ok(r) => {
            drain = r.drain;
            if r.reregister {
                if let Err(e) = session.reregister().await {
                    eprintln!("ausweep worker: re-registration failed: {}", e.message());
                }
            }
            for id in r.abort_job_ids {
                if let Some(run) = running.get(&id) {
                    eprintln!("ausweep worker: coordinator aborts {id}");
                    let _ = run.control.send(Control::Abort);
                }
            }
        }
        Err(e) => eprintln!("ausweep worker: heartbeat failed: {}", e.message()),
    }
    // GPU telemetry for the coordinator's metrics (none for a CPU-only node).
    if !stats.is_empty() {
        let req = v1::DeviceStatsRequest { devices: stats };
        let sent = session
            .call(Retry::Once, |mut c| {
                let req = req.clone();
                async move { c.report_device_stats(req).await }
            })
            .await;
        if let Err(e) = sent {
            eprintln!("ausweep worker: device stats not sent: {}", e.message());
        }
    }
    drain
}
