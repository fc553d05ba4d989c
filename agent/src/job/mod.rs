//! One attempt of one job: prepare its directory (resume and init checkpoints), run the
//! trainer, relay progress, upload checkpoints, then complete or fail the attempt.

use super::checkpoints::{Cache, UploadKind};
use super::devices::Dev;
use super::session::{Retry, Session};
use super::supervisor::{self, Line, TrainerCmd};
use super::AgentError;
use ausweep_proto::fault;
use ausweep_proto::trainer::progress::Event;
use ausweep_proto::trainer::result::JobResult;
use ausweep_proto::v1::{self, FailureKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod folder;

use folder::{cleanup, prepare, Prepared};
pub use folder::{dir_name, purge_stale};

/// What the agent wants from a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Run,
    /// Stop at the next checkpoint (or at the deadline), report, end.
    Drain,
    /// The lease is gone: kill the trainer, report nothing.
    Abort,
}

/// What an attempt needs from the agent.
pub struct Ctx {
    /// The coordinator session.
    pub session: Arc<Session>,
    /// The checkpoint cache.
    pub cache: Cache,
    /// Where attempts get their directories.
    pub jobs_dir: PathBuf,
    /// The trainer command.
    pub trainer: TrainerCmd,
    /// Longest wait for a draining attempt to reach its next checkpoint.
    pub drain_timeout: Duration,
}

/// How long reports that must arrive (complete, fail, checkpoints) keep retrying.
const REPORT_RETRY: Duration = Duration::from_secs(300);

enum Outcome {
    /// Report this failure.
    Fail(FailureKind, String),
    /// The lease is gone; nothing to report.
    Aborted,
    /// Completed (reported).
    Done,
}

/// Runs one attempt to its end and reports it. Never panics on outside data.
pub async fn run(ctx: Arc<Ctx>, a: v1::Assignment, dev: Dev, control: watch::Receiver<Control>) {
    let label = format!("{} #{}", a.job_id, a.attempt);
    let mut packed = Vec::new();
    let outcome = match attempt(&ctx, &a, &dev, control, &mut packed).await {
        Ok(o) => o,
        Err(e) => Outcome::Fail(e.failure_kind(), e.to_string()),
    };
    // The coordinator holds every uploaded checkpoint: free this attempt's weights here. After a
    // failure the newest bundle stays in the cache (the next attempt may resume on this node).
    let attempt_dir = ctx
        .jobs_dir
        .join(dir_name(&a.job_id))
        .join(format!("attempt-{}", a.attempt));
    let done = matches!(outcome, Outcome::Done);
    if done {
        // The job is over: its resume point and its dependency's weights are not needed here.
        for sha in [&a.resume_checkpoint_sha256, &a.init_checkpoint_sha256] {
            if !sha.is_empty() {
                packed.insert(0, sha.clone());
            }
        }
    }
    {
        // Removing gigabytes of weights takes a while: not on the runtime's threads.
        let (cache, packed) = (ctx.cache.clone(), packed.clone());
        let _ = tokio::task::spawn_blocking(move || cleanup(&cache, &attempt_dir, &packed, !done))
            .await;
    }
    match outcome {
        Outcome::Done => eprintln!("ausweep worker: {label} completed"),
        Outcome::Aborted => eprintln!("ausweep worker: {label} aborted (lease no longer valid)"),
        Outcome::Fail(kind, reason) => {
            eprintln!("ausweep worker: {label} failed ({kind:?}): {reason}");
            let req = v1::FailRequest {
                job_id: a.job_id.clone(),
                fencing_token: a.fencing_token,
                kind: kind as i32,
                reason: truncate(&reason, 4000),
            };
            let r = ctx
                .session
                .call(Retry::For(REPORT_RETRY), |mut c| {
                    let req = req.clone();
                    async move { c.fail(req).await }
                })
                .await;
            match r {
                Ok(r) => eprintln!(
                    "ausweep worker: {label} failure reported (accepted {}, will retry {})",
                    r.accepted, r.will_retry
                ),
                Err(e) => eprintln!("ausweep worker: {label}: could not report failure: {e}"),
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

// Long function: the supervision loop: one select over the trainer's lines, the drain deadline and
// the coordinator's controls.
async fn attempt(
    ctx: &Ctx,
    a: &v1::Assignment,
    dev: &Dev,
    mut control: watch::Receiver<Control>,
    packed: &mut Vec<String>,
) -> Result<Outcome, AgentError> {
    let Prepared {
        dir,
        resume_epoch,
        init,
    } = match prepare(ctx, a).await? {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    let label = format!("{} #{}", a.job_id, a.attempt);
    let mut child = supervisor::spawn(&ctx.trainer, &dir, dev, init.as_deref(), label)?;
    let pid_file = dir.join("trainer.pid");
    let _ = std::fs::write(&pid_file, child.pid.to_string());

    let mut drain_deadline: Option<Instant> = None;
    let mut stop: Option<Outcome> = None;
    let mut last_progress = Instant::now() - Duration::from_secs(10);
    let mut val_f1 = None;
    let mut previous: Option<PathBuf> = None;
    loop {
        let deadline = drain_deadline.map(tokio::time::Instant::from_std);
        let line = tokio::select! {
            l = child.next_line() => l,
            changed = control.changed(), if stop.is_none() => {
                let c = if changed.is_ok() { *control.borrow() } else { Control::Abort };
                match c {
                    Control::Abort => {
                        stop = Some(abort(&mut child).await);
                    }
                    Control::Drain if drain_deadline.is_none() => {
                        drain_deadline = Some(Instant::now() + ctx.drain_timeout);
                    }
                    _ => {}
                }
                continue;
            }
            _ = sleep_until(deadline), if stop.is_none() && deadline.is_some() => {
                child.kill().await;
                stop = Some(Outcome::Fail(
                    FailureKind::Lost,
                    "worker drained before the next checkpoint".into(),
                ));
                continue;
            }
        };
        let Some(line) = line else { break };
        let Line::Event(ev) = line else { continue };
        if stop.is_some() && !matches!(*ev, Event::Checkpoint { .. }) {
            continue;
        }
        match *ev {
            Event::Step {
                epoch,
                step,
                steps,
                loss,
                images_per_sec,
            } if last_progress.elapsed() >= Duration::from_secs(1) || step == steps => {
                fault::point("mid-epoch");
                last_progress = Instant::now();
                let p = v1::Progress {
                    epoch,
                    step: step as u64,
                    loss,
                    images_per_sec,
                    ..Default::default()
                };
                if report(ctx, a, p).await {
                    stop = Some(abort(&mut child).await);
                }
            }
            Event::Epoch {
                epoch,
                loss,
                val_f1: epoch_val_f1,
                val_per_au,
                images_per_sec,
                ..
            } => {
                val_f1 = epoch_val_f1;
                let p = v1::Progress {
                    epoch,
                    loss,
                    images_per_sec,
                    val_f1: val_per_au
                        .iter()
                        .map(|s| (format!("AU{}", s.au), s.f1))
                        .collect(),
                    ..Default::default()
                };
                if report(ctx, a, p).await {
                    stop = Some(abort(&mut child).await);
                }
            }
            Event::Start {
                frames,
                device,
                threads,
                feature_cache,
                ..
            } => {
                eprintln!(
                    "ausweep worker: {} attempt {}: trainer started on {device} with {threads} thread(s), frames train/val/test {frames:?}{}",
                    a.job_id,
                    a.attempt,
                    if feature_cache { ", stage-1 feature cache" } else { "" }
                );
            }
            Event::Checkpoint { epoch, path, .. } => {
                let file = dir.join(&path);
                let Some(accepted) =
                    store_checkpoint(ctx, a, &file, epoch, val_f1, packed, &mut previous).await?
                else {
                    continue;
                };
                if !accepted {
                    stop = Some(abort(&mut child).await);
                } else if drain_deadline.is_some() && stop.is_none() {
                    child.kill().await;
                    stop = Some(Outcome::Fail(
                        FailureKind::Lost,
                        format!("worker drained after checkpoint of epoch {epoch}"),
                    ));
                }
            }
            _ => {}
        }
    }
    let (status, tail) = child.wait().await;
    if let Some(o) = stop {
        return Ok(o);
    }
    let ok = status.as_ref().is_ok_and(|s| s.success());
    if !ok {
        let (kind, reason) = supervisor::classify(&status, &tail, resume_epoch.is_some());
        return Ok(Outcome::Fail(kind, reason));
    }
    complete(ctx, a, &dir, packed).await
}

/// Packs and uploads an epoch's checkpoint `file` (relative paths are under the attempt folder);
/// once the coordinator has it, the epoch before is removed here. `Some(accepted)` for the
/// current lease; None when there was nothing to upload (`final`) or the store is full.
async fn store_checkpoint(
    ctx: &Ctx,
    a: &v1::Assignment,
    file: &Path,
    epoch: u32,
    val_f1: Option<f64>,
    packed: &mut Vec<String>,
    previous: &mut Option<PathBuf>,
) -> Result<Option<bool>, AgentError> {
    if file.file_name().is_some_and(|n| n == "final.safetensors") {
        return Ok(None); // uploaded with the result
    }
    fault::point("checkpoint-written");
    let (sha, size) = ctx.cache.pack(file).await?;
    packed.push(sha.clone());
    let kind = UploadKind::Epoch { val_f1 };
    let up = ctx
        .cache
        .upload(
            &ctx.session,
            &a.job_id,
            a.fencing_token,
            &sha,
            size,
            epoch,
            kind,
        )
        .await;
    let accepted = match up {
        Ok(acc) => acc,
        Err(AgentError::StoreFull(m)) => {
            // Training goes on; a later checkpoint or the result may fit.
            eprintln!(
                "ausweep worker: {} epoch {epoch} checkpoint not stored: {m}",
                a.job_id
            );
            packed.pop();
            let _ = std::fs::remove_file(ctx.cache.path(&sha));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if accepted {
        fault::point("checkpoint-uploaded");
        // The coordinator has it: the epoch before is superseded here too.
        if let Some(old) = previous.replace(file.to_path_buf()) {
            let _ = std::fs::remove_file(&old);
            let _ = std::fs::remove_file(old.with_extension("json"));
        }
        if packed.len() > 1 {
            let old = packed.remove(packed.len() - 2);
            let _ = std::fs::remove_file(ctx.cache.path(&old));
        }
    }
    Ok(Some(accepted))
}

/// Kills the trainer of an attempt whose lease is gone: the attempt ends as aborted.
async fn abort(child: &mut supervisor::Trainer) -> Outcome {
    child.kill().await;
    Outcome::Aborted
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Relays progress; true when the coordinator says the lease is gone.
async fn report(ctx: &Ctx, a: &v1::Assignment, p: v1::Progress) -> bool {
    let req = v1::ProgressRequest {
        job_id: a.job_id.clone(),
        fencing_token: a.fencing_token,
        progress: Some(p),
    };
    match ctx
        .session
        .call(Retry::Once, |mut c| {
            let req = req.clone();
            async move { c.report_progress(req).await }
        })
        .await
    {
        Ok(r) => r.abort,
        Err(_) => false, // progress is best effort; the heartbeat keeps the lease
    }
}

/// Uploads the final checkpoint and completes the job with the trainer's result.
async fn complete(
    ctx: &Ctx,
    a: &v1::Assignment,
    dir: &Path,
    packed: &mut Vec<String>,
) -> Result<Outcome, AgentError> {
    let result_file = dir.join("out").join("result.json");
    let text = std::fs::read_to_string(&result_file).map_err(|e| AgentError::Io {
        path: result_file.clone(),
        source: e,
    })?;
    let r: JobResult = serde_json::from_str(&text)
        .map_err(|e| AgentError::Checkpoint(format!("{}: {e}", result_file.display())))?;
    let final_file = dir.join("out").join("final.safetensors");
    let (sha, size) = ctx.cache.pack(&final_file).await?;
    packed.push(sha.clone());
    let accepted = ctx
        .cache
        .upload(
            &ctx.session,
            &a.job_id,
            a.fencing_token,
            &sha,
            size,
            r.epochs,
            UploadKind::Final,
        )
        .await?;
    if !accepted {
        return Ok(Outcome::Aborted);
    }
    fault::point("final-uploaded");
    let result = v1::JobResult {
        aus: r
            .test
            .per_au
            .iter()
            .zip(r.thresholds.iter().chain(std::iter::repeat(&0.5)))
            .map(|(s, t)| v1::AuScore {
                au: s.au,
                f1: s.f1,
                precision: s.precision,
                recall: s.recall,
                threshold: *t,
            })
            .collect(),
        avg_f1: r.test.avg_f1,
        params_total: r.params_total.max(0) as u64,
        params_trainable: r.params_trainable.max(0) as u64,
        train_seconds: r.train_seconds,
        images_per_sec: r.images_per_sec,
        checkpoint_sha256: sha,
        dataset: r.dataset.as_ref().map(|d| v1::DatasetIdentity {
            kind: d.kind.clone(),
            content_hash: d.content_hash.clone(),
            frames: d.frames,
            aus: d.aus.clone(),
            crop: serde_json::to_value(&d.crop)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            size: d.size,
            normalisation: d.normalisation.clone(),
        }),
        intensity: r
            .intensity
            .as_ref()
            .map(ausweep_proto::trainer::result::intensity_to_wire),
    };
    let req = v1::CompleteRequest {
        job_id: a.job_id.clone(),
        fencing_token: a.fencing_token,
        result: Some(result),
    };
    let reply = ctx
        .session
        .call(Retry::For(REPORT_RETRY), |mut c| {
            let req = req.clone();
            async move { c.complete(req).await }
        })
        .await?;
    if !reply.accepted {
        eprintln!(
            "ausweep worker: {} result discarded by the coordinator: {}",
            a.job_id, reply.message
        );
        return Ok(Outcome::Aborted);
    }
    fault::point("complete-acked");
    Ok(Outcome::Done)
}
