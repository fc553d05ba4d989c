//! Shared by the end-to-end tests: tokens, a tiny sweep manifest, worker child processes, and
//! polling the coordinator until a sweep reaches a state.
#![allow(dead_code)] // each test crate uses a different part

use ausweep_coordinator::client;
use ausweep_coordinator::store::records::{AttemptRecord, ResultRecord};
use ausweep_coordinator::store::{blobs::Blobs, load_all, SledStore, Tree};
use ausweep_proto::v1;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "admin-token-0123456789";
pub const JOIN: &str = "join-token-0123456789";

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

/// A worker child process; killed on drop so a failing test leaves nothing behind.
pub struct Worker {
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(url: &str, root: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let token = root.join("join-token");
        std::fs::write(&token, JOIN).unwrap();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = root.join(format!("{name}.log"));
        let mut c = Command::new(env!("CARGO_BIN_EXE_ausweep"));
        c.args([
            "worker",
            "--allow-cpu",
            "--coordinator",
            url,
            "--name",
            name,
        ])
        .arg("--join-token-file")
        .arg(&token)
        .arg("--work-dir")
        .arg(&dir)
        .args(["--drain-timeout-s", "60"])
        .env("CUDA_VISIBLE_DEVICES", "")
        // Two CPU workers share two cores: one libtorch thread per trainer, not two spinning.
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            // Appended: a restarted worker keeps its earlier log.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        );
        for (k, v) in env {
            c.env(k, v);
        }
        Worker {
            child: c.spawn().unwrap(),
            dir,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < until,
                "worker did not exit within {limit:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn submit(admin: &mut client::Admin, yaml: String) -> String {
    admin
        .submit(v1::SubmitRequest {
            manifest_yaml: yaml,
            file_name: "tiny.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep_id
}

pub async fn status(admin: &mut client::Admin, id: &str) -> v1::SweepStatus {
    admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub fn describe(st: &v1::SweepStatus) -> String {
    st.jobs
        .iter()
        .map(|j| {
            format!(
                "{} {:?} attempt {} worker {:?} pending {:?} error {:?}",
                j.job_id,
                j.state(),
                j.attempt,
                j.worker_id,
                j.pending_reason,
                j.last_error
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls the sweep until `pred` holds; panics after `limit` with the jobs and worker logs.
pub async fn wait_sweep(
    admin: &mut client::Admin,
    id: &str,
    limit: Duration,
    what: &str,
    workers: &[&Worker],
    pred: impl Fn(&v1::SweepStatus) -> bool,
) -> v1::SweepStatus {
    let until = Instant::now() + limit;
    loop {
        let st = status(admin, id).await;
        if pred(&st) {
            return st;
        }
        let failed = st.jobs.iter().any(|j| j.state() == v1::JobState::Failed);
        if failed || Instant::now() > until {
            let logs: Vec<String> = workers
                .iter()
                .map(|w| format!("--- {}\n{}", w.log.display(), w.log()))
                .collect();
            panic!(
                "gave up (a job failed, or {limit:?} passed) waiting for {what}; jobs:\n{}\n{}",
                describe(&st),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn all_succeeded(st: &v1::SweepStatus) -> bool {
    !st.jobs.is_empty() && st.jobs.iter().all(|j| j.state() == v1::JobState::Succeeded)
}

/// The trainer's result.json of `job_id`'s attempt `n`, on whichever worker ran it.
pub fn result_json(workers: &[&Worker], job_id: &str, n: u32) -> Option<serde_json::Value> {
    let name = ausweep_worker::agent::job::dir_name(job_id);
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
        .join(ausweep_worker::agent::job::dir_name(job_id))
        .join(format!("attempt-{n}"))
}

/// A photograph scikit-image ships (`astronaut`: one face; `chelsea`: a cat, no face), written
/// as PNG by the venv `make setup` builds.
pub fn photo(dir: &Path, name: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join(format!("{name}.png"));
    let st = Command::new(repo.join(".venv/bin/python"))
        .arg(repo.join("scripts/mtcnn_reference.py"))
        .arg("sample")
        .arg(&out)
        .arg(name)
        .status()
        .expect("run .venv/bin/python (make setup builds it)");
    assert!(st.success(), "writing the {name} photo");
    out
}

/// A coordinator child process on a fixed port and data dir; SIGKILLed on drop.
pub struct Coordinator {
    pub child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    pub log: PathBuf,
    pub lease_ms: u64,
    /// Extra environment for the next spawn (e.g. a fault to inject).
    pub env: Vec<(String, String)>,
}

impl Coordinator {
    pub fn start(root: &Path, lease_ms: u64) -> Self {
        std::fs::create_dir_all(root).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Coordinator {
            child: None,
            port,
            data: root.join("coord"),
            log: root.join("coordinator.log"),
            lease_ms,
            env: Vec::new(),
        };
        c.spawn();
        c
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ausweep"))
            .args([
                "coordinator",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .arg("--data-dir")
            .arg(&self.data)
            .args([
                "--heartbeat-ms",
                "500",
                "--lease-ms",
                &self.lease_ms.to_string(),
            ])
            .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
            .env("AUSWEEP_JOIN_TOKEN", JOIN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the store is closed cleanly.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An admin client, once the coordinator answers.
    pub async fn admin(&self) -> client::Admin {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = client::connect(&self.url(), None).await {
                let mut a = client::admin(ch, ADMIN).unwrap();
                if a.list_sweeps(v1::ListSweepsRequest {}).await.is_ok() {
                    return a;
                }
            }
            assert!(
                Instant::now() < until,
                "coordinator did not come up:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Per job: (avg F1, per-AU F1) of its accepted result.
pub type F1Table = BTreeMap<String, (f64, Vec<(u32, f64)>)>;

/// Per job: the final checkpoint file in the coordinator's blob store.
pub type Checkpoints = BTreeMap<String, PathBuf>;

pub async fn wait_done(
    coord: &Coordinator,
    id: &str,
    limit: Duration,
    workers: &[&Worker],
) -> v1::SweepStatus {
    let until = Instant::now() + limit;
    let mut admin = coord.admin().await;
    loop {
        if let Ok(st) = admin
            .get_sweep(v1::GetSweepRequest {
                sweep_id: id.into(),
            })
            .await
        {
            let st = st.into_inner();
            if all_succeeded(&st) {
                return st;
            }
            let failed = st.jobs.iter().any(|j| j.state() == v1::JobState::Failed);
            if failed || Instant::now() > until {
                let logs: Vec<String> = workers
                    .iter()
                    .map(|w| format!("--- {}\n{}", w.log.display(), w.log()))
                    .collect();
                panic!(
                    "sweep did not finish (a job failed, or {limit:?} passed):\n{}\n{}",
                    describe(&st),
                    logs.join("\n")
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
