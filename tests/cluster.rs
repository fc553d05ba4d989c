//! End to end on loopback: a coordinator (in-process) and `ausweep worker --allow-cpu` child
//! processes run tiny sweeps; trainers and workers are killed, uploads corrupted, workers drained.

use ausweep_coordinator::client;
use ausweep_coordinator::sched::Timing;
use ausweep_coordinator::{serve, Config};
use ausweep_proto::v1;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789";
const JOIN: &str = "join-token-0123456789";

/// The tests share two cores: one at a time keeps their timings honest.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A tiny sweep: 27 synthetic subjects x 8 frames at 32 px, one backbone, `folds` folds, a
/// quick frozen stage 1 and a fine-tuning stage 2 of `s2_epochs` epochs.
fn manifest(name: &str, folds: &[u32], s2_epochs: u32) -> String {
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
struct Worker {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Worker {
    fn start(url: &str, root: &Path, name: &str, env: &[(&str, &str)]) -> Self {
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        Worker {
            child: c.spawn().unwrap(),
            dir,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Waits for the process to exit.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
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

async fn coordinator(dir: &Path) -> (ausweep_coordinator::Handle, client::Admin, String) {
    let mut cfg = Config::local(ADMIN, JOIN, Some(dir.to_path_buf()));
    // A short lease so a killed worker's job comes back quickly.
    cfg.timing = Timing {
        heartbeat_ms: 500,
        lease_ms: 2_500,
        no_worker_grace_ms: 60_000,
    };
    cfg.expiry_every = Duration::from_millis(200);
    let h = serve(cfg).await.unwrap();
    let url = format!("http://{}", h.addr);
    let ch = client::connect(&url, None).await.unwrap();
    (h, client::admin(ch, ADMIN).unwrap(), url)
}

async fn submit(admin: &mut client::Admin, yaml: String) -> String {
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

async fn status(admin: &mut client::Admin, id: &str) -> v1::SweepStatus {
    admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn describe(st: &v1::SweepStatus) -> String {
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
async fn wait_sweep(
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

fn all_succeeded(st: &v1::SweepStatus) -> bool {
    !st.jobs.is_empty() && st.jobs.iter().all(|j| j.state() == v1::JobState::Succeeded)
}

/// The trainer's result.json of `job_id`'s attempt `n`, on whichever worker ran it.
fn result_json(workers: &[&Worker], job_id: &str, n: u32) -> Option<serde_json::Value> {
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

fn attempt_dir(w: &Worker, job_id: &str, n: u32) -> PathBuf {
    w.dir
        .join("jobs")
        .join(ausweep_worker::agent::job::dir_name(job_id))
        .join(format!("attempt-{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_finish_a_sweep_through_a_killed_trainer_and_a_corrupted_upload() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut admin, url) = coordinator(&tmp.path().join("coord")).await;
    let id = submit(&mut admin, manifest("tiny", &[1, 2], 3)).await;
    // Worker `a` corrupts its first checkpoint upload: the coordinator must reject it and the
    // agent must send it again.
    let a = Worker::start(
        &url,
        tmp.path(),
        "a",
        &[("AUSWEEP_FAULT_CORRUPT_UPLOADS", "1")],
    );
    let b = Worker::start(&url, tmp.path(), "b", &[]);

    // Kill the first stage-2 trainer right after its epoch-1 checkpoint reached the coordinator.
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(120),
        "a stage-2 job with an uploaded epoch checkpoint",
        &[&a, &b],
        |st| {
            st.jobs.iter().any(|j| {
                j.stage == 2
                    && j.state() == v1::JobState::Leased
                    && !j.newest_checkpoint_sha256.is_empty()
            })
        },
    )
    .await;
    let victim = st
        .jobs
        .iter()
        .find(|j| {
            j.stage == 2
                && j.state() == v1::JobState::Leased
                && !j.newest_checkpoint_sha256.is_empty()
        })
        .unwrap()
        .clone();
    let holder = if victim.worker_id == "a" { &a } else { &b };
    let pid_file = attempt_dir(holder, &victim.job_id, victim.attempt).join("trainer.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(
        killed.success(),
        "trainer {pid} of {} had already exited",
        victim.job_id
    );

    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(180),
        "every job to succeed",
        &[&a, &b],
        all_succeeded,
    )
    .await;
    assert_eq!(st.jobs.len(), 4);
    for j in &st.jobs {
        let r = j
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no result", j.job_id));
        assert_eq!(r.aus.len(), 8, "{}", j.job_id);
        assert_eq!(r.checkpoint_sha256.len(), 64, "{}", j.job_id);
    }
    // The killed job ran again and resumed from the epoch-1 checkpoint.
    let j = st.jobs.iter().find(|j| j.job_id == victim.job_id).unwrap();
    assert!(j.attempt > victim.attempt, "{}", describe(&st));
    let r = result_json(&[&a, &b], &j.job_id, j.attempt).expect("result.json of the retry");
    assert_eq!(r["resumed_from_epoch"], 1, "{r}");
    assert_eq!(r["epochs"], 3, "{r}");
    // The corrupted upload was refused by the coordinator and sent again.
    let log_a = a.log();
    assert!(log_a.contains("rejected (try 1/5)"), "{log_a}");

    // Idle workers drain at once and exit 0.
    let (mut a, mut b) = (a, b);
    a.signal("-TERM");
    b.signal("-TERM");
    assert!(a.wait_exit(Duration::from_secs(20)).await.success());
    assert!(b.wait_exit(Duration::from_secs(20)).await.success());
    h.shutdown().await;
    eprintln!("two_workers test: {:.1} s", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_is_replaced_and_sigterm_drains_at_a_checkpoint() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut admin, url) = coordinator(&tmp.path().join("coord")).await;
    let id = submit(&mut admin, manifest("kill", &[1, 2], 2)).await;
    let mut a = Worker::start(&url, tmp.path(), "a", &[]);
    let b = Worker::start(&url, tmp.path(), "b", &[]);
    // SIGKILL worker `a` while it holds a lease: its job must come back and `b` finish it.
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(120),
        "worker a to hold a lease",
        &[&a, &b],
        |st| {
            st.jobs
                .iter()
                .any(|j| j.state() == v1::JobState::Leased && j.worker_id == "a")
        },
    )
    .await;
    let lost: Vec<String> = st
        .jobs
        .iter()
        .filter(|j| j.state() == v1::JobState::Leased && j.worker_id == "a")
        .map(|j| j.job_id.clone())
        .collect();
    a.child.kill().unwrap();
    a.wait_exit(Duration::from_secs(10)).await;
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(180),
        "worker b to finish every job",
        &[&a, &b],
        all_succeeded,
    )
    .await;
    for j in st.jobs.iter().filter(|j| lost.contains(&j.job_id)) {
        // Only `b` was left to run the retry.
        assert!(j.attempt >= 2, "{}", describe(&st));
        assert!(j.last_error.contains("lease expired"), "{}", describe(&st));
    }

    // SIGTERM while a job runs: the worker stops leasing, lets the trainer reach its next
    // checkpoint, reports the attempt and exits 0; the job then resumes elsewhere.
    let mut b = b;
    b.signal("-TERM");
    assert!(b.wait_exit(Duration::from_secs(20)).await.success());
    let id2 = submit(&mut admin, manifest("drain", &[3], 3)).await;
    let mut c = Worker::start(&url, tmp.path(), "c", &[]);
    let st = wait_sweep(
        &mut admin,
        &id2,
        Duration::from_secs(120),
        "worker c to run stage 2",
        &[&c],
        |st| {
            st.jobs
                .iter()
                .any(|j| j.stage == 2 && j.state() == v1::JobState::Leased && j.progress.is_some())
        },
    )
    .await;
    let job = st
        .jobs
        .iter()
        .find(|j| j.stage == 2)
        .unwrap()
        .job_id
        .clone();
    c.signal("-TERM");
    let code = c.wait_exit(Duration::from_secs(90)).await;
    let log_c = c.log();
    assert!(code.success(), "drain exit {code:?}\n{log_c}");
    assert!(log_c.contains("worker drained after checkpoint"), "{log_c}");
    let st = status(&mut admin, &id2).await;
    let j = st.jobs.iter().find(|j| j.job_id == job).unwrap();
    assert_eq!(j.state(), v1::JobState::Pending, "{}", describe(&st));
    assert!(!j.newest_checkpoint_sha256.is_empty(), "{}", describe(&st));
    // A fresh worker picks it up and resumes from the drained checkpoint.
    let d = Worker::start(&url, tmp.path(), "d", &[]);
    let st = wait_sweep(
        &mut admin,
        &id2,
        Duration::from_secs(120),
        "worker d to finish the drained job",
        &[&d],
        all_succeeded,
    )
    .await;
    let j = st.jobs.iter().find(|j| j.job_id == job).unwrap();
    let r = result_json(&[&d], &job, j.attempt).expect("result.json of the resumed attempt");
    assert!(
        r["resumed_from_epoch"].as_u64().is_some_and(|e| e >= 1),
        "{r}"
    );
    drop(d);
    h.shutdown().await;
    eprintln!("kill/drain test: {:.1} s", t0.elapsed().as_secs_f64());
}
