//! The scheduler's state machine. Every method takes the time and a [`Batch`] to which it adds
//! the writes that make its change durable; the caller commits the batch before answering.
//!
//! One [`State`], its methods split by concern: this file holds the tables, loading and the
//! helpers every part shares; `registry` sweeps and workers, `leasing` placement and leases,
//! `retention` checkpoints kept and collected, `attempts` how an attempt ends.

mod attempts;
mod leasing;
mod registry;
mod retention;

pub use attempts::attempt_key;
pub(crate) use leasing::{describe, fits};

use super::types::*;
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

    /// A job's sweep's base spec and the job's patch of it; `None` for a job whose spec an
    /// older store kept whole.
    pub fn spec_of(&self, job: &str) -> Option<(std::sync::Arc<serde_json::Value>, Box<str>)> {
        let j = self.jobs.get(job)?;
        let base = self.spec_bases.get(&j.sweep)?;
        Some((base.clone(), j.spec_patch.clone()?))
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
