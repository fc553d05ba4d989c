//! Read-only views of the state: sweep lists, job status with the reason a job is pending,
//! and the worker list.

use super::state::{describe, fits, State};
use super::types::*;
use crate::manifest::DeviceReq;
use crate::store::records::{JobRecord, JobState};
use ausweep_proto::v1::PendingClass;

impl State {
    fn counts(&self, sweep: &str) -> Counts {
        let mut c = Counts::default();
        for id in self
            .sweep_jobs
            .get(sweep)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            c.total += 1;
            match self.jobs[id].state {
                JobState::Pending => c.pending += 1,
                JobState::Leased => c.leased += 1,
                JobState::Succeeded => c.succeeded += 1,
                JobState::Failed => c.failed += 1,
                JobState::Cancelled => c.cancelled += 1,
            }
        }
        c
    }

    /// Every sweep, newest first.
    pub fn list_sweeps(&self) -> Vec<SweepView> {
        let mut v: Vec<SweepView> = self
            .sweeps
            .values()
            .map(|s| SweepView {
                sweep: s.clone(),
                counts: self.counts(&s.id),
            })
            .collect();
        v.sort_by(|a, b| {
            b.sweep
                .created_ms
                .cmp(&a.sweep.created_ms)
                .then(a.sweep.id.cmp(&b.sweep.id))
        });
        v
    }

    /// The sweep an admin's argument names: its id, or a sweep name (the newest version of that
    /// name), or a unique prefix of an id; otherwise an error listing the candidates.
    pub fn resolve_sweep(&self, arg: &str) -> Result<String, SchedError> {
        if self.sweeps.contains_key(arg) {
            return Ok(arg.to_string());
        }
        if let Some(s) = self
            .sweeps
            .values()
            .filter(|s| s.name == arg)
            .max_by_key(|s| (s.version, s.created_ms))
        {
            return Ok(s.id.clone());
        }
        let prefixed: Vec<&String> = self.sweeps.keys().filter(|k| k.starts_with(arg)).collect();
        if let [one] = prefixed.as_slice() {
            return Ok((*one).clone());
        }
        let mut known: Vec<String> = self
            .sweeps
            .values()
            .filter(|s| prefixed.is_empty() || s.id.starts_with(arg))
            .map(|s| format!("{} v{} ({})", s.name, s.version, s.id))
            .collect();
        known.sort();
        Err(SchedError::UnknownSweep {
            arg: arg.to_string(),
            candidates: if known.is_empty() {
                "none: no sweep has been submitted".into()
            } else {
                known.join(", ")
            },
        })
    }

    /// One sweep with every job and why the pending ones wait.
    pub fn sweep_detail(&self, sweep: &str, now: u64) -> Result<SweepDetail, SchedError> {
        let s = self
            .sweeps
            .get(sweep)
            .ok_or_else(|| SchedError::NoSweep(sweep.to_string()))?;
        let jobs = self
            .sweep_jobs
            .get(sweep)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|id| {
                let j = &self.jobs[id];
                let (pending_class, pending_reason) = if j.state == JobState::Pending {
                    self.pending(j, now)
                } else {
                    (PendingClass::Unspecified, String::new())
                };
                JobView {
                    job: (**j).clone(),
                    pending_class,
                    pending_reason,
                    progress: self.progress.get(id).cloned(),
                    result: self.results.get(id).map(|r| (**r).clone()),
                }
            })
            .collect();
        let counts = self.counts(sweep);
        let notice = if counts.pending > 0 {
            self.no_worker_notice(now).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(SweepDetail {
            view: SweepView {
                sweep: s.clone(),
                counts,
            },
            jobs,
            notice,
        })
    }

    fn alive_count(&self, now: u64) -> usize {
        self.workers
            .values()
            .filter(|w| self.is_alive(w, now))
            .count()
    }

    /// Says so when no worker is connected, and whether the grace period has run out.
    pub fn no_worker_notice(&self, now: u64) -> Option<String> {
        if self.alive_count(now) > 0 {
            return None;
        }
        let since = self.last_worker_seen_ms.max(self.started_ms);
        let idle = now.saturating_sub(since);
        let grace = self.timing.no_worker_grace_ms;
        Some(if idle > grace {
            format!(
                "no worker connected for {}s (grace {}s): jobs will not run until a worker registers",
                idle / 1000,
                grace / 1000
            )
        } else {
            "no worker connected yet".to_string()
        })
    }

    /// Why a pending job is not running, for people.
    pub fn pending_reason(&self, j: &JobRecord, now: u64) -> String {
        self.pending(j, now).1
    }

    /// Why a pending job is not running: its class (the contract programs act on) and the
    /// sentence people read.
    // Long function: one arm per reason a job waits, in the order they are checked; the order is
    // the contract.
    pub fn pending(&self, j: &JobRecord, now: u64) -> (PendingClass, String) {
        use PendingClass as C;
        if self.sweeps.get(&j.sweep).is_some_and(|s| s.cancelled) {
            return (C::SweepCancelled, "sweep cancelled".into());
        }
        for d in &j.depends_on {
            match self.jobs.get(d).map(|x| x.state) {
                Some(JobState::Succeeded) => {}
                Some(JobState::Failed) => {
                    return (
                        C::DependencyFailed,
                        format!("dependency {d} failed (resubmit-failed reruns it)"),
                    )
                }
                Some(JobState::Cancelled) => {
                    return (C::DependencyFailed, format!("dependency {d} was cancelled"))
                }
                Some(s) if self.jobs[d].key.stage == crate::plan::PREPARE_STAGE => {
                    return (
                        C::DependencyWaiting,
                        format!("waiting on dependency {d} ({s:?}): its data is being prepared"),
                    )
                }
                Some(s) => {
                    return (
                        C::DependencyWaiting,
                        format!("waiting on dependency {d} ({s:?})"),
                    )
                }
                None => return (C::DependencyFailed, format!("dependency {d} is missing")),
            }
        }
        if let Some(n) = self.no_worker_notice(now) {
            return (C::NoWorker, n);
        }
        let alive: Vec<_> = self
            .workers
            .values()
            .filter(|w| self.is_alive(w, now))
            .collect();
        let kind_ok = |cuda: bool| match j.device {
            DeviceReq::Cuda => cuda,
            DeviceReq::Cpu => !cuda,
            DeviceReq::Any => true,
        };
        let kinds: Vec<_> = alive
            .iter()
            .flat_map(|w| w.rec.devices.iter())
            .filter(|d| kind_ok(d.cuda) && d.healthy)
            .collect();
        if kinds.is_empty() {
            return (
                C::NoDeviceKind,
                format!("no connected worker has a healthy {:?} device", j.device).to_lowercase(),
            );
        }
        if !kinds.iter().any(|d| fits(j, d)) {
            let largest = kinds.iter().map(|d| d.memory_mib).max().unwrap_or(0);
            return (
                C::InsufficientGpuMemory,
                format!(
                    "no connected device has >= {} MiB GPU memory (largest: {largest} MiB)",
                    j.min_gpu_memory_mib
                ),
            );
        }
        let needs = j.needs.names();
        let fitting_workers: Vec<_> = alive
            .iter()
            .filter(|w| w.rec.devices.iter().any(|d| fits(j, d)))
            .collect();
        if !fitting_workers.iter().any(|w| w.rec.holds(needs)) {
            let missing: Vec<&str> = needs
                .iter()
                .copied()
                .filter(|n| !fitting_workers.iter().any(|w| w.rec.holds(&[n])))
                .collect();
            let missing = if missing.is_empty() {
                needs.to_vec()
            } else {
                missing
            };
            let names = missing.join(", ");
            let first = missing.first().copied().unwrap_or_default();
            let how = if first.starts_with("mtcnn") {
                format!("`ausweep weights import {first} FILE` with facenet-pytorch's file")
            } else {
                format!("`ausweep weights fetch {first}` or `ausweep weights import {first} FILE`")
            };
            return (
                C::MissingWeights,
                format!(
                    "no connected worker holds the weights {names} (on a worker: {how}; it \
                     advertises them at its next heartbeat)"
                ),
            );
        }
        let fitting: Vec<_> = fitting_workers
            .iter()
            .filter(|w| w.rec.holds(needs))
            .map(|w| w.rec.id.clone())
            .collect();
        if let Some(lacks) = self.node_lacks.get(&j.id) {
            if fitting.iter().all(|w| lacks.contains_key(w)) {
                let why: Vec<String> = lacks.iter().map(|(w, r)| format!("{w}: {r}")).collect();
                return (
                    C::NoWorkerCanRun,
                    format!(
                        "no connected worker can run it: {} (a worker is offered it again once \
                         it registers anew, e.g. its agent restarted after the fix)",
                        why.join("; ")
                    ),
                );
            }
        }
        if fitting.iter().all(|w| j.avoid_workers.contains(w)) && !j.avoid_workers.is_empty() {
            return (
                C::AvoidingFailedWorker,
                format!(
                    "only worker {} fits and it failed the last attempt; it gets the job when it \
                     asks again",
                    fitting.join(", ")
                ),
            );
        }
        let ahead = self
            .ready
            .iter()
            .take_while(|(_, _, id)| *id != j.id)
            .count();
        (
            C::WaitingForDevice,
            format!(
                "waiting for a free {} device ({ahead} ready jobs ahead)",
                match j.device {
                    DeviceReq::Cuda => "cuda",
                    DeviceReq::Cpu => "cpu",
                    DeviceReq::Any => "",
                }
            ),
        )
    }

    /// Every worker.
    pub fn list_workers(&self, now: u64) -> Vec<WorkerView> {
        let mut v: Vec<WorkerView> = self
            .workers
            .values()
            .map(|w| {
                let mut leased: Vec<String> = self
                    .busy
                    .iter()
                    .filter(|((wid, _), _)| *wid == w.rec.id)
                    .map(|(_, j)| j.clone())
                    .collect();
                leased.sort();
                WorkerView {
                    worker: w.rec.clone(),
                    last_seen_ms: w.last_seen_ms,
                    alive: self.is_alive(w, now),
                    leased,
                }
            })
            .collect();
        v.sort_by(|a, b| a.worker.id.cmp(&b.worker.id));
        v
    }

    /// A short device summary for messages.
    pub fn describe_devices(&self, worker: &str) -> String {
        self.workers
            .get(worker)
            .map(|w| {
                w.rec
                    .devices
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}
