use super::*;
use crate::sched::{Registration, State, Timing};
use crate::store::records::DeviceRecord;
use crate::store::Batch;

#[test]
fn job_ids_split_into_labels() {
    assert_eq!(
        job_labels("0123abcd.mobilenet_v2.f3.s2.g0").unwrap(),
        ["0123abcd", "mobilenet_v2", "3", "2", "0"].map(String::from)
    );
    assert!(job_labels("nonsense").is_none());
    assert!(job_labels("a.b.x3.s2.g0").is_none());
}

#[test]
fn every_pending_class_has_a_label_of_the_fixed_set() {
    use ausweep_proto::v1::PendingClass;
    let mut labels = std::collections::BTreeSet::new();
    for n in 0..=10 {
        let c = PendingClass::try_from(n).unwrap();
        let l = reason_label(c);
        assert!(snapshot::REASONS.contains(&l), "{c:?} -> {l}");
        labels.insert(l);
    }
    // Both dependency classes share a label; every label of the set is some class's.
    assert_eq!(labels.len(), snapshot::REASONS.len());
    assert!(
        PendingClass::try_from(11).is_err(),
        "a class without a label"
    );
}

fn ev(job: &str, state: JobState, msg: &str, progress: Option<Progress>) -> Event {
    Event {
        sweep: "s1".into(),
        job: job.into(),
        state,
        attempt: 1,
        progress,
        message: msg.into(),
    }
}

#[test]
fn events_drive_counters_and_progress_series() {
    let m = Metrics::new(Some(&Baselines::embedded().unwrap())).unwrap();
    let job = "s1.densenet121.f2.s1.g0";
    let mut p = Progress {
        epoch: 3,
        loss: 0.25,
        images_per_sec: 123.0,
        ..Default::default()
    };
    p.val_f1.insert("AU12".into(), 0.5);
    p.val_f1.insert("bogus label".into(), 0.5);
    m.observe_event(&ev(job, JobState::Leased, "", Some(p)));
    let text = m.encode().unwrap();
    assert!(text.contains(
        "ausweep_job_epoch{backbone=\"densenet121\",fold=\"2\",grid=\"0\",stage=\"1\",sweep=\"s1\"} 3"
    ), "{text}");
    assert!(text.contains("au=\"AU12\""));
    assert!(!text.contains("bogus"));
    m.observe_event(&ev(
        job,
        JobState::Pending,
        "attempt 1: lease expired (no heartbeat)",
        None,
    ));
    m.observe_event(&ev(
        job,
        JobState::Failed,
        "attempt 2: failed: boom (gave up after 2 attempts)",
        None,
    ));
    m.observe_event(&ev(job, JobState::Pending, "resubmitted", None));
    let text = m.encode().unwrap();
    assert!(
        text.contains("ausweep_lease_expiries_total{sweep=\"s1\"} 1"),
        "{text}"
    );
    assert!(text.contains("ausweep_retries_total{sweep=\"s1\"} 1"));
    assert!(text.contains("ausweep_attempt_failures_total{sweep=\"s1\"} 2"));
    assert!(
        !text.contains("ausweep_job_epoch{"),
        "progress cleared when the attempt ended"
    );
    assert!(!text.contains("ausweep_job_val_f1{"), "{text}");
    assert!(text.contains("ausweep_baseline_f1{au=\"avg\",method=\"eac_net\"} 48.5"));
    assert!(text.contains("ausweep_baseline_f1{au=\"AU26\",method=\"jaa_net\"} 58.4"));
}

#[test]
fn refresh_counts_jobs_reasons_workers_and_gpus() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/paper.yaml"),
    )
    .unwrap();
    let mut parsed = crate::manifest::parse(&text, "paper.yaml").unwrap();
    // The paper's sweep on data that needs no preparation job: 24 training jobs.
    parsed.manifest.dataset.source = ausweep_proto::job::DataSource::Synthetic {
        subjects: 27,
        frames: 10,
        seed: 0,
    };
    let plan = crate::plan::expand(&parsed.sweep_id, &parsed.manifest).unwrap();
    let now = 1_000_000;
    let mut st = State::new(Timing::default(), now);
    let mut b = Batch::new();
    let specs = crate::plan::encode_specs(&parsed.sweep_id, &plan).unwrap();
    st.submit(&parsed, plan, specs, now, &mut b).unwrap();
    let gpu = |index, memory_mib| DeviceRecord {
        index,
        cuda: true,
        memory_mib,
        name: "H100".into(),
        healthy: true,
    };
    let reg = Registration {
        id: "w1".into(),
        hostname: "h".into(),
        devices: vec![gpu(0, 80_000), gpu(1, 80_000)],
        weights: crate::sched::testkit::all_weights(),
    };
    st.register(reg, "00".into(), now, &mut b).unwrap();
    st.lease("w1", 0, now, &mut b).unwrap();
    let m = Metrics::new(None).unwrap();
    m.refresh(&st, now);
    let t = m.encode().unwrap();
    let sid = &parsed.sweep_id;
    assert!(
        t.contains(&format!(
            "ausweep_jobs{{state=\"pending\",sweep=\"{sid}\"}} 23"
        )),
        "{t}"
    );
    assert!(t.contains(&format!(
        "ausweep_jobs{{state=\"running\",sweep=\"{sid}\"}} 1"
    )));
    // 12 stage-2 jobs wait on stage 1; 11 stage-1 jobs wait for a free device.
    assert!(
        t.contains("ausweep_pending_jobs{reason=\"dependency\"} 12"),
        "{t}"
    );
    assert!(t.contains("ausweep_pending_jobs{reason=\"waiting_for_device\"} 11"));
    assert!(t.contains("ausweep_queue_depth 11"));
    assert!(t.contains("ausweep_workers{state=\"alive\"} 1"));
    assert!(
        t.contains("ausweep_gpus{state=\"busy\"} 1")
            && t.contains("ausweep_gpus{state=\"free\"} 1")
    );
    assert!(t.contains("ausweep_gpu_busy{gpu=\"0\",worker=\"w1\"} 1"));
    m.observe_device("w1", 0, Some(1024), Some(0.5), Some(71.0));
    let t = m.encode().unwrap();
    assert!(t.contains("ausweep_gpu_memory_free_bytes{gpu=\"0\",worker=\"w1\"} 1073741824"));
    assert!(t.contains("ausweep_gpu_temperature_celsius{gpu=\"0\",worker=\"w1\"} 71"));
    // Long after the lease length the worker counts as dead and its GPUs drop out.
    m.refresh(&st, now + 10 * 60_000);
    let t = m.encode().unwrap();
    assert!(t.contains("ausweep_workers{state=\"dead\"} 1"));
    assert!(
        t.contains("ausweep_pending_jobs{reason=\"no_worker\"} 11"),
        "{t}"
    );
}

#[test]
fn rpc_labels_are_bounded() {
    assert_eq!(
        rpc::labels("/ausweep.v1.Admin/Submit"),
        ("admin", "Submit".into())
    );
    assert_eq!(
        rpc::labels("/ausweep.v1.Worker/x.y"),
        ("worker", "other".into())
    );
    assert_eq!(rpc::labels("/evil/path"), ("other", "other".into()));
    assert_eq!(rpc::code_name("16"), "Unauthenticated");
    assert_eq!(rpc::code_name("99"), "Unknown");
}
