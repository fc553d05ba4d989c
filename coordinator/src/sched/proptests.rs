//! Property tests: random interleavings of lease, heartbeat, progress, expiry, complete, fail
//! (current and stale) and coordinator restarts keep every invariant, and a fair drain at the
//! end finishes every job whose dependencies did not fail.

use super::testkit::*;
use super::types::*;
use crate::store::records::JobState;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Act {
    Lease(usize, u32),
    Heartbeat(usize),
    Complete(usize, usize),
    StaleComplete(usize, usize),
    Fail(usize, usize, u8),
    Advance(u64),
    Expire,
    Restart,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (0..3usize, 0..2u32).prop_map(|(w, d)| Act::Lease(w, d)),
        2 => (0..3usize).prop_map(Act::Heartbeat),
        4 => (0..3usize, 0..4usize).prop_map(|(w, i)| Act::Complete(w, i)),
        1 => (0..3usize, 0..4usize).prop_map(|(w, i)| Act::StaleComplete(w, i)),
        1 => (0..3usize, 0..4usize, 0..3u8).prop_map(|(w, i, k)| Act::Fail(w, i, k)),
        2 => (100..2_500u64).prop_map(Act::Advance),
        1 => Just(Act::Expire),
        1 => Just(Act::Restart),
    ]
}

const WORKERS: [&str; 3] = ["w0", "w1", "w2"];

/// What each simulated worker believes it runs: (job, token, device).
type Running = Vec<Vec<Assignment>>;

fn check(h: &Harness, running: &Running) {
    let mut busy = HashMap::new();
    for id in h.st.job_ids() {
        let j = h.st.job(id).unwrap();
        assert_eq!(
            j.state == JobState::Leased,
            j.lease.is_some(),
            "{id}: lease iff leased"
        );
        assert!(j.attempt <= j.max_attempts, "{id}: attempts within budget");
        if matches!(j.state, JobState::Leased | JobState::Succeeded) {
            for d in &j.depends_on {
                assert_eq!(
                    h.st.job(d).unwrap().state,
                    JobState::Succeeded,
                    "{id} ran before {d}"
                );
            }
        }
        if j.state == JobState::Succeeded {
            assert!(j.final_checkpoint.is_some());
        }
        if let Some(l) = &j.lease {
            assert!(l.token < h.st.next_token());
            assert!(
                busy.insert((l.worker.clone(), l.device), id.clone())
                    .is_none(),
                "one job per device"
            );
        }
    }
    // No job runs twice: at most one simulated attempt holds the current token.
    let mut holders: HashMap<&str, usize> = HashMap::new();
    for r in running.iter().flatten() {
        let j = h.st.job(&r.job_id).unwrap();
        if j.lease.as_ref().is_some_and(|l| l.token == r.token) {
            *holders.entry(r.job_id.as_str()).or_default() += 1;
        }
    }
    assert!(holders.values().all(|n| *n == 1));
}

fn snapshot(h: &Harness) -> Vec<crate::store::records::JobRecord> {
    let mut v: Vec<_> =
        h.st.job_ids()
            .map(|id| h.st.job(id).unwrap().clone())
            .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

fn masked(mut v: Vec<crate::store::records::JobRecord>) -> Vec<crate::store::records::JobRecord> {
    for j in &mut v {
        if let Some(l) = &mut j.lease {
            l.deadline_ms = 0;
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn interleavings_keep_invariants(acts in proptest::collection::vec(act(), 1..120)) {
        let mut h = Harness::new();
        h.submit(SMALL);
        h.register("w0", cpus(1));
        h.register("w1", cpus(2));
        h.register("w2", cpus(2));
        let mut running: Running = vec![Vec::new(); 3];
        let mut old: Vec<Assignment> = Vec::new();
        for a in acts {
            match a {
                Act::Lease(w, d) => {
                    let d = d.min(if w == 0 { 0 } else { 1 });
                    running[w].retain(|r| r.device != d);
                    if let Some(x) = h.lease(WORKERS[w], d) {
                        running[w].push(x);
                    }
                }
                Act::Heartbeat(w) => {
                    let leases: Vec<_> = running[w].iter().map(|r| (r.job_id.clone(), r.token)).collect();
                    let hb = h.step(|st, now, b| st.heartbeat(WORKERS[w], NodeUpdate::default(), &leases, now, b)).unwrap();
                    running[w].retain(|r| !hb.abort.contains(&r.job_id));
                }
                Act::Complete(w, i) if !running[w].is_empty() => {
                    let n = running[w].len();
                    let x = running[w].remove(i % n);
                    let before = h.st.job(&x.job_id).unwrap().clone();
                    let fenced = h.complete(WORKERS[w], &x);
                    let after = h.st.job(&x.job_id).unwrap();
                    if fenced == Fenced::Current {
                        prop_assert_eq!(after.state, JobState::Succeeded);
                    } else {
                        prop_assert_eq!(after.state, before.state);
                    }
                    old.push(x);
                }
                Act::StaleComplete(w, i) if !old.is_empty() => {
                    let x = old[i % old.len()].clone();
                    let before = snapshot(&h);
                    let cur = h.st.job(&x.job_id).unwrap().lease.as_ref().map(|l| l.token);
                    if cur != Some(x.token) {
                        prop_assert_eq!(h.complete(WORKERS[w], &x), Fenced::Stale);
                        prop_assert_eq!(before, snapshot(&h));
                    }
                }
                Act::Fail(w, i, k) if !running[w].is_empty() => {
                    let n = running[w].len();
                    let x = running[w].remove(i % n);
                    let kind = [FailureKind::Transient, FailureKind::OutOfMemory, FailureKind::BadConfig][k as usize];
                    h.step(|st, now, b| st.fail(WORKERS[w], &x.job_id, x.token, kind, "boom", now, b)).unwrap();
                    old.push(x);
                }
                Act::Advance(ms) => h.now += ms,
                Act::Expire => {
                    h.step(|st, now, b| st.expire(now, b)).unwrap();
                }
                Act::Restart => {
                    let before = snapshot(&h);
                    h.restart();
                    let after = snapshot(&h);
                    // Lease extensions are written at most every half lease: the durable
                    // deadline may lag the in-memory one by less than that.
                    let half = h.st.timing.lease_ms / 2;
                    for (b, a) in before.iter().zip(&after) {
                        if let (Some(lb), Some(la)) = (&b.lease, &a.lease) {
                            prop_assert!(la.deadline_ms + half >= lb.deadline_ms);
                        }
                    }
                    prop_assert_eq!(masked(before), masked(after), "everything else was durable");
                }
                _ => {}
            }
            check(&h, &running);
        }
        // Fair drain: heartbeats keep workers alive, every free device leases and completes.
        for _ in 0..200 {
            h.now += 5_000;
            h.step(|st, now, b| st.expire(now, b)).unwrap();
            let mut progressed = false;
            for (w, name) in WORKERS.iter().enumerate() {
                let devices = if w == 0 { 1 } else { 2 };
                for d in 0..devices {
                    if let Some(x) = h.lease(name, d) {
                        prop_assert_eq!(h.complete(name, &x), Fenced::Current);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        for j in snapshot(&h) {
            match j.state {
                JobState::Succeeded | JobState::Failed => {}
                JobState::Pending => {
                    let dep_failed = j.depends_on.iter().any(|d| h.st.job(d).unwrap().state == JobState::Failed);
                    prop_assert!(dep_failed, "{} pending but runnable", j.id);
                }
                s => prop_assert!(false, "{} left {:?}", j.id, s),
            }
        }
    }
}
