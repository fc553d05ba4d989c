//! The trainer's typed errors.

use std::path::PathBuf;

/// Anything that stops a training job.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A weights or checkpoint file does not fit the model (missing, mis-shaped or extra
    /// tensors), or cannot be read.
    #[error(transparent)]
    Tensors(#[from] ausweep_vision::tensors::TensorError),
    /// No ImageNet weights for a backbone in the weights directory.
    #[error("no ImageNet weights for {backbone} in {dir} (available: {available}); run `ausweep weights fetch {backbone}` or `ausweep weights import {backbone} FILE`, or set `weights: none`")]
    NoWeights {
        /// The backbone.
        backbone: String,
        /// The weights directory.
        dir: PathBuf,
        /// What is there.
        available: String,
    },
    /// A checkpoint's metadata is unreadable or disagrees with its file or the job.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The dataset could not be loaded or split.
    #[error("data: {0}")]
    Data(#[from] ausweep_data::DataError),
    /// Preparing a video dataset failed.
    #[error("data preparation: {0}")]
    Prepare(#[from] ausweep_vision::prepare::PrepareError),
    /// A job setting that cannot work with this data or device.
    #[error("{0}")]
    Config(String),
    /// The model could not be written as an ONNX graph.
    #[error("ONNX export: {0}")]
    Onnx(#[from] ausweep_onnx::OnnxError),
    /// libtorch reported an error.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file operation failed. The cause is part of the message and not a `source`, so that a
    /// caller that prints the chain (anyhow's `{:#}`) says it once.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

impl TrainError {
    /// How a trainer that failed with this error exits (the agent reads the kind from it).
    pub fn exit(&self) -> ausweep_proto::trainer::TrainerExit {
        use ausweep_proto::trainer::TrainerExit;
        use ausweep_vision::tensors::TensorError;
        match self {
            // A missing file on this node, a torch read error: as for any other file.
            TrainError::Tensors(TensorError::Io { .. }) => TrainerExit::Node,
            TrainError::Tensors(TensorError::Torch(_)) => TrainerExit::Failed,
            TrainError::Tensors(_) | TrainError::NoWeights { .. } | TrainError::Config(_) => {
                TrainerExit::BadConfig
            }
            TrainError::Checkpoint { .. } => TrainerExit::BadCheckpoint,
            // Reading or writing a file failed on this node (a lost mount, a full local disk).
            TrainError::Data(ausweep_data::DataError::Io { .. }) | TrainError::Io { .. } => {
                TrainerExit::Node
            }
            TrainError::Data(_) => TrainerExit::BadConfig,
            TrainError::Prepare(_) | TrainError::Onnx(_) => TrainerExit::Failed,
            // libtorch says out of memory only in its message (CUDA's and the allocator's).
            TrainError::Torch(e) if e.to_string().to_lowercase().contains("out of memory") => {
                TrainerExit::OutOfMemory
            }
            TrainError::Torch(_) => TrainerExit::Failed,
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |cause| TrainError::Io { path, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_error_names_its_path_and_cause_once() {
        let e = TrainError::io("/data/pack")(std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "/data/pack: disk full");
        // Nothing below it in the chain: anyhow's `{:#}` (and `Caused by:`) add no second copy.
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "/data/pack: disk full"
        );
    }
}
