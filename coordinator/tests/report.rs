//! `ausweep report` over the admin API against a running coordinator with a partial sweep.

use ausweep_coordinator::client;
use ausweep_coordinator::report::cmd::{run_report, Format, ReportArgs};
use ausweep_coordinator::{serve, Config};
use ausweep_proto::v1;
use sha2::{Digest, Sha256};

const ADMIN: &str = "admin-token-0123456789";
const JOIN: &str = "join-token-0123456789";

#[tokio::test]
async fn report_over_the_admin_api_marks_a_partial_sweep() {
    let h = serve(Config::local(ADMIN, JOIN, None)).await.unwrap();
    let url = format!("http://{}", h.addr);
    let ch = client::connect(&url, None).await.unwrap();
    let mut admin = client::admin(ch.clone(), ADMIN).unwrap();
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../experiments/paper.yaml"
    ))
    .unwrap()
    .replace("device: cuda\n  min_gpu_memory_mib: 8000", "device: cpu");
    let sweep = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: manifest,
            file_name: "paper.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep_id;
    let mut w = client::worker(ch.clone(), None, JOIN).unwrap();
    let r = w
        .register(v1::RegisterRequest {
            worker_name: "w1".into(),
            hostname: "n".into(),
            devices: vec![v1::Device {
                index: 0,
                kind: v1::DeviceKind::Cpu as i32,
                memory_mib: 0,
                name: "cpu".into(),
                healthy: true,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let mut w = client::worker(ch, Some(&r.worker_id), &r.session_token).unwrap();
    // Two jobs complete, with F1 0.30 and 0.50 on every AU.
    for (i, f1) in [0.3, 0.5].into_iter().enumerate() {
        let a = w
            .lease(v1::LeaseRequest { device_index: 0 })
            .await
            .unwrap()
            .into_inner()
            .assignment
            .unwrap();
        let data = format!("ckpt {i}").into_bytes();
        let sha = hex::encode(Sha256::digest(&data));
        let chunks = vec![
            v1::CheckpointChunk {
                part: Some(v1::checkpoint_chunk::Part::Header(v1::CheckpointHeader {
                    job_id: a.job_id.clone(),
                    fencing_token: a.fencing_token,
                    sha256: sha.clone(),
                    size: data.len() as u64,
                    epoch: 1,
                    ..Default::default()
                })),
            },
            v1::CheckpointChunk {
                part: Some(v1::checkpoint_chunk::Part::Data(data)),
            },
        ];
        w.upload_checkpoint(tokio_stream::iter(chunks))
            .await
            .unwrap();
        let aus = [1u32, 2, 4, 6, 9, 12, 25, 26]
            .iter()
            .map(|&au| v1::AuScore {
                au,
                f1,
                precision: f1,
                recall: f1,
                threshold: 0.5,
            })
            .collect();
        w.complete(v1::CompleteRequest {
            job_id: a.job_id,
            fencing_token: a.fencing_token,
            result: Some(v1::JobResult {
                aus,
                avg_f1: f1,
                params_total: 7_978_856,
                params_trainable: 8_200,
                train_seconds: 60.0,
                images_per_sec: 200.0,
                checkpoint_sha256: sha,
            }),
        })
        .await
        .unwrap();
    }
    let out = match std::env::var_os("AUSWEEP_REPORT_OUT") {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile::tempdir().unwrap().keep(),
    };
    let args = ReportArgs {
        sweep: sweep.clone(),
        format: Format::Json,
        out: None,
        store: None,
        baselines: None,
        baselines_file: None,
        coordinator: url,
        admin_token: Some(ADMIN.into()),
        ca: None,
    };
    let json: serde_json::Value = serde_json::from_str(&run_report(&args).await.unwrap()).unwrap();
    assert_eq!(json["partial"], true);
    assert_eq!(
        (json["jobs_done"].as_u64(), json["jobs_total"].as_u64()),
        (Some(2), Some(24))
    );
    // The scheduler hands out densenet121 fold 1 stage 1 (F1 30), then its stage 2 (F1 50).
    let cell = |stage: u64| {
        json["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["backbone"] == "densenet121" && c["stage"] == stage)
            .unwrap()
            .clone()
    };
    for (stage, f1) in [(1, 30.0), (2, 50.0)] {
        let c = cell(stage);
        assert!(
            (c["avg_f1"]["mean"].as_f64().unwrap() - f1).abs() < 1e-9,
            "{c}"
        );
        assert!((c["f1"]["AU26"]["mean"].as_f64().unwrap() - f1).abs() < 1e-9);
        assert_eq!(
            (c["folds_done"].as_u64(), c["partial"].as_bool()),
            (Some(1), Some(true))
        );
    }
    let names: Vec<&str> = json["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["EAC-Net", "JAA-Net", "LP-Net"]);
    let mut a = args.clone();
    a.out = Some(out.clone());
    let msg = run_report(&a).await.unwrap();
    assert!(msg.contains("partial sweep (2 of 24"), "{msg}");
    for f in ["report.md", "report.csv", "folds.csv", "report.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    a.admin_token = Some("wrong-token-0123456789".into());
    assert!(run_report(&a).await.is_err());
    h.shutdown().await;
}
