//! The manifest's document types (serde, unknown keys refused, defaults filled in).

use ausweep_proto::job::{
    AugmentSpec, Backbone, DataSpec, LossKind, Objective, ThresholdMode, WeightsSource,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A sweep manifest: what to train, on what data, with which resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Sweep name; versions of a manifest share it.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Data source, AU list, fold scheme, input size (the job spec's `data` section).
    pub dataset: DataSpec,
    /// Only these folds (1-based); all folds when absent.
    #[serde(default)]
    pub run_folds: Option<Vec<u32>>,
    /// Backbones to train.
    pub backbones: Vec<Backbone>,
    /// Initial backbone weights.
    #[serde(default)]
    pub weights: WeightsSource,
    /// Per-backbone overrides of `weights` (e.g. ImageNet for one, random for another).
    #[serde(default)]
    pub backbone_weights: BTreeMap<Backbone, WeightsSource>,
    /// The classifier head.
    #[serde(default)]
    pub head: Head,
    /// What the models predict: `occurrence` (F1, the paper's task) or `intensity` (0–5;
    /// ICC(3,1), MAE, PCC; needs `loss: mse`).
    #[serde(default, skip_serializing_if = "Objective::is_occurrence")]
    pub objective: Objective,
    /// Training loss.
    #[serde(default)]
    pub loss: LossKind,
    /// Decision thresholds.
    #[serde(default)]
    pub thresholds: ThresholdMode,
    /// Augmentation.
    #[serde(default)]
    pub augment: AugmentSpec,
    /// Stage 1 (frozen backbone) and optionally stage 2 (fine-tune).
    pub stages: Vec<Stage>,
    /// Batch size.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seed.
    #[serde(default)]
    pub seed: u64,
    /// Mixed precision on CUDA.
    #[serde(default)]
    pub amp: bool,
    /// Cache frozen-backbone features in stage 1 where augmentation allows.
    #[serde(default = "yes")]
    pub cache_features: bool,
    /// Stop each epoch after this many steps (0 = whole epoch; for demos and smoke tests).
    #[serde(default)]
    pub max_steps_per_epoch: usize,
    /// Where jobs may run.
    #[serde(default)]
    pub resources: Resources,
    /// Retries after a failed attempt (attempts = retries + 1).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Attempts lost to the infrastructure (worker death, lease expiry, drain) in a row without
    /// progress (no newer checkpoint) before the job fails. Lost attempts that make progress,
    /// and all lost attempts up to this cap, do not use up `retries`.
    #[serde(default = "default_lost_retries")]
    pub lost_retries: u32,
    /// Which checkpoints the coordinator keeps once a job has succeeded (while it runs it keeps
    /// the newest resumable one).
    #[serde(default)]
    pub keep_checkpoints: KeepCheckpoints,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Grid axes: a job-spec field path (`train.lr`, `seed`, `augment.flip`) → values.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<serde_json::Value>>,
    /// Published baselines to report next to the results (names from experiments/baselines.yaml).
    #[serde(default)]
    pub baselines: Vec<String>,
}

impl Manifest {
    /// The backbones' starting weight files that do not exist: `<dir>/<backbone>.safetensors`
    /// for ImageNet, the named file for `file:`.
    pub fn missing_weights(&self, dir: &Path) -> Vec<(Backbone, PathBuf)> {
        self.backbones
            .iter()
            .filter_map(|b| {
                let f = match self.backbone_weights.get(b).unwrap_or(&self.weights) {
                    WeightsSource::Imagenet => dir.join(format!("{b}.safetensors")),
                    WeightsSource::File(f) => f.clone(),
                    WeightsSource::None => return None,
                };
                (!f.exists()).then_some((*b, f))
            })
            .collect()
    }
}

fn default_batch() -> usize {
    32
}
fn default_retries() -> u32 {
    2
}
fn default_lost_retries() -> u32 {
    10
}

/// Checkpoint retention after a job succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeepCheckpoints {
    /// Only the final weights the result names.
    #[default]
    Final,
    /// The final weights and the epoch checkpoint with the best validation F1.
    Best,
    /// Every epoch checkpoint (as before retention existed).
    All,
}
fn yes() -> bool {
    true
}

/// The head replacing the backbone's classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Global average pooling → BatchNorm → ReLU → Dropout(0.2) → Linear(K) (the paper's head).
    #[default]
    GapBnReluDropoutLinear,
}

/// What trains in a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freeze {
    /// Backbone frozen, only the head trains (stage 1).
    Backbone,
    /// Nothing frozen (stage 2).
    None,
    /// Only the last N backbone blocks and the head train (stage 2).
    TrainLast(u32),
}

/// One training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Freeze policy.
    pub freeze: Freeze,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Epochs.
    pub epochs: u32,
    /// Patience in epochs without validation-F1 improvement (0 = off).
    #[serde(default)]
    pub early_stopping: u32,
}

/// The optimizer of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    /// Optimizer name.
    #[serde(default)]
    pub name: OptimizerName,
    /// Learning rate of the head.
    pub lr: f64,
    /// Learning rate of the backbone (stage 2); the job spec default when absent.
    #[serde(default)]
    pub backbone_lr: Option<f64>,
    /// L2 weight decay.
    #[serde(default)]
    pub weight_decay: f64,
}

/// The optimizers the trainer implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerName {
    /// Adam (the paper's choice).
    #[default]
    Adam,
}

/// Which device a job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeviceReq {
    /// A CUDA GPU.
    #[default]
    Cuda,
    /// A CPU slot.
    Cpu,
    /// Either.
    Any,
}

/// Where jobs may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Device kind.
    #[serde(default)]
    pub device: DeviceReq,
    /// Least GPU memory a device must have, MiB.
    #[serde(default)]
    pub min_gpu_memory_mib: Option<u64>,
}
