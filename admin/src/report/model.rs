//! The sweep report's numbers: per backbone, stage and grid point, per-AU F1 mean ± std over
//! folds, per-fold averages, parameter counts, training time and throughput.

use ausweep_coordinator::store::records::ResultRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// One job of a sweep as the report sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// Backbone name.
    pub backbone: String,
    /// 1-based fold.
    pub fold: u32,
    /// Stage (1 or 2).
    pub stage: u32,
    /// Grid point label (empty without a grid).
    pub grid: String,
    /// Whether the job succeeded (has a result).
    pub result: Option<ResultRecord>,
}

/// A sweep's jobs and what to compare them with.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepInput {
    /// Sweep id.
    pub sweep_id: String,
    /// Manifest name.
    pub name: String,
    /// Version of that name.
    pub version: u32,
    /// Baseline ids to show.
    pub baselines: Vec<String>,
    /// What the results were measured on.
    pub data: DataNote,
    /// Every job.
    pub jobs: Vec<JobRow>,
}

/// The data a sweep was measured on, as a report heads its tables with it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DataNote {
    /// One line, e.g. "the synthetic DISFA (27 subjects × 300 rendered frames, 64 px)".
    pub description: String,
    /// Whether it is DISFA (so the published DISFA baselines are comparable).
    pub disfa: bool,
}

impl DataNote {
    /// The note of a manifest's data spec.
    pub fn of(data: &ausweep_proto::job::DataSpec) -> DataNote {
        use ausweep_proto::job::{CropTemplate, DataSource, VideoCamera};
        let size = data.input_size;
        let (description, disfa) = match &data.source {
            DataSource::Synthetic {
                subjects, frames, ..
            } => (
                format!(
                    "the synthetic DISFA ({subjects} subjects × {frames} rendered frames, {size} px)"
                ),
                false,
            ),
            DataSource::Disfa { frames_root, .. } => (
                format!(
                    "DISFA frames as given in {} ({size} px)",
                    frames_root.display()
                ),
                true,
            ),
            DataSource::DisfaVideos {
                videos_root,
                camera,
                template,
                ..
            } => (
                format!(
                    "DISFA {} camera videos in {}, face-aligned by `dataset prepare` ({} template, {size} px)",
                    match camera {
                        VideoCamera::Left => "left",
                        VideoCamera::Right => "right",
                    },
                    videos_root.display(),
                    match template {
                        CropTemplate::Eyes => "eyes",
                        CropTemplate::Five => "five-point",
                    }
                ),
                true,
            ),
            DataSource::List { paths, .. } => (
                format!("the image list {} ({size} px)", paths.display()),
                false,
            ),
        };
        DataNote { description, disfa }
    }
}

/// Mean and standard deviation (sample, n − 1; 0 for one value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Values.
    pub n: usize,
}

impl MeanStd {
    /// Of a list (None when empty).
    pub fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n < 2 {
            0.0
        } else {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Some(Self { mean, std, n })
    }
}

/// One fold's result of a cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldRow {
    /// Fold.
    pub fold: u32,
    /// Mean F1 over AUs, % (0 for an intensity job).
    pub avg_f1: f64,
    /// Mean ICC(3,1) over AUs, for an intensity job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_icc: Option<f64>,
    /// Per AU F1, %, keyed `AU<n>`.
    pub f1: BTreeMap<String, f64>,
    /// Parameters of the model.
    pub params_total: u64,
    /// Parameters this stage trained.
    pub params_trainable: u64,
    /// Training time, s.
    pub train_seconds: f64,
    /// Throughput.
    pub images_per_sec: f64,
}

/// Our results for one backbone, stage and grid point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// Backbone.
    pub backbone: String,
    /// Stage.
    pub stage: u32,
    /// Grid point label.
    pub grid: String,
    /// Jobs planned (folds).
    pub folds_planned: usize,
    /// Folds with a result.
    pub folds_done: usize,
    /// Fewer folds done than planned.
    pub partial: bool,
    /// Per AU F1 %, mean ± std over folds, keyed `AU<n>`.
    pub f1: BTreeMap<String, MeanStd>,
    /// Average F1 %, mean ± std of the per-fold averages.
    pub avg_f1: Option<MeanStd>,
    /// Per fold.
    pub folds: Vec<FoldRow>,
    /// Model parameters (largest over folds; all folds agree).
    pub params_total: u64,
    /// Parameters trained in this stage.
    pub params_trainable: u64,
    /// Training time summed over folds, s.
    pub train_seconds_total: f64,
    /// Mean throughput over folds.
    pub images_per_sec_mean: f64,
    /// AU intensity scores, for cells whose jobs trained intensity (then `f1` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intensity: Option<super::intensity::IntensityCell>,
}

/// A published method as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Per AU F1 % (the sweep's AUs that the baseline covers).
    pub f1: BTreeMap<String, f64>,
    /// Published average.
    pub average_published: f64,
    /// Mean of the per-AU row.
    pub average_per_au: f64,
    /// Published average disagrees with the per-AU mean.
    pub average_disagrees: bool,
    /// Backbone parameters, where known.
    pub params: Option<u64>,
    /// Source.
    pub source: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Sweep id.
    pub sweep_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// Some job has not succeeded yet (running, pending, failed).
    pub partial: bool,
    /// Jobs in the sweep.
    pub jobs_total: usize,
    /// Jobs with a result.
    pub jobs_done: usize,
    /// AUs reported, in order.
    pub aus: Vec<u32>,
    /// Our cells, by backbone, stage, grid point.
    pub cells: Vec<Cell>,
    /// Baselines chosen in the manifest.
    pub baselines: Vec<BaselineRow>,
    /// What our results were measured on.
    pub data: DataNote,
}

/// `AU<n>`.
pub fn au_key(au: u32) -> String {
    format!("AU{au}")
}

/// Builds the report; `baselines` are the already selected published rows.
pub fn build(
    input: &SweepInput,
    file: &ausweep_coordinator::baselines::Baselines,
    chosen: &[&ausweep_coordinator::baselines::Baseline],
) -> Report {
    let mut aus: Vec<u32> = Vec::new();
    for r in input.jobs.iter().filter_map(|j| j.result.as_ref()) {
        let intensity = r.intensity.iter().flat_map(|i| i.aus.iter().map(|a| a.au));
        for au in r.aus.iter().map(|a| a.au).chain(intensity) {
            if !aus.contains(&au) {
                aus.push(au);
            }
        }
    }
    let mut groups: BTreeMap<(String, u32, String), Vec<&JobRow>> = BTreeMap::new();
    for j in &input.jobs {
        groups
            .entry((j.backbone.clone(), j.stage, j.grid.clone()))
            .or_default()
            .push(j);
    }
    let mut cells = Vec::new();
    for ((backbone, stage, grid), jobs) in groups {
        let mut folds: Vec<FoldRow> = jobs
            .iter()
            .filter_map(|j| {
                let r = j.result.as_ref()?;
                Some(FoldRow {
                    fold: j.fold,
                    avg_f1: 100.0 * r.avg_f1,
                    avg_icc: r.intensity.as_ref().map(|i| i.avg_icc),
                    f1: r.aus.iter().map(|a| (au_key(a.au), 100.0 * a.f1)).collect(),
                    params_total: r.params_total,
                    params_trainable: r.params_trainable,
                    train_seconds: r.train_seconds,
                    images_per_sec: r.images_per_sec,
                })
            })
            .collect();
        folds.sort_by_key(|f| f.fold);
        let f1 = aus
            .iter()
            .filter_map(|au| {
                let k = au_key(*au);
                let v: Vec<f64> = folds.iter().filter_map(|f| f.f1.get(&k).copied()).collect();
                MeanStd::of(&v).map(|m| (k, m))
            })
            .collect();
        // Intensity folds have no F1.
        let avgs: Vec<f64> = folds
            .iter()
            .filter(|f| f.avg_icc.is_none())
            .map(|f| f.avg_f1)
            .collect();
        let results: Vec<&ResultRecord> = jobs.iter().filter_map(|j| j.result.as_ref()).collect();
        let ips: Vec<f64> = folds.iter().map(|f| f.images_per_sec).collect();
        cells.push(Cell {
            folds_planned: jobs.len(),
            folds_done: folds.len(),
            partial: folds.len() < jobs.len(),
            f1,
            avg_f1: MeanStd::of(&avgs),
            params_total: folds.iter().map(|f| f.params_total).max().unwrap_or(0),
            params_trainable: folds.iter().map(|f| f.params_trainable).max().unwrap_or(0),
            train_seconds_total: folds.iter().map(|f| f.train_seconds).sum(),
            images_per_sec_mean: MeanStd::of(&ips).map_or(0.0, |m| m.mean),
            intensity: super::intensity::cell(&results, &aus),
            folds,
            backbone,
            stage,
            grid,
        });
    }
    let report_aus = if aus.is_empty() {
        file.aus.clone()
    } else {
        aus.clone()
    };
    let baselines = chosen
        .iter()
        .map(|b| BaselineRow {
            id: b.id.clone(),
            name: b.name.clone(),
            f1: report_aus
                .iter()
                .filter_map(|au| file.f1_of(b, *au).map(|v| (au_key(*au), v)))
                .collect(),
            average_published: b.average,
            average_per_au: b.per_au_mean(),
            average_disagrees: b.average_disagrees,
            params: b.params,
            source: b.source.clone(),
        })
        .collect();
    let jobs_done = input.jobs.iter().filter(|j| j.result.is_some()).count();
    Report {
        sweep_id: input.sweep_id.clone(),
        name: input.name.clone(),
        version: input.version,
        partial: jobs_done < input.jobs.len(),
        jobs_total: input.jobs.len(),
        jobs_done,
        aus: report_aus,
        cells,
        baselines,
        data: input.data.clone(),
    }
}
