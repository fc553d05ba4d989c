//! Starting a coordinator in-process: store, blobs, scheduler loop, gRPC services with auth,
//! size bounds, optional (mutual) TLS, health and reflection.

use crate::auth::TokenHash;
use crate::metrics::{rpc::RpcLayer, Metrics};
use crate::sched::actor::Running;
use crate::sched::{Scheduler, Timing};
use crate::service::admin::AdminSvc;
use crate::service::worker::{Sessions, WorkerSvc};
use crate::store::blobs::Blobs;
use crate::store::{MemStore, SledStore, Store};
use ausweep_proto::v1::{
    admin_server::AdminServer, worker_server::WorkerServer, FILE_DESCRIPTOR_SET,
};
use ausweep_proto::wire::MAX_MESSAGE_BYTES;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// TLS files (PEM).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Everything a coordinator needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks one).
    pub listen: SocketAddr,
    /// State directory: `db/` (sled) and `checkpoints/`; `None` keeps state in memory.
    pub data_dir: Option<PathBuf>,
    /// Where checkpoint files go instead of `<data_dir>/checkpoints` (e.g. another filesystem
    /// than the store's); without either, a temp dir removed when the coordinator stops.
    pub checkpoint_dir: Option<PathBuf>,
    /// Admin token (kept only hashed after start).
    pub admin_token: String,
    /// Worker join token (kept only hashed after start).
    pub join_token: String,
    /// Lease timings.
    pub timing: Timing,
    /// How often expired leases are swept.
    pub expiry_every: Duration,
    /// Largest checkpoint accepted, bytes.
    pub max_checkpoint_bytes: u64,
    /// Most bytes of checkpoints the store holds (0: no limit); uploads past it are refused
    /// with RESOURCE_EXHAUSTED and nothing stored is touched.
    pub max_store_bytes: u64,
    /// Largest manifest `Submit` accepts, bytes (the admin API's message limit follows it).
    pub max_manifest_bytes: usize,
    /// TLS; plaintext when absent.
    pub tls: Option<TlsFiles>,
    /// Where to serve Prometheus `/metrics` (plain HTTP); none when absent.
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// A config for tests: loopback, port 0, in-memory unless `data_dir` is given.
    pub fn local(admin_token: &str, join_token: &str, data_dir: Option<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            checkpoint_dir: None,
            admin_token: admin_token.into(),
            join_token: join_token.into(),
            timing: Timing::default(),
            expiry_every: Duration::from_secs(1),
            max_checkpoint_bytes: 8 << 30,
            max_store_bytes: 0,
            max_manifest_bytes: crate::manifest::MAX_MANIFEST_BYTES,
            tls: None,
            metrics_listen: None,
        }
    }
}

/// A coordinator that failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Blob dir failure.
    #[error(transparent)]
    Blobs(#[from] crate::store::blobs::BlobError),
    /// Socket or TLS failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// gRPC transport failure.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The scheduler loop ended by itself (its cause); the coordinator cannot serve without it.
    #[error("the scheduler stopped: {0}")]
    SchedulerStopped(String),
}

/// A running coordinator.
pub struct Handle {
    /// The bound address.
    pub addr: SocketAddr,
    /// Where checkpoints are stored (a temp dir, removed when it stops, without a data dir).
    pub checkpoint_dir: PathBuf,
    /// The bound `/metrics` address, when serving metrics.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    sched: Running,
}

impl Handle {
    /// Stops accepting calls and waits (at most 5 s) for open calls to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
            let _ = (&mut self.server).await;
        }
        self.sched.stop().await;
        if let Some(t) = self.metrics_task.take() {
            t.abort();
        }
    }

    /// Stops abruptly, as a killed process would (no graceful drain); waits until the store
    /// is released.
    pub async fn kill(self) {
        if let Some(t) = &self.metrics_task {
            t.abort();
        }
        self.server.abort();
        let _ = self.server.await;
        self.sched.stop().await;
    }

    /// Waits until the server stops, or the scheduler loop dies (an error naming its cause:
    /// a coordinator that can only answer UNAVAILABLE should exit and be restarted).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        tokio::select! {
            served = &mut self.server => {
                served.map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))??;
                Ok(())
            }
            why = self.sched.died() => {
                self.server.abort();
                Err(ServeError::SchedulerStopped(why))
            }
        }
    }
}

/// Starts a coordinator: loads (recovers) the store, binds, serves.
// Long function: wires every service, the scheduler, metrics and TLS together in start-up order.
pub async fn serve(config: Config) -> Result<Handle, ServeError> {
    if config.admin_token.len() < 16 || config.join_token.len() < 16 {
        return Err(ServeError::Config(
            "admin and join tokens need at least 16 characters".into(),
        ));
    }
    if config.timing.lease_ms < 3 * config.timing.heartbeat_ms {
        return Err(ServeError::Config(
            "the lease must last at least 3 heartbeats".into(),
        ));
    }
    let started = std::time::Instant::now();
    // An in-memory coordinator keeps its checkpoints in a temp dir that goes when it stops.
    let store: Arc<dyn Store> = match &config.data_dir {
        Some(dir) => {
            let db = dir.join("db");
            let s = tokio::task::spawn_blocking(move || SledStore::open(&db))
                .await
                .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))??;
            Arc::new(s)
        }
        None => Arc::new(MemStore::new()),
    };
    let (blob_dir, scratch) = match (&config.checkpoint_dir, &config.data_dir) {
        (Some(dir), _) => (dir.clone(), None),
        (None, Some(dir)) => (dir.join("checkpoints"), None),
        (None, None) => {
            let t = tempfile::Builder::new()
                .prefix("ausweep-blobs-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // The checkpoint directory is walked while the state loads (both take a while at scale).
    let max_blob = config.max_checkpoint_bytes;
    let walked = blob_dir.clone();
    let walk = tokio::task::spawn_blocking(move || Blobs::open_listing(&walked, max_blob));
    let (gc_tx, gc_rx) = tokio::sync::mpsc::unbounded_channel();
    let (sched, mut sched_task) =
        Scheduler::start(store, config.timing, config.expiry_every, Some(gc_tx))?;
    let (blobs, found) = walk
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?
        .map_err(|e| {
            ServeError::Config(format!("checkpoint directory {}: {e}", blob_dir.display()))
        })?;
    let blobs = blobs.with_limit(config.max_store_bytes);
    crate::gc::sweep_orphans(&sched, &blobs, found).await?;
    // The store's decoding is freed by now (it peaks well above the state it leaves).
    crate::memory::release_free_memory();
    eprintln!(
        "ausweep coordinator: store, state and checkpoints ready in {} ms",
        started.elapsed().as_millis()
    );
    tokio::spawn(crate::gc::remove_garbage(gc_rx, blobs.clone()));
    let baselines = crate::baselines::Baselines::embedded().ok();
    let metrics =
        Arc::new(Metrics::new(baselines.as_ref()).map_err(|e| ServeError::Config(e.to_string()))?);
    let mut events = sched.subscribe();
    let observer = metrics.clone();
    let observe = async move {
        loop {
            match events.recv().await {
                Ok(e) => observer.observe_event(&e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    };
    let sessions: Sessions = Default::default();
    let known = match sched.call(|st, now, _| Ok(st.list_workers(now))).await {
        Ok(k) => k,
        Err(crate::sched::SchedError::Stopped) => {
            return Err(ServeError::SchedulerStopped(sched_task.died().await))
        }
        Err(e) => return Err(ServeError::Config(e.to_string())),
    };
    if let Ok(mut s) = sessions.write() {
        for w in known {
            if let Some(h) = TokenHash::from_hex(&w.worker.session_hash) {
                s.insert(w.worker.id, h);
            }
        }
    }
    let admin = AdminServer::new(AdminSvc::new(
        sched.clone(),
        TokenHash::of(&config.admin_token),
        blobs.clone(),
        config.max_manifest_bytes,
    ))
    // Room past the manifest limit, so an oversized manifest reaches Submit and is refused
    // there with its file name and the limit rather than by the transport.
    .max_decoding_message_size(MAX_MESSAGE_BYTES.max(config.max_manifest_bytes) + (16 << 20))
    .max_encoding_message_size(64 << 20);
    let worker = WorkerServer::new(WorkerSvc::new(
        sched.clone(),
        TokenHash::of(&config.join_token),
        sessions,
        blobs,
        config.timing,
        metrics.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<AdminServer<AdminSvc>>().await;
    reporter.set_serving::<WorkerServer<WorkerSvc>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .concurrency_limit_per_connection(256);
    if let Some(tls) = &config.tls {
        let cert = tokio::fs::read(&tls.cert).await?;
        let key = tokio::fs::read(&tls.key).await?;
        let mut t = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &tls.client_ca {
            t = t.client_ca_root(Certificate::from_pem(tokio::fs::read(ca).await?));
        }
        builder = builder.tls_config(t)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let router = builder
        .layer(RpcLayer(metrics.clone()))
        .add_service(health)
        .add_service(reflection)
        .add_service(admin)
        .add_service(worker);
    let incoming = accepted(listener);
    let served = router.serve_with_incoming_shutdown(incoming, async {
        let _ = rx.await;
    });
    let server = tokio::spawn(async move {
        let out = served.await;
        drop(scratch);
        out
    });
    // One task runs the event observer and, when asked for, the `/metrics` endpoint.
    let (metrics_addr, metrics_task) = match config.metrics_listen {
        Some(l) => {
            let (a, http) = crate::metrics::serve_http(l, metrics.clone(), sched.clone()).await?;
            let t = tokio::spawn(async move {
                tokio::join!(http, observe);
            });
            (Some(a), Some(t))
        }
        None => (None, Some(tokio::spawn(observe))),
    };
    Ok(Handle {
        addr,
        checkpoint_dir: blob_dir,
        metrics_addr,
        metrics_task,
        shutdown: Some(tx),
        server,
        sched: sched_task,
    })
}

/// The listener's connections with TCP_NODELAY set: with Nagle's algorithm on, a small answer
/// waits for the client's delayed ACK (40 ms on Linux). tonic sets it only on listeners it binds
/// itself, not on an incoming stream it is given.
fn accepted(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |s| {
            if let Ok(s) = &s {
                let _ = s.set_nodelay(true);
            }
            s
        },
    )
}

#[cfg(test)]
mod nodelay_tests {
    #[tokio::test]
    async fn accepted_connections_send_small_answers_at_once() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut incoming = Box::pin(super::accepted(l));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let s = tokio_stream::StreamExt::next(&mut incoming)
            .await
            .unwrap()
            .unwrap();
        assert!(
            s.nodelay().unwrap(),
            "Nagle's algorithm is on for an accepted connection"
        );
    }
}
