//! `--model`: a checkpoint file, a training output directory, or `SWEEP:BACKBONE` (the best
//! fold's final checkpoint of that backbone, downloaded from the coordinator's store).

use anyhow::{anyhow, bail, Context, Result};
use ausweep_agent::checkpoints::Cache;
use ausweep_proto::client;
use ausweep_proto::v1;
use std::path::{Path, PathBuf};

/// How to reach the coordinator for a sweep reference: the same flags as every client command.
pub type Remote = ausweep_admin::Conn;

/// The checkpoint file `--model` names, and a line saying where it came from.
pub fn resolve(model: &str, remote: &Remote, cache_dir: &Path) -> Result<(PathBuf, String)> {
    let p = Path::new(model);
    if p.is_dir() {
        let f = p.join("final.safetensors");
        if f.is_file() {
            return Ok((f.clone(), format!("{}", f.display())));
        }
        bail!(
            "--model {model}: the directory has no final.safetensors (give the checkpoint file, \
             or the output directory of `ausweep train`)"
        );
    }
    if p.exists() {
        let f = if p.extension().is_some_and(|e| e == "json") {
            p.with_extension("safetensors")
        } else {
            p.to_path_buf()
        };
        return Ok((f.clone(), format!("{}", f.display())));
    }
    let Some((sweep, backbone)) = model
        .split_once(':')
        .filter(|(s, b)| !s.is_empty() && !b.is_empty())
    else {
        bail!("--model {model}: no such file, and not a SWEEP:BACKBONE reference");
    };
    if remote.admin_token.is_none() {
        bail!("--model {model} names a sweep: give --admin-token (or AUSWEEP_ADMIN_TOKEN)");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(fetch_best(sweep, backbone, remote, cache_dir))
}

/// A job's test score for choosing among folds: its average ICC(3,1) when it trained AU
/// intensity, else its average F1.
fn score(j: &v1::JobStatus) -> f64 {
    j.result.as_ref().map_or(0.0, |r| match &r.intensity {
        Some(i) => i.avg_icc,
        None => r.avg_f1,
    })
}

/// The stage and fold a sweep reference picks: among the backbone's succeeded jobs with a
/// result, the last stage, then the best average test F1, or ICC for intensity (ties: the
/// lower fold).
pub fn pick_best<'a>(jobs: &'a [v1::JobStatus], backbone: &str) -> Option<&'a v1::JobStatus> {
    jobs.iter()
        .filter(|j| {
            j.backbone == backbone
                && j.state() == v1::JobState::Succeeded
                && j.result
                    .as_ref()
                    .is_some_and(|r| !r.checkpoint_sha256.is_empty())
        })
        .max_by(|a, b| {
            a.stage
                .cmp(&b.stage)
                .then(score(a).total_cmp(&score(b)))
                .then(b.fold.cmp(&a.fold))
        })
}

/// Downloads (into `cache_dir`, unpacked) the final checkpoint of `backbone` that [`pick_best`]
/// picks in `sweep`; its file and a line saying where it came from.
pub async fn fetch_best(
    sweep: &str,
    backbone: &str,
    remote: &Remote,
    cache_dir: &Path,
) -> Result<(PathBuf, String)> {
    let mut admin = remote.admin("--model SWEEP:BACKBONE").await?;
    let st = admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: sweep.into(),
        })
        .await
        .map_err(|e| anyhow!("sweep {sweep}: {}", e.message()))?
        .into_inner();
    let job = pick_best(&st.jobs, backbone).ok_or_else(|| {
        let mut names: Vec<&str> = st.jobs.iter().map(|j| j.backbone.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        anyhow!(
            "sweep {sweep} has no finished job of backbone `{backbone}` with a checkpoint \
             (its backbones: {})",
            names.join(", ")
        )
    })?;
    let result = job.result.clone().unwrap_or_default();
    let sha = result.checkpoint_sha256.clone();
    let cache = Cache::open(cache_dir.to_path_buf())?;
    if !cache.path(&sha).is_file() {
        download(&mut admin, &cache, &sha).await?;
    }
    let stem = cache_dir.join(&sha);
    if !stem.with_extension("safetensors").is_file() || !stem.with_extension("json").is_file() {
        cache.unpack(&sha, &stem).await?;
    }
    let test = match &result.intensity {
        Some(i) => format!("test ICC {:.3}", i.avg_icc),
        None => format!("test F1 {:.1} %", result.avg_f1 * 100.0),
    };
    let how = format!(
        "sweep {sweep} {backbone}: job {} (stage {}, fold {}, {test}), checkpoint {}",
        job.job_id,
        job.stage,
        job.fold,
        &sha[..sha.len().min(12)]
    );
    Ok((stem.with_extension("safetensors"), how))
}

async fn download(admin: &mut client::Admin, cache: &Cache, sha: &str) -> Result<()> {
    let stream = admin
        .download_checkpoint(v1::DownloadRequest { sha256: sha.into() })
        .await
        .map_err(|e| anyhow!("downloading checkpoint {sha}: {}", e.message()))?
        .into_inner();
    cache
        .store_download(sha, stream)
        .await
        .with_context(|| format!("downloading checkpoint {sha}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(backbone: &str, stage: u32, fold: u32, f1: f64) -> v1::JobStatus {
        v1::JobStatus {
            job_id: format!("{backbone}-s{stage}-f{fold}"),
            backbone: backbone.into(),
            stage,
            fold,
            state: v1::JobState::Succeeded as i32,
            result: Some(v1::JobResult {
                avg_f1: f1,
                checkpoint_sha256: "ab".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_last_stage_and_best_fold_win() {
        let mut failed = job("mobilenet_v2", 2, 3, 0.9);
        failed.state = v1::JobState::Failed as i32;
        let jobs = vec![
            job("mobilenet_v2", 1, 1, 0.8),
            job("mobilenet_v2", 2, 1, 0.4),
            job("mobilenet_v2", 2, 2, 0.5),
            failed,
            job("densenet121", 2, 1, 0.7),
        ];
        assert_eq!(
            pick_best(&jobs, "mobilenet_v2").unwrap().job_id,
            "mobilenet_v2-s2-f2"
        );
        assert!(pick_best(&jobs, "vgg19").is_none());
    }

    #[test]
    fn intensity_folds_are_ranked_by_icc() {
        let icc = |fold: u32, icc: f64| {
            let mut j = job("mobilenet_v2", 2, fold, 0.0);
            if let Some(r) = j.result.as_mut() {
                r.intensity = Some(v1::IntensityResult {
                    avg_icc: icc,
                    ..Default::default()
                });
            }
            j
        };
        let jobs = vec![icc(1, 0.70), icc(2, 0.85), icc(3, 0.79)];
        assert_eq!(
            pick_best(&jobs, "mobilenet_v2").unwrap().job_id,
            "mobilenet_v2-s2-f2"
        );
    }
}
