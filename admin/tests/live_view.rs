//! The live view (`ausweep watch`, the demo's bars) stays true: driven through a real
//! coordinator from "no worker" to "worker busy" to "dependency running" to "leased", every
//! job's line after a refresh says what `ausweep status` says at that moment.

use ausweep_admin::watch::Bars;
use ausweep_proto::v1;
use ausweep_testkit::rpc::{self, InProcess};
use indicatif::ProgressDrawTarget;

/// The rendered line of the job whose id ends with `suffix`.
fn line<'a>(view: &'a str, suffix: &str) -> &'a str {
    view.lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|id| id.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no line for {suffix} in\n{view}"))
}

#[tokio::test]
async fn pending_reasons_and_dependency_states_follow_the_scheduler() {
    let mut c = InProcess::start(rpc::config(None)).await;
    let id = c.submit(&ausweep_testkit::demo_manifest()).await;
    let mut view = Bars::with_target(
        &rpc::sweep(&mut c.admin, &id).await,
        ProgressDrawTarget::hidden(),
    );

    // 1. No worker.
    let text = view.render();
    assert!(
        line(&text, "mobilenet_v2.f1.s1.g0")
            .contains("pending (attempt 0): no worker connected yet"),
        "{text}"
    );
    println!("--- no worker\n{text}");

    // 2. One CPU worker, busy with one stage-1 job: the other stage-1 jobs wait for a device,
    // the busy job's stage 2 waits on a running dependency.
    let mut w = rpc::register(&c.ch, "w1").await;
    let a = rpc::lease(&mut w).await;
    view.refresh(&rpc::sweep(&mut c.admin, &id).await);
    let text = view.render();
    println!("--- worker busy, dependency running\n{text}");
    let leased = a.job_id.split_once('.').map(|(_, k)| k).unwrap();
    assert!(
        line(&text, leased).contains("running (attempt 1)"),
        "{text}"
    );
    let dependent = a.job_id.replace(".s1.", ".s2.");
    let dep_line = line(&text, dependent.split_once('.').unwrap().1);
    assert!(
        dep_line.contains(&format!("waiting on dependency {} (Leased)", a.job_id)),
        "{text}"
    );
    let waiting = text
        .lines()
        .filter(|l| l.contains("waiting for a free cpu device"))
        .count();
    assert_eq!(
        waiting, 5,
        "the other five stage-1 jobs wait for a device:\n{text}"
    );
    assert!(!text.contains("no worker connected"), "{text}");

    // 3. The job completes: its line is done, its stage 2 is ready and waits for the device.
    let sha = rpc::upload(&mut w, &a, b"final", rpc::Upload::default())
        .await
        .unwrap();
    rpc::complete(
        &mut w,
        &a,
        rpc::result(&sha, &[1, 2, 4, 6, 9, 12, 25, 26], 0.4),
    )
    .await;
    view.refresh(&rpc::sweep(&mut c.admin, &id).await);
    let text = view.render();
    println!("--- dependency done\n{text}");
    assert!(line(&text, leased).contains("done (attempt 1)"), "{text}");
    let dep_line = line(&text, dependent.split_once('.').unwrap().1);
    assert!(dep_line.contains("waiting for a free cpu device"), "{text}");

    // 4. The worker leases the next job: its line says running.
    let b = rpc::lease(&mut w).await;
    view.refresh(&rpc::sweep(&mut c.admin, &id).await);
    let text = view.render();
    println!("--- next job leased\n{text}");
    assert!(
        line(&text, b.job_id.split_once('.').unwrap().1).contains("running (attempt 1)"),
        "{text}"
    );
    let status = rpc::sweep(&mut c.admin, &id).await;
    // Every pending line carries the reason `ausweep status` gives now.
    for j in status
        .jobs
        .iter()
        .filter(|j| j.state() == v1::JobState::Pending)
    {
        let l = line(&text, j.job_id.split_once('.').unwrap().1);
        assert!(
            l.ends_with(&j.pending_reason),
            "{l:?} vs {:?}",
            j.pending_reason
        );
    }
    c.handle.shutdown().await;
}
