//! How an attempt ends: completion, failure, requeue or giving up, releasing its lease.

use super::State;
use crate::sched::types::*;
use crate::store::records::*;
use crate::store::{Batch, Tree};
use std::collections::HashMap;

impl State {
    /// Completes a job with its result; a stale attempt's result is discarded.
    pub fn complete(
        &mut self,
        worker: &str,
        job: &str,
        token: u64,
        mut result: ResultRecord,
        now: u64,
        batch: &mut Batch,
    ) -> Result<Fenced, SchedError> {
        self.touch(worker, now)?;
        if self.fence(job, token)? == Fenced::Stale {
            return Ok(Fenced::Stale);
        }
        if !self.checkpoints.contains_key(&result.checkpoint) {
            return Err(SchedError::MissingCheckpoint(result.checkpoint));
        }
        let j = self
            .jobs
            .get_mut(job)
            .ok_or_else(|| SchedError::NoJob(job.to_string()))?;
        result.job = job.to_string();
        result.attempt = j.attempt;
        let sha = result.checkpoint.clone();
        batch.put(Tree::Results, job, &result)?;
        self.results.insert(job.to_string(), Box::new(result));
        j.state = JobState::Succeeded;
        j.final_checkpoint = Some(sha.clone());
        j.newest_checkpoint = Some(sha);
        self.release(job, "succeeded", now, batch)?;
        self.collect(job, batch)?;
        let j = self.jobs[job].clone();
        self.event(&j, "succeeded");
        for d in self.dependents.get(job).cloned().unwrap_or_default() {
            self.refresh_ready(&d);
        }
        Ok(Fenced::Current)
    }

    /// Records a failed attempt: retried (elsewhere, or on more memory) or failed for good.
    #[allow(clippy::too_many_arguments)] // one per field of the Fail RPC
    pub fn fail(
        &mut self,
        worker: &str,
        job: &str,
        token: u64,
        kind: FailureKind,
        reason: &str,
        now: u64,
        batch: &mut Batch,
    ) -> Result<FailOutcome, SchedError> {
        self.touch(worker, now)?;
        if self.fence(job, token)? == Fenced::Stale {
            return Ok(FailOutcome {
                fenced: Fenced::Stale,
                will_retry: false,
            });
        }
        let (reason, cause) = match kind {
            FailureKind::Node => {
                self.node_lacks
                    .entry(job.to_string())
                    .or_default()
                    .insert(worker.to_string(), reason.to_string());
                (reason.to_string(), Cause::Node)
            }
            FailureKind::Lost => (reason.to_string(), Cause::Lost),
            FailureKind::Transient
            | FailureKind::OutOfMemory
            | FailureKind::BadConfig
            | FailureKind::BadCheckpoint => self.judge_failure(job, kind, reason, batch)?,
        };
        let will_retry = self.end_attempt(job, &reason, cause, now, batch)?;
        Ok(FailOutcome {
            fenced: Fenced::Current,
            will_retry,
        })
    }

    /// The job's own failure (not Node, not Lost): whether it is retried, and the reason its
    /// attempt ends with. Out of memory asks for a bigger device next time, a bad checkpoint is
    /// never offered again, and a transient failure repeated the same way is not retried.
    fn judge_failure(
        &mut self,
        job: &str,
        kind: FailureKind,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<(String, Cause), SchedError> {
        let j = self
            .jobs
            .get_mut(job)
            .ok_or_else(|| SchedError::NoJob(job.to_string()))?;
        let resume_from = j.lease.as_ref().and_then(|l| l.resume_from.clone());
        let mut reason = reason.to_string();
        let retry = match kind {
            FailureKind::BadConfig => false,
            FailureKind::OutOfMemory => {
                let mem = j.lease.as_ref().and_then(|l| {
                    self.workers
                        .get(&l.worker)?
                        .rec
                        .devices
                        .iter()
                        .find(|d| d.index == l.device)
                        .map(|d| d.memory_mib)
                });
                if let Some(m) = mem {
                    j.min_gpu_memory_mib = j.min_gpu_memory_mib.max(m + 1);
                }
                true
            }
            FailureKind::BadCheckpoint
            | FailureKind::Transient
            | FailureKind::Lost
            | FailureKind::Node => true,
        };
        let signature = format!("{}|{kind:?}|{reason}", resume_from.as_deref().unwrap_or(""));
        let repeated = kind == FailureKind::Transient && j.last_failure == signature;
        j.last_failure = signature;
        let mut label = match kind {
            FailureKind::BadConfig => "bad config",
            FailureKind::OutOfMemory => "out of memory",
            FailureKind::BadCheckpoint => "bad checkpoint",
            FailureKind::Transient | FailureKind::Lost | FailureKind::Node => "failed",
        };
        if kind == FailureKind::BadCheckpoint {
            if let Some(sha) = &resume_from {
                reason = self.set_aside_bad_checkpoint(job, sha, &reason, batch)?;
            }
        }
        let retry = if repeated {
            label = "failed twice the same way";
            reason = format!(
                "{reason} (from {}; not transient, not retried)",
                resume_point(resume_from.as_deref(), &self.checkpoints)
            );
            false
        } else {
            retry
        };
        Ok((format!("{label}: {reason}"), Cause::Failure { retry }))
    }

    /// Marks the checkpoint `sha` an attempt of `job` could not resume from as bad (never offered
    /// again) and falls back to the newest intact resumable one before it; returns the reason
    /// that says so.
    fn set_aside_bad_checkpoint(
        &mut self,
        job: &str,
        sha: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<String, SchedError> {
        let desc = resume_point(Some(sha), &self.checkpoints);
        if let Some(c) = self.checkpoints.get_mut(sha) {
            c.bad = true;
            batch.put(Tree::Checkpoints, sha, &*c)?;
        }
        let bad_epoch = self.checkpoints.get(sha).map_or(u32::MAX, |c| c.epoch);
        let fallback = self
            .job_checkpoints
            .get(job)
            .into_iter()
            .flatten()
            .filter_map(|s| self.checkpoints.get(s))
            .filter(|c| !c.bad && !c.final_result && c.epoch < bad_epoch)
            .max_by_key(|c| (c.epoch, c.created_ms))
            .map(|c| c.sha256.clone());
        let next = resume_point(fallback.as_deref(), &self.checkpoints);
        if let Some(j) = self.jobs.get_mut(job) {
            if j.newest_checkpoint.as_deref() == Some(sha) {
                j.newest_checkpoint = fallback;
            }
        }
        Ok(format!(
            "{desc} cannot be resumed ({reason}); next attempt from {next}"
        ))
    }

    /// Ends the current attempt: requeue (avoiding its worker) when allowed, else fail.
    /// A failure uses up the job's attempts; a lost attempt does not, while it made progress or
    /// until `max_lost` lost attempts in a row made none. Returns whether the job was requeued.
    pub(super) fn end_attempt(
        &mut self,
        job: &str,
        reason: &str,
        cause: Cause,
        now: u64,
        batch: &mut Batch,
    ) -> Result<bool, SchedError> {
        let j = self
            .jobs
            .get_mut(job)
            .ok_or_else(|| SchedError::NoJob(job.to_string()))?;
        let worker = j
            .lease
            .as_ref()
            .map(|l| l.worker.clone())
            .unwrap_or_default();
        let requeue = match cause {
            Cause::Failure { retry } => {
                j.failures += 1;
                j.lost_streak = 0;
                retry && j.attempt < j.max_attempts
            }
            Cause::Lost => {
                let started_from = j.lease.as_ref().and_then(|l| l.resume_from.clone());
                let progressed =
                    j.newest_checkpoint.is_some() && j.newest_checkpoint != started_from;
                j.lost += 1;
                j.lost_streak = if progressed { 0 } else { j.lost_streak + 1 };
                // The attempt does not count against the failure budget.
                j.max_attempts += 1;
                j.lost_streak < j.max_lost
            }
            // The node's problem: the job waits for a worker that can run it, however many
            // cannot (the pending reason names them).
            Cause::Node => {
                j.max_attempts += 1;
                true
            }
        };
        j.last_error = format!("attempt {}: {reason}", j.attempt);
        j.avoid_workers = vec![worker];
        j.state = if requeue {
            JobState::Pending
        } else {
            JobState::Failed
        };
        if !requeue {
            match cause {
                Cause::Failure { retry: true } => {
                    j.last_error = format!(
                        "{} (gave up after {} failed attempts)",
                        j.last_error, j.failures
                    );
                }
                Cause::Lost => {
                    j.last_error = format!(
                        "{} (gave up: {} attempts lost in a row without progress; lost_retries is {})",
                        j.last_error, j.lost_streak, j.max_lost
                    );
                }
                Cause::Failure { retry: false } | Cause::Node => {}
            }
        }
        self.release(job, reason, now, batch)?;
        self.collect(job, batch)?;
        self.refresh_ready(job);
        let j = self.jobs[job].clone();
        self.event(&j, j.last_error.clone());
        Ok(requeue)
    }

    /// Drops a job's lease, frees its device, closes its attempt record and saves the job.
    pub(super) fn release(
        &mut self,
        job: &str,
        outcome: &str,
        now: u64,
        batch: &mut Batch,
    ) -> Result<(), SchedError> {
        let j = self
            .jobs
            .get_mut(job)
            .ok_or_else(|| SchedError::NoJob(job.to_string()))?;
        if let Some(l) = j.lease.take() {
            if self
                .busy
                .get(&(l.worker.clone(), l.device))
                .map(String::as_str)
                == Some(job)
            {
                self.busy.remove(&(l.worker.clone(), l.device));
            }
            let rec = AttemptRecord {
                job: job.to_string(),
                attempt: j.attempt,
                worker: l.worker,
                token: l.token,
                started_ms: l.started_ms,
                ended_ms: now,
                outcome: outcome.to_string(),
            };
            batch.put(Tree::Attempts, &attempt_key(job, j.attempt), &rec)?;
        }
        self.leased.remove(job);
        self.progress.remove(job);
        Ok(self.save_job(job, batch)?)
    }
}

/// Why an attempt ended without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The job's own failure; retried when `retry` and attempts remain.
    Failure { retry: bool },
    /// Lost to the infrastructure (worker death, lease expiry, drain, restart).
    Lost,
    /// The worker cannot run the job (a node failure): not the job's failure.
    Node,
}

/// Attempt record key: `<job>#<attempt, zero-padded>`.
pub fn attempt_key(job: &str, attempt: u32) -> String {
    format!("{job}#{attempt:04}")
}

/// Where an attempt resumed from, for a failure's reason: a checkpoint and its epoch, or a fresh
/// start.
fn resume_point(sha: Option<&str>, recs: &HashMap<String, Box<CheckpointRecord>>) -> String {
    match sha {
        Some(sha) => format!(
            "checkpoint {}… (epoch {})",
            sha.get(..12).unwrap_or(sha),
            recs.get(sha).map_or(0, |r| r.epoch)
        ),
        None => "a fresh start".to_string(),
    }
}
