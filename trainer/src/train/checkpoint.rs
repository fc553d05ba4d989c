//! Checkpoints: a safetensors file plus a JSON metadata file (written last, so it marks a
//! complete checkpoint), both written atomically (temp file, fsync, rename).

use super::error::TrainError;
use super::metrics::Scores;
use ausweep_proto::job::Objective;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Checkpoint format version.
pub const FORMAT: u32 = 1;

/// What a checkpoint holds besides its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format version.
    pub format: u32,
    /// Backbone name.
    pub backbone: String,
    /// Stage that wrote it.
    pub stage: u8,
    /// Epochs completed (1-based; the final checkpoint has the last epoch).
    pub epoch: u32,
    /// AUs of the head's outputs, in order.
    pub aus: Vec<u32>,
    /// Input side in pixels.
    pub input_size: u32,
    /// Per-AU decision thresholds.
    pub thresholds: Vec<f64>,
    /// Validation or test scores when known.
    pub metrics: Option<Scores>,
    /// Adam step count (0 when the file has no optimiser state).
    pub optim_step: i64,
    /// sha256 of the safetensors file.
    pub sha256: String,
    /// Seconds of training so far.
    pub train_seconds: f64,
    /// sha256 of the job spec that wrote it (resume only continues the same job).
    #[serde(default)]
    pub job_digest: String,
    /// Training is over at this checkpoint (the last epoch, an early stop, or the final file):
    /// a resume from it skips training and only tunes thresholds and scores the test fold.
    #[serde(default)]
    pub finished: bool,
    /// Early-stopping state after this epoch (best validation F1, epochs since it), so a
    /// resumed run stops where an uninterrupted one would.
    #[serde(default)]
    pub early_stop: Option<EarlyStopState>,
    /// The training data's identity and crop geometry (absent in checkpoints of older versions).
    #[serde(default)]
    pub dataset: Option<super::provenance::DatasetIdentity>,
    /// What the head predicts: occurrence (probabilities, thresholds) or intensity (5·sigmoid,
    /// 0–5). Left out for occurrence, as in checkpoints of older versions.
    #[serde(default, skip_serializing_if = "Objective::is_occurrence")]
    pub objective: Objective,
    /// The test fold scored again with the int8 kernels `ausweep export --int8` writes, at the
    /// same thresholds (occurrence `final` checkpoints of this version; `None` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Scores>,
}

impl CheckpointMeta {
    /// The metadata of a finished stage-2 checkpoint of `backbone` for `aus` at `input_size`
    /// with no training behind it (thresholds 0.5, occurrence): how benchmarks and tests save a
    /// model as `ausweep train` would. `write` fills in the sha256.
    pub fn untrained(backbone: &str, aus: &[u32], input_size: u32) -> Self {
        CheckpointMeta {
            format: FORMAT,
            backbone: backbone.into(),
            stage: 2,
            epoch: 1,
            aus: aus.to_vec(),
            input_size,
            thresholds: vec![0.5; aus.len()],
            metrics: None,
            optim_step: 0,
            sha256: String::new(),
            train_seconds: 0.0,
            job_digest: String::new(),
            finished: true,
            early_stop: None,
            dataset: None,
            objective: Objective::Occurrence,
            int8: None,
        }
    }
}

/// Early-stopping bookkeeping carried across a resume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopState {
    /// Best validation mean F1 so far.
    pub best_val: f64,
    /// Epochs since the best.
    pub since_best: u32,
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let mut f = std::fs::File::open(path).map_err(TrainError::io(path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(TrainError::io(path))?;
    Ok(hex::encode(h.finalize()))
}

fn commit(tmp: &Path, dst: &Path) -> Result<(), TrainError> {
    ausweep_fsutil::commit(tmp, dst).map_err(TrainError::io(dst))
}

/// Writes `<dir>/<stem>.safetensors` and `<dir>/<stem>.json` atomically; returns the tensor file.
pub fn write(
    dir: &Path,
    stem: &str,
    tensors: &[(String, Tensor)],
    mut meta: CheckpointMeta,
) -> Result<(PathBuf, CheckpointMeta), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let file = dir.join(format!("{stem}.safetensors"));
    let tmp = dir.join(format!(".{stem}.safetensors.tmp"));
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    Tensor::write_safetensors(&cpu, &tmp)?;
    commit(&tmp, &file)?;
    meta.format = FORMAT;
    meta.sha256 = sha256_file(&file)?;
    let json_tmp = dir.join(format!(".{stem}.json.tmp"));
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| TrainError::Checkpoint {
        path: file.clone(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&json_tmp).map_err(TrainError::io(&json_tmp))?;
    f.write_all(&json).map_err(TrainError::io(&json_tmp))?;
    drop(f);
    commit(&json_tmp, &dir.join(format!("{stem}.json")))?;
    Ok((file, meta))
}

/// Reads a checkpoint's metadata (from `X.json` beside `X.safetensors`) and verifies its sha256.
pub fn read_meta(file: &Path) -> Result<CheckpointMeta, TrainError> {
    let json = file.with_extension("json");
    let bad = |message: String| TrainError::Checkpoint {
        path: file.into(),
        message,
    };
    let text = std::fs::read_to_string(&json)
        .map_err(|e| bad(format!("metadata {}: {e}", json.display())))?;
    let meta: CheckpointMeta =
        serde_json::from_str(&text).map_err(|e| bad(format!("metadata: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!(
            "format {} (this build reads {FORMAT})",
            meta.format
        )));
    }
    let actual = sha256_file(file)?;
    if actual != meta.sha256 {
        return Err(bad(format!(
            "sha256 {actual} does not match the recorded {}",
            meta.sha256
        )));
    }
    Ok(meta)
}

/// The newest intact epoch checkpoint in `dir` (`epoch-NNNN`), skipping damaged ones.
pub fn newest(dir: &Path) -> Option<(PathBuf, CheckpointMeta)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .rev()
        .find_map(|f| read_meta(&f).ok().map(|m| (f, m)))
}

pub use ausweep_proto::trainer::result::epoch_stem;

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(epoch: u32) -> CheckpointMeta {
        CheckpointMeta {
            format: FORMAT,
            backbone: "mobilenet_v2".into(),
            stage: 1,
            epoch,
            aus: vec![1, 2],
            input_size: 32,
            thresholds: vec![0.5, 0.5],
            metrics: None,
            optim_step: 3,
            sha256: String::new(),
            train_seconds: 1.0,
            job_digest: "j".into(),
            finished: false,
            early_stop: None,
            dataset: None,
            objective: Default::default(),
            int8: None,
        }
    }

    #[test]
    fn resume_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let t = vec![("a".to_string(), Tensor::from_slice(&[1.0f32]))];
        let mut m = meta(4);
        m.finished = true;
        m.early_stop = Some(EarlyStopState {
            best_val: 0.25,
            since_best: 2,
        });
        write(dir.path(), &epoch_stem(4), &t, m.clone()).unwrap();
        let (_, got) = newest(dir.path()).unwrap();
        assert_eq!((got.finished, got.early_stop), (true, m.early_stop));
    }

    #[test]
    fn newest_skips_a_corrupted_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let t = vec![("a".to_string(), Tensor::from_slice(&[1.0f32, 2.0]))];
        write(dir.path(), &epoch_stem(1), &t, meta(1)).unwrap();
        let (f2, _) = write(dir.path(), &epoch_stem(2), &t, meta(2)).unwrap();
        assert_eq!(newest(dir.path()).unwrap().1.epoch, 2);
        // Flip a byte of epoch 2's tensor file: the sha256 check must reject it.
        let mut bytes = std::fs::read(&f2).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&f2, bytes).unwrap();
        assert!(read_meta(&f2).unwrap_err().to_string().contains("sha256"));
        assert_eq!(newest(dir.path()).unwrap().1.epoch, 1);
        // A tensor file without its metadata (a crash before the commit marker) is ignored too.
        std::fs::remove_file(f2.with_extension("json")).unwrap();
        assert_eq!(newest(dir.path()).unwrap().1.epoch, 1);
    }
}
