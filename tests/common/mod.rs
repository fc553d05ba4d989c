//! Shared by the root package's end-to-end tests: the `ausweep` binary, a tiny sweep manifest,
//! store audits and F1 tables, on top of `ausweep-testkit` (processes, RPCs, waits).
#![allow(dead_code, unused_imports)] // each test crate uses a different part

use ausweep_coordinator::client;
use ausweep_coordinator::store::records::{AttemptRecord, ResultRecord};
use ausweep_coordinator::store::{blobs::Blobs, load_all, SledStore, Tree};
use ausweep_proto::v1;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ausweep_testkit::procs::{logs, Coordinator, Worker};
pub use ausweep_testkit::rpc::{self, all_succeeded, describe};
pub use ausweep_testkit::{ADMIN, HEARTBEAT_MS, JOIN, LEASE_MS};

/// The tests share two cores: one at a time keeps their timings honest.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A tiny sweep: 27 synthetic subjects x 8 frames at 32 px, one backbone, `folds` folds, a
/// quick frozen stage 1 and a fine-tuning stage 2 of `s2_epochs` epochs.
pub fn manifest(name: &str, folds: &[u32], s2_epochs: u32) -> String {
    format!(
        "name: {name}
dataset:
  source: {{kind: synthetic, subjects: 27, frames: 8, seed: 3}}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {{k: 3, seed: 0}}
  input_size: 32
  val_subjects: 1
run_folds: {folds:?}
backbones: [mobilenet_v2]
weights: none
loss: lsep
thresholds: tuned
stages:
  - freeze: backbone
    optimizer: {{lr: 1.0e-3}}
    epochs: 1
  - freeze: none
    optimizer: {{lr: 1.0e-4, backbone_lr: 1.0e-4}}
    epochs: {s2_epochs}
batch_size: 8
seed: 0
resources:
  device: cpu
retries: 3
"
    )
}

/// The trainer's result.json of `job_id`'s attempt `n`, on whichever worker ran it.
pub fn result_json(workers: &[&Worker], job_id: &str, n: u32) -> Option<serde_json::Value> {
    let name = ausweep_agent::job::dir_name(job_id);
    workers.iter().find_map(|w| {
        let f = w
            .dir
            .join("jobs")
            .join(&name)
            .join(format!("attempt-{n}"))
            .join("out/result.json");
        std::fs::read(f)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    })
}

pub fn attempt_dir(w: &Worker, job_id: &str, n: u32) -> PathBuf {
    w.dir
        .join("jobs")
        .join(ausweep_agent::job::dir_name(job_id))
        .join(format!("attempt-{n}"))
}

/// A photograph scikit-image ships (`astronaut`: one face; `chelsea`: a cat, no face), written
/// as PNG by the venv `make setup` builds.
pub fn photo(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.png"));
    ausweep_testkit::python::run(
        "mtcnn_reference.py",
        &["sample".as_ref(), out.as_os_str(), name.as_ref()],
    );
    out
}

/// Per job: (avg F1, per-AU F1) of its accepted result.
pub type F1Table = BTreeMap<String, (f64, Vec<(u32, f64)>)>;

/// Per job: the final checkpoint file in the coordinator's blob store.
pub type Checkpoints = BTreeMap<String, PathBuf>;

/// Waits (up to `limit`) for every job of the sweep to succeed; fails at once when one fails.
pub async fn wait_done(
    coord: &Coordinator,
    id: &str,
    limit: Duration,
    workers: &[&Worker],
) -> v1::SweepStatus {
    let mut admin = coord.admin().await;
    let ctx = || logs(workers);
    rpc::wait_sweep(
        &mut admin,
        id,
        "every job to succeed",
        limit,
        ctx,
        rpc::all_succeeded,
    )
    .await
}

/// Polls the sweep until `pred` holds; fails with the jobs and worker logs it last saw.
pub async fn wait_sweep(
    admin: &mut client::Admin,
    id: &str,
    limit: Duration,
    what: &str,
    workers: &[&Worker],
    pred: impl Fn(&v1::SweepStatus) -> bool,
) -> v1::SweepStatus {
    rpc::wait_sweep(admin, id, what, limit, || logs(workers), pred).await
}

/// Submits a manifest; returns the sweep id.
pub async fn submit(admin: &mut client::Admin, yaml: String) -> String {
    rpc::submit(admin, &yaml).await
}

/// The sweep's status.
pub async fn status(admin: &mut client::Admin, id: &str) -> v1::SweepStatus {
    rpc::sweep(admin, id).await
}

/// The `ausweep` binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ausweep"))
}

/// Starts a coordinator child under `root` (see `ausweep_testkit::procs::Coordinator`).
pub fn start_coordinator(root: &Path, lease_ms: u64) -> Coordinator {
    Coordinator::start(bin(), root, lease_ms)
}

/// Starts worker `name` against `url` (see `ausweep_testkit::procs::Worker`).
pub fn start_worker(url: &str, root: &Path, name: &str, env: &[(&str, &str)]) -> Worker {
    Worker::start(bin(), url, root, name, env)
}

/// Stops the coordinator and checks its store: one accepted attempt per job, every result's
/// checkpoint present. Returns the F1 table and the final checkpoints.
pub fn audit(coord: &mut Coordinator, jobs: usize) -> (F1Table, Checkpoints) {
    coord.stop();
    let store = SledStore::open(&coord.data.join("db")).unwrap();
    let blobs = Blobs::open(&coord.data.join("checkpoints"), 8 << 30).unwrap();
    let attempts: Vec<AttemptRecord> = load_all(&store, Tree::Attempts).unwrap();
    let results: Vec<ResultRecord> = load_all(&store, Tree::Results).unwrap();
    assert_eq!(results.len(), jobs, "one result per job");
    let mut table = F1Table::new();
    let mut checkpoints = Checkpoints::new();
    for r in &results {
        let accepted: Vec<&AttemptRecord> = attempts
            .iter()
            .filter(|a| a.job == r.job && a.outcome == "succeeded")
            .collect();
        assert_eq!(
            accepted.len(),
            1,
            "{}: accepted attempts {accepted:?} (all: {:?})",
            r.job,
            attempts
                .iter()
                .filter(|a| a.job == r.job)
                .collect::<Vec<_>>()
        );
        assert_eq!(accepted[0].attempt, r.attempt, "{}", r.job);
        assert!(
            blobs.contains(&r.checkpoint),
            "{}: checkpoint {} is not in the store",
            r.job,
            r.checkpoint
        );
        // Every result names the data it was trained on.
        match &r.dataset {
            Some(d) => assert!(
                !d.kind.is_empty() && d.crop == "eyes" && d.content_hash.len() > 8 && d.frames > 0,
                "{}: dataset identity {d:?}",
                r.job
            ),
            None => panic!("{}: the stored result has no dataset identity", r.job),
        }
        table.insert(
            r.job.clone(),
            (r.avg_f1, r.aus.iter().map(|a| (a.au, a.f1)).collect()),
        );
        checkpoints.insert(r.job.clone(), blobs.path(&r.checkpoint).unwrap());
    }
    (table, checkpoints)
}

/// Whether two F1 tables are equal to 1e-9 (which job and values differ when not).
pub fn same_table(a: &F1Table, b: &F1Table) -> Result<(), String> {
    if a.keys().ne(b.keys()) {
        return Err(format!("jobs differ: {:?} vs {:?}", a.keys(), b.keys()));
    }
    for (job, (fa, aus_a)) in a {
        let (fb, aus_b) = &b[job];
        let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
        if !close(*fa, *fb)
            || aus_a.len() != aus_b.len()
            || aus_a
                .iter()
                .zip(aus_b)
                .any(|(x, y)| x.0 != y.0 || !close(x.1, y.1))
        {
            return Err(format!("{job}: {fa} {aus_a:?} vs {fb} {aus_b:?}"));
        }
    }
    Ok(())
}

/// Per job: the attempt whose result was accepted, read from a stopped coordinator's store.
pub fn accepted_attempts(coord: &Coordinator) -> BTreeMap<String, u32> {
    assert!(
        coord.child.is_none(),
        "stop the coordinator before reading its store"
    );
    let store = SledStore::open(&coord.data.join("db")).unwrap();
    let results: Vec<ResultRecord> = load_all(&store, Tree::Results).unwrap();
    results.into_iter().map(|r| (r.job, r.attempt)).collect()
}
