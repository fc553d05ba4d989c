//! Placement and leases: which job a device gets, fencing tokens, extensions and expiry.

use super::attempts::Cause;
use super::{attempt_key, ready_key, LiveWorker, State, META_TOKEN};
use crate::manifest::DeviceReq;
use crate::sched::types::*;
use crate::store::records::*;
use crate::store::{Batch, Tree};
use std::collections::BTreeSet;

impl State {
    /// Extends one lease if (job, token, worker) holds it; persists at most every half lease.
    pub(super) fn extend(
        &mut self,
        job: &str,
        token: u64,
        worker: &str,
        now: u64,
        batch: &mut Batch,
    ) -> Result<Fenced, SchedError> {
        let lease_ms = self.timing.lease_ms;
        let Some(j) = self.jobs.get_mut(job) else {
            return Ok(Fenced::Stale);
        };
        let Some(l) = j
            .lease
            .as_mut()
            .filter(|l| l.token == token && l.worker == worker)
        else {
            return Ok(Fenced::Stale);
        };
        l.deadline_ms = l.deadline_ms.max(now + lease_ms);
        let written = self.persisted_deadline.get(job).copied().unwrap_or(0);
        if l.deadline_ms >= written + lease_ms / 2 {
            self.save_job(job, batch)?;
        }
        Ok(Fenced::Current)
    }

    /// Whether another live worker than `worker` could run the job (for avoid-node relaxation).
    fn someone_else_fits(&self, job: &JobRecord, worker: &str, now: u64) -> bool {
        self.workers.values().any(|w| {
            w.rec.id != worker
                && !job.avoid_workers.contains(&w.rec.id)
                && !self.cannot_run(&job.id, &w.rec.id)
                && self.is_alive(w, now)
                && w.rec.holds(job.needs.names())
                && w.rec.devices.iter().any(|d| fits(job, d))
        })
    }

    /// Whether `worker` reported that it cannot run `job` (a node failure).
    pub(crate) fn cannot_run(&self, job: &str, worker: &str) -> bool {
        self.node_lacks
            .get(job)
            .is_some_and(|l| l.contains_key(worker))
    }

    pub(crate) fn is_alive(&self, w: &LiveWorker, now: u64) -> bool {
        w.last_seen_ms > 0 && now.saturating_sub(w.last_seen_ms) <= self.timing.lease_ms
    }

    /// Hands the best fitting ready job (priority, then age) to a worker's free device.
    pub fn lease(
        &mut self,
        worker: &str,
        device: u32,
        now: u64,
        batch: &mut Batch,
    ) -> Result<LeaseOutcome, SchedError> {
        self.touch(worker, now)?;
        let dev = self.workers[worker]
            .rec
            .devices
            .iter()
            .find(|d| d.index == device)
            .cloned()
            .ok_or_else(|| SchedError::NoDevice {
                worker: worker.to_string(),
                device,
            })?;
        if !dev.healthy {
            return Ok(LeaseOutcome::Nothing(format!(
                "device {device} is marked unhealthy"
            )));
        }
        if self.workers[worker].rec.draining {
            return Ok(LeaseOutcome::Nothing("worker is draining".into()));
        }
        // The worker asks for a device we think busy: the attempt there is gone.
        if let Some(old) = self.busy.get(&(worker.to_string(), device)).cloned() {
            self.end_attempt(
                &old,
                "worker re-leased its device; attempt lost",
                Cause::Lost,
                now,
                batch,
            )?;
        }
        let Some(id) = self.pick(worker, &dev, now) else {
            return Ok(LeaseOutcome::Nothing(self.why_nothing_fits(worker, &dev)));
        };
        self.assign(&id, worker, device, now, batch)
    }

    /// The best ready job (priority, then age) that `dev` fits and `worker` can run, passing
    /// over a job that avoids this worker while another live worker could take it.
    fn pick(&self, worker: &str, dev: &DeviceRecord, now: u64) -> Option<String> {
        let holder = &self.workers[worker].rec;
        for (_, _, id) in &self.ready {
            let j = &self.jobs[id];
            if !fits(j, dev) || !holder.holds(j.needs.names()) || self.cannot_run(id, worker) {
                continue;
            }
            if j.avoid_workers.iter().any(|w| w == worker) && self.someone_else_fits(j, worker, now)
            {
                continue;
            }
            return Some(id.clone());
        }
        None
    }

    /// Why no ready job went to `worker`'s device `dev`.
    fn why_nothing_fits(&self, worker: &str, dev: &DeviceRecord) -> String {
        let lacking: BTreeSet<&str> = self
            .ready
            .iter()
            .map(|(_, _, id)| &self.jobs[id])
            .filter(|j| fits(j, dev))
            .flat_map(|j| j.needs.names().iter().copied())
            .filter(|n| !self.workers[worker].rec.holds(&[n]))
            .collect();
        if self.ready.is_empty() {
            "no runnable job".to_string()
        } else if !lacking.is_empty() {
            format!(
                "ready jobs need weights this worker does not hold: {}",
                lacking.into_iter().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!(
                "no runnable job fits device {} ({})",
                dev.index,
                describe(dev)
            )
        }
    }

    /// Leases job `id` to `worker`'s `device` with a fresh fencing token and opens its attempt.
    fn assign(
        &mut self,
        id: &str,
        worker: &str,
        device: u32,
        now: u64,
        batch: &mut Batch,
    ) -> Result<LeaseOutcome, SchedError> {
        let token = self.next_token;
        self.next_token += 1;
        batch.put(Tree::Meta, META_TOKEN, &self.next_token)?;
        let deadline_ms = now + self.timing.lease_ms;
        let j = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| SchedError::NoJob(id.to_string()))?;
        self.ready.remove(&ready_key(j));
        j.attempt += 1;
        j.state = JobState::Leased;
        j.lease = Some(Lease {
            worker: worker.to_string(),
            device,
            token,
            deadline_ms,
            started_ms: now,
            resume_from: j.newest_checkpoint.clone(),
        });
        let attempt = AttemptRecord {
            job: id.to_string(),
            attempt: j.attempt,
            worker: worker.to_string(),
            token,
            started_ms: now,
            ended_ms: 0,
            outcome: "running".into(),
        };
        batch.put(Tree::Attempts, &attempt_key(id, j.attempt), &attempt)?;
        let deps = j.depends_on.clone();
        let j = j.clone();
        // The stage a job continues from (a data-preparation job's artifact is no model).
        let init_checkpoint = deps
            .iter()
            .filter_map(|d| self.jobs.get(d))
            .find(|d| d.key.stage != crate::plan::PREPARE_STAGE)
            .and_then(|d| d.final_checkpoint.clone());
        let spec = self.spec_of(id);
        let a = Assignment {
            job_id: id.to_string(),
            spec,
            attempt: j.attempt,
            token,
            deadline_ms,
            init_checkpoint,
            resume_checkpoint: j.newest_checkpoint.clone(),
            device,
        };
        self.busy
            .insert((worker.to_string(), device), id.to_string());
        self.leased.insert(id.to_string());
        self.save_job(id, batch)?;
        self.event(&j, format!("leased to {worker} device {device}"));
        Ok(LeaseOutcome::Assigned(Box::new(a)))
    }

    /// Checks a report's fencing token.
    pub(super) fn fence(&self, job: &str, token: u64) -> Result<Fenced, SchedError> {
        let j = self
            .jobs
            .get(job)
            .ok_or_else(|| SchedError::NoJob(job.to_string()))?;
        Ok(match &j.lease {
            Some(l) if l.token == token && j.state == JobState::Leased => Fenced::Current,
            _ => Fenced::Stale,
        })
    }

    /// Records progress (memory only) and extends the lease.
    pub fn progress(
        &mut self,
        worker: &str,
        job: &str,
        token: u64,
        p: Progress,
        now: u64,
        batch: &mut Batch,
    ) -> Result<Fenced, SchedError> {
        self.touch(worker, now)?;
        if self.fence(job, token)? == Fenced::Stale {
            return Ok(Fenced::Stale);
        }
        let fenced = self.extend(job, token, worker, now, batch)?;
        if fenced == Fenced::Current {
            let j = &self.jobs[job];
            self.events.push(Event {
                sweep: j.sweep.clone(),
                job: job.to_string(),
                state: j.state,
                attempt: j.attempt,
                progress: Some(p.clone()),
                message: String::new(),
            });
            self.progress.insert(job.to_string(), p);
        }
        Ok(fenced)
    }

    /// Requeues (or fails) every lease past its deadline; returns the jobs it touched.
    pub fn expire(&mut self, now: u64, batch: &mut Batch) -> Result<Vec<String>, SchedError> {
        let mut expired: Vec<String> = self
            .leased
            .iter()
            .filter(|id| {
                self.jobs
                    .get(*id)
                    .and_then(|j| j.lease.as_ref())
                    .is_some_and(|l| l.deadline_ms < now)
            })
            .cloned()
            .collect();
        expired.sort();
        for id in &expired {
            self.end_attempt(
                id,
                "lease expired (no heartbeat); attempt lost",
                Cause::Lost,
                now,
                batch,
            )?;
        }
        Ok(expired)
    }
}

/// Whether a device can run a job.
pub(crate) fn fits(job: &JobRecord, d: &DeviceRecord) -> bool {
    let kind = match job.device {
        DeviceReq::Cuda => d.cuda,
        DeviceReq::Cpu => !d.cuda,
        DeviceReq::Any => true,
    };
    kind && d.healthy && (!d.cuda || d.memory_mib >= job.min_gpu_memory_mib)
}

pub(crate) fn describe(d: &DeviceRecord) -> String {
    if d.cuda {
        format!("cuda, {} MiB", d.memory_mib)
    } else {
        "cpu".into()
    }
}
