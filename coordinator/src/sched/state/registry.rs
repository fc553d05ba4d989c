//! Sweeps and workers: submitting and cancelling sweeps, registering, heartbeats, draining.

use super::{LiveWorker, State, META_SEQ};
use crate::manifest::Parsed;
use crate::plan::PlannedJob;
use crate::sched::types::*;
use crate::store::records::*;
use crate::store::{Batch, Tree};

impl State {
    /// Adds a sweep and its jobs, with their specs as [`crate::plan::encode_specs`] encoded
    /// them; the identical manifest again returns the existing sweep.
    pub fn submit(
        &mut self,
        parsed: &Parsed,
        plan: Vec<PlannedJob>,
        specs: crate::store::specs::SweepSpecs,
        now: u64,
        batch: &mut Batch,
    ) -> Result<SubmitOutcome, SchedError> {
        if let Some(s) = self.sweeps.get(&parsed.sweep_id) {
            let jobs = self.sweep_jobs.get(&s.id).map_or(0, Vec::len) as u32;
            return Ok(SubmitOutcome {
                sweep_id: s.id.clone(),
                name: s.name.clone(),
                version: s.version,
                created: false,
                jobs,
            });
        }
        if specs.patches.len() != plan.len()
            || specs
                .patches
                .iter()
                .zip(&plan)
                .any(|((id, _), p)| *id != p.id)
        {
            return Err(SchedError::Plan(
                "the encoded specs do not match the plan's jobs".into(),
            ));
        }
        let name = parsed.manifest.name.clone();
        let version = 1 + self
            .sweeps
            .values()
            .filter(|s| s.name == name)
            .map(|s| s.version)
            .max()
            .unwrap_or(0);
        let sweep = SweepRecord {
            id: parsed.sweep_id.clone(),
            name: name.clone(),
            version,
            created_ms: now,
            canonical: parsed.canonical.clone(),
            cancelled: false,
        };
        batch.put(Tree::Sweeps, &sweep.id, &sweep)?;
        self.sweeps.insert(sweep.id.clone(), sweep);
        let n = plan.len() as u32;
        specs.put(batch, &parsed.sweep_id)?;
        let mut patches = specs.patches.into_iter().map(|(_, p)| p);
        self.spec_bases
            .insert(parsed.sweep_id.clone(), specs.base.clone());
        let mut ids = Vec::with_capacity(plan.len());
        for p in plan {
            let job = JobRecord {
                id: p.id.clone(),
                sweep: parsed.sweep_id.clone(),
                key: p.key,
                grid_label: p.grid_label,
                epochs: p.spec.train.epochs,
                needs: p.spec.weights_need(),
                spec_patch: patches.next(),
                depends_on: p.depends_on,
                device: p.device,
                min_gpu_memory_mib: p.min_gpu_memory_mib,
                priority: p.priority,
                seq: self.next_seq,
                max_attempts: p.max_attempts,
                attempts_per_run: p.max_attempts,
                state: JobState::Pending,
                attempt: 0,
                lease: None,
                avoid_workers: Vec::new(),
                last_error: String::new(),
                newest_checkpoint: None,
                final_checkpoint: None,
                failures: 0,
                lost: 0,
                lost_streak: 0,
                max_lost: p.max_lost,
                keep: p.keep,
                last_failure: String::new(),
            };
            self.next_seq += 1;
            batch.put(Tree::Jobs, &job.id, &job)?;
            for d in &job.depends_on {
                self.dependents
                    .entry(d.clone())
                    .or_default()
                    .push(job.id.clone());
            }
            ids.push(job.id.clone());
            self.event(&job, "submitted");
            self.jobs.insert(job.id.clone(), Box::new(job));
        }
        batch.put(Tree::Meta, META_SEQ, &self.next_seq)?;
        for id in &ids {
            self.refresh_ready(id);
        }
        self.sweep_jobs.insert(parsed.sweep_id.clone(), ids);
        Ok(SubmitOutcome {
            sweep_id: parsed.sweep_id.clone(),
            name,
            version,
            created: true,
            jobs: n,
        })
    }

    /// Registers (or re-registers) a worker with its session hash.
    pub fn register(
        &mut self,
        reg: Registration,
        session_hash: String,
        now: u64,
        batch: &mut Batch,
    ) -> Result<(), SchedError> {
        let rec = WorkerRecord {
            id: reg.id.clone(),
            hostname: reg.hostname,
            devices: reg.devices,
            session_hash,
            registered_ms: now,
            draining: false,
            weights: reg.weights,
        };
        batch.put(Tree::Workers, &rec.id, &rec)?;
        // A worker registering anew (an agent restarted once its mount is back) may run again
        // what it could not.
        for lacks in self.node_lacks.values_mut() {
            lacks.remove(&reg.id);
        }
        self.node_lacks.retain(|_, l| !l.is_empty());
        self.workers.insert(
            reg.id,
            LiveWorker {
                rec,
                last_seen_ms: now,
            },
        );
        self.last_worker_seen_ms = now;
        Ok(())
    }

    /// The stored session hash of a worker.
    pub fn session_hash(&self, worker: &str) -> Option<&str> {
        self.workers
            .get(worker)
            .map(|w| w.rec.session_hash.as_str())
    }

    pub(super) fn touch(&mut self, worker: &str, now: u64) -> Result<(), SchedError> {
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| SchedError::UnknownWorker(worker.to_string()))?;
        w.last_seen_ms = now;
        self.last_worker_seen_ms = now;
        Ok(())
    }

    /// Extends the leases a worker reports; answers which it must abort.
    pub fn heartbeat(
        &mut self,
        worker: &str,
        node: NodeUpdate,
        leases: &[(String, u64)],
        now: u64,
        batch: &mut Batch,
    ) -> Result<HeartbeatOutcome, SchedError> {
        let Some(w) = self.workers.get_mut(worker) else {
            return Ok(HeartbeatOutcome {
                reregister: true,
                ..HeartbeatOutcome::default()
            });
        };
        w.last_seen_ms = now;
        self.last_worker_seen_ms = now;
        let mut changed = false;
        let NodeUpdate {
            hostname,
            devices,
            weights,
        } = node;
        if let Some(d) = devices {
            if d != w.rec.devices {
                w.rec.devices = d;
                changed = true;
            }
        }
        if let Some(h) = weights {
            if h != w.rec.weights {
                w.rec.weights = h;
                changed = true;
            }
        }
        if !hostname.is_empty() && hostname != w.rec.hostname {
            w.rec.hostname = hostname;
            changed = true;
        }
        if changed {
            batch.put(Tree::Workers, worker, &w.rec)?;
        }
        let mut abort = Vec::new();
        for (job, token) in leases {
            if self.extend(job, *token, worker, now, batch)? == Fenced::Stale {
                abort.push(job.clone());
            }
        }
        let drain = self.workers.get(worker).is_some_and(|w| w.rec.draining);
        Ok(HeartbeatOutcome {
            reregister: false,
            abort,
            drain,
        })
    }

    /// Marks a worker's session as draining (persisted); `None` when there is no such worker.
    pub fn drain(
        &mut self,
        worker: &str,
        batch: &mut Batch,
    ) -> Result<Option<Vec<String>>, SchedError> {
        let Some(w) = self.workers.get_mut(worker) else {
            return Ok(None);
        };
        if !w.rec.draining {
            w.rec.draining = true;
            batch.put(Tree::Workers, worker, &w.rec)?;
        }
        let mut leased: Vec<String> = self
            .busy
            .iter()
            .filter(|((wk, _), _)| wk == worker)
            .map(|(_, job)| job.clone())
            .collect();
        leased.sort();
        Ok(Some(leased))
    }

    /// Cancels every unfinished job of a sweep; returns how many.
    pub fn cancel(&mut self, sweep: &str, now: u64, batch: &mut Batch) -> Result<u32, SchedError> {
        let s = self
            .sweeps
            .get_mut(sweep)
            .ok_or_else(|| SchedError::NoSweep(sweep.to_string()))?;
        s.cancelled = true;
        batch.put(Tree::Sweeps, sweep, s)?;
        let mut n = 0;
        for id in self.sweep_jobs.get(sweep).cloned().unwrap_or_default() {
            if self.jobs[&id].state.is_terminal() {
                continue;
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                j.state = JobState::Cancelled;
            }
            self.release(&id, "cancelled", now, batch)?;
            self.refresh_ready(&id);
            let j = self.jobs[&id].clone();
            self.event(&j, "cancelled");
            n += 1;
        }
        Ok(n)
    }

    /// Requeues a sweep's failed and cancelled jobs with their stored specs and a fresh budget.
    pub fn resubmit_failed(&mut self, sweep: &str, batch: &mut Batch) -> Result<u32, SchedError> {
        let s = self
            .sweeps
            .get_mut(sweep)
            .ok_or_else(|| SchedError::NoSweep(sweep.to_string()))?;
        if s.cancelled {
            s.cancelled = false;
            batch.put(Tree::Sweeps, sweep, s)?;
        }
        let mut n = 0;
        let ids = self.sweep_jobs.get(sweep).cloned().unwrap_or_default();
        for id in &ids {
            let Some(j) = self.jobs.get_mut(id) else {
                continue;
            };
            if !matches!(j.state, JobState::Failed | JobState::Cancelled) {
                continue;
            }
            j.state = JobState::Pending;
            j.max_attempts = j.attempt + j.attempts_per_run;
            j.avoid_workers.clear();
            self.save_job(id, batch)?;
            let j = self.jobs[id].clone();
            self.event(&j, "resubmitted");
            n += 1;
        }
        for id in &ids {
            self.refresh_ready(id);
        }
        Ok(n)
    }
}
