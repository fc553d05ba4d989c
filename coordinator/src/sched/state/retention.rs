//! Checkpoints kept and collected: recording uploads, what retention keeps, what goes.

use super::State;
use crate::sched::types::*;
use crate::store::records::*;
use crate::store::{Batch, Tree};
use std::collections::HashSet;

impl State {
    /// Registers an uploaded (durable) checkpoint; a current attempt's epoch checkpoint becomes
    /// the resume point (and supersedes the one before), a final one only waits for Complete.
    pub fn checkpoint(
        &mut self,
        worker: &str,
        job: &str,
        token: u64,
        up: Upload,
        now: u64,
        batch: &mut Batch,
    ) -> Result<Fenced, SchedError> {
        self.touch(worker, now)?;
        let fenced = self.fence(job, token)?;
        let attempt = self
            .jobs
            .get(job)
            .ok_or_else(|| SchedError::NoJob(job.to_string()))?
            .attempt;
        if !self.checkpoints.contains_key(&up.sha) {
            let rec = CheckpointRecord {
                sha256: up.sha.clone(),
                size: up.size,
                job: job.to_string(),
                attempt,
                epoch: up.epoch,
                created_ms: now,
                final_result: up.final_result,
                bad: false,
                val_f1: up.val_f1,
            };
            batch.put(Tree::Checkpoints, &up.sha, &rec)?;
            self.index_checkpoint(rec);
        }
        if fenced == Fenced::Current && !up.final_result {
            if let Some(j) = self.jobs.get_mut(job) {
                j.newest_checkpoint = Some(up.sha.clone());
            }
            self.save_job(job, batch)?;
        }
        self.collect(job, batch)?;
        Ok(fenced)
    }

    pub(super) fn index_checkpoint(&mut self, c: CheckpointRecord) {
        self.checkpoint_bytes += c.size;
        self.job_checkpoints
            .entry(c.job.clone())
            .or_default()
            .push(c.sha256.clone());
        self.checkpoints.insert(c.sha256.clone(), Box::new(c));
    }

    /// Checkpoints a job must keep: its resume point, its final weights and what retention asks.
    fn kept(&self, job: &str) -> HashSet<String> {
        let mut keep = HashSet::new();
        let Some(j) = self.jobs.get(job) else {
            return keep;
        };
        keep.extend(j.newest_checkpoint.iter().cloned());
        keep.extend(j.final_checkpoint.iter().cloned());
        let running = j.lease.is_some() && j.state == JobState::Leased;
        if let Some(l) = &j.lease {
            // The running attempt may still be downloading its resume point.
            keep.extend(l.resume_from.iter().cloned());
        }
        if let Some(r) = self.results.get(job) {
            keep.insert(r.checkpoint.clone());
        }
        let mine = self.job_checkpoints.get(job).cloned().unwrap_or_default();
        // The running attempt's final weights wait for its Complete.
        keep.extend(
            mine.iter()
                .filter_map(|s| self.checkpoints.get(s))
                .filter(|c| running && c.final_result && c.attempt == j.attempt)
                .map(|c| c.sha256.clone()),
        );
        let epochs = mine
            .iter()
            .filter_map(|s| self.checkpoints.get(s))
            .filter(|c| !c.final_result && !c.bad);
        match j.keep {
            crate::manifest::KeepCheckpoints::All => {
                keep.extend(epochs.map(|c| c.sha256.clone()));
            }
            // The best so far while running (to be chosen at the end), the best after success.
            crate::manifest::KeepCheckpoints::Best => {
                let best = epochs.filter(|c| c.val_f1.is_some()).max_by(|a, b| {
                    let (x, y) = (a.val_f1.unwrap_or(0.0), b.val_f1.unwrap_or(0.0));
                    x.total_cmp(&y).then(b.epoch.cmp(&a.epoch))
                });
                keep.extend(best.map(|c| c.sha256.clone()));
            }
            crate::manifest::KeepCheckpoints::Final => {}
        }
        keep
    }

    /// Deletes the records of a job's checkpoints that retention no longer keeps; their blobs
    /// are removed only after this round's writes are durable (see [`State::take_garbage`]).
    pub(super) fn collect(&mut self, job: &str, batch: &mut Batch) -> Result<(), SchedError> {
        let keep = self.kept(job);
        let Some(mine) = self.job_checkpoints.get_mut(job) else {
            return Ok(());
        };
        let (kept, gone): (Vec<String>, Vec<String>) =
            mine.drain(..).partition(|s| keep.contains(s));
        *mine = kept;
        for sha in gone {
            if let Some(c) = self.checkpoints.remove(&sha) {
                self.checkpoint_bytes = self.checkpoint_bytes.saturating_sub(c.size);
            }
            batch.delete(Tree::Checkpoints, &sha);
            self.garbage.push(sha);
        }
        Ok(())
    }

    /// Blobs whose records are gone (durably, once the current round commits).
    pub fn take_garbage(&mut self) -> Vec<String> {
        std::mem::take(&mut self.garbage)
    }

    /// Bytes of all recorded checkpoints.
    pub fn checkpoint_bytes(&self) -> u64 {
        self.checkpoint_bytes
    }

    /// Those of `names` that no checkpoint record names.
    pub fn unrecorded_checkpoints(&self, names: Vec<String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|n| !self.checkpoints.contains_key(n))
            .collect()
    }
}
