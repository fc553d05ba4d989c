//! Every crash window of an attempt's life, hit exactly: a real coordinator and a real worker
//! (child processes on loopback, sled store), with a fault-injection point armed
//! (`AUSWEEP_FAULT_AT`) so the process SIGKILLs itself at that window. Each worker window, then
//! each coordinator window, kills once; the restarted process carries on. Afterwards every job
//! has exactly one accepted attempt and the F1 table equals an undisturbed run's.
//!
//! The sweep allows no retries (`retries: 0`): every attempt lost here is lost to the
//! infrastructure and must not use the job's failure budget. The windows are listed in
//! docs/crash-windows.md.

mod common;

use ausweep_coordinator::store::blobs::Blobs;
use ausweep_proto::v1;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Two jobs: stage 1 (2 epochs on the frozen ImageNet MobileNet-v2) and stage 2 (2 fine-tuning
/// epochs), so the F1 table is far from zero. No retries: a lost attempt counted as a failure
/// would end the job.
fn sweep() -> String {
    "name: windows
dataset:
  source: {kind: synthetic, subjects: 27, frames: 32, seed: 5}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {k: 3, seed: 0}
  input_size: 48
  val_subjects: 2
run_folds: [1]
backbones: [mobilenet_v2]
weights: imagenet
loss: lsep_bce
thresholds: tuned
augment: {flip: 0.0}
stages:
  - freeze: backbone
    optimizer: {lr: 3.0e-3}
    epochs: 2
  - freeze: none
    optimizer: {lr: 1.0e-3, backbone_lr: 2.0e-3}
    epochs: 2
batch_size: 16
seed: 0
resources:
  device: cpu
retries: 0
"
    .to_string()
}

/// Worker windows in the order an attempt meets them.
const WORKER_WINDOWS: [&str; 6] = [
    "lease",               // leased, trainer not started
    "mid-epoch",           // trainer running, no checkpoint of this attempt yet
    "checkpoint-written",  // checkpoint on the worker's disk, not uploaded
    "checkpoint-uploaded", // recorded by the coordinator, worker dies before going on
    "final-uploaded",      // final weights uploaded, Complete never sent
    "complete-acked",      // Complete accepted, worker dies before cleaning up
];

/// Coordinator windows: the RPC's writes are durable, the answer is never sent.
const COORDINATOR_WINDOWS: [&str; 4] = [
    "coordinator-lease",
    "coordinator-upload-stored", // the blob is on disk, its record never written
    "coordinator-checkpoint",
    "coordinator-complete",
];

async fn wait_exit_or(
    what: &str,
    mut exited: impl FnMut() -> bool,
    limit: Duration,
    context: impl Fn() -> String,
) {
    let until = Instant::now() + limit;
    while !exited() {
        assert!(
            Instant::now() < until,
            "{what} within {limit:?}; last seen:\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sweep_text(coord: &Coordinator, id: &str) -> String {
    let mut admin = coord.admin().await;
    match admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: id.into(),
        })
        .await
    {
        Ok(st) => describe(&st.into_inner()),
        Err(e) => format!("(status unavailable: {})", e.message()),
    }
}

/// Files under `dir` whose names end with `suffix`.
fn files_named(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

async fn undisturbed(root: &Path) -> F1Table {
    let mut coord = start_coordinator(root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;
    let w = start_worker(&coord.url(), root, "w", &[]);
    let st = wait_done(&coord, &id, Duration::from_secs(300), &[&w]).await;
    drop(w);
    audit(&mut coord, st.jobs.len()).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long function: one table-driven scenario over every crash window.
async fn every_crash_window_is_survived_with_the_undisturbed_result() {
    let _g = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let reference = undisturbed(&tmp.path().join("reference")).await;
    assert!(
        reference.values().any(|(f1, _)| *f1 > 0.0),
        "the reference table is all zeros, so equality would prove nothing: {reference:?}"
    );

    let root = tmp.path().join("faults");
    let mut coord = start_coordinator(&root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;

    // Worker windows: one worker process per window, each killed there.
    for window in WORKER_WINDOWS {
        let mut w = start_worker(&coord.url(), &root, "w", &[("AUSWEEP_FAULT_AT", window)]);
        let limit = Duration::from_secs(180);
        let until = Instant::now() + limit;
        loop {
            if w.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                Instant::now() < until,
                "window {window} was never reached in {limit:?}; sweep:\n{}\nworker log:\n{}",
                sweep_text(&coord, &id).await,
                w.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            w.log()
                .contains(&format!("fault injection: killed at {window}")),
            "the worker exited, but not at {window}:\n{}",
            w.log()
        );
    }

    // Coordinator windows: the coordinator dies after committing the RPC, and comes back armed
    // for the next window (then clean); a healthy worker carries on through all of them.
    let mut w: Option<Worker> = None;
    for window in COORDINATOR_WINDOWS {
        coord.kill();
        coord.env = vec![("AUSWEEP_FAULT_AT".into(), window.into())];
        coord.spawn();
        let w = w.get_or_insert_with(|| start_worker(&coord.url(), &root, "w", &[]));
        let log = coord.log.clone();
        let child = coord.child.as_mut().unwrap();
        wait_exit_or(
            &format!("the coordinator reaching {window}"),
            || child.try_wait().unwrap().is_some(),
            Duration::from_secs(180),
            || {
                format!(
                    "coordinator log:\n{}\nworker log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default(),
                    w.log()
                )
            },
        )
        .await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let marker = format!("fault injection: killed at {window}");
        assert!(text.contains(&marker), "not killed at {window}:\n{text}");
        coord.child = None;
    }
    coord.env.clear();
    coord.spawn();
    let text = std::fs::read_to_string(&coord.log).unwrap_or_default();
    assert!(
        text.contains("checkpoint blob(s) no record names"),
        "the blob stored without a record was not removed at restart:\n{text}"
    );
    let mut w = w.unwrap();
    let st = wait_done(&coord, &id, Duration::from_secs(300), &[&w]).await;
    // Every attempt lost here was lost to the infrastructure: none counted as a failure.
    for j in &st.jobs {
        assert_eq!(j.failures, 0, "{}: {}", j.job_id, j.last_error);
    }
    let lost: u32 = st.jobs.iter().map(|j| j.lost_attempts).sum();
    assert!(
        lost >= WORKER_WINDOWS.len() as u32 - 1,
        "the kills lost only {lost} attempts:\n{}",
        describe(&st)
    );
    assert!(
        w.log().contains("resumes from epoch"),
        "no attempt resumed from a checkpoint:\n{}",
        w.log()
    );
    eprintln!(
        "crash windows: {} worker and {} coordinator kills; lost attempts per job: {:?}",
        WORKER_WINDOWS.len(),
        COORDINATOR_WINDOWS.len() + 1,
        st.jobs
            .iter()
            .map(|j| (j.stage, j.lost_attempts, j.attempt))
            .collect::<Vec<_>>()
    );
    // A drained worker has ended (and cleaned up) every attempt before it exits.
    w.signal("-TERM");
    let code = w.wait_exit(Duration::from_secs(120)).await;
    assert!(code.success(), "drain exit {code:?}:\n{}", w.log());
    drop(w);
    let (table, finals) = audit(&mut coord, st.jobs.len());
    // Retention: the coordinator keeps exactly the final weights, the worker no weight files.
    let blobs = Blobs::open(&coord.data.join("checkpoints"), 8 << 30).unwrap();
    let mut kept = blobs.list().unwrap();
    kept.sort();
    let mut want: Vec<String> = finals
        .values()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(
        kept, want,
        "the store holds more than the final checkpoints"
    );
    let weights = files_named(&root.join("w").join("jobs"), ".safetensors");
    assert!(
        weights.is_empty(),
        "weight files left on the worker: {weights:?}"
    );
    if let Err(e) = same_table(&reference, &table) {
        panic!("the F1 table differs from the undisturbed run's: {e}");
    }
}
