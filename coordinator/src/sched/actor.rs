//! The scheduler's event loop: the single writer. Each round takes every queued call, applies
//! them to the state, commits their writes with one durable flush, then answers them all (group
//! commit). A timer expires leases once a second.

use super::state::State;
use super::types::*;
use crate::store::{Batch, Store, StoreError};
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

impl Scheduler {
    /// Loads the state from the store and starts the loop; returns the handle and the task.
    /// Checkpoints whose records a committed round deleted are sent to `garbage` (their blobs
    /// can go: no record names them any more).
    pub fn start(
        store: Arc<dyn Store>,
        timing: Timing,
        expiry_every: Duration,
        garbage: Option<mpsc::UnboundedSender<Vec<String>>>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        let state = State::load(store.as_ref(), timing, now_ms())?;
        let (tx, rx) = mpsc::channel(8192);
        let (events, _) = broadcast::channel(4096);
        let task = tokio::spawn(run(
            state,
            store.clone(),
            rx,
            events.clone(),
            timing,
            expiry_every,
            garbage,
        ));
        let weak = Arc::downgrade(&store);
        Ok((
            Self {
                tx,
                events,
                store: weak,
            },
            task,
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

async fn run(
    mut state: State,
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Op>,
    events: broadcast::Sender<Event>,
    timing: Timing,
    expiry_every: Duration,
    garbage: Option<mpsc::UnboundedSender<Vec<String>>>,
) {
    let mut tick = tokio::time::interval(expiry_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut round = Vec::new();
        let mut expire = false;
        tokio::select! {
            op = rx.recv() => match op {
                Some(op) => round.push(op),
                None => break,
            },
            _ = tick.tick() => expire = true,
        }
        while round.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(op) => round.push(op),
                Err(_) => break,
            }
        }
        let now = now_ms();
        let mut batch = Batch::new();
        let responders: Vec<Responder> = round
            .into_iter()
            .map(|op| op(&mut state, now, &mut batch))
            .collect();
        if expire {
            // An expiry that fails to encode leaves the state untouched; the next tick retries.
            let _ = state.expire(now, &mut batch);
        }
        let committed = if batch.is_empty() {
            Ok(())
        } else {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.commit(&batch)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("commit task: {e}")),
            }
        };
        let ok = committed.is_ok();
        for r in responders {
            r(committed.clone());
        }
        if ok {
            for e in state.drain_events() {
                let _ = events.send(e);
            }
            let gone = state.take_garbage();
            if let (Some(g), false) = (&garbage, gone.is_empty()) {
                let _ = g.send(gone);
            }
        } else {
            // The writes did not land: forget the in-memory changes, reload what is durable.
            let s = store.clone();
            let reloaded =
                tokio::task::spawn_blocking(move || State::load(s.as_ref(), timing, now_ms()))
                    .await;
            match reloaded {
                Ok(Ok(st)) => state = st,
                _ => break,
            }
        }
    }
}
