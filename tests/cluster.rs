//! End to end on loopback: a coordinator (in-process) and `ausweep worker --allow-cpu` child
//! processes run tiny sweeps; trainers and workers are killed, uploads corrupted, workers drained.

mod common;

use ausweep_coordinator::client;
use ausweep_proto::v1;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// An in-process coordinator on sled in `dir` with the test timings (a killed worker's job
/// comes back after one lease).
async fn coordinator(dir: &Path) -> (ausweep_coordinator::Handle, client::Admin, String) {
    let c = rpc::InProcess::start(rpc::config(Some(dir))).await;
    (c.handle, c.admin, c.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long function: one scenario told in order.
async fn two_workers_finish_a_sweep_through_a_killed_trainer_and_a_corrupted_upload() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut admin, url) = coordinator(&tmp.path().join("coord")).await;
    let id = submit(&mut admin, manifest("tiny", &[1, 2], 3)).await;
    // Worker `a` corrupts its first checkpoint upload: the coordinator must reject it and the
    // agent must send it again.
    let a = start_worker(
        &url,
        tmp.path(),
        "a",
        &[("AUSWEEP_FAULT_CORRUPT_UPLOADS", "1")],
    );
    let b = start_worker(&url, tmp.path(), "b", &[]);

    // Kill the first stage-2 trainer right after its epoch-1 checkpoint reached the coordinator.
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
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
    // Each worker was given one core: its trainers must not take the whole node.
    for w in [&a, &b] {
        assert!(
            w.log().contains("trainer started on Cpu with 1 thread(s)"),
            "{}",
            w.log()
        );
    }
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
        Duration::from_secs(300),
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
    // Killed after its epoch-1 upload; epoch 2 may have landed before the kill did.
    let from = r["resumed_from_epoch"].as_u64();
    assert!(from.is_some_and(|e| (1..3).contains(&e)), "{r}");
    assert_eq!(r["epochs"], 3, "{r}");
    // The corrupted upload was refused by the coordinator and sent again.
    let log_a = a.log();
    assert!(log_a.contains("rejected (try 1/5)"), "{log_a}");

    // `ausweep predict --model SWEEP:BACKBONE` downloads the best fold's stage-2 checkpoint
    // through the admin RPC and runs it on a photograph.
    let best = st
        .jobs
        .iter()
        .filter(|j| j.stage == 2)
        .max_by(|x, y| {
            let f = |j: &v1::JobStatus| j.result.as_ref().map_or(0.0, |r| r.avg_f1);
            f(x).total_cmp(&f(y)).then(y.fold.cmp(&x.fold))
        })
        .unwrap();
    let photo = photo(tmp.path(), "astronaut");
    let cache = tmp.path().join("ckpt-cache");
    let predict = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_ausweep"))
            .args(["predict", "--device", "cpu", "--model"])
            .arg(format!("{id}:mobilenet_v2"))
            .args([
                "--coordinator",
                &url,
                "--admin-token",
                token,
                "--checkpoint-cache",
            ])
            .arg(&cache)
            .arg(&photo)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap()
    };
    let out = predict("wrong-token-0123456789");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad admin token"),
        "{err}"
    );
    assert!(!cache.exists() || std::fs::read_dir(&cache).unwrap().next().is_none());
    let out = predict(ADMIN);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&best.job_id),
        "picked another job than {}: {err}",
        best.job_id
    );
    let sha = &best.result.as_ref().unwrap().checkpoint_sha256;
    assert!(cache.join(format!("{sha}.safetensors")).is_file());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["faces"][0]["aus"].as_array().unwrap().len(), 8, "{v}");

    // Idle workers drain at once and exit 0: `a` told by an admin through its heartbeat, `b` by
    // SIGTERM.
    let (mut a, mut b) = (a, b);
    let r = admin
        .drain_worker(v1::DrainWorkerRequest {
            worker_id: "a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.found, "{r:?}");
    let missing = admin
        .drain_worker(v1::DrainWorkerRequest {
            worker_id: "nobody".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!missing.found, "{missing:?}");
    b.signal("-TERM");
    assert!(a.wait_exit(Duration::from_secs(20)).await.success());
    assert!(b.wait_exit(Duration::from_secs(20)).await.success());
    assert!(
        a.log().contains("the coordinator asks: draining"),
        "{}",
        a.log()
    );
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
    let mut a = start_worker(&url, tmp.path(), "a", &[]);
    let b = start_worker(&url, tmp.path(), "b", &[]);
    // SIGKILL worker `a` while it holds a lease: its job must come back and `b` finish it.
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
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
        Duration::from_secs(300),
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
    let mut c = start_worker(&url, tmp.path(), "c", &[]);
    let st = wait_sweep(
        &mut admin,
        &id2,
        Duration::from_secs(300),
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
    let d = start_worker(&url, tmp.path(), "d", &[]);
    let st = wait_sweep(
        &mut admin,
        &id2,
        Duration::from_secs(300),
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

/// A worker whose node lacks the dataset's mount (here: the dataset folder hidden under an
/// empty tmpfs in the worker's own mount namespace) loses its attempt as that node's problem:
/// the job waits, saying which worker lacks which path, and another worker that sees the data
/// runs it, although the sweep allows no retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_missing_the_data_mount_hands_the_job_on_and_the_job_says_why_it_waits() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("disfa");
    let st = Command::new(bin())
        .args(["dataset", "synth"])
        .arg(&data)
        .args(["--subjects", "27", "--frames", "8", "--size", "32"])
        .status()
        .unwrap();
    assert!(st.success(), "ausweep dataset synth: {st}");
    let (h, mut admin, url) = coordinator(&tmp.path().join("coord")).await;
    let yaml = manifest("mount", &[1], 1)
        .replace(
            "source: {kind: synthetic, subjects: 27, frames: 8, seed: 3}",
            &format!(
                "source: {{kind: disfa, labels_root: {0}, frames_root: {0}/Frames}}",
                data.display()
            ),
        )
        .replace("retries: 3", "retries: 0");
    assert!(yaml.contains("kind: disfa"), "{yaml}");
    let id = submit(&mut admin, yaml).await;
    // The agent runs in a mount namespace of its own where the dataset folder is an empty tmpfs.
    let wrapper = tmp.path().join("unmounted.sh");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexec unshare -m sh -c 'mount -t tmpfs none \"$AUSWEEP_HIDE\" && exec \
         \"$AUSWEEP_REAL_BIN\" \"$@\"' sh \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let hide = data.to_str().unwrap();
    let real = bin().to_str().unwrap();
    let blind = Worker::start(
        &wrapper,
        &url,
        tmp.path(),
        "blind",
        &[("AUSWEEP_HIDE", hide), ("AUSWEEP_REAL_BIN", real)],
    );
    // The mount point is there (empty), the folder inside it is not.
    let lacks = format!(
        "no connected worker can run it: blind: dataset path {}/Frames does not exist on this \
         worker",
        data.display()
    );
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
        "the stage-1 job to wait, naming the worker that lacks its data",
        &[&blind],
        |st| st.jobs.iter().any(|j| j.pending_reason.starts_with(&lacks)),
    )
    .await;
    let job = st.jobs.iter().find(|j| j.stage == 1).unwrap().clone();
    assert_eq!(job.state(), v1::JobState::Pending, "{}", describe(&st));
    // A worker that sees the data runs it, and its stage 2.
    let sighted = start_worker(&url, tmp.path(), "sighted", &[]);
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
        "the sweep to finish on the worker that sees the data",
        &[&blind, &sighted],
        all_succeeded,
    )
    .await;
    let done = st.jobs.iter().find(|j| j.job_id == job.job_id).unwrap();
    assert_eq!(done.attempt, 2, "{}", describe(&st));
    h.shutdown().await;
}

/// An intensity sweep (`objective: intensity`, `loss: mse`) through the coordinator and a worker:
/// each job's ICC, MAE and PCC travel from the trainer's result.json over gRPC into the store
/// unchanged, `ausweep status` shows them and `ausweep report` tables them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intensity_sweep_reports_icc_from_trainer_to_report() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut admin, url) = coordinator(&tmp.path().join("coord")).await;
    let yaml = manifest("intensity", &[2], 1)
        .replace("loss: lsep\n", "objective: intensity\nloss: mse\n")
        .replace("thresholds: tuned\n", "");
    let id = submit(&mut admin, yaml).await;
    let w = start_worker(&url, tmp.path(), "w", &[]);
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
        "the intensity sweep to finish",
        &[&w],
        all_succeeded,
    )
    .await;
    assert_eq!(st.jobs.len(), 2, "{}", describe(&st));
    for j in &st.jobs {
        let res = j.result.as_ref().expect("a result");
        let got = res
            .intensity
            .as_ref()
            .expect("an intensity job's result carries intensity");
        assert!(res.aus.is_empty(), "no F1 for intensity: {res:?}");
        let trainer = result_json(&[&w], &j.job_id, j.attempt).expect("the trainer's result.json");
        let want = &trainer["intensity"];
        assert_eq!(got.aus.len(), 8, "{got:?}");
        assert_eq!(
            got.avg_icc,
            want["avg_icc"].as_f64().unwrap(),
            "{}",
            j.job_id
        );
        for (a, b) in got.aus.iter().zip(want["per_au"].as_array().unwrap()) {
            assert_eq!(a.au as u64, b["au"].as_u64().unwrap());
            assert_eq!(
                (a.icc, a.mae),
                (b["icc"].as_f64().unwrap(), b["mae"].as_f64().unwrap())
            );
        }
    }
    let cli = |args: &[&str]| {
        let o = Command::new(bin())
            .args(args)
            .env("AUSWEEP_COORDINATOR", &url)
            .env("AUSWEEP_ADMIN_TOKEN", ausweep_testkit::ADMIN)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let status = cli(&["status", &id]);
    assert_eq!(status.matches("avg ICC ").count(), 2, "{status}");
    let report = cli(&["report", &id]);
    let s2 = st.jobs.iter().find(|j| j.stage == 2).unwrap();
    let icc = s2
        .result
        .as_ref()
        .unwrap()
        .intensity
        .as_ref()
        .unwrap()
        .avg_icc;
    assert!(
        report.contains("## AU intensity")
            && report.contains("| mobilenet_v2 stage 2 |")
            && report.contains(&format!("{icc:.3} ± 0.000")),
        "{report}"
    );
    drop(w);
    h.shutdown().await;
}
