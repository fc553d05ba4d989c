//! A sweep on DISFA-like videos through a real coordinator and worker: the data is prepared by
//! one `prepare` job that every stage-1 job waits on (its pending reason says so), the worker is
//! killed in the middle of the preparation and again in a stage-1 job, and the sweep still ends
//! with every job succeeded, the preparation accepted once, and one prepared dataset.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn synth_videos(dir: &Path) {
    let out = Command::new(bin())
        .args(["dataset", "synth"])
        .arg(dir)
        .args(["--videos", "--subjects", "6", "--frames", "60"])
        .args(["--width", "384", "--height", "288", "--cameras", "left"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn manifest(videos: &Path, prepared: &Path) -> String {
    format!(
        "name: videos
dataset:
  source: {{kind: disfa_videos, videos_root: {}, prepared_root: {}}}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {{k: 3, seed: 0}}
  input_size: 32
  val_subjects: 1
run_folds: [1]
backbones: [mobilenet_v2, mobilenet_v1]
weights: none
loss: lsep
stages:
  - freeze: backbone
    optimizer: {{lr: 1.0e-3}}
    epochs: 2
  - freeze: none
    optimizer: {{lr: 1.0e-4, backbone_lr: 1.0e-4}}
    epochs: 1
batch_size: 8
seed: 0
resources:
  device: cpu
retries: 2
",
        videos.display(),
        prepared.display()
    )
}

/// The prepared-dataset folders under `root`.
fn prepared_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn job<'a>(
    st: &'a ausweep_proto::v1::SweepStatus,
    suffix: &str,
) -> &'a ausweep_proto::v1::JobStatus {
    st.jobs
        .iter()
        .find(|j| j.job_id.ends_with(suffix))
        .unwrap_or_else(|| panic!("no job *{suffix} in {:?}", st.jobs))
}

#[tokio::test]
async fn a_video_sweep_prepares_once_through_killed_workers() {
    let _serial = SERIAL.lock().await;
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (videos, prepared) = (root.join("disfa"), root.join("prepared"));
    synth_videos(&videos);
    let mut coord = start_coordinator(root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, manifest(&videos, &prepared)).await;
    let mut worker = start_worker(&coord.url(), root, "w1", &[]);

    // Kill the worker once the preparation has finished a subject but not the dataset. Meanwhile
    // the stage-1 jobs say they wait for the data.
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(240),
        "the preparation half-way",
        &[&worker],
        |_| {
            prepared_dirs(&prepared)
                .iter()
                .any(|p| p.join("parts/SN001.json").is_file() && !p.join("manifest.json").exists())
        },
    )
    .await;
    worker.child.kill().unwrap();
    worker.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(st.jobs.len(), 5, "1 preparation + 2 backbones x 2 stages");
    let s1 = job(&st, ".mobilenet_v2.f1.s1.g0");
    assert!(
        s1.pending_reason.contains("prepare.g0")
            && s1.pending_reason.contains("its data is being prepared"),
        "{}",
        s1.pending_reason
    );
    assert!(
        prepared_dirs(&prepared)
            .iter()
            .all(|p| !p.join("manifest.json").exists()),
        "the preparation finished before the kill"
    );

    // Back under the same name; kill it again once a stage-1 job runs.
    let mut worker = start_worker(&coord.url(), root, "w1", &[]);
    wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
        "a stage-1 job leased after the preparation",
        &[&worker],
        |st| {
            st.jobs
                .iter()
                .any(|j| j.stage == 1 && j.state() == ausweep_proto::v1::JobState::Leased)
        },
    )
    .await;
    worker.child.kill().unwrap();
    worker.wait_exit(Duration::from_secs(30)).await;
    let worker = start_worker(&coord.url(), root, "w1", &[]);

    let st = wait_done(&coord, &id, Duration::from_secs(600), &[&worker]).await;
    let prep = job(&st, ".prepare.g0");
    assert_eq!(prep.stage, 0);
    assert!(
        prep.attempt >= 2,
        "the killed preparation ran again: {prep:?}"
    );
    let dirs = prepared_dirs(&prepared);
    assert_eq!(dirs.len(), 1, "one prepared dataset: {dirs:?}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["frames"], 6 * 60);
    // Every training job read that dataset.
    for j in st.jobs.iter().filter(|j| j.stage > 0) {
        let r = j.result.as_ref().unwrap();
        let ds = r.dataset.as_ref().unwrap();
        assert_eq!(
            (ds.kind.as_str(), ds.frames),
            ("disfa_videos", 360),
            "{}",
            j.job_id
        );
    }
    drop(worker);
    let (table, _) = audit(&mut coord, st.jobs.len());
    assert_eq!(table.len(), 5);
    let accepted = accepted_attempts(&coord);
    let prep_accepted: Vec<_> = accepted
        .keys()
        .filter(|k| k.ends_with(".prepare.g0"))
        .collect();
    assert_eq!(prep_accepted.len(), 1, "{accepted:?}");
}
