//! Attempt outcomes: lost attempts against failures, the final upload never being a resume
//! point, bad checkpoints falling back, repeated failures, and checkpoint retention.

use super::testkit::*;
use super::types::*;
use crate::store::records::JobState;

/// A checkpoint name unlike the harness's final ones (`{token:064x}`).
fn sha(n: u32) -> String {
    format!("{n:x}{}", "e".repeat(63))
}

/// Lets the current lease run out and expires it.
fn expire(h: &mut Harness) -> Vec<String> {
    h.now += 3_001;
    h.step(|st, now, b| st.expire(now, b)).unwrap()
}

fn fail(h: &mut Harness, a: &Assignment, kind: FailureKind, reason: &str) -> FailOutcome {
    h.step(|st, now, b| st.fail("w", &a.job_id, a.token, kind, reason, now, b))
        .unwrap()
}

fn job_shas(h: &Harness, job: &str) -> Vec<(u32, bool)> {
    let mut v: Vec<(u32, bool)> =
        h.st.checkpoints
            .values()
            .filter(|c| c.job == job)
            .map(|c| (c.epoch, c.final_result))
            .collect();
    v.sort();
    v
}

#[test]
fn a_final_upload_is_never_offered_as_a_resume_point() {
    let mut h = Harness::new();
    h.submit(SMALL);
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    h.upload("w", &a, &sha(1), 1, false);
    // The final weights arrive, then the worker dies before Complete.
    h.upload("w", &a, &sha(99), 1, true);
    assert_eq!(expire(&mut h), vec![a.job_id.clone()]);
    let b = h.lease("w", 0).unwrap();
    assert_eq!(b.job_id, a.job_id);
    assert_eq!(b.resume_checkpoint.as_deref(), Some(sha(1).as_str()));
    // The orphaned final upload is collected; the resume point stays.
    assert_eq!(job_shas(&h, &a.job_id), vec![(1, false)]);
    assert!(h.st.take_garbage().contains(&sha(99)));
    let j = h.st.job(&a.job_id).unwrap();
    assert_eq!((j.failures, j.lost), (0, 1));
}

#[test]
fn lost_attempts_that_progress_do_not_use_up_retries() {
    let mut h = Harness::new();
    h.submit(SMALL); // retries: 1, so two failures end a job
    h.register("w", cpus(1));
    let first = h.lease("w", 0).unwrap();
    let id = first.job_id.clone();
    let mut a = first;
    for epoch in 1..=6 {
        assert_eq!(a.job_id, id);
        h.upload("w", &a, &sha(epoch), epoch, false);
        expire(&mut h);
        assert_eq!(
            h.st.job(&id).unwrap().state,
            JobState::Pending,
            "epoch {epoch}"
        );
        a = h.lease("w", 0).unwrap();
        assert_eq!(a.resume_checkpoint.as_deref(), Some(sha(epoch).as_str()));
    }
    // Six lost attempts later the job's own failure budget is whole: one failure is retried...
    assert!(fail(&mut h, &a, FailureKind::Transient, "segfault").will_retry);
    let b = h.lease("w", 0).unwrap();
    assert_eq!(b.job_id, id);
    assert_eq!(h.complete("w", &b), Fenced::Current);
    let j = h.st.job(&id).unwrap();
    assert_eq!(
        (j.state, j.failures, j.lost, j.attempt),
        (JobState::Succeeded, 1, 6, 8)
    );
    assert!(j.attempt <= j.max_attempts);
}

#[test]
fn lost_attempts_leave_the_failure_budget_as_it_was() {
    let mut h = Harness::new();
    h.submit(SMALL); // retries: 1
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    h.upload("w", &a, &sha(1), 1, false);
    expire(&mut h);
    let b = h.lease("w", 0).unwrap();
    assert!(fail(&mut h, &b, FailureKind::Transient, "one").will_retry);
    let c = h.lease("w", 0).unwrap();
    // ...and a second failure ends it, lost attempts or not.
    assert!(!fail(&mut h, &c, FailureKind::Transient, "two").will_retry);
    let j = h.st.job(&a.job_id).unwrap();
    assert_eq!((j.state, j.failures, j.lost), (JobState::Failed, 2, 1));
    assert!(
        j.last_error.contains("gave up after 2 failed attempts"),
        "{}",
        j.last_error
    );
}

#[test]
fn lost_attempts_without_progress_stop_at_the_cap() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("retries: 1", "retries: 1\nlost_retries: 3"));
    h.register("w", cpus(1));
    let mut id = String::new();
    for n in 1..=3 {
        let a = h.lease("w", 0).unwrap();
        if n == 1 {
            id = a.job_id.clone();
        }
        assert_eq!(a.job_id, id);
        expire(&mut h);
    }
    let j = h.st.job(&id).unwrap();
    assert_eq!(j.state, JobState::Failed, "{}", j.last_error);
    assert!(
        j.last_error
            .contains("3 attempts lost in a row without progress"),
        "{}",
        j.last_error
    );
    assert_eq!((j.failures, j.lost, j.lost_streak), (0, 3, 3));
}

#[test]
fn a_drain_is_a_lost_attempt_not_a_failure() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("retries: 1", "retries: 0"));
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    h.upload("w", &a, &sha(1), 1, false);
    let f = fail(
        &mut h,
        &a,
        FailureKind::Lost,
        "worker drained after checkpoint of epoch 1",
    );
    assert!(f.will_retry);
    let j = h.st.job(&a.job_id).unwrap();
    assert_eq!((j.state, j.failures, j.lost), (JobState::Pending, 0, 1));
}

#[test]
fn a_bad_checkpoint_falls_back_to_the_previous_intact_one() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("retries: 1", "retries: 3\nkeep_checkpoints: all"));
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    h.upload("w", &a, &sha(1), 1, false);
    h.upload("w", &a, &sha(2), 2, false);
    expire(&mut h);
    let b = h.lease("w", 0).unwrap();
    assert_eq!(b.resume_checkpoint.as_deref(), Some(sha(2).as_str()));
    let f = fail(
        &mut h,
        &b,
        FailureKind::BadCheckpoint,
        "missing optimiser tensor",
    );
    assert!(f.will_retry);
    let j = h.st.job(&a.job_id).unwrap();
    assert!(
        j.last_error.contains(&sha(2)[..12]) && j.last_error.contains("(epoch 2)"),
        "the status names the checkpoint at fault: {}",
        j.last_error
    );
    // Set aside: even `keep_checkpoints: all` no longer keeps it; the intact one stays.
    assert_eq!(
        job_shas(&h, &a.job_id),
        [(1, false)],
        "the bad epoch-2 checkpoint is collected"
    );
    assert!(h.st.take_garbage().contains(&sha(2)), "its blob goes too");
    let c = h.lease("w", 0).unwrap();
    assert_eq!(c.resume_checkpoint.as_deref(), Some(sha(1).as_str()));
    // Bad again: nothing intact is left before it, so a fresh start.
    fail(
        &mut h,
        &c,
        FailureKind::BadCheckpoint,
        "missing optimiser tensor",
    );
    let d = h.lease("w", 0).unwrap();
    assert_eq!(d.resume_checkpoint, None);
    assert_eq!(h.complete("w", &d), Fenced::Current);
}

#[test]
fn the_same_failure_twice_from_the_same_checkpoint_is_not_transient() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("retries: 1", "retries: 5"));
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    h.upload("w", &a, &sha(1), 1, false);
    assert!(fail(&mut h, &a, FailureKind::Transient, "boom").will_retry);
    let b = h.lease("w", 0).unwrap();
    // A different error from the same point is still worth a retry.
    assert!(fail(&mut h, &b, FailureKind::Transient, "bang").will_retry);
    let c = h.lease("w", 0).unwrap();
    assert!(!fail(&mut h, &c, FailureKind::Transient, "bang").will_retry);
    let j = h.st.job(&a.job_id).unwrap();
    assert_eq!((j.state, j.failures), (JobState::Failed, 3));
    assert!(
        j.last_error.contains("failed twice the same way") && j.last_error.contains(&sha(1)[..12]),
        "{}",
        j.last_error
    );
}

#[test]
fn retention_keeps_the_newest_while_running_then_only_the_final() {
    let mut h = Harness::new();
    h.submit(SMALL);
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    for e in 1..=3 {
        h.upload("w", &a, &sha(e), e, false);
    }
    assert_eq!(job_shas(&h, &a.job_id), vec![(3, false)]);
    let gone = h.st.take_garbage();
    assert_eq!(gone, vec![sha(1), sha(2)]);
    let bytes = h.st.checkpoint_bytes();
    assert_eq!(bytes, 1003);
    assert_eq!(h.complete("w", &a), Fenced::Current);
    assert_eq!(job_shas(&h, &a.job_id), vec![(1, true)]);
    assert!(h.st.take_garbage().contains(&sha(3)));
    // The records' deletion is durable: a restarted coordinator knows only the final.
    h.restart();
    assert_eq!(job_shas(&h, &a.job_id), vec![(1, true)]);
}

#[test]
fn retention_best_keeps_the_best_validation_epoch_too() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("retries: 1", "retries: 1\nkeep_checkpoints: best"));
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    for e in 1..=3 {
        h.upload("w", &a, &sha(e), e, false); // validation F1 = epoch / 10
    }
    assert_eq!(h.complete("w", &a), Fenced::Current);
    assert_eq!(job_shas(&h, &a.job_id), vec![(1, true), (3, false)]);
}

#[test]
fn a_node_failure_moves_the_job_to_another_worker_and_says_which_workers_cannot_run_it() {
    let mut h = Harness::new();
    h.submit(&SMALL.replace("retries: 1", "retries: 0"));
    h.register("w", cpus(1));
    let a = h.lease("w", 0).unwrap();
    let why = "dataset path /mnt/disfa does not exist on this worker";
    let f = fail(&mut h, &a, FailureKind::Node, why);
    assert!(
        f.will_retry,
        "a node failure is retried even with no retries left"
    );
    let j = h.st.job(&a.job_id).unwrap().clone();
    assert_eq!((j.state, j.failures), (JobState::Pending, 0));
    // The worker that lacks the data is not offered the job again, even alone.
    let other = h.lease("w", 0).unwrap();
    assert_ne!(
        other.job_id, a.job_id,
        "the same job went back to the node that lacks its data"
    );
    let (class, reason) = h.st.pending(&j, h.now);
    assert_eq!(class, ausweep_proto::v1::PendingClass::NoWorkerCanRun);
    assert_eq!(
        reason,
        format!(
            "no connected worker can run it: w: {why} (a worker is offered it again once it \
             registers anew, e.g. its agent restarted after the fix)"
        )
    );
    // Another worker gets it.
    h.register("w2", cpus(1));
    let b = h.lease("w2", 0).unwrap();
    assert_eq!(b.job_id, a.job_id);
    // Registering anew clears what a worker lacked.
    h.register("w", cpus(1));
    assert!(!h.st.cannot_run(&a.job_id, "w"));
}
