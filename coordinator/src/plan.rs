//! The job plan: a manifest expanded into jobs keyed by (backbone, fold, stage, grid point), with
//! element-wise stage dependencies (stage 2 of (b, f, g) waits on stage 1 of (b, f, g) only).

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

impl JobKey {
    /// The key's part of a job id: `mobilenet_v2.f1.s2.g0`.
    pub fn slug(&self) -> String {
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

/// A manifest that parsed but could not be expanded (a grid value the spec refuses).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct PlanError {
    /// Manifest field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Expands a validated manifest into its jobs, stage 1 before stage 2 of each element.
pub fn expand(sweep_id: &str, m: &Manifest) -> Result<Vec<PlannedJob>, PlanError> {
    let mut jobs = Vec::new();
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
        let jobs = expand(&p.sweep_id, &p.manifest).unwrap();
        assert_eq!(jobs.len(), 4 * 3 * 2);
        let by_id: HashMap<_, _> = jobs.iter().map(|j| (j.id.clone(), j)).collect();
        assert_eq!(by_id.len(), jobs.len(), "ids are unique");
        for j in &jobs {
            assert!(j.spec.init_checkpoint.is_none());
            assert_eq!(j.max_attempts, 3);
            if j.key.stage == 1 {
                assert!(j.depends_on.is_empty());
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
    fn expansion_is_idempotent() {
        let p = paper();
        assert_eq!(
            expand(&p.sweep_id, &p.manifest).unwrap(),
            expand(&p.sweep_id, &p.manifest).unwrap()
        );
    }
}
