//! The trainer: the paper's transfer learning (frozen-backbone stage 1, fine-tuning stage 2)
//! with LSEP, per-AU F1, atomic checkpoints and exact resume.

pub mod backbone;
pub mod batch;
pub mod checkpoint;
pub mod dataset;
pub mod error;
pub mod head;
pub mod imagenet;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod run;
pub mod weights;

pub use error::TrainError;
pub use run::{run, JobResult, Model, RunOptions};

/// Parses a device flag: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
pub fn parse_device(s: &str) -> Result<tch::Device, String> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cuda" => Ok(tch::Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| format!("unknown device `{s}`: use cpu, cuda, cuda:N or auto")),
    }
}
