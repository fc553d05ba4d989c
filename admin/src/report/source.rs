//! Where a report's data comes from: the store directly (`--store`), or the admin API's
//! GetSweep answer.

use super::model::{DataNote, JobRow, SweepInput};
use ausweep_coordinator::store::records::{JobRecord, ResultRecord, SweepRecord};
use ausweep_coordinator::store::{load_all, Store, StoreError, Tree};
use ausweep_proto::v1;

/// A sweep that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such sweep.
    #[error("no sweep `{0}` in the store")]
    NoSweep(String),
    /// The stored manifest does not decode.
    #[error("sweep {0}: stored manifest: {1}")]
    Manifest(String, String),
}

/// The baselines a stored manifest asks for and the data it was measured on.
fn manifest_of(sweep: &str, canonical: &str) -> Result<(Vec<String>, DataNote), SourceError> {
    if canonical.is_empty() {
        return Ok((Vec::new(), DataNote::default()));
    }
    ausweep_coordinator::manifest::from_canonical(canonical)
        .map(|m| (m.baselines, DataNote::of(&m.dataset)))
        .map_err(|e| SourceError::Manifest(sweep.to_string(), e.to_string()))
}

/// Reads a sweep (a unique id prefix or a name, newest version) with its jobs and results.
pub fn from_store(store: &dyn Store, sweep: &str) -> Result<SweepInput, SourceError> {
    let sweeps: Vec<SweepRecord> = load_all(store, Tree::Sweeps)?;
    let s = sweeps
        .iter()
        .find(|s| s.id == sweep)
        .or_else(|| {
            sweeps
                .iter()
                .filter(|s| s.name == sweep)
                .max_by_key(|s| s.version)
        })
        .ok_or_else(|| SourceError::NoSweep(sweep.to_string()))?;
    // Data-preparation jobs train nothing: the report is about the training jobs.
    let mut jobs: Vec<JobRecord> = load_all::<JobRecord>(store, Tree::Jobs)?
        .into_iter()
        .filter(|j| j.sweep == s.id && j.key.stage != ausweep_coordinator::plan::PREPARE_STAGE)
        .collect();
    jobs.sort_by_key(|j| j.seq);
    let mut rows = Vec::with_capacity(jobs.len());
    for j in jobs {
        let result = match store.get(Tree::Results, &j.id)? {
            Some(b) => Some(ausweep_coordinator::store::decode::<ResultRecord>(
                Tree::Results,
                &j.id,
                &b,
            )?),
            None => None,
        };
        rows.push(JobRow {
            backbone: j.key.backbone.to_string(),
            fold: j.key.fold,
            stage: u32::from(j.key.stage),
            grid: j.grid_label,
            result,
        });
    }
    let (baselines, data) = manifest_of(&s.id, &s.canonical)?;
    Ok(SweepInput {
        sweep_id: s.id.clone(),
        name: s.name.clone(),
        version: s.version,
        baselines,
        data,
        jobs: rows,
    })
}

/// Converts a GetSweep answer.
pub fn from_status(s: &v1::SweepStatus) -> Result<SweepInput, SourceError> {
    let sum = s.summary.clone().unwrap_or_default();
    let (baselines, data) = manifest_of(&sum.sweep_id, &s.manifest_json)?;
    Ok(SweepInput {
        baselines,
        data,
        sweep_id: sum.sweep_id,
        name: sum.name,
        version: sum.version,
        jobs: s
            .jobs
            .iter()
            .filter(|j| j.stage != u32::from(ausweep_coordinator::plan::PREPARE_STAGE))
            .map(|j| JobRow {
                backbone: j.backbone.clone(),
                fold: j.fold,
                stage: j.stage,
                grid: j.grid_point.clone(),
                result: j
                    .result
                    .as_ref()
                    .filter(|_| j.state == v1::JobState::Succeeded as i32)
                    .map(|r| ResultRecord::from_wire(&j.job_id, r)),
            })
            .collect(),
    })
}
