//! An attempt's folder: its name, made ready for the trainer (the job file, the stage-1
//! checkpoint of a stage-2 job, the checkpoint it resumes from), and cleaned after it.

use super::{Ctx, Outcome};
use crate::checkpoints::Cache;
use crate::AgentError;
use ausweep_proto::fault;
use ausweep_proto::job::DataSource;
use ausweep_proto::v1::{self, FailureKind};
use ausweep_proto::JobSpec;
use std::path::{Path, PathBuf};

/// A job id as a directory name.
pub fn dir_name(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Dataset paths of a spec that must exist on this worker.
pub(super) fn data_paths(spec: &JobSpec) -> Vec<&Path> {
    match &spec.data.source {
        DataSource::Synthetic { .. } => vec![],
        DataSource::Disfa {
            labels_root,
            frames_root,
        } => vec![labels_root, frames_root],
        DataSource::List {
            paths,
            labels,
            images_root,
        } => vec![paths, labels, images_root],
        DataSource::DisfaVideos {
            videos_root,
            labels_root,
            ..
        } => std::iter::once(videos_root.as_path())
            .chain(labels_root.as_deref())
            .collect(),
    }
}

/// Deletes an ended attempt's weight files and the bundles it packed (all, or all but the
/// newest); logs, `job.yaml` and `result.json` stay.
pub(super) fn cleanup(cache: &Cache, dir: &Path, packed: &[String], keep_newest: bool) {
    let n = packed.len().saturating_sub(usize::from(keep_newest));
    for sha in &packed[..n] {
        let _ = std::fs::remove_file(cache.path(sha));
    }
    remove_weights(dir);
}

/// At agent start (no attempt runs yet): frees the weight files of attempts a killed agent left
/// behind; every one of them was uploaded or is lost anyway. Returns how many attempts it freed.
pub fn purge_stale(jobs_dir: &Path) -> usize {
    let mut n = 0;
    for job in std::fs::read_dir(jobs_dir).into_iter().flatten().flatten() {
        for attempt in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = attempt.path();
            if p.is_dir()
                && attempt
                    .file_name()
                    .to_string_lossy()
                    .starts_with("attempt-")
            {
                remove_weights(&p);
                n += 1;
            }
        }
    }
    n
}

/// Deletes an attempt directory's weight files (resume, init, epoch checkpoints, final).
pub(super) fn remove_weights(dir: &Path) {
    for sub in ["resume.safetensors", "resume.json"] {
        let _ = std::fs::remove_file(dir.join(sub));
    }
    let _ = std::fs::remove_dir_all(dir.join("init"));
    let _ = std::fs::remove_dir_all(dir.join("out").join("checkpoints"));
    let _ = std::fs::remove_file(dir.join("out").join("final.safetensors"));
}

/// Whether a resume failure means the checkpoint itself is unusable (not a network hiccup).
pub(super) fn resume_is_bad(e: &AgentError) -> bool {
    match e {
        AgentError::Checkpoint(m) => {
            !m.starts_with("download of") || m.contains("no checkpoint") || m.contains("not found")
        }
        AgentError::Rpc(s) => s.code() == tonic::Code::NotFound,
        _ => false,
    }
}

pub(super) async fn resume_into(
    ctx: &Ctx,
    a: &v1::Assignment,
    dir: &Path,
    ckpt_dir: &Path,
) -> Result<u32, AgentError> {
    let sha = &a.resume_checkpoint_sha256;
    ctx.cache.fetch(&ctx.session, sha).await?;
    // The bundle's metadata names the epoch; unpack under a scratch name, then rename.
    let scratch = dir.join("resume");
    let epoch = ctx.cache.unpack(sha, &scratch).await?;
    let stem = ckpt_dir.join(ausweep_proto::trainer::result::epoch_stem(epoch));
    for ext in ["safetensors", "json"] {
        std::fs::rename(scratch.with_extension(ext), stem.with_extension(ext)).map_err(|e| {
            AgentError::Io {
                path: stem.clone(),
                source: e,
            }
        })?;
    }
    Ok(epoch)
}

/// An attempt's folder made ready for its trainer: the job file, the stage-1 checkpoint of a
/// stage-2 job and the checkpoint it resumes from (`Ok(Err(outcome))`: the attempt ends here).
pub(super) async fn prepare(
    ctx: &Ctx,
    a: &v1::Assignment,
) -> Result<Result<Prepared, Outcome>, AgentError> {
    fault::point("lease");
    let mut spec: JobSpec = serde_json::from_str(&a.job_spec_json)
        .map_err(|e| AgentError::BadJob(format!("job spec: {e}")))?;
    if let Some(p) = data_paths(&spec).into_iter().find(|p| !p.exists()) {
        // This node's problem (a mount missing here): the job is retried on another worker.
        return Err(AgentError::Node(format!(
            "dataset path {} does not exist on this worker (is the shared filesystem mounted?)",
            p.display()
        )));
    }
    let dir = ctx
        .jobs_dir
        .join(dir_name(&a.job_id))
        .join(format!("attempt-{}", a.attempt));
    if dir.exists() {
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| AgentError::Io {
                path: dir.clone(),
                source: e,
            })?;
    }
    let ckpt_dir = dir.join("out").join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).map_err(|e| AgentError::Io {
        path: ckpt_dir.clone(),
        source: e,
    })?;
    let mut resume_epoch = None;
    if !a.resume_checkpoint_sha256.is_empty() {
        let sha = &a.resume_checkpoint_sha256;
        match resume_into(ctx, a, &dir, &ckpt_dir).await {
            Ok(epoch) => {
                eprintln!(
                    "ausweep worker: {} resumes from epoch {epoch} ({sha})",
                    a.job_id
                );
                resume_epoch = Some(epoch);
            }
            Err(e) if resume_is_bad(&e) => {
                return Ok(Err(Outcome::Fail(
                    FailureKind::BadCheckpoint,
                    format!("resume checkpoint {sha}: {e}"),
                )));
            }
            Err(e) => return Err(e),
        }
    }
    // Stage 2: the stage-1 checkpoint at a path relative to the attempt directory, so the job
    // (and its digest, which resume checks) is the same on every worker and attempt.
    let init = if a.init_checkpoint_sha256.is_empty() {
        None
    } else {
        ctx.cache
            .fetch(&ctx.session, &a.init_checkpoint_sha256)
            .await?;
        ctx.cache
            .unpack(&a.init_checkpoint_sha256, &dir.join("init").join("stage1"))
            .await?;
        let rel = "init/stage1.safetensors".to_string();
        spec.init_checkpoint = Some(PathBuf::from(&rel));
        Some(rel)
    };
    let job_file = dir.join("job.yaml");
    let text = spec.to_yaml();
    std::fs::write(&job_file, text).map_err(|e| AgentError::Io {
        path: job_file.clone(),
        source: e,
    })?;

    Ok(Ok(Prepared {
        dir,
        resume_epoch,
        init,
    }))
}

/// An attempt's folder, ready for its trainer.
pub(super) struct Prepared {
    /// The attempt folder.
    pub dir: PathBuf,
    /// The epoch it resumes after, if it resumes.
    pub resume_epoch: Option<u32>,
    /// The stage-1 checkpoint's path relative to `dir`, for a stage-2 job.
    pub init: Option<String>,
}
