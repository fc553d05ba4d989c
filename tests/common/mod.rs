//! Shared by the end-to-end tests: tokens, a tiny sweep manifest, worker child processes, and
//! polling the coordinator until a sweep reaches a state.
#![allow(dead_code)] // each test crate uses a different part

use ausweep_coordinator::client;
use ausweep_proto::v1;
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
