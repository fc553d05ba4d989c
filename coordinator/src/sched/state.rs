//! The scheduler's state machine. Every method takes the time and a [`Batch`] to which it adds
//! the writes that make its change durable; the caller commits the batch before answering.

use super::types::*;
use crate::manifest::{DeviceReq, Parsed};
use crate::plan::PlannedJob;
use crate::store::records::*;
use crate::store::{codec, decode, load_all, Batch, Store, StoreError, Tree};
use ausweep_proto::JobSpec;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Meta key of the next fencing token.
const META_TOKEN: &str = "next_token";
/// A job record and the spec a record of an older store carries inline.
type LoadedJob = (JobRecord, Option<Box<JobSpec>>);

/// Every job record, with the spec a record of an older store carries inline.
fn load_jobs(store: &dyn Store) -> Result<Vec<LoadedJob>, StoreError> {
    store
        .scan(Tree::Jobs)?
        .into_iter()
        .map(|(k, v)| {
            let job: JobRecord = decode(Tree::Jobs, &k, &v)?;
            let legacy = if codec::is_json(&v) {
                codec::decode::<LegacySpec>(Tree::Jobs, &k, &v)?.spec
            } else {
                None
            };
            Ok((job, legacy))
        })
        .collect()
}

/// Meta key of the next job sequence number.
const META_SEQ: &str = "next_seq";

type ReadyKey = (Reverse<i32>, u64, String);

/// A worker known to this coordinator.
#[derive(Debug, Clone)]
pub(crate) struct LiveWorker {
    pub(crate) rec: WorkerRecord,
    pub(crate) last_seen_ms: u64,
}

/// Everything the scheduler knows; rebuilt from the store on start.
#[derive(Debug)]
pub struct State {
    pub(crate) timing: Timing,
    pub(crate) sweeps: HashMap<String, SweepRecord>,
    pub(crate) sweep_jobs: HashMap<String, Vec<String>>,
    /// Each sweep's base spec (jobs hold their patch of it).
    spec_bases: HashMap<String, std::sync::Arc<serde_json::Value>>,
    /// Boxed, like the results: the tables stay small and grow without copying the records.
    pub(crate) jobs: HashMap<String, Box<JobRecord>>,
    pub(crate) ready: BTreeSet<ReadyKey>,
    pub(crate) dependents: HashMap<String, Vec<String>>,
    pub(crate) leased: HashSet<String>,
    /// Lease deadline last written to the store, per leased job.
    persisted_deadline: HashMap<String, u64>,
    pub(crate) workers: HashMap<String, LiveWorker>,
    pub(crate) busy: HashMap<(String, u32), String>,
    pub(crate) checkpoints: HashMap<String, Box<CheckpointRecord>>,
    /// Checkpoints by the job that uploaded them.
    job_checkpoints: HashMap<String, Vec<String>>,
    /// Bytes of all recorded checkpoints.
    checkpoint_bytes: u64,
    /// Checkpoints whose records this round deleted: their blobs go once the round commits.
    garbage: Vec<String>,
    pub(crate) results: HashMap<String, Box<ResultRecord>>,
    pub(crate) progress: HashMap<String, Progress>,
    next_token: u64,
    next_seq: u64,
    pub(crate) started_ms: u64,
    pub(crate) last_worker_seen_ms: u64,
    events: Vec<Event>,
    /// Per job, the workers that reported they cannot run it (a node failure) and why. Kept in
    /// memory only: after a restart a worker that still cannot run it says so again.
    pub(crate) node_lacks: HashMap<String, BTreeMap<String, String>>,
}

fn ready_key(j: &JobRecord) -> ReadyKey {
    (Reverse(j.priority), j.seq, j.id.clone())
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

impl State {
    /// An empty state.
    pub fn new(timing: Timing, now: u64) -> Self {
        Self {
            timing,
            sweeps: HashMap::new(),
            sweep_jobs: HashMap::new(),
            spec_bases: HashMap::new(),
            jobs: HashMap::new(),
            ready: BTreeSet::new(),
            dependents: HashMap::new(),
            leased: HashSet::new(),
            persisted_deadline: HashMap::new(),
            workers: HashMap::new(),
            busy: HashMap::new(),
            checkpoints: HashMap::new(),
            job_checkpoints: HashMap::new(),
            checkpoint_bytes: 0,
            garbage: Vec::new(),
            results: HashMap::new(),
            progress: HashMap::new(),
            next_token: 1,
            next_seq: 0,
            started_ms: now,
            last_worker_seen_ms: 0,
            events: Vec::new(),
            node_lacks: HashMap::new(),
        }
    }

    /// Rebuilds the state from the store; leases keep their deadlines.
    pub fn load(store: &dyn Store, timing: Timing, now: u64) -> Result<Self, StoreError> {
        let mut st = Self::new(timing, now);
        // The big trees decode on their own threads (a restart is mostly JSON decoding).
        let (checkpoints, results, jobs) = std::thread::scope(|s| {
            let checkpoints = s.spawn(|| load_all::<CheckpointRecord>(store, Tree::Checkpoints));
            let results = s.spawn(|| load_all::<ResultRecord>(store, Tree::Results));
            let jobs = load_jobs(store);
            let lost = |_| StoreError::Backend("a decoding thread panicked".into());
            (
                checkpoints.join().map_err(lost),
                results.join().map_err(lost),
                jobs,
            )
        });
        for s in load_all::<SweepRecord>(store, Tree::Sweeps)? {
            st.sweeps.insert(s.id.clone(), s);
        }
        for w in load_all::<WorkerRecord>(store, Tree::Workers)? {
            st.workers.insert(
                w.id.clone(),
                LiveWorker {
                    rec: w,
                    last_seen_ms: 0,
                },
            );
        }
        for c in checkpoints?? {
            st.index_checkpoint(c);
        }
        for r in results?? {
            st.results.insert(r.job.clone(), Box::new(r));
        }
        let mut jobs = jobs?;
        jobs.sort_by_key(|(j, _)| j.seq);
        // Records from before specs had their own tree: move each spec there, once.
        let mut moved = Batch::new();
        for (j, legacy) in jobs.iter_mut() {
            if let Some(spec) = legacy.take() {
                j.epochs = spec.train.epochs;
                j.needs = spec.weights_need();
                let json = serde_json::to_vec(&spec)
                    .map_err(|e| codec::codec_error(Tree::Specs, &j.id, e))?;
                moved.put_raw(Tree::Specs, &j.id, json);
                moved.put(Tree::Jobs, &j.id, &*j)?;
            }
        }
        if !moved.is_empty() {
            store.commit(&moved)?;
        }
        let jobs = jobs.into_iter().map(|(j, _)| j);
        for j in jobs {
            st.next_seq = st.next_seq.max(j.seq + 1);
            st.sweep_jobs
                .entry(j.sweep.clone())
                .or_default()
                .push(j.id.clone());
            for d in &j.depends_on {
                st.dependents
                    .entry(d.clone())
                    .or_default()
                    .push(j.id.clone());
            }
            if let Some(l) = &j.lease {
                st.next_token = st.next_token.max(l.token + 1);
                st.busy.insert((l.worker.clone(), l.device), j.id.clone());
                st.leased.insert(j.id.clone());
                st.persisted_deadline.insert(j.id.clone(), l.deadline_ms);
            }
            st.jobs.insert(j.id.clone(), Box::new(j));
        }
        if let Some(v) = store.get(Tree::Meta, META_TOKEN)? {
            st.next_token = st
                .next_token
                .max(crate::store::decode(Tree::Meta, META_TOKEN, &v)?);
        }
        for (sweep, specs) in crate::store::specs::SweepSpecs::load_all(store)? {
            for (id, patch) in specs.patches {
                if let Some(j) = st.jobs.get_mut(&id) {
                    j.spec_patch = Some(patch);
                }
            }
            st.spec_bases.insert(sweep, specs.base);
        }
        let ids: Vec<String> = st.jobs.keys().cloned().collect();
        for id in ids {
            st.refresh_ready(&id);
        }
        Ok(st)
    }

    /// Takes the events produced since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn event(&mut self, job: &JobRecord, message: impl Into<String>) {
        self.events.push(Event {
            sweep: job.sweep.clone(),
            job: job.id.clone(),
            state: job.state,
            attempt: job.attempt,
            progress: None,
            message: message.into(),
        });
    }

    fn deps_done(&self, j: &JobRecord) -> bool {
        j.depends_on.iter().all(|d| {
            self.jobs
                .get(d)
                .is_some_and(|x| x.state == JobState::Succeeded)
        })
    }

    /// Puts a pending job with satisfied dependencies in the ready set (or takes it out).
    fn refresh_ready(&mut self, id: &str) {
        let Some(j) = self.jobs.get(id) else { return };
        let key = ready_key(j);
        let cancelled = self.sweeps.get(&j.sweep).is_some_and(|s| s.cancelled);
        if j.state == JobState::Pending && !cancelled && self.deps_done(j) {
            self.ready.insert(key);
        } else {
            self.ready.remove(&key);
        }
    }

    fn save_job(&mut self, id: &str, batch: &mut Batch) -> Result<(), StoreError> {
        if let Some(j) = self.jobs.get(id) {
            batch.put(Tree::Jobs, id, j)?;
            match &j.lease {
                Some(l) => {
                    self.persisted_deadline
                        .insert(id.to_string(), l.deadline_ms);
                }
                None => {
                    self.persisted_deadline.remove(id);
                }
            }
        }
        Ok(())
    }

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

    fn touch(&mut self, worker: &str, now: u64) -> Result<(), SchedError> {
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

    /// Extends one lease if (job, token, worker) holds it; persists at most every half lease.
    fn extend(
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
        let mut chosen = None;
        let holder = &self.workers[worker].rec;
        for (_, _, id) in &self.ready {
            let j = &self.jobs[id];
            if !fits(j, &dev) || !holder.holds(j.needs.names()) || self.cannot_run(id, worker) {
                continue;
            }
            if j.avoid_workers.iter().any(|w| w == worker) && self.someone_else_fits(j, worker, now)
            {
                continue;
            }
            chosen = Some(id.clone());
            break;
        }
        let Some(id) = chosen else {
            let lacking: BTreeSet<&str> = self
                .ready
                .iter()
                .map(|(_, _, id)| &self.jobs[id])
                .filter(|j| fits(j, &dev))
                .flat_map(|j| j.needs.names().iter().copied())
                .filter(|n| !self.workers[worker].rec.holds(&[n]))
                .collect();
            let reason = if self.ready.is_empty() {
                "no runnable job".to_string()
            } else if !lacking.is_empty() {
                format!(
                    "ready jobs need weights this worker does not hold: {}",
                    lacking.into_iter().collect::<Vec<_>>().join(", ")
                )
            } else {
                format!("no runnable job fits device {device} ({})", describe(&dev))
            };
            return Ok(LeaseOutcome::Nothing(reason));
        };
        let token = self.next_token;
        self.next_token += 1;
        batch.put(Tree::Meta, META_TOKEN, &self.next_token)?;
        let deadline_ms = now + self.timing.lease_ms;
        let j = self
            .jobs
            .get_mut(&id)
            .ok_or_else(|| SchedError::NoJob(id.clone()))?;
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
            job: id.clone(),
            attempt: j.attempt,
            worker: worker.to_string(),
            token,
            started_ms: now,
            ended_ms: 0,
            outcome: "running".into(),
        };
        batch.put(Tree::Attempts, &attempt_key(&id, j.attempt), &attempt)?;
        let deps = j.depends_on.clone();
        let j = j.clone();
        // The stage a job continues from (a data-preparation job's artifact is no model).
        let init_checkpoint = deps
            .iter()
            .filter_map(|d| self.jobs.get(d))
            .find(|d| d.key.stage != crate::plan::PREPARE_STAGE)
            .and_then(|d| d.final_checkpoint.clone());
        let spec = self.spec_of(&id);
        let a = Assignment {
            job_id: id.clone(),
            spec,
            attempt: j.attempt,
            token,
            deadline_ms,
            init_checkpoint,
            resume_checkpoint: j.newest_checkpoint.clone(),
            device,
        };
        self.busy.insert((worker.to_string(), device), id.clone());
        self.leased.insert(id.clone());
        self.save_job(&id, batch)?;
        self.event(&j, format!("leased to {worker} device {device}"));
        Ok(LeaseOutcome::Assigned(Box::new(a)))
    }

    /// A job's sweep's base spec and the job's patch of it; `None` for a job whose spec an
    /// older store kept whole.
    pub fn spec_of(&self, job: &str) -> Option<(std::sync::Arc<serde_json::Value>, Box<str>)> {
        let j = self.jobs.get(job)?;
        let base = self.spec_bases.get(&j.sweep)?;
        Some((base.clone(), j.spec_patch.clone()?))
    }

    /// Checks a report's fencing token.
    fn fence(&self, job: &str, token: u64) -> Result<Fenced, SchedError> {
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

    fn index_checkpoint(&mut self, c: CheckpointRecord) {
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
    fn collect(&mut self, job: &str, batch: &mut Batch) -> Result<(), SchedError> {
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

    /// Completes a job with its result; a stale attempt's result is discarded.
    pub fn complete(
        &mut self,
        worker: &str,
        job: &str,
        token: u64,
        result: JobResult,
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
        let attempt = j.attempt;
        let rec = ResultRecord {
            job: job.to_string(),
            attempt,
            aus: result.aus,
            avg_f1: result.avg_f1,
            params_total: result.params_total,
            params_trainable: result.params_trainable,
            train_seconds: result.train_seconds,
            images_per_sec: result.images_per_sec,
            checkpoint: result.checkpoint.clone(),
            dataset: result.dataset,
        };
        batch.put(Tree::Results, job, &rec)?;
        self.results.insert(job.to_string(), Box::new(rec));
        j.state = JobState::Succeeded;
        j.final_checkpoint = Some(result.checkpoint.clone());
        j.newest_checkpoint = Some(result.checkpoint);
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
        if kind == FailureKind::Node {
            self.node_lacks
                .entry(job.to_string())
                .or_default()
                .insert(worker.to_string(), reason.to_string());
            let will_retry = self.end_attempt(job, reason, Cause::Node, now, batch)?;
            return Ok(FailOutcome {
                fenced: Fenced::Current,
                will_retry,
            });
        }
        if kind == FailureKind::Lost {
            let will_retry = self.end_attempt(job, reason, Cause::Lost, now, batch)?;
            return Ok(FailOutcome {
                fenced: Fenced::Current,
                will_retry,
            });
        }
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
        let at = |c: &Option<String>, recs: &HashMap<String, Box<CheckpointRecord>>| match c {
            Some(sha) => format!(
                "checkpoint {}… (epoch {})",
                sha.get(..12).unwrap_or(sha),
                recs.get(sha).map_or(0, |r| r.epoch)
            ),
            None => "a fresh start".to_string(),
        };
        if kind == FailureKind::BadCheckpoint {
            if let Some(sha) = &resume_from {
                // Never offer it again: fall back to the newest intact resumable one before it.
                let desc = at(&resume_from, &self.checkpoints);
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
                let next = at(&fallback, &self.checkpoints);
                if let Some(j) = self.jobs.get_mut(job) {
                    if j.newest_checkpoint.as_deref() == Some(sha.as_str()) {
                        j.newest_checkpoint = fallback;
                    }
                }
                reason = format!("{desc} cannot be resumed ({reason}); next attempt from {next}");
            }
        }
        let retry = if repeated {
            label = "failed twice the same way";
            reason = format!(
                "{reason} (from {}; not transient, not retried)",
                at(&resume_from, &self.checkpoints)
            );
            false
        } else {
            retry
        };
        let will_retry = self.end_attempt(
            job,
            &format!("{label}: {reason}"),
            Cause::Failure { retry },
            now,
            batch,
        )?;
        Ok(FailOutcome {
            fenced: Fenced::Current,
            will_retry,
        })
    }

    /// Ends the current attempt: requeue (avoiding its worker) when allowed, else fail.
    /// A failure uses up the job's attempts; a lost attempt does not, while it made progress or
    /// until `max_lost` lost attempts in a row made none. Returns whether the job was requeued.
    fn end_attempt(
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
    fn release(
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

    /// Every job id (for checks).
    pub fn job_ids(&self) -> impl Iterator<Item = &String> {
        self.jobs.keys()
    }

    /// One job.
    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.get(id).map(|j| &**j)
    }

    /// The current fencing-token counter (for checks).
    pub fn next_token(&self) -> u64 {
        self.next_token
    }
}

/// Why an attempt ended without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
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

pub(crate) fn describe(d: &DeviceRecord) -> String {
    if d.cuda {
        format!("cuda, {} MiB", d.memory_mib)
    } else {
        "cpu".into()
    }
}
