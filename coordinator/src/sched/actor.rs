//! The scheduler's event loop: the single writer. Each round takes every queued call, applies
//! them to the state and their writes to the store, and hands the round to a syncer thread,
//! which makes every round handed over so far durable with one flush and then answers them, in
//! order (group commit, pipelined: the next round is applied while the last one syncs). The loop
//! runs on a thread of its own: a round costs one wakeup, not a hop through the async runtime.
//! A ticker task asks it to expire leases once a second.

use super::state::State;
use super::types::*;
use crate::store::{Batch, Store, StoreError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    thread: tokio::task::JoinHandle<Result<(), String>>,
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

    /// Waits until the loop ends without being stopped (its syncer failed to start, the store
    /// could not be reloaded after a failed write, an operation panicked) and says why.
    pub async fn died(&mut self) -> String {
        match (&mut self.thread).await {
            Ok(Err(why)) => why,
            Ok(Ok(())) => "the scheduler loop ended: every handle on it has gone".into(),
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with no message".into());
                format!("the scheduler loop panicked: {text}")
            }
            Err(e) => format!("the scheduler loop was cancelled: {e}"),
        }
    }
}

/// An operation that changes nothing (wakes the loop).
fn nothing() -> Op {
    Box::new(|_, _, _| Box::new(|_| {}))
}

/// The expiry of leases and heartbeats, as an operation of the loop.
fn expiry() -> Op {
    Box::new(|st, now, batch| {
        // Test builds only: a panicking operation (tests/admin_cli.rs).
        ausweep_proto::fault::panic_at("scheduler-expiry-panic");
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
        let running = Running {
            thread,
            stop,
            tx: tx.downgrade(),
        };
        Ok((
            Self {
                tx,
                events,
                store: weak,
            },
            running,
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
    // The first expiry one period after the start, like every later one.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
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

/// A round applied to the state and the store, waiting for a sync to cover it.
struct Applied {
    responders: Vec<Responder>,
    events: Vec<Event>,
    garbage: Vec<String>,
    /// Whether the round wrote anything (a read-only round needs no sync of its own, only the
    /// rounds before it answered).
    wrote: bool,
}

impl Applied {
    /// Answers the round's calls with the outcome of its sync and, once durable, publishes its
    /// events and hands over its checkpoint garbage.
    fn answer(
        self,
        synced: &Result<(), String>,
        events: &broadcast::Sender<Event>,
        garbage: &Option<mpsc::UnboundedSender<Vec<String>>>,
    ) {
        for answer in self.responders {
            answer(synced.clone());
        }
        if synced.is_err() {
            return;
        }
        for e in self.events {
            let _ = events.send(e);
        }
        if let (Some(g), false) = (garbage, self.garbage.is_empty()) {
            let _ = g.send(self.garbage);
        }
    }
}

/// The loop's side of the syncer: it hands applied rounds over, in order.
struct ToSyncer {
    tx: std::sync::mpsc::SyncSender<Applied>,
    /// Rounds handed over and not yet answered.
    pending: Arc<AtomicUsize>,
    /// Set by the syncer when a sync failed (the loop then reloads what is durable).
    failed: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Loop {
    /// Runs rounds until every handle has gone, `stop` is set, or a failed write cannot
    /// reload the store; then waits until the syncer has answered every applied round. An
    /// end that no one asked for is an `Err` with its cause.
    fn run(mut self, mut rx: mpsc::Receiver<Op>) -> Result<(), String> {
        let syncer = self
            .start_syncer()
            .map_err(|e| format!("the store's syncer thread could not start: {e}"))?;
        let mut ended = Ok(());
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
            if let Err(why) = self.round(round, &syncer) {
                ended = Err(why);
                break;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let ToSyncer { tx, thread, .. } = syncer;
        drop(tx);
        if thread.join().is_err() && ended.is_ok() && !self.stop.load(Ordering::SeqCst) {
            ended = Err("the store's syncer thread panicked".into());
        }
        ended
    }

    /// Starts the thread that makes applied rounds durable and answers them, in order: each
    /// sync takes every round handed over so far, so one flush covers many rounds, and the loop
    /// applies the next round while it runs.
    fn start_syncer(&self) -> std::io::Result<ToSyncer> {
        // One round may wait while another syncs: the loop then blocks, and calls gather into
        // its next round instead of many small ones.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Applied>(1);
        let pending = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let (store, events, garbage) = (
            self.store.clone(),
            self.events.clone(),
            self.garbage.clone(),
        );
        let (left, fail) = (pending.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("ausweep-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut rounds = vec![first];
                    rounds.extend(rx.try_iter());
                    // Every round here was applied before this sync began: it covers them all.
                    let synced = if rounds.iter().any(|r| r.wrote) {
                        store.sync().map_err(|e| e.to_string())
                    } else {
                        Ok(())
                    };
                    if synced.is_err() {
                        fail.store(true, Ordering::SeqCst);
                    }
                    for r in rounds {
                        r.answer(&synced, &events, &garbage);
                        left.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(ToSyncer {
            tx,
            pending,
            failed,
            thread,
        })
    }

    /// Applies one round and hands it to the syncer (or answers it at once when it wrote
    /// nothing and no round waits for a sync); `Err` with the cause when the loop cannot go on.
    fn round(&mut self, round: Vec<Op>, syncer: &ToSyncer) -> Result<(), String> {
        // A sync failed: what the state holds may not be durable; start again from the store.
        if syncer.failed.swap(false, Ordering::SeqCst) {
            self.reload()?;
        }
        let now = now_ms();
        let mut batch = Batch::new();
        let responders: Vec<Responder> = round
            .into_iter()
            .map(|op| op(&mut self.state, now, &mut batch))
            .collect();
        let wrote = !batch.is_empty();
        if let Err(e) = self.store.apply(&batch) {
            for r in responders {
                r(Err(e.to_string()));
            }
            // The writes did not land: forget the in-memory changes, reload what is stored.
            return self.reload();
        }
        let applied = Applied {
            responders,
            events: self.state.drain_events(),
            garbage: self.state.take_garbage(),
            wrote,
        };
        if !wrote && syncer.pending.load(Ordering::SeqCst) == 0 {
            // Nothing written and every earlier round answered: what it read is durable.
            applied.answer(&Ok(()), &self.events, &self.garbage);
            return Ok(());
        }
        syncer.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(std::sync::mpsc::SendError(lost)) = syncer.tx.send(applied) {
            for r in lost.responders {
                r(Err("the store's syncer has stopped".into()));
            }
            return Err("the store's syncer thread has stopped".into());
        }
        Ok(())
    }

    /// Replaces the state with what the store holds; `Err` when it cannot be read.
    fn reload(&mut self) -> Result<(), String> {
        let st = State::load(self.store.as_ref(), self.timing, now_ms()).map_err(|e| {
            format!("after a failed write, the state could not be reloaded from the store: {e}")
        })?;
        self.state = st;
        Ok(())
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

    /// A memory store whose syncs wait for the test's permits and can be made to fail; it
    /// counts applies and records how many of them the last finished sync covered.
    #[derive(Default)]
    struct GatedStore {
        inner: MemStore,
        applied: AtomicUsize,
        synced: AtomicUsize,
        syncs: AtomicUsize,
        waiting: AtomicUsize,
        /// Calls the loop has run.
        ran: AtomicUsize,
        permits: std::sync::Mutex<usize>,
        opened: std::sync::Condvar,
        fail_next: AtomicBool,
        /// Every read fails (a reload cannot see what is durable).
        fail_reads: AtomicBool,
    }

    impl GatedStore {
        fn readable(&self) -> Result<(), StoreError> {
            if self.fail_reads.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("injected read failure".into()));
            }
            Ok(())
        }
        fn grant(&self, n: usize) {
            *self.permits.lock().unwrap() += n;
            self.opened.notify_all();
        }
        fn seen(&self) -> String {
            format!(
                "ran {} applied {} synced {} syncs {} waiting {}",
                self.ran.load(Ordering::SeqCst),
                self.applied.load(Ordering::SeqCst),
                self.synced.load(Ordering::SeqCst),
                self.syncs.load(Ordering::SeqCst),
                self.waiting.load(Ordering::SeqCst)
            )
        }
    }

    impl Store for GatedStore {
        fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
            self.inner.apply(batch)?;
            if !batch.is_empty() {
                self.applied.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
        fn sync(&self) -> Result<(), StoreError> {
            let covers = self.applied.load(Ordering::SeqCst);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let mut permits = self.permits.lock().unwrap();
            while *permits == 0 {
                permits = self.opened.wait(permits).unwrap();
            }
            *permits -= 1;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Backend("injected sync failure".into()));
            }
            self.synced.fetch_max(covers, Ordering::SeqCst);
            Ok(())
        }
        fn get(&self, tree: crate::store::Tree, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.readable()?;
            self.inner.get(tree, key)
        }
        fn scan(&self, tree: crate::store::Tree) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.readable()?;
            self.inner.scan(tree)
        }
    }

    /// A scheduler on the gated store whose lease expiry never comes within a test.
    fn start_gated(store: &Arc<GatedStore>) -> (Scheduler, Running) {
        let hour = Duration::from_secs(3600);
        Scheduler::start(store.clone(), Timing::default(), hour, None).unwrap()
    }

    /// Waits until `ok` holds for the gated store, or fails with what the store last showed.
    async fn until_store(what: &str, store: &Arc<GatedStore>, ok: impl Fn(&GatedStore) -> bool) {
        until(what, || {
            let seen = if ok(store) { Ok(()) } else { Err(store.seen()) };
            async move { seen }
        })
        .await;
    }

    /// A call that writes one meta key (or nothing) and, once answered, says how many applies
    /// the store had synced at that moment.
    fn write(
        sched: &Scheduler,
        store: &Arc<GatedStore>,
        key: Option<&'static str>,
    ) -> tokio::task::JoinHandle<(Result<(), SchedError>, usize)> {
        let (sched, store, seen) = (sched.clone(), store.clone(), store.clone());
        tokio::spawn(async move {
            let r = sched
                .call(move |_, _, b| {
                    store.ran.fetch_add(1, Ordering::SeqCst);
                    if let Some(k) = key {
                        b.put_raw(crate::store::Tree::Meta, k, vec![1]);
                    }
                    Ok(())
                })
                .await;
            (r, seen.synced.load(Ordering::SeqCst))
        })
    }

    /// Opens a gated store's syncs for good when dropped (a failed test still lets the loop end).
    struct OpenOnDrop(Arc<GatedStore>);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.grant(usize::MAX / 2);
        }
    }

    #[tokio::test]
    async fn the_next_round_applies_while_the_last_syncs_and_each_answers_after_its_sync() {
        let store = Arc::new(GatedStore::default());
        let _open = OpenOnDrop(store.clone());
        let (sched, running) = start_gated(&store);
        let a = write(&sched, &store, Some("a"));
        until_store("a's sync waits", &store, |s| {
            s.waiting.load(Ordering::SeqCst) == 1
        })
        .await;
        // While a's sync waits, b is applied (the loop does not wait for the sync) ...
        let b = write(&sched, &store, Some("b"));
        until_store("b is applied while a syncs", &store, |s| {
            s.applied.load(Ordering::SeqCst) == 2
        })
        .await;
        // ... and a read behind them is answered only once what it read is durable.
        let mut c = write(&sched, &store, None);
        until_store("the read has run", &store, |s| {
            s.ran.load(Ordering::SeqCst) == 3
        })
        .await;
        // Had it been answered once it ran, its answer would be here well within this.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut c).await;
        assert!(
            early.is_err(),
            "the read was answered before b was durable: {early:?}"
        );
        store.grant(10);
        let (ra, sa) = a.await.unwrap();
        let (rb, sb) = b.await.unwrap();
        let (rc, sc) = c.await.unwrap();
        assert!(
            ra.is_ok() && rb.is_ok() && rc.is_ok(),
            "{ra:?} {rb:?} {rc:?}"
        );
        assert!(sa >= 1, "a answered before its sync: {}", store.seen());
        assert!(sb >= 2, "b answered before its sync: {}", store.seen());
        assert!(
            sc >= 2,
            "the read answered before b was durable: {}",
            store.seen()
        );
        assert_eq!(store.syncs.load(Ordering::SeqCst), 2, "{}", store.seen());
        tokio::time::timeout(Duration::from_secs(10), running.stop())
            .await
            .expect("the loop did not stop within 10 s");
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_calls_and_the_loop_goes_on() {
        let store = Arc::new(GatedStore::default());
        store.grant(1000);
        store.fail_next.store(true, Ordering::SeqCst);
        let (sched, running) = start_gated(&store);
        let (r, _) = write(&sched, &store, Some("a")).await.unwrap();
        let err = r.expect_err("a call whose sync failed was answered Ok");
        assert!(err.to_string().contains("injected sync failure"), "{err}");
        let (r, synced) = write(&sched, &store, Some("b")).await.unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(synced, 2, "{}", store.seen());
        tokio::time::timeout(Duration::from_secs(10), running.stop())
            .await
            .expect("the loop did not stop within 10 s");
    }

    #[tokio::test]
    async fn a_panic_in_an_operation_ends_the_loop_and_says_why() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let hour = Duration::from_secs(3600);
        let (sched, mut running) = Scheduler::start(store, Timing::default(), hour, None).unwrap();
        let r = sched
            .call(|_, _, _| -> Result<(), SchedError> { panic!("an operation went wrong") })
            .await;
        assert!(matches!(r, Err(SchedError::Stopped)), "{r:?}");
        let why = tokio::time::timeout(Duration::from_secs(10), running.died())
            .await
            .expect("the loop's end was not reported within 10 s");
        assert!(
            why.contains("panicked") && why.contains("an operation went wrong"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_reloaded_ends_the_loop_and_says_why() {
        let store = Arc::new(GatedStore::default());
        store.grant(1000);
        let (sched, mut running) = start_gated(&store);
        // The next sync fails and every read of the store after it fails too: the loop cannot
        // know what is durable.
        store.fail_next.store(true, Ordering::SeqCst);
        store.fail_reads.store(true, Ordering::SeqCst);
        let (r, _) = write(&sched, &store, Some("a")).await.unwrap();
        assert!(r.is_err(), "a call whose sync failed was answered Ok");
        // The failure is seen by the next round.
        let _ = write(&sched, &store, Some("b")).await.unwrap();
        let why = tokio::time::timeout(Duration::from_secs(10), running.died())
            .await
            .expect("the loop's end was not reported within 10 s");
        assert!(
            why.contains("could not be reloaded") && why.contains("injected read failure"),
            "{why}"
        );
    }
}
