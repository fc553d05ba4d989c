//! Conversions between scheduler types and `ausweep.v1` messages.

use crate::sched::{self, Event, JobView, SweepView, WorkerView};
use crate::store::records::{DeviceRecord, JobState};
use ausweep_proto::v1;

pub(crate) fn job_state(s: JobState) -> v1::JobState {
    match s {
        JobState::Pending => v1::JobState::Pending,
        JobState::Leased => v1::JobState::Leased,
        JobState::Succeeded => v1::JobState::Succeeded,
        JobState::Failed => v1::JobState::Failed,
        JobState::Cancelled => v1::JobState::Cancelled,
    }
}

pub(crate) fn device_in(d: &v1::Device) -> DeviceRecord {
    DeviceRecord {
        index: d.index,
        cuda: d.kind() == v1::DeviceKind::Cuda,
        memory_mib: d.memory_mib,
        name: d.name.chars().take(128).collect(),
        healthy: d.healthy,
    }
}

pub(crate) fn device_out(d: &DeviceRecord) -> v1::Device {
    v1::Device {
        index: d.index,
        kind: if d.cuda {
            v1::DeviceKind::Cuda
        } else {
            v1::DeviceKind::Cpu
        } as i32,
        memory_mib: d.memory_mib,
        name: d.name.clone(),
        healthy: d.healthy,
    }
}

pub(crate) fn progress_in(p: v1::Progress) -> sched::Progress {
    sched::Progress {
        epoch: p.epoch,
        step: p.step,
        loss: p.loss,
        images_per_sec: p.images_per_sec,
        val_f1: p.val_f1.into_iter().take(64).collect(),
    }
}

pub(crate) fn progress_out(p: &sched::Progress) -> v1::Progress {
    v1::Progress {
        epoch: p.epoch,
        step: p.step,
        loss: p.loss,
        images_per_sec: p.images_per_sec,
        val_f1: p.val_f1.clone().into_iter().collect(),
    }
}

/// A sweep view as the wire's summary.
pub fn summary(v: &SweepView) -> v1::SweepSummary {
    v1::SweepSummary {
        sweep_id: v.sweep.id.clone(),
        name: v.sweep.name.clone(),
        version: v.sweep.version,
        created_unix_ms: v.sweep.created_ms,
        cancelled: v.sweep.cancelled,
        total: v.counts.total,
        pending: v.counts.pending,
        leased: v.counts.leased,
        succeeded: v.counts.succeeded,
        failed: v.counts.failed,
        cancelled_jobs: v.counts.cancelled,
    }
}

/// A job view as the wire's job status.
pub fn job(v: &JobView) -> v1::JobStatus {
    let j = &v.job;
    v1::JobStatus {
        job_id: j.id.clone(),
        backbone: j.key.backbone.to_string(),
        fold: j.key.fold,
        stage: j.key.stage as u32,
        grid_point: j.grid_label.clone(),
        state: job_state(j.state) as i32,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        worker_id: j
            .lease
            .as_ref()
            .map(|l| l.worker.clone())
            .unwrap_or_default(),
        pending_reason: v.pending_reason.clone(),
        pending_class: v.pending_class as i32,
        last_error: j.last_error.clone(),
        depends_on: j.depends_on.clone(),
        progress: v.progress.as_ref().map(progress_out),
        result: v.result.as_ref().map(|r| r.to_wire()),
        newest_checkpoint_sha256: j.newest_checkpoint.clone().unwrap_or_default(),
        epochs: j.epochs,
        failures: j.failures,
        lost_attempts: j.lost,
        lost_without_progress: j.lost_streak,
    }
}

pub(crate) fn event(e: &Event) -> v1::JobEvent {
    v1::JobEvent {
        sweep_id: e.sweep.clone(),
        job_id: e.job.clone(),
        state: job_state(e.state) as i32,
        attempt: e.attempt,
        progress: e.progress.as_ref().map(progress_out),
        message: e.message.clone(),
    }
}

pub(crate) fn worker(w: &WorkerView) -> v1::WorkerInfo {
    v1::WorkerInfo {
        worker_id: w.worker.id.clone(),
        hostname: w.worker.hostname.clone(),
        devices: w.worker.devices.iter().map(device_out).collect(),
        last_heartbeat_unix_ms: w.last_seen_ms,
        alive: w.alive,
        leased_jobs: w.leased.clone(),
        draining: w.worker.draining,
        weights: w
            .worker
            .weights
            .iter()
            .map(|h| v1::HeldWeights {
                name: h.name.clone(),
                sha256: h.sha256.clone(),
            })
            .collect(),
    }
}
