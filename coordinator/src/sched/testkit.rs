//! Shared fixtures for the scheduler tests.

use super::state::State;
use super::types::*;
use crate::manifest;
use crate::plan;
use crate::store::records::{DeviceRecord, HeldWeights};
use crate::store::{Batch, MemStore, Store};

/// A small sweep: 2 backbones x 2 folds x 2 stages on CPU, one retry.
pub const SMALL: &str = "name: small
dataset:
  source: {kind: synthetic, subjects: 4, frames: 4}
  folds: !kfold {k: 2}
  input_size: 32
backbones: [mobilenet_v2, mobilenet_v1]
stages:
  - {freeze: backbone, optimizer: {lr: 0.001}, epochs: 1}
  - {freeze: none, optimizer: {lr: 0.00001}, epochs: 1}
batch_size: 4
resources: {device: any}
retries: 1
";

/// CPU devices.
pub fn cpus(n: u32) -> Vec<DeviceRecord> {
    (0..n)
        .map(|index| DeviceRecord {
            index,
            cuda: false,
            memory_mib: 0,
            name: "cpu".into(),
            healthy: true,
        })
        .collect()
}

/// One GPU of the given memory.
pub fn gpu(index: u32, memory_mib: u64) -> DeviceRecord {
    DeviceRecord {
        index,
        cuda: true,
        memory_mib,
        name: "gpu".into(),
        healthy: true,
    }
}

/// A state plus its store, committing after every step like the actor does.
pub struct Harness {
    /// The store.
    pub store: MemStore,
    /// The state.
    pub st: State,
    /// The clock, ms.
    pub now: u64,
}

impl Harness {
    /// An empty harness.
    pub fn new() -> Self {
        let timing = Timing {
            heartbeat_ms: 1_000,
            lease_ms: 3_000,
            no_worker_grace_ms: 10_000,
        };
        Self {
            store: MemStore::new(),
            st: State::new(timing, 1_000),
            now: 1_000,
        }
    }

    /// Runs one step and commits its writes.
    pub fn step<T>(&mut self, f: impl FnOnce(&mut State, u64, &mut Batch) -> T) -> T {
        let mut b = Batch::new();
        let out = f(&mut self.st, self.now, &mut b);
        self.store.commit(&b).unwrap();
        out
    }

    /// Submits a manifest text; returns the sweep id.
    pub fn submit(&mut self, text: &str) -> SubmitOutcome {
        let p = manifest::parse(text, "t.yaml").unwrap();
        let jobs = plan::expand(&p.sweep_id, &p.manifest).unwrap();
        let specs = plan::encode_specs(&p.sweep_id, &jobs).unwrap();
        self.step(|st, now, b| st.submit(&p, jobs, specs, now, b))
            .unwrap()
    }

    /// Registers a worker holding every weight file.
    pub fn register(&mut self, id: &str, devices: Vec<DeviceRecord>) {
        let names = ausweep_proto::job::all_weight_names();
        self.register_holding(id, devices, &names);
    }

    /// Registers a worker holding the weight files `names`.
    pub fn register_holding(&mut self, id: &str, devices: Vec<DeviceRecord>, names: &[&str]) {
        let reg = Registration {
            id: id.into(),
            hostname: "h".into(),
            devices,
            weights: held(names),
        };
        self.step(|st, now, b| st.register(reg, "hash".into(), now, b))
            .unwrap();
    }

    /// A job's spec as stored at submit.
    pub fn spec(&self, job: &str) -> ausweep_proto::JobSpec {
        let json = match self.st.spec_of(job) {
            Some((base, patch)) => crate::store::specs::render(&base, &patch, job).unwrap(),
            None => crate::store::specs::get_whole(&self.store, job)
                .unwrap()
                .unwrap(),
        };
        serde_json::from_str(&json).unwrap()
    }

    /// Leases for a device.
    pub fn lease(&mut self, w: &str, d: u32) -> Option<Assignment> {
        match self.step(|st, now, b| st.lease(w, d, now, b)).unwrap() {
            LeaseOutcome::Assigned(a) => Some(*a),
            LeaseOutcome::Nothing(_) => None,
        }
    }

    /// Records an upload (epoch checkpoint, or final weights when `final_result`).
    pub fn upload(
        &mut self,
        w: &str,
        a: &Assignment,
        sha: &str,
        epoch: u32,
        final_result: bool,
    ) -> Fenced {
        let up = Upload {
            sha: sha.to_string(),
            size: 1000 + epoch as u64,
            epoch,
            final_result,
            val_f1: Some(epoch as f64 / 10.0),
        };
        self.step(|st, now, b| st.checkpoint(w, &a.job_id, a.token, up, now, b))
            .unwrap()
    }

    /// Uploads the final weights' record and completes.
    pub fn complete(&mut self, w: &str, a: &Assignment) -> Fenced {
        let sha = format!("{:064x}", a.token);
        self.upload(w, a, &sha, 1, true);
        let r = crate::store::records::ResultRecord {
            job: String::new(),
            attempt: 0,
            aus: vec![],
            avg_f1: 0.5,
            params_total: 10,
            params_trainable: 5,
            train_seconds: 1.0,
            images_per_sec: 100.0,
            checkpoint: sha,
            dataset: None,
            intensity: None,
        };
        self.step(|st, now, b| st.complete(w, &a.job_id, a.token, r, now, b))
            .unwrap()
    }

    /// Reloads the state from the store, as a restarted coordinator does.
    pub fn restart(&mut self) {
        self.st = State::load(&self.store, self.st.timing, self.now).unwrap();
    }
}

/// Every weight file a job can need, as a worker holding them all advertises it.
pub fn all_weights() -> Vec<HeldWeights> {
    held(&ausweep_proto::job::all_weight_names())
}

/// The weight files `names`, as a worker advertises them.
pub fn held(names: &[&str]) -> Vec<HeldWeights> {
    names
        .iter()
        .map(|n| HeldWeights {
            name: (*n).into(),
            sha256: "0".repeat(64),
        })
        .collect()
}
