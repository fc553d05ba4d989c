//! The scheduler's event loop: the single writer. Each round takes every queued call, applies
//! them to the state, commits their writes with one durable flush, then answers them all (group
//! commit). The loop runs on a thread of its own and commits inline: a round costs one wakeup,
//! not a hop through the async runtime for each commit. A ticker task asks it to expire leases
//! once a second.

use super::state::State;
use super::types::*;
use crate::store::{Batch, Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Responder = Box<dyn FnOnce(Result<(), String>) + Send>;
type Op = Box<dyn FnOnce(&mut State, u64, &mut Batch) -> Responder + Send>;

/// Most calls applied in one round (one flush).
const MAX_ROUND: usize = 1024;

/// A handle on the scheduler loop; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Op>,
    events: broadcast::Sender<Event>,
    /// The loop owns the store (it closes when the loop ends); specs are read through this.
    store: Weak<dyn Store>,
}

/// The running loop: stop it and wait until it has released the store.
pub struct Running {
    thread: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    tx: mpsc::WeakSender<Op>,
}

impl Running {
    /// Stops the loop after its current round (calls still queued are answered `Stopped`) and
    /// waits until it has ended and dropped the store.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake a loop that waits for work; a full queue means it is awake already.
        if let Some(tx) = self.tx.upgrade() {
            let _ = tx.try_send(nothing());
        }
        let _ = self.thread.await;
    }
}

/// An operation that changes nothing (wakes the loop).
fn nothing() -> Op {
    Box::new(|_, _, _| Box::new(|_| {}))
}

/// The expiry of leases and heartbeats, as an operation of the loop.
fn expiry() -> Op {
    Box::new(|st, now, batch| {
        // An expiry that fails to encode leaves the state untouched; the next tick retries.
        let _ = st.expire(now, batch);
        Box::new(|_| {})
    })
}

impl Scheduler {
    /// Loads the state from the store and starts the loop; returns the handle and the loop.
    /// Checkpoints whose records a committed round deleted are sent to `garbage` (their blobs
    /// can go: no record names them any more).
    pub fn start(
        store: Arc<dyn Store>,
        timing: Timing,
        expiry_every: Duration,
        garbage: Option<mpsc::UnboundedSender<Vec<String>>>,
    ) -> Result<(Self, Running), StoreError> {
        let state = State::load(store.as_ref(), timing, now_ms())?;
        let (tx, rx) = mpsc::channel(8192);
        let (events, _) = broadcast::channel(4096);
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&store);
        let looped = Loop {
            state,
            store,
            events: events.clone(),
            timing,
            garbage,
            stop: stop.clone(),
        };
        let thread = tokio::task::spawn_blocking(move || looped.run(rx));
        tokio::spawn(tick(tx.downgrade(), expiry_every));
        Ok((
            Self {
                tx: tx.clone(),
                events,
                store: weak,
            },
            Running {
                thread,
                stop,
                tx: tx.downgrade(),
            },
        ))
    }

    /// A job's whole spec (JSON) as stores of older versions kept it, read from the store:
    /// such specs never change, so this needs no turn of the loop.
    pub fn spec_json(&self, job: &str) -> Result<String, SchedError> {
        let store = self.store.upgrade().ok_or(SchedError::Stopped)?;
        crate::store::specs::get_whole(&*store, job)?
            .ok_or_else(|| SchedError::NoJob(job.to_string()))
    }

    /// Runs `f` on the state inside the loop; answers once its writes are durable.
    pub async fn call<T, F>(&self, f: F) -> Result<T, SchedError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State, u64, &mut Batch) -> Result<T, SchedError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |st, now, batch| {
            let out = f(st, now, batch);
            Box::new(move |committed: Result<(), String>| {
                let r = match committed {
                    Ok(()) => out,
                    Err(e) => Err(SchedError::Store(StoreError::Backend(e))),
                };
                let _ = tx.send(r);
            })
        });
        self.tx.send(op).await.map_err(|_| SchedError::Stopped)?;
        rx.await.map_err(|_| SchedError::Stopped)?
    }

    /// Job changes and progress, as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Sends the expiry to the loop every `every`, until the loop has gone.
async fn tick(tx: mpsc::WeakSender<Op>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(tx) = tx.upgrade() else { return };
        if tx.send(expiry()).await.is_err() {
            return;
        }
    }
}

/// What the loop's thread owns.
struct Loop {
    state: State,
    store: Arc<dyn Store>,
    events: broadcast::Sender<Event>,
    timing: Timing,
    garbage: Option<mpsc::UnboundedSender<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Loop {
    /// Runs rounds until every handle has gone, `stop` is set, or a failed commit cannot
    /// reload the store.
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let mut round = vec![first];
            while round.len() < MAX_ROUND {
                match rx.try_recv() {
                    Ok(op) => round.push(op),
                    Err(_) => break,
                }
            }
            if !self.round(round) || self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    /// Applies, commits and answers one round; false when the loop cannot go on.
    fn round(&mut self, round: Vec<Op>) -> bool {
        let now = now_ms();
        let mut batch = Batch::new();
        let responders: Vec<Responder> = round
            .into_iter()
            .map(|op| op(&mut self.state, now, &mut batch))
            .collect();
        let committed = if batch.is_empty() {
            Ok(())
        } else {
            self.store.commit(&batch).map_err(|e| e.to_string())
        };
        let ok = committed.is_ok();
        for r in responders {
            r(committed.clone());
        }
        if ok {
            for e in self.state.drain_events() {
                let _ = self.events.send(e);
            }
            let gone = self.state.take_garbage();
            if let (Some(g), false) = (&self.garbage, gone.is_empty()) {
                let _ = g.send(gone);
            }
            return true;
        }
        // The writes did not land: forget the in-memory changes, reload what is durable.
        match State::load(self.store.as_ref(), self.timing, now_ms()) {
            Ok(st) => {
                self.state = st;
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::plan;
    use crate::sched::testkit::{cpus, held, SMALL};
    use crate::store::{MemStore, SledStore};

    /// Waits until `check` gives `Ok`, or fails with the last thing it saw.
    async fn until<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = match check().await {
                Ok(()) => return,
                Err(s) => s,
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 10 s; last saw {seen}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn stopping_releases_the_store_while_handles_remain() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&db).unwrap());
        let (sched, running) =
            Scheduler::start(store, Timing::default(), Duration::from_secs(1), None).unwrap();
        let held = sched.clone();
        let p = manifest::parse(SMALL, "t.yaml").unwrap();
        let jobs = plan::expand(&p.sweep_id, &p.manifest).unwrap();
        let specs = plan::encode_specs(&p.sweep_id, &jobs).unwrap();
        let out = sched
            .call(move |st, now, b| st.submit(&p, jobs, specs, now, b))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), running.stop())
            .await
            .expect("the loop did not stop within 10 s");
        // The loop has dropped the store: it opens again, with what was committed.
        let reopened = SledStore::open(&db).expect("the store is still held");
        let st = State::load(&reopened, Timing::default(), now_ms()).unwrap();
        assert_eq!(st.job_ids().count() as u32, out.jobs);
        let late = held.call(|_, _, _| Ok(())).await;
        assert!(matches!(late, Err(SchedError::Stopped)), "{late:?}");
    }

    #[tokio::test]
    async fn leases_expire_with_no_call_to_wake_the_loop() {
        let timing = Timing {
            heartbeat_ms: 10,
            lease_ms: 40,
            no_worker_grace_ms: 10_000,
        };
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let (sched, running) =
            Scheduler::start(store, timing, Duration::from_millis(20), None).unwrap();
        let p = manifest::parse(SMALL, "t.yaml").unwrap();
        let jobs = plan::expand(&p.sweep_id, &p.manifest).unwrap();
        let specs = plan::encode_specs(&p.sweep_id, &jobs).unwrap();
        let job = sched
            .call(move |st, now, b| {
                st.submit(&p, jobs, specs, now, b)?;
                let reg = Registration {
                    id: "w".into(),
                    hostname: "h".into(),
                    devices: cpus(1),
                    weights: held(&ausweep_proto::job::all_weight_names()),
                };
                st.register(reg, "hash".into(), now, b)?;
                match st.lease("w", 0, now, b)? {
                    LeaseOutcome::Assigned(a) => Ok(a.job_id),
                    LeaseOutcome::Nothing(r) => Err(SchedError::NoJob(format!("{r:?}"))),
                }
            })
            .await
            .unwrap();
        // Only reads from here on: the expiry must come from the loop's own timer.
        until("the lease expires", || {
            let (s, job) = (sched.clone(), job.clone());
            async move {
                let j = s
                    .call(move |st, _, _| Ok(st.job(&job).cloned()))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("no job")?;
                if j.lease.is_none() && j.last_error.contains("lease expired") {
                    Ok(())
                } else {
                    Err(format!(
                        "{:?} lease {:?} {:?}",
                        j.state, j.lease, j.last_error
                    ))
                }
            }
        })
        .await;
        tokio::time::timeout(Duration::from_secs(10), running.stop())
            .await
            .expect("the loop did not stop within 10 s");
    }
}
