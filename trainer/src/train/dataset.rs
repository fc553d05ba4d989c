//! Opens a job's data as a memory-mapped pack (building it once, streaming, when missing) and
//! splits its frames into train / validation / test. Pixels stay in the pack: only labels and
//! indices live in memory.

use super::error::TrainError;
use ausweep_data::folds::FoldScheme;
use ausweep_data::pack::{self, PackWriter, PackedCache};
use ausweep_proto::job::Objective;
use ausweep_proto::job::{DataSource, DataSpec, FoldsSpec};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A job's frames, split subject-exclusively.
pub struct SplitData {
    /// The pack the frames are read from.
    pub pack: Arc<PackedCache>,
    /// Labels `len × K` of the job's AUs (in the job's order): 0/1 at its presence threshold,
    /// or intensities 0–5 for an intensity job.
    pub labels: Vec<u8>,
    /// Training frames.
    pub train: Vec<usize>,
    /// Validation frames (held-out training subjects).
    pub val: Vec<usize>,
    /// Test frames (the fold's subjects).
    pub test: Vec<usize>,
    /// Subjects of each part.
    pub subjects: [Vec<String>; 3],
}

/// What identifies the pack of a data spec: its source (content hash for data on disk) and the
/// settings that change the frames or labels.
fn source_hash(data: &DataSpec) -> Result<String, TrainError> {
    use ausweep_data::{disfa, source_hash};
    let source = match &data.source {
        DataSource::Synthetic { .. } => format!("{:?}", data.source),
        DataSource::Disfa {
            labels_root,
            frames_root,
        } => source_hash::disfa_source_hash(&disfa::DisfaLayout::new(labels_root, frames_root))?,
        DataSource::List {
            paths,
            labels,
            images_root,
        } => source_hash::list_source_hash(paths, labels, images_root)?,
        DataSource::DisfaVideos { .. } => {
            let dir =
                ausweep_vision::prepare::dataset_dir(&prepare_config(data, tch::Device::Cpu)?)?;
            dir.to_string_lossy().to_string()
        }
    };
    Ok(format!(
        "{source}|aus={:?}|lenient={}",
        data.aus, data.lenient
    ))
}

/// Where the pack of `data` lives: the spec's `cache` path, or a content-addressed file in
/// `cache_dir` (shared by every job on the node that reads the same data at the same size).
pub fn pack_path(data: &DataSpec, cache_dir: &Path) -> Result<PathBuf, TrainError> {
    if let DataSource::DisfaVideos { .. } = data.source {
        let dir = ausweep_vision::prepare::dataset_dir(&prepare_config(data, tch::Device::Cpu)?)?;
        return Ok(dir.join("dataset.pack"));
    }
    if let Some(p) = &data.cache {
        return Ok(p.clone());
    }
    let hash = source_hash(data)?;
    let digest = hex::encode(Sha256::digest(format!("{hash}|size={}", data.input_size)));
    let kind = match data.source {
        DataSource::Synthetic { .. } => "synthetic",
        DataSource::Disfa { .. } => "disfa",
        DataSource::List { .. } => "list",
        DataSource::DisfaVideos { .. } => "disfa-videos",
    };
    Ok(cache_dir.join(format!(
        "{kind}-{}px-{}.pack",
        data.input_size,
        &digest[..16]
    )))
}

/// Opens the pack of a data spec, building it first (streamed from the source, under a lock)
/// when it is missing or stale. `cache_dir` holds packs of specs without a `cache` path.
pub fn open(data: &DataSpec, cache_dir: &Path) -> Result<Arc<PackedCache>, TrainError> {
    open_preparing_on(data, cache_dir, prepare_device())
}

/// [`open`], preparing a video dataset with MTCNN on `device` when it is not prepared yet.
pub fn open_preparing_on(
    data: &DataSpec,
    cache_dir: &Path,
    device: tch::Device,
) -> Result<Arc<PackedCache>, TrainError> {
    use ausweep_data::{disfa, list, synth};
    if let DataSource::DisfaVideos { .. } = data.source {
        // Prepared once per source and crop, under the preparation's own lock; a job that finds
        // it prepared only opens it.
        let cfg = prepare_config(data, device)?;
        let p = ausweep_vision::prepare::prepare(&cfg, &mut |p| eprintln!("data: {p}"))?;
        if !p.reused {
            eprintln!(
                "data: prepared {} ({} frames)",
                p.dir.display(),
                p.manifest.frames
            );
        }
        return Ok(Arc::new(PackedCache::open(&p.pack)?));
    }
    let path = pack_path(data, cache_dir)?;
    let hash = source_hash(data)?;
    let build = |w: &mut PackWriter| -> Result<(), ausweep_data::DataError> {
        match &data.source {
            DataSource::Synthetic {
                subjects,
                frames,
                seed,
            } => synth::render_into(
                &synth::SynthConfig {
                    subjects: *subjects,
                    frames: *frames,
                    size: data.input_size,
                    seed: *seed,
                },
                w,
            ),
            DataSource::Disfa {
                labels_root,
                frames_root,
            } => {
                let opts = disfa::ReadOptions {
                    aus: data.aus.clone(),
                    size: data.input_size,
                    lenient: data.lenient,
                };
                let skips =
                    disfa::read_into(&disfa::DisfaLayout::new(labels_root, frames_root), &opts, w)?;
                report_skips(&skips);
                Ok(())
            }
            DataSource::DisfaVideos { .. } => Err(ausweep_data::DataError::Config(
                "video datasets are prepared, not built".into(),
            )),
            DataSource::List {
                paths,
                labels,
                images_root,
            } => {
                let opts = list::ListOptions {
                    aus: data.aus.clone(),
                    size: data.input_size,
                    lenient: data.lenient,
                };
                let skips = list::read_into(paths, labels, images_root, &opts, w)?;
                report_skips(&skips);
                Ok(())
            }
        }
    };
    let aus: &[u32] = match data.source {
        DataSource::Synthetic { .. } => &ausweep_data::DISFA_AUS,
        _ => &data.aus,
    };
    Ok(Arc::new(pack::open_or_build(
        &path,
        &hash,
        data.input_size,
        aus,
        build,
    )?))
}

/// The preparation a `disfa_videos` spec asks for (crops at the spec's input size).
pub fn prepare_config(
    data: &DataSpec,
    device: tch::Device,
) -> Result<ausweep_vision::prepare::PrepareConfig, TrainError> {
    use ausweep_data::synth::video::Camera;
    use ausweep_proto::job::{CropTemplate, VideoCamera};
    let DataSource::DisfaVideos {
        videos_root,
        labels_root,
        prepared_root,
        camera,
        template,
    } = &data.source
    else {
        return Err(TrainError::Config(
            "data.source: only a disfa_videos source is prepared".into(),
        ));
    };
    Ok(ausweep_vision::prepare::PrepareConfig {
        videos_root: videos_root.clone(),
        labels_root: labels_root.clone().unwrap_or_else(|| videos_root.clone()),
        out_root: prepared_root.clone(),
        camera: match camera {
            VideoCamera::Left => Camera::Left,
            VideoCamera::Right => Camera::Right,
        },
        template: match template {
            CropTemplate::Eyes => ausweep_vision::prepare::Template::Eyes,
            CropTemplate::Five => ausweep_vision::prepare::Template::Five,
        },
        size: data.input_size,
        subjects: None,
        min_face: None,
        batch: 16,
        device,
        weights_dir: super::weights::weights_dir(),
    })
}

/// Where a trainer runs face detection when it prepares data: the GPU given by
/// `AUSWEEP_PREPARE_DEVICE` (e.g. `cuda:0`), else the CPU.
fn prepare_device() -> tch::Device {
    std::env::var("AUSWEEP_PREPARE_DEVICE")
        .ok()
        .and_then(|d| super::parse_device(&d).ok())
        .unwrap_or(tch::Device::Cpu)
}

/// Skipped frames are never silent: the count per reason goes to stderr.
fn report_skips(skips: &ausweep_data::SkipReport) {
    if !skips.is_empty() {
        eprintln!("data: skipped {} frames: {skips:?}", skips.total());
    }
}

/// Labels of the job's AUs, in the job's order: 0/1 presence at `threshold`, or the intensities
/// themselves (0–5) with `intensity`; an AU the data lacks is an error naming it.
fn labels_of(
    pack: &PackedCache,
    aus: &[u32],
    threshold: u8,
    intensity: bool,
) -> Result<Vec<u8>, TrainError> {
    let have = pack.aus();
    let cols: Vec<usize> = aus
        .iter()
        .map(|a| {
            have.iter().position(|b| b == a).ok_or_else(|| {
                TrainError::Config(format!(
                    "data.aus: AU {a} is not in the dataset (it has {have:?})"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let k = have.len();
    let v = pack.intensities();
    Ok((0..pack.len())
        .flat_map(|i| {
            cols.iter().map(move |&c| {
                let x = v[i * k + c];
                if intensity {
                    x
                } else {
                    u8::from(x >= threshold)
                }
            })
        })
        .collect())
}

/// Indices of the frames whose subject is one of `names`.
fn indices_of(pack: &PackedCache, names: &[String]) -> Vec<usize> {
    let wanted: Vec<bool> = pack
        .subject_names()
        .iter()
        .map(|n| names.contains(n))
        .collect();
    (0..pack.len())
        .filter(|&i| wanted[pack.subjects()[i] as usize])
        .collect()
}

/// Splits the pack's frames into train / validation / test for `fold`.
pub fn split(
    pack: Arc<PackedCache>,
    data: &DataSpec,
    fold: u32,
    seed: u64,
    objective: Objective,
) -> Result<SplitData, TrainError> {
    let scheme = match &data.folds {
        FoldsSpec::Disfa3Fold => FoldScheme::Disfa3Fold,
        FoldsSpec::Kfold { k, seed } => FoldScheme::KFold { k: *k, seed: *seed },
    };
    let fs = scheme.split(pack.subject_names(), fold)?;
    let (train_s, val_s) =
        ausweep_data::folds::validation_split(&fs.train, data.val_subjects, seed);
    if train_s.is_empty() {
        return Err(TrainError::Config(format!(
            "fold {fold}: no training subjects left after holding out {} for validation",
            data.val_subjects
        )));
    }
    let intensity = objective == Objective::Intensity;
    let labels = labels_of(&pack, &data.aus, data.presence_threshold, intensity)?;
    let train = indices_of(&pack, &train_s);
    let val = indices_of(&pack, &val_s);
    let test = indices_of(&pack, &fs.test);
    Ok(SplitData {
        pack,
        labels,
        train,
        val,
        test,
        subjects: [train_s, val_s, fs.test],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two frames of AUs [1, 2, 4] with intensities [0, 2, 5] and [3, 1, 4].
    fn pack(dir: &Path) -> PackedCache {
        let s = ausweep_data::samples::Samples {
            size: 2,
            aus: vec![1, 2, 4],
            pixels: vec![0; 2 * 3 * 2 * 2],
            intensities: vec![0, 2, 5, 3, 1, 4],
            subjects: vec![0, 0],
            subject_names: vec!["SN001".into()],
            frames: vec![1, 2],
        };
        let p = dir.join("p.pack");
        pack::write(&p, &s, "h").unwrap();
        PackedCache::open(&p).unwrap()
    }

    #[test]
    fn occurrence_labels_are_presence_and_intensity_labels_the_levels() {
        let d = tempfile::tempdir().unwrap();
        let p = pack(d.path());
        // The job's AU order (4, 1), not the pack's.
        assert_eq!(labels_of(&p, &[4, 1], 2, false).unwrap(), [1, 0, 1, 1]);
        assert_eq!(labels_of(&p, &[4, 1], 2, true).unwrap(), [5, 0, 4, 3]);
        let e = labels_of(&p, &[9], 2, true).unwrap_err().to_string();
        assert!(e.contains("AU 9 is not in the dataset"), "{e}");
    }
}
