//! Scheduler-derived gauges, recomputed from one read of the state at each scrape.

use super::{Metrics, SWEEP_RETENTION_MS};
use crate::sched::State;
use crate::store::records::JobState;
use ausweep_proto::v1::PendingClass;
use std::collections::{BTreeMap, HashSet};

/// The metric label of a pending job's class (both dependency classes share one).
pub fn reason_label(class: PendingClass) -> &'static str {
    use PendingClass as C;
    match class {
        C::SweepCancelled => "sweep_cancelled",
        C::DependencyWaiting | C::DependencyFailed => "dependency",
        C::NoWorker => "no_worker",
        C::NoDeviceKind => "no_device_kind",
        C::InsufficientGpuMemory => "insufficient_gpu_memory",
        C::MissingWeights => "missing_weights",
        C::AvoidingFailedWorker => "avoiding_failed_worker",
        C::NoWorkerCanRun => "no_worker_can_run",
        C::WaitingForDevice => "waiting_for_device",
        C::Unspecified => "other",
    }
}

const STATES: [(JobState, &str); 5] = [
    (JobState::Pending, "pending"),
    (JobState::Leased, "running"),
    (JobState::Succeeded, "succeeded"),
    (JobState::Failed, "failed"),
    (JobState::Cancelled, "cancelled"),
];

pub(crate) const REASONS: [&str; 10] = [
    "sweep_cancelled",
    "dependency",
    "no_worker",
    "no_device_kind",
    "insufficient_gpu_memory",
    "missing_weights",
    "avoiding_failed_worker",
    "no_worker_can_run",
    "waiting_for_device",
    "other",
];

impl Metrics {
    /// Recomputes the scheduler-derived gauges from the state.
    pub fn refresh(&self, st: &State, now: u64) {
        let _guard = self.scrape.lock();
        self.jobs.reset();
        self.final_f1.reset();
        self.gpu_busy.reset();
        self.gpu_memory_total.reset();
        self.store_bytes
            .set(i64::try_from(st.checkpoint_bytes()).unwrap_or(i64::MAX));
        let mut reasons: BTreeMap<&'static str, i64> = REASONS.iter().map(|r| (*r, 0)).collect();
        for (sid, ids) in &st.sweep_jobs {
            let Some(s) = st.sweeps.get(sid) else {
                continue;
            };
            let jobs: Vec<_> = ids.iter().filter_map(|id| st.jobs.get(id)).collect();
            let open = jobs.iter().any(|j| !j.state.is_terminal());
            if !open && now.saturating_sub(s.created_ms) > SWEEP_RETENTION_MS {
                continue;
            }
            for (state, name) in STATES {
                let n = jobs.iter().filter(|j| j.state == state).count() as i64;
                self.jobs.with_label_values(&[sid.as_str(), name]).set(n);
            }
            self.touch_sweep(sid);
            for j in &jobs {
                if j.state == JobState::Pending {
                    *reasons
                        .entry(reason_label(st.pending(j, now).0))
                        .or_default() += 1;
                }
            }
            // Final F1: mean over folds of each (backbone, stage), per AU and on average.
            let mut acc: BTreeMap<(String, String, String), (f64, u32)> = BTreeMap::new();
            for j in &jobs {
                let Some(r) = st.results.get(&j.id) else {
                    continue;
                };
                let (b, stg) = (j.key.backbone.to_string(), j.key.stage.to_string());
                let mut add = |au: String, v: f64| {
                    let e = acc.entry((b.clone(), stg.clone(), au)).or_default();
                    e.0 += 100.0 * v;
                    e.1 += 1;
                };
                for a in &r.aus {
                    add(format!("AU{}", a.au), a.f1);
                }
                add("avg".into(), r.avg_f1);
            }
            for ((b, stg, au), (sum, n)) in acc {
                self.final_f1
                    .with_label_values(&[sid.as_str(), &b, &stg, &au])
                    .set(sum / f64::from(n));
            }
        }
        for (r, n) in reasons {
            self.pending.with_label_values(&[r]).set(n);
        }
        self.queue_depth.set(st.ready.len() as i64);
        let (mut alive, mut dead) = (0, 0);
        let (mut busy, mut free, mut unhealthy) = (0, 0, 0);
        let busy_set: HashSet<(&str, u32)> =
            st.busy.keys().map(|(w, d)| (w.as_str(), *d)).collect();
        for w in st.workers.values() {
            if !st.is_alive(w, now) {
                dead += 1;
                continue;
            }
            alive += 1;
            for d in w.rec.devices.iter().filter(|d| d.cuda) {
                let gpu = d.index.to_string();
                let l = [w.rec.id.as_str(), gpu.as_str()];
                let b = busy_set.contains(&(w.rec.id.as_str(), d.index));
                self.gpu_busy.with_label_values(&l).set(i64::from(b));
                self.gpu_memory_total
                    .with_label_values(&l)
                    .set((d.memory_mib << 20) as f64);
                match (d.healthy, b) {
                    (false, _) => unhealthy += 1,
                    (true, true) => busy += 1,
                    (true, false) => free += 1,
                }
            }
        }
        self.workers.with_label_values(&["alive"]).set(alive);
        self.workers.with_label_values(&["dead"]).set(dead);
        self.gpus.with_label_values(&["busy"]).set(busy);
        self.gpus.with_label_values(&["free"]).set(free);
        self.gpus.with_label_values(&["unhealthy"]).set(unhealthy);
    }
}
