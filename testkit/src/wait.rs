//! Waiting on conditions with a deadline that fails with what the condition last saw.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one probe of a condition saw.
pub enum Seen<T> {
    /// The condition holds; the wait returns this value.
    Done(T),
    /// Not yet; the description is reported if the deadline passes.
    Not(String),
    /// The condition can never hold (e.g. a job failed); fail at once with this description.
    Never(String),
}

/// Probes every `every` until `probe` sees `Done`; panics naming `what`, the deadline and the
/// last thing seen when `limit` passes or the probe says `Never`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Seen<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = judge(what, limit, deadline, probe().await) {
            return v;
        }
        tokio::time::sleep(every).await;
    }
}

/// The value once the condition holds; panics when it never can or the deadline has passed.
fn judge<T>(what: &str, limit: Duration, deadline: Instant, seen: Seen<T>) -> Option<T> {
    match seen {
        Seen::Done(v) => Some(v),
        Seen::Never(seen) => panic!("waiting for {what}: it can no longer happen; saw:\n{seen}"),
        Seen::Not(seen) if Instant::now() > deadline => {
            panic!("waiting for {what}: gave up after {limit:?}; last saw:\n{seen}")
        }
        Seen::Not(_) => None,
    }
}

/// The blocking form of [`until`] for tests without a runtime.
pub fn until_blocking<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Seen<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = judge(what, limit, deadline, probe()) {
            return v;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let mut n = 0;
        let got = until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let v = n;
                async move {
                    if v >= 3 {
                        Seen::Done(v)
                    } else {
                        Seen::Not(format!("n = {v}"))
                    }
                }
            },
        )
        .await;
        assert_eq!(got, 3);
    }

    #[test]
    fn the_deadline_reports_the_last_thing_seen() {
        let r = std::panic::catch_unwind(|| {
            until_blocking::<()>(
                "never",
                Duration::from_millis(20),
                Duration::from_millis(1),
                || Seen::Not("still 7".into()),
            )
        });
        let msg = r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("still 7") && msg.contains("never"), "{msg}");
    }
}
