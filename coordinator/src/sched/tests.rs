//! Scenario tests of the scheduler's state machine.

use super::testkit::*;
use super::types::*;
use crate::store::records::JobState;

#[test]
fn elementwise_dependencies_release_stage2_as_soon_as_its_stage1_is_done() {
    let mut h = Harness::new();
    let s = h.submit(SMALL);
    assert_eq!((s.jobs, s.created, s.version), (8, true, 1));
    h.register("w", cpus(1));
    // Only stage-1 jobs are offered first.
    let a = h.lease("w", 0).unwrap();
    assert!(a.job_id.contains(".s1."), "{}", a.job_id);
    assert_eq!(h.complete("w", &a), Fenced::Current);
    // The next lease is that element's stage 2 (older than the other stage 1s, same priority),
    // with the dependency's checkpoint.
    let b = h.lease("w", 0).unwrap();
    assert_eq!(b.job_id, a.job_id.replace(".s1.", ".s2."));
    assert_eq!(
        b.init_checkpoint.as_deref(),
        Some(format!("{:064x}", a.token).as_str())
    );
    let spec = h.spec(&b.job_id);
    assert_eq!((spec.stage, spec.init_checkpoint), (2, None));
}

#[test]
fn a_video_sweep_prepares_first_and_stage_1_starts_from_no_checkpoint() {
    let mut h = Harness::new();
    let text = SMALL.replace(
        "source: {kind: synthetic, subjects: 4, frames: 4}",
        "source: {kind: disfa_videos, videos_root: /v, prepared_root: /p}",
    );
    let s = h.submit(&text);
    assert_eq!(s.jobs, 9, "8 training jobs and their data's preparation");
    h.register("w", cpus(1));
    let p = h.lease("w", 0).unwrap();
    assert!(p.job_id.ends_with(".prepare.g0"), "{}", p.job_id);
    let spec = h.spec(&p.job_id);
    assert_eq!(spec.task, ausweep_proto::job::Task::Prepare);
    // Nothing else is offered while the data is being prepared.
    h.register("w2", cpus(1));
    assert!(h.lease("w2", 0).is_none());
    assert_eq!(h.complete("w", &p), Fenced::Current);
    // Stage 1 now runs, from its ImageNet weights: the preparation's artifact is no model.
    let a = h.lease("w", 0).unwrap();
    assert!(a.job_id.contains(".s1."), "{}", a.job_id);
    assert_eq!(a.init_checkpoint, None);
    assert_eq!(h.complete("w", &a), Fenced::Current);
    let b = h.lease("w", 0).unwrap();
    assert_eq!(b.job_id, a.job_id.replace(".s1.", ".s2."));
    assert_eq!(
        b.init_checkpoint.as_deref(),
        Some(format!("{:064x}", a.token).as_str())
    );
}

#[test]
fn same_manifest_is_idempotent_and_a_change_is_a_new_version() {
    let mut h = Harness::new();
    let a = h.submit(SMALL);
    let b = h.submit(SMALL);
    assert_eq!(a.sweep_id, b.sweep_id);
    assert!(!b.created);
    let c = h.submit(&SMALL.replace("retries: 1", "retries: 2"));
    assert_ne!(c.sweep_id, a.sweep_id);
    assert_eq!(c.version, 2);
    assert_eq!(h.st.job_ids().count(), 16);
}

#[test]
fn late_result_of_an_expired_attempt_is_acknowledged_and_discarded() {
    let mut h = Harness::new();
    h.submit(SMALL);
    h.register("a", cpus(1));
    h.register("b", cpus(1));
    let first = h.lease("a", 0).unwrap();
    h.now += 4_000;
    h.step(|st, _, b| st.heartbeat("b", NodeUpdate::default(), &[], 5_000, b))
        .unwrap();
    let expired = h.step(|st, now, b| st.expire(now, b)).unwrap();
    assert_eq!(expired, vec![first.job_id.clone()]);
    // b gets the job (a is avoided), attempt 2 with a new token.
    let second = h.lease("b", 0).unwrap();
    assert_eq!(
        (second.job_id.as_str(), second.attempt),
        (first.job_id.as_str(), 2)
    );
    assert!(second.token > first.token);
    assert_eq!(h.complete("a", &first), Fenced::Stale);
    assert_eq!(h.st.job(&first.job_id).unwrap().state, JobState::Leased);
    // a's heartbeat for the old lease is told to abort.
    let hb = h
        .step(|st, now, b| {
            st.heartbeat(
                "a",
                NodeUpdate::default(),
                &[(first.job_id.clone(), first.token)],
                now,
                b,
            )
        })
        .unwrap();
    assert_eq!(hb.abort, vec![first.job_id.clone()]);
    assert_eq!(h.complete("b", &second), Fenced::Current);
}

#[test]
fn retries_resume_from_newest_checkpoint_then_give_up() {
    let mut h = Harness::new();
    h.submit(SMALL);
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    let sha = "c".repeat(64);
    h.upload("w", &a, &sha, 3, false);
    let f = h
        .step(|st, now, b| {
            st.fail(
                "w",
                &a.job_id,
                a.token,
                FailureKind::Transient,
                "segfault",
                now,
                b,
            )
        })
        .unwrap();
    assert!(f.will_retry);
    // Only worker: the avoid rule relaxes.
    let b2 = h.lease("w", 0).unwrap();
    assert_eq!(b2.job_id, a.job_id);
    assert_eq!(b2.resume_checkpoint.as_deref(), Some(sha.as_str()));
    let f = h
        .step(|st, now, b| {
            st.fail(
                "w",
                &b2.job_id,
                b2.token,
                FailureKind::Transient,
                "again",
                now,
                b,
            )
        })
        .unwrap();
    assert!(!f.will_retry);
    let j = h.st.job(&a.job_id).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(
        j.last_error.contains("gave up after 2 failed attempts"),
        "{}",
        j.last_error
    );
    // Its stage 2 says why it waits; resubmit-failed requeues with a fresh budget.
    let s2 = a.job_id.replace(".s1.", ".s2.");
    let reason = h.st.pending_reason(h.st.job(&s2).unwrap(), h.now);
    assert!(reason.contains("failed"), "{reason}");
    let sweep = h.st.job(&a.job_id).unwrap().sweep.clone();
    assert_eq!(h.step(|st, _, b| st.resubmit_failed(&sweep, b)).unwrap(), 1);
    assert_eq!(h.lease("w", 0).unwrap().attempt, 3);
}

#[test]
fn bad_config_is_not_retried_and_oom_needs_more_memory() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("device: any", "device: cuda"));
    h.register("small", vec![gpu(0, 8_000)]);
    let a = h.lease("small", 0).unwrap();
    let f = h
        .step(|st, now, b| {
            st.fail(
                "small",
                &a.job_id,
                a.token,
                FailureKind::BadConfig,
                "no data",
                now,
                b,
            )
        })
        .unwrap();
    assert!(!f.will_retry);
    let b1 = h.lease("small", 0).unwrap();
    let f = h
        .step(|st, now, b| {
            st.fail(
                "small",
                &b1.job_id,
                b1.token,
                FailureKind::OutOfMemory,
                "CUDA OOM",
                now,
                b,
            )
        })
        .unwrap();
    assert!(f.will_retry);
    let j = h.st.job(&b1.job_id).unwrap().clone();
    assert_eq!(j.min_gpu_memory_mib, 8_001);
    let reason = h.st.pending_reason(&j, h.now);
    assert!(reason.contains(">= 8001 MiB"), "{reason}");
    h.register("big", vec![gpu(0, 40_000)]);
    assert_eq!(h.lease("big", 0).unwrap().job_id, b1.job_id);
}

#[test]
fn placement_by_kind_memory_then_priority_and_age() {
    let mut h = Harness::new();
    let low = h.submit(&SMALL.replace("device: any", "device: cuda, min_gpu_memory_mib: 20000"));
    let high = h.submit(
        &SMALL
            .replace("name: small", "name: urgent")
            .replace("retries: 1", "retries: 1\npriority: 5"),
    );
    h.register("cpu", cpus(1));
    h.register("gpu", vec![gpu(0, 24_000)]);
    assert!(h
        .lease("cpu", 0)
        .unwrap()
        .job_id
        .starts_with(&high.sweep_id));
    let g = h.lease("gpu", 0).unwrap();
    assert!(
        g.job_id.starts_with(&high.sweep_id),
        "priority first: {}",
        g.job_id
    );
    let detail = h.st.sweep_detail(&low.sweep_id, h.now).unwrap();
    assert!(detail
        .jobs
        .iter()
        .any(|j| j.pending_reason.contains("waiting for a free cuda device")));
    assert!(detail
        .jobs
        .iter()
        .any(|j| j.pending_reason.contains("waiting on dependency")));
}

#[test]
fn no_worker_grace_is_reported() {
    let mut h = Harness::new();
    let s = h.submit(SMALL);
    let d = h.st.sweep_detail(&s.sweep_id, h.now).unwrap();
    assert_eq!(d.notice, "no worker connected yet");
    h.now += 11_000;
    let d = h.st.sweep_detail(&s.sweep_id, h.now).unwrap();
    assert!(
        d.notice.contains("no worker connected for 11s (grace 10s)"),
        "{}",
        d.notice
    );
}

#[test]
fn restart_keeps_leases_results_and_tokens() {
    let mut h = Harness::new();
    h.submit(SMALL);
    h.register("w", cpus(2));
    let a = h.lease("w", 0).unwrap();
    h.complete("w", &a);
    let b = h.lease("w", 1).unwrap();
    let before: Vec<_> = {
        let mut v: Vec<_> = h.st.job_ids().cloned().collect();
        v.sort();
        v.into_iter()
            .map(|id| h.st.job(&id).unwrap().clone())
            .collect()
    };
    let token = h.st.next_token();
    h.restart();
    for j in &before {
        assert_eq!(h.st.job(&j.id).unwrap(), j);
    }
    assert_eq!(h.st.next_token(), token);
    // The worker carries on with its lease after the restart.
    let hb = h
        .step(|st, now, bt| {
            st.heartbeat(
                "w",
                NodeUpdate::default(),
                &[(b.job_id.clone(), b.token)],
                now,
                bt,
            )
        })
        .unwrap();
    assert!(hb.abort.is_empty() && !hb.reregister);
    assert_eq!(h.complete("w", &b), Fenced::Current);
    // An unknown worker is asked to register again.
    let hb = h
        .step(|st, now, bt| st.heartbeat("ghost", NodeUpdate::default(), &[], now, bt))
        .unwrap();
    assert!(hb.reregister);
}

#[test]
fn cancel_stops_everything_and_leases_abort() {
    let mut h = Harness::new();
    let s = h.submit(SMALL);
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    assert_eq!(
        h.step(|st, now, b| st.cancel(&s.sweep_id, now, b)).unwrap(),
        8
    );
    let hb = h
        .step(|st, now, b| {
            st.heartbeat(
                "w",
                NodeUpdate::default(),
                &[(a.job_id.clone(), a.token)],
                now,
                b,
            )
        })
        .unwrap();
    assert_eq!(hb.abort, vec![a.job_id]);
    assert!(h.lease("w", 0).is_none());
}

#[test]
fn drain_stops_leasing_survives_a_restart_and_ends_with_a_new_registration() {
    let mut h = Harness::new();
    h.submit(SMALL);
    h.register("a", cpus(2));
    let running = h.lease("a", 0).unwrap();
    let leased = h.step(|st, _, b| st.drain("a", b)).unwrap();
    assert_eq!(leased, Some(vec![running.job_id.clone()]));
    assert_eq!(h.step(|st, _, b| st.drain("nobody", b)).unwrap(), None);
    // No new work for a draining worker, and the reason says so.
    match h.step(|st, now, b| st.lease("a", 1, now, b)).unwrap() {
        LeaseOutcome::Nothing(why) => assert_eq!(why, "worker is draining"),
        LeaseOutcome::Assigned(a) => panic!("a draining worker got {}", a.job_id),
    }
    let beat = |h: &mut Harness| {
        let lease = [(running.job_id.clone(), running.token)];
        h.step(|st, now, b| st.heartbeat("a", NodeUpdate::default(), &lease, now, b))
            .unwrap()
    };
    let hb = beat(&mut h);
    assert!(hb.drain && hb.abort.is_empty(), "{hb:?}");
    // The order is stored: a restarted coordinator still tells the worker to drain.
    h.restart();
    assert!(beat(&mut h).drain);
    assert!(h.st.list_workers(h.now)[0].worker.draining);
    // Its running attempt still completes normally.
    assert_eq!(h.complete("a", &running), Fenced::Current);
    // A new session of the same worker (it drained, exited and was started again) leases again.
    h.register("a", cpus(2));
    assert!(!beat(&mut h).drain);
    assert!(h.lease("a", 0).is_some());
}

#[test]
fn jobs_needing_weights_no_worker_holds_wait_with_that_reason_until_a_heartbeat_advertises_them() {
    let mut h = Harness::new();
    let text = SMALL.replace(
        "source: {kind: synthetic, subjects: 4, frames: 4}",
        "source: {kind: disfa_videos, videos_root: /v, prepared_root: /p}",
    );
    h.submit(&text);
    // The worker has MobileNet-v2's ImageNet file but not MTCNN's, which preparing needs.
    h.register_holding("w", cpus(1), &["mobilenet_v2"]);
    let why = match h.step(|st, now, b| st.lease("w", 0, now, b)).unwrap() {
        LeaseOutcome::Nothing(why) => why,
        LeaseOutcome::Assigned(a) => panic!("leased {} to a worker without MTCNN", a.job_id),
    };
    assert!(
        why.contains("need weights this worker does not hold: mtcnn_onet, mtcnn_pnet, mtcnn_rnet"),
        "{why}"
    );
    let prep =
        h.st.job_ids()
            .find(|id| id.ends_with(".prepare.g0"))
            .unwrap()
            .clone();
    let reason = h.st.pending_reason(h.st.job(&prep).unwrap(), h.now);
    assert!(
        reason.starts_with(
            "no connected worker holds the weights mtcnn_onet, mtcnn_pnet, mtcnn_rnet"
        ) && reason.contains("ausweep weights import mtcnn_onet"),
        "{reason}"
    );
    assert_eq!(
        h.st.pending(h.st.job(&prep).unwrap(), h.now).0,
        ausweep_proto::v1::PendingClass::MissingWeights
    );

    // A heartbeat advertises MTCNN too (after `ausweep weights import`): the preparation runs,
    // then MobileNet-v2's stage 1; MobileNet-v1's waits, naming its file.
    let mut names = ausweep_proto::job::MTCNN_WEIGHTS.to_vec();
    names.push("mobilenet_v2");
    let weights = Some(held(&names));
    h.step(|st, now, b| {
        st.heartbeat(
            "w",
            NodeUpdate {
                weights,
                ..NodeUpdate::default()
            },
            &[],
            now,
            b,
        )
    })
    .unwrap();
    h.restart();
    let p = h.lease("w", 0).unwrap();
    assert_eq!(p.job_id, prep);
    assert_eq!(h.complete("w", &p), Fenced::Current);
    let mut stage1 = Vec::new();
    while let Some(a) = h.lease("w", 0) {
        assert!(a.job_id.contains("mobilenet_v2"), "{}", a.job_id);
        assert_eq!(h.complete("w", &a), Fenced::Current);
        stage1.push(a.job_id);
    }
    assert_eq!(
        stage1.len(),
        4,
        "two folds x two stages of mobilenet_v2: {stage1:?}"
    );
    let v1 =
        h.st.job_ids()
            .find(|id| id.contains("mobilenet_v1") && id.contains(".s1."))
            .unwrap()
            .clone();
    let reason = h.st.pending_reason(h.st.job(&v1).unwrap(), h.now);
    assert!(
        reason.starts_with("no connected worker holds the weights mobilenet_v1 ")
            && reason.contains("`ausweep weights fetch mobilenet_v1`"),
        "{reason}"
    );
    // A second worker that holds it takes it.
    h.register_holding("w2", cpus(1), &["mobilenet_v1"]);
    let a = h.lease("w2", 0).unwrap();
    assert!(
        a.job_id.contains("mobilenet_v1") && a.job_id.contains(".s1."),
        "{}",
        a.job_id
    );
}

#[test]
fn specs_are_stored_once_per_sweep_and_a_lease_carries_them_across_a_restart() {
    use crate::store::{Store, Tree};
    let mut h = Harness::new();
    h.submit(SMALL);
    let p = crate::manifest::parse(SMALL, "t.yaml").unwrap();
    let plan = crate::plan::expand(&p.sweep_id, &p.manifest).unwrap();
    assert_eq!(plan.len(), 8);
    assert!(h.store.scan(Tree::Specs).unwrap().is_empty());
    let sweeps = h.store.scan(Tree::SweepSpecs).unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(sweeps[0].0, format!("{}#000000", p.sweep_id));
    let whole: usize = plan
        .iter()
        .map(|j| serde_json::to_vec(&j.spec).unwrap().len())
        .sum();
    assert!(
        sweeps[0].1.len() * 2 < whole,
        "{} vs {whole}",
        sweeps[0].1.len()
    );
    h.restart();
    for j in &plan {
        assert_eq!(h.spec(&j.id), j.spec, "{}", j.id);
    }
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    let (base, patch) = a.spec.clone().unwrap();
    let spec: ausweep_proto::JobSpec =
        serde_json::from_str(&crate::store::specs::render(&base, &patch, &a.job_id).unwrap())
            .unwrap();
    let planned = plan.iter().find(|j| j.id == a.job_id).unwrap();
    assert_eq!(spec, planned.spec);
}

#[test]
fn specs_live_in_their_own_tree_and_older_stores_are_migrated_at_load() {
    use crate::store::records::JobRecord;
    use crate::store::{codec, decode, Batch, Store, Tree};
    let mut h = Harness::new();
    h.submit(SMALL);
    let jobs = h.store.scan(Tree::Jobs).unwrap();
    assert_eq!(jobs.len(), 8);
    let mut originals = Vec::new();
    let mut legacy = Batch::new();
    for (id, bytes) in &jobs {
        // Job records hold no spec: transitions rewrite only the small record.
        let rec: JobRecord = decode(Tree::Jobs, id, bytes).unwrap();
        let mut rec = serde_json::to_value(&rec).unwrap();
        let spec = h.spec(id);
        // As an older coordinator wrote it: JSON, the spec inline, no `epochs`/`needs`, no spec
        // tree.
        let o = rec.as_object_mut().unwrap();
        o.insert("spec".into(), serde_json::to_value(&spec).unwrap());
        o.remove("epochs");
        o.remove("needs");
        legacy.put_raw(Tree::Jobs, id, serde_json::to_vec(&rec).unwrap());
        originals.push((id.clone(), spec));
    }
    for (k, _) in h.store.scan(Tree::SweepSpecs).unwrap() {
        legacy.delete(Tree::SweepSpecs, &k);
    }
    h.store.commit(&legacy).unwrap();
    assert!(h.store.scan(Tree::Specs).unwrap().is_empty());

    h.restart();
    for (id, spec) in &originals {
        // Read whole from the spec tree, where the load moved it.
        assert!(h.st.spec_of(id).is_none(), "{id}");
        assert_eq!(&h.spec(id), spec, "{id}");
        let raw = h.store.get(Tree::Jobs, id).unwrap().unwrap();
        assert!(
            !codec::is_json(&raw),
            "{id} is still the old JSON record with its spec: {}",
            String::from_utf8_lossy(&raw)
        );
        let j = h.st.job(id).unwrap();
        assert_eq!(
            (j.epochs, j.needs),
            (spec.train.epochs, spec.weights_need()),
            "{id}"
        );
    }
    // A worker without MobileNet-v1's ImageNet file never gets its stage 1 after the migration.
    h.register_holding("w", cpus(1), &["mobilenet_v2"]);
    while let Some(a) = h.lease("w", 0) {
        assert!(a.job_id.contains("mobilenet_v2"), "{}", a.job_id);
        assert_eq!(h.complete("w", &a), Fenced::Current);
    }
    // And a second load finds nothing left to move.
    let before = h.store.scan(Tree::Jobs).unwrap();
    h.restart();
    assert_eq!(h.store.scan(Tree::Jobs).unwrap(), before);
}

#[test]
fn a_sweep_is_named_by_id_by_name_newest_version_or_unique_id_prefix() {
    let mut h = Harness::new();
    let v1 = h.submit(SMALL);
    let v2 = h.submit(&SMALL.replace("frames: 4", "frames: 5"));
    assert_eq!((v1.version, v2.version, v1.name.as_str()), (1, 2, "small"));
    let other = h.submit(&SMALL.replace("name: small", "name: other"));
    let resolve = |h: &Harness, a: &str| h.st.resolve_sweep(a);
    assert_eq!(resolve(&h, &v1.sweep_id).unwrap(), v1.sweep_id);
    assert_eq!(resolve(&h, "small").unwrap(), v2.sweep_id);
    assert_eq!(resolve(&h, "other").unwrap(), other.sweep_id);
    // The shortest prefix that only one id has.
    let prefix = (1..v1.sweep_id.len())
        .map(|n| &v1.sweep_id[..n])
        .find(|p| {
            ![&v2.sweep_id, &other.sweep_id]
                .iter()
                .any(|id| id.starts_with(p))
        })
        .unwrap();
    assert_eq!(resolve(&h, prefix).unwrap(), v1.sweep_id);
    let err = resolve(&h, "paper").unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "no sweep `paper` by id, name or unique id prefix; sweeps: other v1 ({}), \
             small v1 ({}), small v2 ({})",
            other.sweep_id, v1.sweep_id, v2.sweep_id
        )
    );
}
