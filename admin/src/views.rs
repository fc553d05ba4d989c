//! The admin commands' machine-readable output (`--output json`, `watch --output jsonl`): one
//! JSON object per answer with stable keys, documented in docs/cli-json.md.

use ausweep_proto::v1;
use serde_json::{json, Value};

/// How an admin command prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    /// Aligned tables for people (the default).
    #[default]
    Table,
    /// One JSON object on one line.
    Json,
    /// JSON lines: one object per event (`watch`); the same as `json` elsewhere.
    Jsonl,
}

impl Output {
    /// Whether the answer is JSON.
    pub fn is_json(self) -> bool {
        self != Output::Table
    }
}

/// What people read in tables and live bars: the same word, but `FAILED` in capitals so that it
/// stands out, and `?` for a state this version does not know.
pub fn state_shown(s: i32) -> &'static str {
    match state(s) {
        "failed" => "FAILED",
        "unknown" => "?",
        w => w,
    }
}

/// A job state's word, as the JSON outputs and every view name it.
pub fn state(s: i32) -> &'static str {
    match v1::JobState::try_from(s).unwrap_or_default() {
        v1::JobState::Pending => "pending",
        v1::JobState::Leased => "running",
        v1::JobState::Succeeded => "done",
        v1::JobState::Failed => "failed",
        v1::JobState::Cancelled => "cancelled",
        v1::JobState::Unspecified => "unknown",
    }
}

fn progress(p: &Option<v1::Progress>) -> Value {
    p.as_ref().map_or(Value::Null, |p| {
        json!({"epoch": p.epoch, "step": p.step, "loss": p.loss, "images_per_sec": p.images_per_sec,
               "val_f1": p.val_f1})
    })
}

/// `submit`.
pub fn submitted(r: &v1::SubmitReply) -> Value {
    json!({"sweep_id": r.sweep_id, "name": r.name, "version": r.version, "jobs": r.jobs,
           "created": r.created})
}

/// `status` without a sweep: every sweep's counts.
pub fn sweeps(r: &v1::ListSweepsReply) -> Value {
    let rows: Vec<Value> = r
        .sweeps
        .iter()
        .map(|s| {
            json!({"sweep_id": s.sweep_id, "name": s.name, "version": s.version,
                   "created_unix_ms": s.created_unix_ms, "cancelled": s.cancelled,
                   "total": s.total, "pending": s.pending, "running": s.leased,
                   "succeeded": s.succeeded, "failed": s.failed,
                   "cancelled_jobs": s.cancelled_jobs})
        })
        .collect();
    json!({ "sweeps": rows })
}

/// `status SWEEP`: the sweep's jobs with their pending reasons, progress and results.
pub fn sweep(id: &str, r: &v1::SweepStatus) -> Value {
    let jobs: Vec<Value> = r
        .jobs
        .iter()
        .map(|j| {
            let result = j.result.as_ref().map_or(Value::Null, |res| {
                let aus: Vec<Value> = res
                    .aus
                    .iter()
                    .map(|a| {
                        json!({"au": a.au, "f1": a.f1, "precision": a.precision,
                                    "recall": a.recall, "threshold": a.threshold})
                    })
                    .collect();
                let mut v = json!({"avg_f1": res.avg_f1, "aus": aus,
                       "checkpoint_sha256": res.checkpoint_sha256,
                       "train_seconds": res.train_seconds, "images_per_sec": res.images_per_sec});
                // Intensity jobs only: the F1 schema is unchanged for the others.
                if let Some(i) = &res.intensity {
                    let aus: Vec<Value> = i
                        .aus
                        .iter()
                        .map(|a| {
                            json!({"au": a.au, "icc": a.icc, "mae": a.mae, "pcc": a.pcc,
                                        "support": a.support, "n": a.n})
                        })
                        .collect();
                    v["intensity"] = json!({"aus": aus, "avg_icc": i.avg_icc,
                                            "avg_mae": i.avg_mae, "avg_pcc": i.avg_pcc});
                }
                v
            });
            json!({"job_id": j.job_id, "backbone": j.backbone, "fold": j.fold, "stage": j.stage,
                   "grid_point": j.grid_point, "state": state(j.state), "attempt": j.attempt,
                   "max_attempts": j.max_attempts, "failures": j.failures,
                   "lost_attempts": j.lost_attempts, "worker_id": j.worker_id,
                   "pending_class": pending_class(j.pending_class()),
                   "pending_reason": j.pending_reason, "last_error": j.last_error,
                   "depends_on": j.depends_on, "epochs": j.epochs,
                   "progress": progress(&j.progress), "result": result,
                   "newest_checkpoint_sha256": j.newest_checkpoint_sha256})
        })
        .collect();
    json!({"sweep_id": id, "notice": r.notice, "store_checkpoint_bytes": r.store_checkpoint_bytes,
           "store_limit_bytes": r.store_limit_bytes, "jobs": jobs})
}

/// `workers`.
pub fn workers(r: &v1::ListWorkersReply) -> Value {
    let rows: Vec<Value> = r
        .workers
        .iter()
        .map(|w| {
            let devices: Vec<Value> = w
                .devices
                .iter()
                .map(|d| {
                    let kind = if d.kind() == v1::DeviceKind::Cuda {
                        "cuda"
                    } else {
                        "cpu"
                    };
                    json!({"index": d.index, "kind": kind, "memory_mib": d.memory_mib,
                           "name": d.name, "healthy": d.healthy})
                })
                .collect();
            json!({"worker_id": w.worker_id, "hostname": w.hostname, "alive": w.alive,
                   "draining": w.draining, "last_heartbeat_unix_ms": w.last_heartbeat_unix_ms,
                   "devices": devices, "leased_jobs": w.leased_jobs,
                   "weights": w.weights.iter()
                       .map(|h| json!({"name": h.name, "sha256": h.sha256}))
                       .collect::<Vec<_>>()})
        })
        .collect();
    json!({ "workers": rows })
}

/// `drain`.
pub fn drained(worker: &str, r: &v1::DrainWorkerReply) -> Value {
    json!({"worker_id": worker, "found": r.found, "leased_jobs": r.leased_jobs})
}

/// `cancel`.
pub fn cancelled(sweep: &str, n: u32) -> Value {
    json!({"sweep_id": sweep, "cancelled": n})
}

/// `resubmit-failed`.
pub fn requeued(sweep: &str, n: u32) -> Value {
    json!({"sweep_id": sweep, "requeued": n})
}

fn device(j: &ausweep_coordinator::plan::PlannedJob) -> String {
    use ausweep_coordinator::manifest::DeviceReq;
    match j.device {
        DeviceReq::Cpu => "cpu".into(),
        DeviceReq::Cuda if j.min_gpu_memory_mib > 0 => {
            format!("cuda >= {} MiB", j.min_gpu_memory_mib)
        }
        DeviceReq::Cuda => "cuda".into(),
        DeviceReq::Any => "any".into(),
    }
}

/// `plan FILE`: the sweep id and every job the coordinator would create.
pub fn plan(
    p: &ausweep_coordinator::manifest::Parsed,
    jobs: &[ausweep_coordinator::plan::PlannedJob],
) -> Value {
    let rows: Vec<Value> = jobs
        .iter()
        .map(|j| {
            json!({"job_id": j.id, "backbone": j.key.backbone.to_string(), "fold": j.key.fold,
                   "stage": j.key.stage, "grid_point": j.grid_label, "device": device(j),
                   "epochs": j.spec.train.epochs, "batch_size": j.spec.train.batch_size,
                   "max_attempts": j.max_attempts, "depends_on": j.depends_on})
        })
        .collect();
    json!({"sweep_id": p.sweep_id, "name": p.manifest.name, "jobs": rows})
}

/// `plan FILE` as a table.
pub fn plan_table(
    p: &ausweep_coordinator::manifest::Parsed,
    jobs: &[ausweep_coordinator::plan::PlannedJob],
) -> String {
    let mut out = format!(
        "sweep {} ({}): {} jobs\n{:<28} {:<18} {:>6} {:>6} {:<16} {:>6} DEPENDS ON\n",
        p.sweep_id,
        p.manifest.name,
        jobs.len(),
        "JOB",
        "GRID",
        "EPOCHS",
        "BATCH",
        "DEVICE",
        "TRIES"
    );
    for j in jobs {
        let short = |id: &str| id.split_once('.').map_or(id, |(_, k)| k).to_string();
        let deps: Vec<String> = j.depends_on.iter().map(|d| short(d)).collect();
        out.push_str(&format!(
            "{:<28} {:<18} {:>6} {:>6} {:<16} {:>6} {}\n",
            short(&j.id),
            if j.grid_label.is_empty() {
                "-"
            } else {
                &j.grid_label
            },
            j.spec.train.epochs,
            j.spec.train.batch_size,
            device(j),
            j.max_attempts,
            if deps.is_empty() {
                "-".to_string()
            } else {
                deps.join(", ")
            }
        ));
    }
    out
}

/// One `watch` event: a state change (`"type": "state"`), progress (`"progress"`), or a
/// refreshed pending reason (`"reason"`).
pub fn event(e: &v1::JobEvent) -> Value {
    let kind = if e.progress.is_some() {
        "progress"
    } else {
        "state"
    };
    json!({"type": kind, "job_id": e.job_id, "state": state(e.state), "attempt": e.attempt,
           "message": e.message, "progress": progress(&e.progress)})
}

/// A pending job's reason as a `watch` event after a refresh.
pub fn reason(j: &v1::JobStatus) -> Value {
    json!({"type": "reason", "job_id": j.job_id, "state": state(j.state), "attempt": j.attempt,
           "message": j.pending_reason, "progress": Value::Null})
}

/// A pending class as JSON shows it: `missing_weights`, `dependency_waiting`, ...; `null` for a
/// job that is not pending.
fn pending_class(c: v1::PendingClass) -> Value {
    match c {
        v1::PendingClass::Unspecified => Value::Null,
        c => Value::from(
            c.as_str_name()
                .trim_start_matches("PENDING_CLASS_")
                .to_lowercase(),
        ),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn one_word_per_job_state_for_json_tables_and_bars() {
        let words: Vec<(&str, &str)> = (0..=5).map(|s| (state(s), state_shown(s))).collect();
        assert_eq!(
            words,
            [
                ("unknown", "?"),
                ("pending", "pending"),
                ("running", "running"),
                ("done", "done"),
                ("failed", "FAILED"),
                ("cancelled", "cancelled"),
            ]
        );
    }

    use super::*;

    #[test]
    fn job_states_and_keys_are_stable() {
        let st = v1::SweepStatus {
            jobs: vec![v1::JobStatus {
                job_id: "s.mobilenet_v2.f1.s1.g0".into(),
                state: v1::JobState::Leased as i32,
                progress: Some(v1::Progress {
                    epoch: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = sweep("s", &st);
        assert_eq!(v["jobs"][0]["state"], "running");
        assert_eq!(v["jobs"][0]["progress"]["epoch"], 2);
        assert!(v["jobs"][0]["result"].is_null());
        assert_eq!(state(v1::JobState::Failed as i32), "failed");
    }
}
