//! Loopback gRPC tests: a full job lifecycle, auth rejection for every RPC, protocol version,
//! manifest errors, health, and a kill-and-restart recovery.

use ausweep_coordinator::client;
use ausweep_coordinator::{serve, Config};
use ausweep_proto::v1;
use tokio_stream::StreamExt;
use tonic::Code;

use ausweep_testkit::rpc::{self, Upload};
use ausweep_testkit::{demo_manifest as demo, ADMIN, JOIN};

async fn start(
    dir: Option<std::path::PathBuf>,
) -> (ausweep_coordinator::Handle, tonic::transport::Channel) {
    let h = serve(Config::local(ADMIN, JOIN, dir)).await.unwrap();
    let ch = client::connect(&format!("http://{}", h.addr), None)
        .await
        .unwrap();
    (h, ch)
}

async fn register(ch: &tonic::transport::Channel, name: &str) -> client::Worker {
    rpc::register(ch, name).await
}

async fn register_with_token(
    ch: &tonic::transport::Channel,
    name: &str,
) -> (client::Worker, String) {
    let r = rpc::register_with(ch, name, vec![rpc::cpu()]).await;
    (r.client, r.session)
}

/// Uploads in 7-byte chunks (many data messages).
async fn upload(w: &mut client::Worker, a: &v1::Assignment, data: &[u8]) -> String {
    let how = Upload {
        chunk: 7,
        ..Upload::default()
    };
    rpc::upload(w, a, data, how).await.unwrap()
}

fn result(sha: &str) -> v1::JobResult {
    rpc::result(sha, &[1], 0.5)
}

#[tokio::test]
// Long function: one job's whole life over real gRPC, told in order.
async fn lifecycle_over_loopback() {
    let (h, ch) = start(None).await;
    let mut admin = client::admin(ch.clone(), ADMIN).unwrap();
    let s = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: demo(),
            file_name: "demo.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.jobs, s.version, s.created), (12, 1, true));
    let again = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: demo(),
            file_name: "demo.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.sweep_id.as_str(), again.created),
        (s.sweep_id.as_str(), false)
    );
    let mut watch = admin
        .watch(v1::WatchRequest {
            sweep_id: s.sweep_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..12 {
        watch.next().await.unwrap().unwrap();
    }
    let st = admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: s.sweep_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.notice, "no worker connected yet");

    let mut w = register(&ch, "w1").await;
    let a = rpc::lease(&mut w).await;
    let spec: ausweep_proto::JobSpec = serde_json::from_str(&a.job_spec_json).unwrap();
    assert_eq!(spec.stage, 1);
    let ev = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (ev.job_id.as_str(), ev.state()),
        (a.job_id.as_str(), v1::JobState::Leased)
    );
    let p = w
        .report_progress(v1::ProgressRequest {
            job_id: a.job_id.clone(),
            fencing_token: a.fencing_token,
            progress: Some(v1::Progress {
                epoch: 1,
                step: 3,
                loss: 0.7,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!p.abort);
    let hb = w
        .heartbeat(v1::HeartbeatRequest {
            leases: vec![v1::ActiveLease {
                job_id: a.job_id.clone(),
                fencing_token: a.fencing_token,
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.abort_job_ids.is_empty() && !hb.reregister);
    // Completing before uploading the checkpoint is refused.
    let e = w
        .complete(v1::CompleteRequest {
            job_id: a.job_id.clone(),
            fencing_token: a.fencing_token,
            result: Some(result(&"0".repeat(64))),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let data = b"pretend safetensors bytes".repeat(10);
    let sha = upload(&mut w, &a, &data).await;
    assert!(rpc::complete(&mut w, &a, result(&sha)).await);
    // Stage 2 of the same element comes next with the dependency's checkpoint.
    let b = rpc::lease(&mut w).await;
    assert_eq!(b.job_id, a.job_id.replace(".s1.", ".s2."));
    assert_eq!(b.init_checkpoint_sha256, sha);
    let mut dl = w
        .download_checkpoint(v1::DownloadRequest {
            sha256: sha.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(c) = dl.next().await {
        if let Some(v1::checkpoint_chunk::Part::Data(d)) = c.unwrap().part {
            got.extend(d);
        }
    }
    assert_eq!(got, data);
    let f = w
        .fail(v1::FailRequest {
            job_id: b.job_id.clone(),
            fencing_token: b.fencing_token,
            kind: v1::FailureKind::BadConfig as i32,
            reason: "nope".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(f.accepted && !f.will_retry);
    // A stale completion is acknowledged, not an error.
    assert!(!rpc::complete(&mut w, &b, result(&sha)).await);
    let st = admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: s.sweep_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let sum = st.summary.unwrap();
    assert_eq!((sum.succeeded, sum.failed), (1, 1));
    let workers = admin
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1);
    assert!(workers[0].alive);
    assert_eq!(
        admin
            .resubmit_failed(v1::ResubmitFailedRequest {
                sweep_id: s.sweep_id.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .requeued,
        1
    );
    assert_eq!(
        admin
            .cancel(v1::CancelRequest {
                sweep_id: s.sweep_id.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .cancelled,
        11
    );
    assert_eq!(
        admin
            .list_sweeps(v1::ListSweepsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sweeps
            .len(),
        1
    );
    // Without a data dir the checkpoints live in a temp dir, which goes when the coordinator stops.
    let scratch = h.checkpoint_dir.clone();
    assert!(
        scratch.join("sha256").join(&sha[..2]).join(&sha).is_file(),
        "{scratch:?}"
    );
    h.shutdown().await;
    assert!(!scratch.exists(), "{scratch:?} outlived the coordinator");
}

#[tokio::test]
async fn every_rpc_rejects_bad_credentials() {
    let (h, ch) = start(None).await;
    let mut bad = client::admin(ch.clone(), "wrong-admin-token-xxxx").unwrap();
    let codes = [
        bad.submit(v1::SubmitRequest {
            manifest_yaml: demo(),
            file_name: String::new(),
        })
        .await
        .map(|_| ()),
        bad.list_sweeps(v1::ListSweepsRequest {}).await.map(|_| ()),
        bad.get_sweep(v1::GetSweepRequest {
            sweep_id: "x".into(),
        })
        .await
        .map(|_| ()),
        bad.cancel(v1::CancelRequest {
            sweep_id: "x".into(),
        })
        .await
        .map(|_| ()),
        bad.resubmit_failed(v1::ResubmitFailedRequest {
            sweep_id: "x".into(),
        })
        .await
        .map(|_| ()),
        bad.watch(v1::WatchRequest {
            sweep_id: "x".into(),
        })
        .await
        .map(|_| ()),
        bad.list_workers(v1::ListWorkersRequest {})
            .await
            .map(|_| ()),
    ];
    for (i, c) in codes.into_iter().enumerate() {
        assert_eq!(
            c.unwrap_err().code(),
            Code::Unauthenticated,
            "admin rpc {i}"
        );
    }
    // The admin token does not open the worker service, nor a join token a session.
    let _ok = register(&ch, "real").await;
    for (who, token) in [("real", ADMIN), ("real", JOIN), ("real", "")] {
        let mut w = client::worker(ch.clone(), Some(who), token).unwrap();
        let codes = [
            w.heartbeat(v1::HeartbeatRequest::default())
                .await
                .map(|_| ()),
            w.lease(v1::LeaseRequest { device_index: 0 })
                .await
                .map(|_| ()),
            w.report_progress(v1::ProgressRequest::default())
                .await
                .map(|_| ()),
            w.complete(v1::CompleteRequest::default()).await.map(|_| ()),
            w.fail(v1::FailRequest::default()).await.map(|_| ()),
            w.upload_checkpoint(tokio_stream::iter(Vec::<v1::CheckpointChunk>::new()))
                .await
                .map(|_| ()),
            w.download_checkpoint(v1::DownloadRequest {
                sha256: "a".repeat(64),
            })
            .await
            .map(|_| ()),
        ];
        for (i, c) in codes.into_iter().enumerate() {
            assert_eq!(
                c.unwrap_err().code(),
                Code::Unauthenticated,
                "worker rpc {i} with {token:?}"
            );
        }
    }
    let mut w = client::worker(ch.clone(), None, ADMIN).unwrap();
    let e = w
        .register(v1::RegisterRequest {
            worker_name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Another protocol version is refused with a clear message.
    let mut old = ausweep_proto::v1::worker_client::WorkerClient::with_interceptor(
        ch.clone(),
        |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("x-ausweep-protocol", "0".parse().unwrap());
            r.metadata_mut()
                .insert("authorization", format!("Bearer {JOIN}").parse().unwrap());
            Ok(r)
        },
    );
    let e = old
        .register(v1::RegisterRequest {
            worker_name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("protocol 0"), "{}", e.message());
    h.shutdown().await;
}

#[tokio::test]
async fn manifest_errors_and_health() {
    let (h, ch) = start(None).await;
    let mut admin = client::admin(ch.clone(), ADMIN).unwrap();
    let e = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: demo().replace("mobilenet_v1]", "resnet50]"),
            file_name: "demo.yaml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let line = demo()
        .lines()
        .position(|l| l.starts_with("backbones:"))
        .unwrap()
        + 1;
    assert!(
        e.message()
            .starts_with(&format!("demo.yaml:{line}: field `backbones[1]`")),
        "{}",
        e.message()
    );
    let e = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: "x".repeat(5 << 20),
            file_name: String::new(),
        })
        .await
        .unwrap_err();
    // Past the manifest limit but within the transport's: the coordinator itself refuses it,
    // naming the limit and the flag that raises it.
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .starts_with("<manifest>: the manifest is 5242880 bytes")
            && e.message()
                .contains("accepts at most 262144 (ausweep coordinator --max-manifest-kib)"),
        "{}",
        e.message()
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ausweep.v1.Worker".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    h.shutdown().await;
}

#[tokio::test]
async fn kill_and_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (h, ch) = start(Some(dir.path().to_path_buf())).await;
    let mut admin = client::admin(ch.clone(), ADMIN).unwrap();
    let s = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: demo(),
            file_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let (mut w, session) = register_with_token(&ch, "survivor").await;
    let a = rpc::lease(&mut w).await;
    let sha = upload(&mut w, &a, b"checkpoint").await;
    h.kill().await;
    drop(w);

    let (h, ch) = start(Some(dir.path().to_path_buf())).await;
    let mut admin = client::admin(ch.clone(), ADMIN).unwrap();
    let st = admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: s.sweep_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.jobs.len(), 12);
    let leased: Vec<_> = st
        .jobs
        .iter()
        .filter(|j| j.state() == v1::JobState::Leased)
        .collect();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].newest_checkpoint_sha256, sha);
    // The worker's session survived; it carries on with its lease and completes.
    let mut bad = client::worker(ch.clone(), Some("survivor"), "not-the-session").unwrap();
    assert_eq!(
        bad.lease(v1::LeaseRequest { device_index: 0 })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut w = client::worker(ch.clone(), Some("survivor"), &session).unwrap();
    let hb = w
        .heartbeat(v1::HeartbeatRequest {
            leases: vec![v1::ActiveLease {
                job_id: a.job_id.clone(),
                fencing_token: a.fencing_token,
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.abort_job_ids.is_empty() && !hb.reregister);
    assert!(rpc::complete(&mut w, &a, result(&sha)).await);
    // The next lease does not reuse a fencing token.
    let b = rpc::lease(&mut w).await;
    assert!(b.fencing_token > a.fencing_token);
    assert_eq!(b.init_checkpoint_sha256, sha);
    h.shutdown().await;
}
