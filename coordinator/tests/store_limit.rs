//! The checkpoint store over loopback gRPC on sled: retention collects superseded checkpoints,
//! a full store refuses uploads with RESOURCE_EXHAUSTED and loses nothing it holds, and a
//! restart removes only blobs no record names.

use ausweep_coordinator::client;
use ausweep_coordinator::store::blobs::Blobs;
use ausweep_coordinator::Config;
use ausweep_proto::v1;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

use ausweep_testkit::rpc::{self, Upload};
use ausweep_testkit::wait::{self, Seen};
use ausweep_testkit::{demo_manifest as demo, ADMIN, JOIN};

const LIMIT: u64 = 10_000;

async fn start(dir: &std::path::Path) -> (ausweep_coordinator::Handle, client::Admin, String) {
    let mut cfg = Config::local(ADMIN, JOIN, Some(dir.to_path_buf()));
    cfg.max_store_bytes = LIMIT;
    let c = rpc::InProcess::start(cfg).await;
    (c.handle, c.admin, c.url)
}

async fn worker(url: &str) -> client::Worker {
    let ch = client::connect(url, None).await.unwrap();
    rpc::register(&ch, "w").await
}

async fn upload(
    w: &mut client::Worker,
    a: &v1::Assignment,
    data: &[u8],
    epoch: u32,
    kind: v1::CheckpointKind,
) -> Result<String, tonic::Status> {
    let how = Upload {
        epoch,
        kind,
        val_f1: Some(0.5),
        chunk: 1000,
    };
    rpc::upload(w, a, data, how).await
}

async fn lease(w: &mut client::Worker) -> v1::Assignment {
    rpc::lease(w).await
}

async fn download(admin: &mut client::Admin, sha: &str) -> Vec<u8> {
    rpc::download(admin, sha).await.unwrap()
}

async fn sweep(admin: &mut client::Admin, id: &str) -> v1::SweepStatus {
    rpc::sweep(admin, id).await
}

/// Polls until the store's reported size is `want` (garbage goes after the commit).
async fn wait_store_bytes(admin: &mut client::Admin, id: &str, want: u64) {
    let what = format!("the store to hold {want} bytes");
    wait::until(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let mut admin = admin.clone();
            async move {
                let got = sweep(&mut admin, id).await.store_checkpoint_bytes;
                if got == want {
                    Seen::Done(())
                } else {
                    Seen::Not(format!("{got} bytes"))
                }
            }
        },
    )
    .await
}

fn bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[tokio::test]
async fn a_full_store_refuses_uploads_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (h, mut admin, url) = start(dir.path()).await;
    let id = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: demo(),
            file_name: "demo.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep_id;
    let mut w = worker(&url).await;

    // Job A: two epoch checkpoints, the final weights, Complete. Retention keeps the final only.
    let a = lease(&mut w).await;
    let a1 = upload(&mut w, &a, &bytes(1, 3000), 1, v1::CheckpointKind::Epoch)
        .await
        .unwrap();
    wait_store_bytes(&mut admin, &id, 3000).await;
    upload(&mut w, &a, &bytes(2, 3000), 2, v1::CheckpointKind::Epoch)
        .await
        .unwrap();
    // Epoch 2 supersedes epoch 1.
    wait_store_bytes(&mut admin, &id, 3000).await;
    let final_data = bytes(3, 4000);
    let a_final = upload(&mut w, &a, &final_data, 2, v1::CheckpointKind::Final)
        .await
        .unwrap();
    let mut res = v1::JobResult {
        avg_f1: 0.5,
        checkpoint_sha256: a_final.clone(),
        ..Default::default()
    };
    res.aus.push(v1::AuScore {
        au: 1,
        f1: 0.5,
        precision: 0.5,
        recall: 0.5,
        threshold: 0.5,
    });
    let c = w
        .complete(v1::CompleteRequest {
            job_id: a.job_id.clone(),
            fencing_token: a.fencing_token,
            result: Some(res),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(c.accepted, "{}", c.message);
    wait_store_bytes(&mut admin, &id, 4000).await;
    let gone = admin
        .download_checkpoint(v1::DownloadRequest { sha256: a1 })
        .await;
    let gone = match gone {
        Err(e) => e.code(),
        Ok(s) => match s.into_inner().next().await {
            Some(Err(e)) => e.code(),
            other => panic!("a collected checkpoint is still served: {other:?}"),
        },
    };
    assert_eq!(gone, Code::NotFound);

    // Job B fills the store to its limit; the next upload is refused.
    let b = lease(&mut w).await;
    let b1_data = bytes(4, 5000);
    let b1 = upload(&mut w, &b, &b1_data, 1, v1::CheckpointKind::Epoch)
        .await
        .unwrap();
    wait_store_bytes(&mut admin, &id, 9000).await;
    let refused = upload(&mut w, &b, &bytes(5, 2000), 2, v1::CheckpointKind::Epoch)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("checkpoint store full")
            && refused.message().contains(&LIMIT.to_string()),
        "{}",
        refused.message()
    );
    // The coordinator keeps serving, and nothing already stored is lost.
    let st = sweep(&mut admin, &id).await;
    assert_eq!(
        (st.store_checkpoint_bytes, st.store_limit_bytes),
        (9000, LIMIT)
    );
    let jb = st.jobs.iter().find(|j| j.job_id == b.job_id).unwrap();
    assert_eq!(jb.newest_checkpoint_sha256, b1, "B's resume point survives");
    assert_eq!(download(&mut admin, &a_final).await, final_data);
    assert_eq!(download(&mut admin, &b1).await, b1_data);
    let mut temp = Vec::new();
    for shard in std::fs::read_dir(dir.path().join("checkpoints").join("sha256")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with(ausweep_coordinator::store::blobs::TEMP_PREFIX) {
                temp.push(name);
            }
        }
    }
    assert!(temp.is_empty(), "a refused upload left files: {temp:?}");

    // A restart removes a blob no record names (a crash between a record's deletion and its
    // file's) and keeps every named one.
    h.shutdown().await;
    let blobs = Blobs::open(&dir.path().join("checkpoints"), 1 << 20).unwrap();
    let orphan = blobs.put_bytes(b"left behind by a crash").unwrap();
    drop(blobs);
    let (_h, mut admin, _) = start(dir.path()).await;
    let blobs = Blobs::open(&dir.path().join("checkpoints"), 1 << 20).unwrap();
    assert!(!blobs.contains(&orphan), "the orphan survived the restart");
    assert!(blobs.contains(&a_final) && blobs.contains(&b1));
    assert_eq!(download(&mut admin, &b1).await, b1_data);
}

/// `checkpoint_dir` puts the files on another path than the store (another disk): uploads land
/// there and nowhere under the data dir, and a restart finds them.
#[tokio::test]
async fn checkpoints_can_live_outside_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let start_here = || async {
        let mut cfg = Config::local(ADMIN, JOIN, Some(data.path().to_path_buf()));
        cfg.checkpoint_dir = Some(elsewhere.path().join("ckpt"));
        rpc::InProcess::start(cfg).await
    };
    let mut c = start_here().await;
    assert_eq!(c.handle.checkpoint_dir, elsewhere.path().join("ckpt"));
    let id = c.submit(&demo()).await;
    let mut w = worker(&c.url).await;
    let a = lease(&mut w).await;
    let data_bytes = b"weights on the other disk".to_vec();
    let sha = upload(&mut w, &a, &data_bytes, 1, v1::CheckpointKind::Epoch)
        .await
        .unwrap();
    let file = elsewhere
        .path()
        .join("ckpt/sha256")
        .join(&sha[..2])
        .join(&sha);
    assert_eq!(std::fs::read(&file).unwrap(), data_bytes);
    assert!(
        !data.path().join("checkpoints").exists(),
        "the data dir got a checkpoints/ too"
    );
    c.handle.shutdown().await;
    let mut c = start_here().await;
    assert_eq!(download(&mut c.admin, &sha).await, data_bytes);
    let st = sweep(&mut c.admin, &id).await;
    assert!(
        st.jobs.iter().any(|j| j.newest_checkpoint_sha256 == sha),
        "{}",
        rpc::describe(&st)
    );
    c.handle.shutdown().await;
}

/// A checkpoint directory that cannot be used stops the start with an error naming it.
#[tokio::test]
async fn an_unusable_checkpoint_dir_is_named_in_the_error() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut cfg = Config::local(ADMIN, JOIN, Some(data.path().join("state")));
    cfg.checkpoint_dir = Some(file.clone());
    let Err(e) = ausweep_coordinator::serve(cfg).await else {
        panic!("a coordinator started with a file as its checkpoint directory");
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("checkpoint directory {}", file.display())),
        "{msg}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "the file was touched");
}
