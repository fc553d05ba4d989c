//! The coordinator session: connect, register, re-register after a coordinator restart or an
//! `Unauthenticated` answer, and calls retried with backoff while the coordinator is away.

use ausweep_proto::client::{self, ClientTls};
use ausweep_proto::v1;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// How hard a call tries.
#[derive(Debug, Clone, Copy)]
pub enum Retry {
    /// One try (plus one re-registration): progress reports, lease polls.
    Once,
    /// Keep trying with backoff for this long while the coordinator is unreachable.
    For(Duration),
}

struct Creds {
    client: client::Worker,
    generation: u64,
}

/// A registered worker's connection to the coordinator.
pub struct Session {
    channel: Channel,
    join_token: String,
    request: RwLock<v1::RegisterRequest>,
    creds: RwLock<Option<Creds>>,
    heartbeat_ms: AtomicU64,
    lease_ms: AtomicU64,
}

/// Whether an error is worth retrying (the coordinator is away or restarting).
pub fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted
    )
}

impl Session {
    /// Connects (retrying with backoff for up to `wait`) and registers.
    pub async fn open(
        url: &str,
        tls: Option<&ClientTls>,
        join_token: String,
        request: v1::RegisterRequest,
        wait: Duration,
    ) -> Result<Self, Status> {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        let channel = loop {
            match client::connect(url, tls).await {
                Ok(c) => break c,
                Err(e) if start.elapsed() < wait => {
                    eprintln!("ausweep worker: coordinator {url} not reachable ({e}); retrying");
                    backoff.sleep().await;
                }
                Err(e) => {
                    return Err(Status::unavailable(format!(
                        "coordinator {url} not reachable: {e}"
                    )))
                }
            }
        };
        let s = Self {
            channel,
            join_token,
            request: RwLock::new(request),
            creds: RwLock::new(None),
            heartbeat_ms: AtomicU64::new(5_000),
            lease_ms: AtomicU64::new(30_000),
        };
        loop {
            match s.register(0).await {
                Ok(()) => return Ok(s),
                Err(e) if transient(&e) && start.elapsed() < wait => backoff.sleep().await,
                Err(e) => return Err(e),
            }
        }
    }

    /// The heartbeat interval the coordinator asked for.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed).max(100))
    }

    /// The coordinator's lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.load(Ordering::Relaxed).max(1_000))
    }

    /// Updates the devices and held weights sent on registration and heartbeats.
    pub async fn set_devices(&self, devices: Vec<v1::Device>, weights: Vec<v1::HeldWeights>) {
        let mut r = self.request.write().await;
        r.devices = devices;
        r.weights = weights;
    }

    /// The registration as last sent (hostname and devices travel with every heartbeat).
    pub async fn registration(&self) -> v1::RegisterRequest {
        self.request.read().await.clone()
    }

    /// Registers again unless someone already did since `seen` (the generation that failed).
    pub async fn register(&self, seen: u64) -> Result<(), Status> {
        let mut creds = self.creds.write().await;
        let generation = creds.as_ref().map_or(0, |c| c.generation);
        if generation > seen {
            return Ok(());
        }
        let mut join = client::worker(self.channel.clone(), None, &self.join_token)?;
        let req = self.request.read().await.clone();
        let r = join.register(req).await?.into_inner();
        if r.heartbeat_interval_ms > 0 {
            self.heartbeat_ms
                .store(r.heartbeat_interval_ms, Ordering::Relaxed);
        }
        if r.lease_ms > 0 {
            self.lease_ms.store(r.lease_ms, Ordering::Relaxed);
        }
        let c = client::worker(self.channel.clone(), Some(&r.worker_id), &r.session_token)?;
        eprintln!(
            "ausweep worker: registered as {} (heartbeat {} ms, lease {} ms)",
            r.worker_id, r.heartbeat_interval_ms, r.lease_ms
        );
        *creds = Some(Creds {
            client: c,
            generation: generation + 1,
        });
        Ok(())
    }

    /// Registers again (after the coordinator said it does not know this worker).
    pub async fn reregister(&self) -> Result<(), Status> {
        let seen = self.creds.read().await.as_ref().map_or(0, |c| c.generation);
        self.register(seen).await
    }

    async fn current(&self) -> Option<(client::Worker, u64)> {
        self.creds
            .read()
            .await
            .as_ref()
            .map(|c| (c.client.clone(), c.generation))
    }

    /// Calls `f` with the session client; re-registers on `Unauthenticated` and retries
    /// transient errors with backoff as `retry` allows.
    pub async fn call<T, F, Fut>(&self, retry: Retry, mut f: F) -> Result<T, Status>
    where
        F: FnMut(client::Worker) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        let mut reregistered = false;
        loop {
            let (c, generation) = match self.current().await {
                Some(x) => x,
                None => {
                    self.register(0).await?;
                    continue;
                }
            };
            let e = match f(c).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(e) => e,
            };
            let budget = match retry {
                Retry::Once => Duration::ZERO,
                Retry::For(d) => d,
            };
            if e.code() == Code::Unauthenticated && !reregistered {
                // The coordinator lost our session (restart without state, or a new token).
                reregistered = true;
                match self.register(generation).await {
                    Ok(()) => continue,
                    Err(r) if transient(&r) && start.elapsed() < budget => {
                        backoff.sleep().await;
                        reregistered = false;
                        continue;
                    }
                    Err(r) => return Err(r),
                }
            }
            if transient(&e) && start.elapsed() < budget {
                backoff.sleep().await;
                continue;
            }
            return Err(e);
        }
    }
}

/// Exponential backoff with jitter, 200 ms to 5 s.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// Starts at 200 ms.
    pub fn new() -> Self {
        Self {
            next: Duration::from_millis(200),
        }
    }

    /// Sleeps the current delay (± 25 %) and doubles it up to 5 s.
    pub async fn sleep(&mut self) {
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        tokio::time::sleep(self.next.mul_f64(jitter)).await;
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}
