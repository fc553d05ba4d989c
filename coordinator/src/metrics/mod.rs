//! Prometheus metrics on the coordinator's own port: jobs, queue, pending reasons, workers and
//! GPUs, leases and retries, RPCs, per-job progress and validation F1, final F1 and the
//! published baselines as their own series.
//!
//! Label sets are bounded: sweeps (which age out: only sweeps with unfinished jobs or younger
//! than [`SWEEP_RETENTION_MS`]), backbones, folds, stages, grid indices, AUs, worker ids and
//! device indices of the fleet, RPC methods of our own services, gRPC codes, fixed reason
//! classes. Scheduler-derived series are computed at scrape time from one read of the state.

mod http;
pub mod rpc;
mod snapshot;

pub use http::serve as serve_http;
pub use snapshot::reason_label;

use crate::baselines::Baselines;
use crate::sched::{Event, Progress};
use crate::store::records::JobState;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// How long a finished sweep keeps its series.
pub const SWEEP_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// A metrics registration failure (a programming error: duplicate or bad names).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric family of the coordinator.
pub struct Metrics {
    registry: Registry,
    pub(crate) jobs: IntGaugeVec,
    pub(crate) queue_depth: IntGauge,
    pub(crate) store_bytes: IntGauge,
    pub(crate) pending: IntGaugeVec,
    pub(crate) workers: IntGaugeVec,
    pub(crate) gpus: IntGaugeVec,
    pub(crate) gpu_busy: IntGaugeVec,
    pub(crate) gpu_memory_total: GaugeVec,
    gpu_memory_free: GaugeVec,
    gpu_util: GaugeVec,
    gpu_temp: GaugeVec,
    lease_expiries: IntCounterVec,
    retries: IntCounterVec,
    failures: IntCounterVec,
    rpc_total: IntCounterVec,
    rpc_seconds: HistogramVec,
    sched_seconds: HistogramVec,
    job_epoch: GaugeVec,
    job_loss: GaugeVec,
    job_ips: GaugeVec,
    job_val_f1: GaugeVec,
    pub(crate) final_f1: GaugeVec,
    baseline_f1: GaugeVec,
    scrape: Mutex<()>,
    /// AU labels each running job's validation F1 series carry (to remove them at its end).
    val_aus: Mutex<HashMap<String, BTreeSet<String>>>,
}

const JOB_LABELS: [&str; 5] = ["sweep", "backbone", "fold", "stage", "grid"];

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, MetricsError> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn igauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> Result<HistogramVec, MetricsError> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

/// The parts of a job id `<sweep>.<backbone>.f<fold>.s<stage>.g<grid>`.
pub fn job_labels(job: &str) -> Option<[String; 5]> {
    let mut it = job.rsplitn(5, '.');
    let grid = it.next()?.strip_prefix('g')?;
    let stage = it.next()?.strip_prefix('s')?;
    let fold = it.next()?.strip_prefix('f')?;
    let backbone = it.next()?;
    let sweep = it.next()?;
    Some([
        sweep.to_string(),
        backbone.to_string(),
        fold.to_string(),
        stage.to_string(),
        grid.to_string(),
    ])
}

impl Metrics {
    /// Registers every family; the baselines become constant series.
    pub fn new(baselines: Option<&Baselines>) -> Result<Self, MetricsError> {
        let r = Registry::new();
        let lat = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let m = Self {
            jobs: igauge(&r, "ausweep_jobs", "Jobs by sweep and state.", &["sweep", "state"])?,
            queue_depth: {
                let g = IntGauge::new("ausweep_queue_depth", "Jobs ready to run (dependencies met, waiting for a device).")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            store_bytes: {
                let g = IntGauge::new("ausweep_checkpoint_store_bytes", "Bytes of the checkpoints the coordinator keeps (after retention).")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            pending: igauge(&r, "ausweep_pending_jobs", "Pending jobs by why they wait.", &["reason"])?,
            workers: igauge(&r, "ausweep_workers", "Registered workers by liveness.", &["state"])?,
            gpus: igauge(&r, "ausweep_gpus", "GPUs of live workers by state (busy, free, unhealthy).", &["state"])?,
            gpu_busy: igauge(&r, "ausweep_gpu_busy", "1 while a job holds the GPU.", &["worker", "gpu"])?,
            gpu_memory_total: gauge(&r, "ausweep_gpu_memory_total_bytes", "GPU memory as registered.", &["worker", "gpu"])?,
            gpu_memory_free: gauge(&r, "ausweep_gpu_memory_free_bytes", "Free GPU memory, from device telemetry.", &["worker", "gpu"])?,
            gpu_util: gauge(&r, "ausweep_gpu_utilization_ratio", "GPU utilisation 0..1, from device telemetry.", &["worker", "gpu"])?,
            gpu_temp: gauge(&r, "ausweep_gpu_temperature_celsius", "GPU temperature, from device telemetry.", &["worker", "gpu"])?,
            lease_expiries: counter(&r, "ausweep_lease_expiries_total", "Leases that expired without a heartbeat.", &["sweep"])?,
            retries: counter(&r, "ausweep_retries_total", "Attempts that ended and were requeued.", &["sweep"])?,
            failures: counter(&r, "ausweep_attempt_failures_total", "Attempts that ended without a result (requeued or failed).", &["sweep"])?,
            rpc_total: counter(&r, "ausweep_rpc_requests_total", "gRPC calls by method and status code.", &["service", "method", "code"])?,
            rpc_seconds: histogram(&r, "ausweep_rpc_duration_seconds", "gRPC call latency (to response headers).", &["service", "method"], lat.clone())?,
            sched_seconds: histogram(&r, "ausweep_scheduler_call_duration_seconds", "Scheduling latency: a call's wait for the single-writer loop, including its durable commit.", &["op"], lat)?,
            job_epoch: gauge(&r, "ausweep_job_epoch", "Latest epoch a running job reported.", &JOB_LABELS)?,
            job_loss: gauge(&r, "ausweep_job_loss", "Latest training loss a running job reported.", &JOB_LABELS)?,
            job_ips: gauge(&r, "ausweep_job_images_per_second", "Latest training throughput of a running job.", &JOB_LABELS)?,
            job_val_f1: gauge(&r, "ausweep_job_val_f1", "Latest validation F1 (0..1) of a running job per AU.", &["sweep", "backbone", "fold", "stage", "grid", "au"])?,
            final_f1: gauge(&r, "ausweep_final_f1", "Test F1 % per AU (au=\"avg\": average), mean over the folds done.", &["sweep", "backbone", "stage", "au"])?,
            baseline_f1: gauge(&r, "ausweep_baseline_f1", "Published DISFA F1 % per AU (au=\"avg\": published average).", &["method", "au"])?,
            scrape: Mutex::new(()),
            val_aus: Mutex::new(HashMap::new()),
            registry: r,
        };
        if let Some(b) = baselines {
            for method in &b.methods {
                for (au, v) in b.aus.iter().zip(&method.f1) {
                    m.baseline_f1
                        .with_label_values(&[method.id.as_str(), &format!("AU{au}")])
                        .set(*v);
                }
                m.baseline_f1
                    .with_label_values(&[method.id.as_str(), "avg"])
                    .set(method.average);
            }
        }
        Ok(m)
    }

    /// Counts one gRPC call.
    pub fn observe_rpc(&self, service: &str, method: &str, code: &str, took: Duration) {
        self.rpc_total
            .with_label_values(&[service, method, code])
            .inc();
        self.rpc_seconds
            .with_label_values(&[service, method])
            .observe(took.as_secs_f64());
    }

    /// Records how long a scheduler call took.
    pub fn observe_sched(&self, op: &str, took: Duration) {
        self.sched_seconds
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }

    /// Records device telemetry from a worker.
    pub fn observe_device(
        &self,
        worker: &str,
        gpu: u32,
        free_mib: Option<u64>,
        utilization: Option<f64>,
        temperature_c: Option<f64>,
    ) {
        let gpu = gpu.to_string();
        let l = [worker, gpu.as_str()];
        if let Some(f) = free_mib {
            self.gpu_memory_free
                .with_label_values(&l)
                .set((f << 20) as f64);
        }
        if let Some(u) = utilization.filter(|u| u.is_finite()) {
            self.gpu_util.with_label_values(&l).set(u.clamp(0.0, 1.0));
        }
        if let Some(t) = temperature_c.filter(|t| t.is_finite()) {
            self.gpu_temp.with_label_values(&l).set(t);
        }
    }

    fn set_progress(&self, job: &str, l: &[String; 5], p: &Progress) {
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        let mut seen = self.val_aus.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.entry(job.to_string()).or_default();
        self.job_epoch.with_label_values(&l).set(f64::from(p.epoch));
        self.job_loss.with_label_values(&l).set(p.loss);
        self.job_ips.with_label_values(&l).set(p.images_per_sec);
        for (au, f1) in p.val_f1.iter().take(64) {
            let au = if au.starts_with("AU") && au.len() <= 6 {
                au.as_str()
            } else {
                continue;
            };
            let mut v = l.clone();
            v.push(au);
            self.job_val_f1.with_label_values(&v).set(*f1);
            seen.insert(au.to_string());
        }
    }

    fn clear_progress(&self, job: &str, l: &[String; 5]) {
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        let _ = self.job_epoch.remove_label_values(&l);
        let _ = self.job_loss.remove_label_values(&l);
        let _ = self.job_ips.remove_label_values(&l);
        let aus = self
            .val_aus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(job)
            .unwrap_or_default();
        for au in &aus {
            let mut v = l.clone();
            v.push(au);
            let _ = self.job_val_f1.remove_label_values(&v);
        }
    }

    /// Updates counters and progress series from one scheduler event.
    pub fn observe_event(&self, e: &Event) {
        let Some(l) = job_labels(&e.job) else { return };
        if let Some(p) = &e.progress {
            self.set_progress(&e.job, &l, p);
            return;
        }
        let sweep = [e.sweep.as_str()];
        // end_attempt writes "attempt N: <reason>" as the message of a requeue or a failure.
        let ended = e.message.starts_with("attempt ");
        if ended && matches!(e.state, JobState::Pending | JobState::Failed) {
            self.failures.with_label_values(&sweep).inc();
            if e.state == JobState::Pending {
                self.retries.with_label_values(&sweep).inc();
            }
            if e.message.contains("lease expired") {
                self.lease_expiries.with_label_values(&sweep).inc();
            }
        }
        if e.state.is_terminal() || ended {
            self.clear_progress(&e.job, &l);
        }
    }

    /// Makes every counter of a sweep visible at 0 (so rates and alerts have a series).
    pub fn touch_sweep(&self, sweep: &str) {
        for c in [&self.lease_expiries, &self.retries, &self.failures] {
            c.with_label_values(&[sweep]).inc_by(0);
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests;
