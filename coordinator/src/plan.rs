//! The job plan: a manifest expanded into jobs keyed by (backbone, fold, stage, grid point), with
//! element-wise stage dependencies (stage 2 of (b, f, g) waits on stage 1 of (b, f, g) only).
//! A dataset that needs preparing (DISFA videos) gets one `prepare` job (stage 0) per distinct
//! source and crop size, which every stage-1 job reading it waits on.

use crate::manifest::{self, DeviceReq, KeepCheckpoints, Manifest};
use ausweep_proto::job::Backbone;
use ausweep_proto::JobSpec;
use serde::{Deserialize, Serialize};

/// Where a job sits in its sweep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobKey {
    /// Backbone.
    pub backbone: Backbone,
    /// 1-based fold.
    pub fold: u32,
    /// 1 or 2.
    pub stage: u8,
    /// Grid point index.
    pub grid: usize,
}

/// The stage of a data-preparation job.
pub const PREPARE_STAGE: u8 = 0;

impl JobKey {
    /// The key's part of a job id: `mobilenet_v2.f1.s2.g0`, or `prepare.g0` for the preparation
    /// of the data of grid point 0 (and of the points sharing its data).
    pub fn slug(&self) -> String {
        if self.stage == PREPARE_STAGE {
            return format!("prepare.g{}", self.grid);
        }
        format!(
            "{}.f{}.s{}.g{}",
            self.backbone, self.fold, self.stage, self.grid
        )
    }
}

/// The job id of a key in a sweep: `<sweep>.<backbone>.f<fold>.s<stage>.g<grid>`.
pub fn job_id(sweep_id: &str, key: &JobKey) -> String {
    format!("{sweep_id}.{}", key.slug())
}

/// One job of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    /// Stable id (same manifest, same ids).
    pub id: String,
    /// Its key.
    pub key: JobKey,
    /// Readable grid point (empty without a grid).
    pub grid_label: String,
    /// The spec the trainer runs (stage 2: `init_checkpoint` unset).
    pub spec: JobSpec,
    /// Jobs whose final checkpoint this one needs.
    pub depends_on: Vec<String>,
    /// Device kind.
    pub device: DeviceReq,
    /// Least GPU memory, MiB (0 = any).
    pub min_gpu_memory_mib: u64,
    /// Attempts before the job is failed.
    pub max_attempts: u32,
    /// Lost attempts in a row without progress before the job is failed.
    pub max_lost: u32,
    /// Checkpoint retention once the job succeeded.
    pub keep: KeepCheckpoints,
    /// Higher first.
    pub priority: i32,
}

/// The plan's specs encoded for the store, once for the sweep (see [`crate::store::specs`]).
pub fn encode_specs(
    sweep_id: &str,
    plan: &[PlannedJob],
) -> Result<crate::store::specs::SweepSpecs, crate::store::StoreError> {
    let specs: Vec<(&str, &JobSpec)> = plan.iter().map(|p| (p.id.as_str(), &p.spec)).collect();
    crate::store::specs::SweepSpecs::encode(sweep_id, &specs)
}

/// A manifest that parsed but could not be expanded (a grid value the spec refuses).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct PlanError {
    /// Manifest field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Whether a data source is prepared before training (DISFA's videos are).
fn needs_preparing(spec: &JobSpec) -> bool {
    matches!(
        spec.data.source,
        ausweep_proto::job::DataSource::DisfaVideos { .. }
    )
}

/// Expands a validated manifest into its jobs: data preparation first (when the data needs it),
/// then stage 1 before stage 2 of each element.
pub fn expand(sweep_id: &str, m: &Manifest) -> Result<Vec<PlannedJob>, PlanError> {
    let mut jobs = Vec::new();
    // Preparation jobs by what they prepare: (source, crop size) as JSON.
    let mut prepares: Vec<(String, String)> = Vec::new();
    for grid in manifest::grid_points(m) {
        for &backbone in &m.backbones {
            for fold in manifest::folds(m) {
                for stage in 1..=m.stages.len() as u8 {
                    let key = JobKey {
                        backbone,
                        fold,
                        stage,
                        grid: grid.index,
                    };
                    let spec = manifest::job_spec(m, backbone, fold, stage, &grid)
                        .map_err(|(field, message)| PlanError { field, message })?;
                    let depends_on = if stage > 1 {
                        vec![job_id(
                            sweep_id,
                            &JobKey {
                                stage: stage - 1,
                                ..key.clone()
                            },
                        )]
                    } else if needs_preparing(&spec) {
                        let what =
                            serde_json::to_string(&(&spec.data.source, spec.data.input_size))
                                .map_err(|e| PlanError {
                                    field: "dataset".into(),
                                    message: e.to_string(),
                                })?;
                        let id = match prepares.iter().find(|(w, _)| *w == what) {
                            Some((_, id)) => id.clone(),
                            None => {
                                let pkey = JobKey {
                                    backbone,
                                    fold: 0,
                                    stage: PREPARE_STAGE,
                                    grid: grid.index,
                                };
                                let id = job_id(sweep_id, &pkey);
                                let mut pspec = spec.clone();
                                pspec.task = ausweep_proto::job::Task::Prepare;
                                pspec.name = format!("{}/prepare/g{}", m.name, grid.index);
                                jobs.push(PlannedJob {
                                    id: id.clone(),
                                    key: pkey,
                                    grid_label: grid.label(),
                                    spec: pspec,
                                    depends_on: Vec::new(),
                                    device: m.resources.device,
                                    min_gpu_memory_mib: 0,
                                    max_attempts: m.retries + 1,
                                    max_lost: m.lost_retries,
                                    keep: m.keep_checkpoints,
                                    priority: m.priority,
                                });
                                prepares.push((what, id.clone()));
                                id
                            }
                        };
                        vec![id]
                    } else {
                        Vec::new()
                    };
                    jobs.push(PlannedJob {
                        id: job_id(sweep_id, &key),
                        key,
                        grid_label: grid.label(),
                        spec,
                        depends_on,
                        device: m.resources.device,
                        min_gpu_memory_mib: m.resources.min_gpu_memory_mib.unwrap_or(0),
                        max_attempts: m.retries + 1,
                        max_lost: m.lost_retries,
                        keep: m.keep_checkpoints,
                        priority: m.priority,
                    });
                }
            }
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn paper() -> manifest::Parsed {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/paper.yaml");
        manifest::parse(&std::fs::read_to_string(p).unwrap(), "paper.yaml").unwrap()
    }

    #[test]
    fn paper_expands_to_24_jobs_with_elementwise_deps() {
        let p = paper();
        let jobs: Vec<PlannedJob> = expand(&p.sweep_id, &p.manifest)
            .unwrap()
            .into_iter()
            .filter(|j| j.key.stage != PREPARE_STAGE)
            .collect();
        assert_eq!(jobs.len(), 4 * 3 * 2);
        let by_id: HashMap<_, _> = jobs.iter().map(|j| (j.id.clone(), j)).collect();
        assert_eq!(by_id.len(), jobs.len(), "ids are unique");
        for j in &jobs {
            assert!(j.spec.init_checkpoint.is_none());
            assert_eq!(j.max_attempts, 3);
            if j.key.stage == 1 {
                assert!(
                    j.depends_on[0].ends_with(".prepare.g0"),
                    "{:?}",
                    j.depends_on
                );
            } else {
                assert_eq!(j.depends_on.len(), 1);
                let dep = by_id[&j.depends_on[0]];
                assert_eq!(
                    (dep.key.backbone, dep.key.fold, dep.key.stage),
                    (j.key.backbone, j.key.fold, 1)
                );
                assert_eq!(j.spec.train.lr, 1e-5);
            }
        }
    }

    #[test]
    fn video_data_is_prepared_once_before_every_stage_1_job() {
        let mut p = paper();
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/paper.yaml"),
        )
        .unwrap();
        assert!(
            text.contains("kind: disfa_videos"),
            "the paper's sweep reads the videos"
        );
        let jobs = expand(&p.sweep_id, &p.manifest).unwrap();
        assert_eq!(jobs.len(), 1 + 4 * 3 * 2);
        let prepare: Vec<&PlannedJob> = jobs
            .iter()
            .filter(|j| j.key.stage == PREPARE_STAGE)
            .collect();
        assert_eq!(prepare.len(), 1);
        let id = &prepare[0].id;
        assert_eq!(id, &format!("{}.prepare.g0", p.sweep_id));
        assert_eq!(prepare[0].spec.task, ausweep_proto::job::Task::Prepare);
        assert!(prepare[0].depends_on.is_empty());
        assert_eq!(jobs[0].id, *id, "planned before the jobs that wait on it");
        for j in jobs.iter().filter(|j| j.key.stage == 1) {
            assert_eq!(j.depends_on, vec![id.clone()], "{}", j.id);
            assert_eq!(j.spec.task, ausweep_proto::job::Task::Train);
        }
        // Synthetic data needs no preparation.
        p.manifest.dataset.source = ausweep_proto::job::DataSource::Synthetic {
            subjects: 27,
            frames: 10,
            seed: 0,
        };
        let jobs = expand(&p.sweep_id, &p.manifest).unwrap();
        assert_eq!(jobs.len(), 4 * 3 * 2);
        assert!(jobs.iter().all(|j| j.key.stage > 0));
    }

    #[test]
    fn expansion_is_idempotent() {
        let p = paper();
        assert_eq!(
            expand(&p.sweep_id, &p.manifest).unwrap(),
            expand(&p.sweep_id, &p.manifest).unwrap()
        );
    }
}
