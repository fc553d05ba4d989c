//! Loads a job's data into memory and splits it into train / validation / test frames.

use super::error::TrainError;
use ausweep_data::folds::FoldScheme;
use ausweep_data::Samples;
use ausweep_proto::job::{DataSource, DataSpec, FoldsSpec};

/// A job's frames, split subject-exclusively.
pub struct SplitData {
    /// All frames of the dataset.
    pub samples: Samples,
    /// 0/1 labels `len × K` at the job's presence threshold.
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

/// Reads the frames of a data spec at its input size (through the packed cache when set).
pub fn load(data: &DataSpec) -> Result<Samples, TrainError> {
    use ausweep_data::{disfa, list, source_hash, synth};
    let build = || -> Result<Samples, ausweep_data::DataError> {
        let s = match &data.source {
            DataSource::Synthetic {
                subjects,
                frames,
                seed,
            } => synth::render_samples(&synth::SynthConfig {
                subjects: *subjects,
                frames: *frames,
                size: data.input_size,
                seed: *seed,
            }),
            DataSource::Disfa {
                labels_root,
                frames_root,
            } => {
                let opts = disfa::ReadOptions {
                    aus: data.aus.clone(),
                    size: data.input_size,
                    lenient: data.lenient,
                };
                let (samples, skips) =
                    disfa::read(&disfa::DisfaLayout::new(labels_root, frames_root), &opts)?;
                report_skips(&skips);
                samples
            }
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
                let (samples, skips) = list::read_with(paths, labels, images_root, &opts)?;
                report_skips(&skips);
                samples
            }
        };
        Ok(s)
    };
    let samples = match &data.cache {
        Some(path) => {
            let source = match &data.source {
                DataSource::Synthetic { .. } => format!("{:?}", data.source),
                DataSource::Disfa {
                    labels_root,
                    frames_root,
                } => source_hash::disfa_source_hash(&disfa::DisfaLayout::new(
                    labels_root,
                    frames_root,
                ))?,
                DataSource::List {
                    paths,
                    labels,
                    images_root,
                } => source_hash::list_source_hash(paths, labels, images_root)?,
            };
            let hash = format!("{source}|aus={:?}|lenient={}", data.aus, data.lenient);
            ausweep_data::pack::open_or_build(path, &hash, data.input_size, build)?.to_samples()
        }
        None => build()?,
    };
    select_aus(samples, &data.aus)
}

/// Skipped frames are never silent: the count per reason goes to stderr.
fn report_skips(skips: &ausweep_data::SkipReport) {
    if !skips.is_empty() {
        eprintln!("data: skipped {} frames: {skips:?}", skips.total());
    }
}

/// Keeps the job's AUs, in the job's order; an AU the data lacks is an error naming it.
fn select_aus(s: Samples, aus: &[u32]) -> Result<Samples, TrainError> {
    if s.aus == aus {
        return Ok(s);
    }
    let cols: Vec<usize> = aus
        .iter()
        .map(|a| {
            s.aus.iter().position(|b| b == a).ok_or_else(|| {
                TrainError::Config(format!(
                    "data.aus: AU {a} is not in the dataset (it has {:?})",
                    s.aus
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let k = s.aus.len();
    let intensities = (0..s.len())
        .flat_map(|i| cols.iter().map(move |&c| (i, c)))
        .map(|(i, c)| s.intensities[i * k + c])
        .collect();
    Ok(Samples {
        aus: aus.to_vec(),
        intensities,
        ..s
    })
}

/// Splits frames into train / validation / test for `fold`.
pub fn split(
    samples: Samples,
    data: &DataSpec,
    fold: u32,
    seed: u64,
) -> Result<SplitData, TrainError> {
    let scheme = match &data.folds {
        FoldsSpec::Disfa3Fold => FoldScheme::Disfa3Fold,
        FoldsSpec::Kfold { k, seed } => FoldScheme::KFold { k: *k, seed: *seed },
    };
    let fs = scheme.split(&samples.subject_names, fold)?;
    let (train_s, val_s) =
        ausweep_data::folds::validation_split(&fs.train, data.val_subjects, seed);
    if train_s.is_empty() {
        return Err(TrainError::Config(format!(
            "fold {fold}: no training subjects left after holding out {} for validation",
            data.val_subjects
        )));
    }
    let labels = samples.presence(data.presence_threshold);
    let train = samples.indices_of_subjects(&train_s);
    let val = samples.indices_of_subjects(&val_s);
    let test = samples.indices_of_subjects(&fs.test);
    Ok(SplitData {
        samples,
        labels,
        train,
        val,
        test,
        subjects: [train_s, val_s, fs.test],
    })
}
