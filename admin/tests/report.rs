//! `ausweep report` over the admin API against a running coordinator with a partial sweep.

use ausweep_admin::report::cmd::{run_report, Format, ReportOptions};
use ausweep_testkit::rpc::{self, InProcess, Upload};
use ausweep_testkit::{repo_text, ADMIN};
use tonic::Code;

/// The gRPC status a report error carries; panics when it carries none (e.g. it failed to
/// connect).
fn status_of(e: &anyhow::Error) -> &tonic::Status {
    e.downcast_ref::<tonic::Status>()
        .unwrap_or_else(|| panic!("not a gRPC status: {e:#}"))
}

#[tokio::test]
async fn report_over_the_admin_api_marks_a_partial_sweep() {
    let mut ip = InProcess::start(rpc::config(None)).await;
    let manifest = repo_text("experiments/paper.yaml")
        .replace("device: cuda\n  min_gpu_memory_mib: 8000", "device: cpu");
    let sweep = ip.submit(&manifest).await;
    let mut w = rpc::register(&ip.ch, "w1").await;
    // The sweep reads DISFA's videos: their preparation comes first; the report leaves it out.
    let p = rpc::lease(&mut w).await;
    assert!(p.job_id.ends_with(".prepare.g0"), "{}", p.job_id);
    let sha = rpc::upload(&mut w, &p, b"prepared", Upload::default())
        .await
        .unwrap_or_else(|s| panic!("upload: {s:?}"));
    rpc::complete(&mut w, &p, rpc::result(&sha, &[], 0.0)).await;
    // Two jobs complete, with F1 0.30 and 0.50 on every AU.
    for (i, f1) in [0.3, 0.5].into_iter().enumerate() {
        let a = rpc::lease(&mut w).await;
        let data = format!("ckpt {i}").into_bytes();
        let sha = rpc::upload(&mut w, &a, &data, Upload::default())
            .await
            .unwrap_or_else(|s| panic!("upload: {s:?}"));
        let aus = [1u32, 2, 4, 6, 9, 12, 25, 26];
        rpc::complete(&mut w, &a, rpc::result(&sha, &aus, f1)).await;
    }
    let out = match std::env::var_os("AUSWEEP_REPORT_OUT") {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile::tempdir().unwrap().keep(),
    };
    let args = ReportOptions {
        sweep: sweep.clone(),
        format: Format::Json,
        out: None,
        store: None,
        baselines: None,
        baselines_file: None,
        conn: ausweep_admin::Conn::plain(&ip.url, Some(ADMIN.into())),
        cost: None,
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
    // A wrong admin token: the coordinator refuses it (not a connection failure).
    a.conn.admin_token = Some("wrong-token-0123456789".into());
    let e = run_report(&a).await.expect_err("a wrong admin token");
    let s = status_of(&e);
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unauthenticated, "bad admin token"),
        "{e:#}"
    );
    // An unknown sweep: NotFound, naming it.
    let mut a = args.clone();
    a.sweep = "0123456789abcdef".into();
    let e = run_report(&a).await.expect_err("an unknown sweep");
    let s = status_of(&e);
    assert_eq!(s.code(), Code::NotFound, "{e:#}");
    assert!(s.message().contains("0123456789abcdef"), "{e:#}");
    ip.handle.shutdown().await;
}
