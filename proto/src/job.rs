// Long file: the job spec is one contract: each field with its default, parsing and validation,
// read in one place by the coordinator and the trainer.
//! The job spec: one backbone × fold × stage training run, as a YAML/JSON document.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The AUs DISFA's label files cover (`SNxxx_auN.txt`).
pub const DISFA_LABELLED_AUS: [u32; 12] = [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26];
/// The AUs the synthetic DISFA renders (the 8 of the standard protocol).
pub const SYNTHETIC_AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

/// A job spec that could not be read or is invalid; names the field (and line where known).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The document does not parse into a job spec.
    #[error("{origin}: field `{field}`: {message}")]
    Parse {
        /// File name or `<input>`.
        origin: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong (includes line and column from the YAML parser).
        message: String,
    },
    /// The document parses but a value is not allowed.
    #[error("{origin}: field `{field}`: {message}")]
    Invalid {
        /// File name or `<input>`.
        origin: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The backbones ausweep can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    /// DenseNet-121 (torchvision names).
    Densenet121,
    /// DenseNet-201 (torchvision names).
    Densenet201,
    /// MobileNet-v1 (timm `mobilenetv1_100` names).
    MobilenetV1,
    /// MobileNet-v2 (torchvision names).
    MobilenetV2,
    /// VGG-19 (torchvision names), the heavy reference class.
    Vgg19,
}

impl Backbone {
    /// Every backbone, in a stable order.
    pub const ALL: [Backbone; 5] = [
        Backbone::Densenet121,
        Backbone::Densenet201,
        Backbone::MobilenetV1,
        Backbone::MobilenetV2,
        Backbone::Vgg19,
    ];

    /// The name used in manifests, job files and weight files.
    pub fn name(self) -> &'static str {
        match self {
            Backbone::Densenet121 => "densenet121",
            Backbone::Densenet201 => "densenet201",
            Backbone::MobilenetV1 => "mobilenet_v1",
            Backbone::MobilenetV2 => "mobilenet_v2",
            Backbone::Vgg19 => "vgg19",
        }
    }

    /// Parses a backbone name; the error lists the valid names.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backbone `{s}`, expected one of: {}", Self::names()))
    }

    /// The valid names, comma-separated.
    pub fn names() -> String {
        Self::ALL.map(|b| b.name()).join(", ")
    }
}

impl fmt::Display for Backbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Training losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// LSEP ranking loss (Li, Song, Luo 2017).
    #[default]
    Lsep,
    /// Binary cross-entropy on logits.
    Bce,
    /// BCE with per-AU positive weights (inverse frequency).
    WeightedBce,
    /// LSEP plus weighted BCE.
    LsepBce,
    /// Mean squared error of the predicted intensity (0–5) against the label (`objective:
    /// intensity` only).
    Mse,
    /// MSE with each AU's non-zero labels weighted by the square root of its zero-to-non-zero
    /// frame ratio in the training fold, for DISFA's imbalance (`objective: intensity` only).
    WeightedMse,
}

/// What a job's model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Whether each AU occurs (intensity at or above `data.presence_threshold`): F1.
    #[default]
    Occurrence,
    /// Each AU's intensity, 0–5, as the labels give it: ICC(3,1), MAE, PCC.
    Intensity,
}

impl Objective {
    /// Whether this is the default, occurrence (left out of a job's YAML, so digests stay).
    pub fn is_occurrence(&self) -> bool {
        *self == Objective::Occurrence
    }
}

/// How decision thresholds are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    /// 0.5 for every AU.
    #[default]
    Fixed,
    /// Per AU, maximising F1 on held-out training subjects.
    Tuned,
}

/// Where the backbone's initial weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightsSource {
    /// The ImageNet file from the weights directory (`<dir>/<backbone>.safetensors`).
    #[default]
    Imagenet,
    /// Random initialisation.
    None,
    /// A safetensors file with the backbone's parameter names.
    File(PathBuf),
}

/// The dataset a job reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSource {
    /// The synthetic DISFA, rendered in memory.
    Synthetic {
        /// Number of subjects.
        subjects: u32,
        /// Frames per subject.
        frames: u32,
        /// Render seed.
        #[serde(default)]
        seed: u64,
    },
    /// DISFA layout on disk (also what `ausweep dataset synth` writes).
    Disfa {
        /// Folder holding `ActionUnit_Labels/`.
        labels_root: PathBuf,
        /// Folder holding `SNxxx/<frame-1>.jpg|png`.
        frames_root: PathBuf,
    },
    /// DISFA's videos, face-aligned by `ausweep dataset prepare` (run once per source and crop,
    /// on first use, into a content-addressed folder under `prepared_root`).
    DisfaVideos {
        /// Folder holding `Videos_LeftCamera/` and/or `Videos_RightCamera/`.
        videos_root: PathBuf,
        /// Folder holding `ActionUnit_Labels/` (default: `videos_root`).
        #[serde(default)]
        labels_root: Option<PathBuf>,
        /// Where prepared datasets are kept (shared by the workers that read them).
        prepared_root: PathBuf,
        /// Which camera's videos.
        #[serde(default)]
        camera: VideoCamera,
        /// Crop template.
        #[serde(default)]
        template: CropTemplate,
    },
    /// A list of image paths plus a list of 0/1 label rows.
    List {
        /// File of image paths, relative to `images_root`.
        paths: PathBuf,
        /// File of space-separated 0/1 label rows.
        labels: PathBuf,
        /// Root the image paths are relative to.
        images_root: PathBuf,
    },
}

/// A DISFA camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoCamera {
    /// `Videos_LeftCamera` (the usual choice).
    #[default]
    Left,
    /// `Videos_RightCamera`.
    Right,
}

/// Where face landmarks go in a prepared crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CropTemplate {
    /// Eyes level, 0.258 of the side apart, their midpoint 0.385 from the top.
    #[default]
    Eyes,
    /// All five MTCNN landmarks, least squares on a scaled ArcFace template.
    Five,
}

/// How subjects are split into folds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FoldsSpec {
    /// The standard DISFA subject-exclusive 3-fold split.
    #[serde(rename = "disfa-3fold")]
    Disfa3Fold,
    /// Subject-exclusive k-fold with a seeded shuffle.
    Kfold {
        /// Number of folds.
        k: u32,
        /// Shuffle seed.
        #[serde(default)]
        seed: u64,
    },
}

fn default_aus() -> Vec<u32> {
    vec![1, 2, 4, 6, 9, 12, 25, 26]
}
fn default_presence() -> u8 {
    2
}
fn default_input_size() -> u32 {
    224
}
fn default_val_subjects() -> usize {
    2
}

/// The data section of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Where frames and labels come from.
    pub source: DataSource,
    /// The AUs to detect, in output order.
    #[serde(default = "default_aus")]
    pub aus: Vec<u32>,
    /// An AU is present iff its intensity is at least this.
    #[serde(default = "default_presence")]
    pub presence_threshold: u8,
    /// Fold scheme.
    #[serde(default = "default_folds")]
    pub folds: FoldsSpec,
    /// Side of the square network input, pixels.
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    /// Training subjects held out for threshold tuning and early stopping.
    #[serde(default = "default_val_subjects")]
    pub val_subjects: usize,
    /// Skip and report bad frames instead of failing.
    #[serde(default)]
    pub lenient: bool,
    /// Packed cache file (built on first use, reused after).
    #[serde(default)]
    pub cache: Option<PathBuf>,
}

fn default_folds() -> FoldsSpec {
    FoldsSpec::Disfa3Fold
}

/// Which part of the backbone trains in stage 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Unfreeze {
    /// Every backbone parameter trains.
    #[default]
    All,
    /// Only the last N blocks of the backbone train.
    Last(u32),
}

/// Augmentation probabilities and strengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpec {
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Random crop: pad by this fraction of the side, then crop back (0 = off).
    pub crop: f64,
    /// Colour jitter strength for brightness/contrast/saturation (0 = off).
    pub jitter: f64,
    /// Probability of an upper/lower face splice of two subjects.
    pub splice_upper_lower: f64,
    /// Probability of a left/right face splice of two subjects.
    pub splice_left_right: f64,
}

impl Default for AugmentSpec {
    fn default() -> Self {
        Self {
            flip: 0.5,
            crop: 0.0,
            jitter: 0.0,
            splice_upper_lower: 0.0,
            splice_left_right: 0.0,
        }
    }
}

impl AugmentSpec {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self {
            flip: 0.0,
            ..Self::default()
        }
    }

    /// Whether every batch is a deterministic function of its frames (no randomness).
    pub fn is_identity(&self) -> bool {
        self.flip == 0.0
            && self.crop == 0.0
            && self.jitter == 0.0
            && self.splice_upper_lower == 0.0
            && self.splice_left_right == 0.0
    }
}

fn default_lr() -> f64 {
    1e-3
}
fn default_backbone_lr() -> f64 {
    1e-5
}
fn default_batch() -> usize {
    32
}
fn default_epochs() -> u32 {
    5
}

/// The optimisation section of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Number of epochs.
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Batch size.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Adam learning rate for the head.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam learning rate for the backbone (stage 2).
    #[serde(default = "default_backbone_lr")]
    pub backbone_lr: f64,
    /// L2 weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Stage 2: which blocks train.
    #[serde(default)]
    pub unfreeze: Unfreeze,
    /// Stop when validation F1 has not improved for this many epochs (0 = never).
    #[serde(default)]
    pub early_stopping: u32,
    /// Cache the frozen backbone's pooled features in stage 1 when augmentation allows.
    #[serde(default = "yes")]
    pub cache_features: bool,
    /// Stop each epoch after this many steps (0 = whole epoch); for smoke tests.
    #[serde(default)]
    pub max_steps_per_epoch: usize,
    /// Score the test fold a second time with the int8 kernels `ausweep export --int8` writes
    /// (one more test pass; a sweep sets it on its last stage only).
    #[serde(default = "yes")]
    pub score_int8: bool,
}

fn yes() -> bool {
    true
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_size: default_batch(),
            lr: default_lr(),
            backbone_lr: default_backbone_lr(),
            weight_decay: 0.0,
            unfreeze: Unfreeze::All,
            early_stopping: 0,
            cache_features: true,
            max_steps_per_epoch: 0,
            score_int8: true,
        }
    }
}

/// One training job: a backbone on one fold in one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name for logs and results.
    #[serde(default = "default_name")]
    pub name: String,
    /// The backbone.
    pub backbone: Backbone,
    /// Initial backbone weights (stage 1).
    #[serde(default)]
    pub weights: WeightsSource,
    /// 1 = frozen backbone, head only; 2 = fine-tune from a stage-1 checkpoint.
    pub stage: u8,
    /// Stage 2: the stage-1 checkpoint to start from.
    #[serde(default)]
    pub init_checkpoint: Option<PathBuf>,
    /// 1-based fold to hold out as the test set.
    pub fold: u32,
    /// Data, AUs and folds.
    pub data: DataSpec,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainSpec,
    /// Loss.
    #[serde(default)]
    pub loss: LossKind,
    /// Occurrence (the default) or intensity.
    #[serde(default, skip_serializing_if = "Objective::is_occurrence")]
    pub objective: Objective,
    /// Augmentation.
    #[serde(default)]
    pub augment: AugmentSpec,
    /// Decision thresholds.
    #[serde(default)]
    pub thresholds: ThresholdMode,
    /// Seed for initialisation, shuffling, dropout and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Mixed precision (CUDA only).
    #[serde(default)]
    pub amp: bool,
    /// `prepare`: only prepare the job's data (a sweep's video dataset), no training.
    #[serde(default, skip_serializing_if = "Task::is_train")]
    pub task: Task,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Train and score a model (every job of a sweep but its preparation).
    #[default]
    Train,
    /// Prepare the data (once per sweep and source) so the training jobs find it ready.
    Prepare,
}

impl Task {
    /// Whether this is a training job.
    pub fn is_train(&self) -> bool {
        *self == Task::Train
    }
}

impl LossKind {
    /// The name as job files and manifests write it.
    pub fn name(self) -> &'static str {
        loss_name(self)
    }

    /// The objective this loss trains: intensity for `mse` and `weighted_mse`, else occurrence.
    pub fn objective(self) -> Objective {
        match self {
            LossKind::Mse | LossKind::WeightedMse => Objective::Intensity,
            _ => Objective::Occurrence,
        }
    }
}

/// A loss's name as job files write it.
fn loss_name(l: LossKind) -> &'static str {
    match l {
        LossKind::Lsep => "lsep",
        LossKind::Bce => "bce",
        LossKind::WeightedBce => "weighted_bce",
        LossKind::LsepBce => "lsep_bce",
        LossKind::Mse => "mse",
        LossKind::WeightedMse => "weighted_mse",
    }
}

fn default_name() -> String {
    "job".into()
}

/// The MTCNN detector's three weight files, which preparing video data needs.
pub const MTCNN_WEIGHTS: [&str; 3] = ["mtcnn_onet", "mtcnn_pnet", "mtcnn_rnet"];

/// The weight files a job needs on the worker that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightsNeed {
    /// None (random init, a stage-1 checkpoint, or a file the spec names).
    #[default]
    Nothing,
    /// The backbone's ImageNet file.
    Imagenet(Backbone),
    /// MTCNN's three files.
    Mtcnn,
}

impl WeightsNeed {
    /// The catalog names (`<name>.safetensors` in the weights directory).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            WeightsNeed::Nothing => &[],
            WeightsNeed::Mtcnn => &MTCNN_WEIGHTS,
            WeightsNeed::Imagenet(b) => match b {
                Backbone::Densenet121 => &["densenet121"],
                Backbone::Densenet201 => &["densenet201"],
                Backbone::MobilenetV1 => &["mobilenet_v1"],
                Backbone::MobilenetV2 => &["mobilenet_v2"],
                Backbone::Vgg19 => &["vgg19"],
            },
        }
    }
}

/// Every weight file a job can need: each backbone's ImageNet file and MTCNN's.
pub fn all_weight_names() -> Vec<&'static str> {
    Backbone::ALL
        .iter()
        .map(|b| b.name())
        .chain(MTCNN_WEIGHTS)
        .collect()
}

impl JobSpec {
    /// The weights-directory files a worker must hold to run this job: the backbone's ImageNet
    /// file for stage 1 from `imagenet`, MTCNN's for a preparation job.
    pub fn weights_need(&self) -> WeightsNeed {
        match self.task {
            Task::Prepare => WeightsNeed::Mtcnn,
            Task::Train if self.stage == 1 && self.weights == WeightsSource::Imagenet => {
                WeightsNeed::Imagenet(self.backbone)
            }
            Task::Train => WeightsNeed::Nothing,
        }
    }

    /// The catalog names of [`JobSpec::weights_need`].
    pub fn needed_weights(&self) -> &'static [&'static str] {
        self.weights_need().names()
    }

    /// Reads and validates a job file (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Self, JobError> {
        let text = std::fs::read_to_string(path).map_err(|source| JobError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates a job document; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, JobError> {
        crate::yaml::check_bounded(text).map_err(|e| JobError::Parse {
            origin: origin.to_string(),
            field: "(top level)".into(),
            message: e.to_string(),
        })?;
        let de = serde_yaml::Deserializer::from_str(text);
        let spec: JobSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            // The typed pass can stop at a type error (without a position) before the parser
            // reaches a syntax error further on: the syntax error, with its line, is the cause.
            // (Aliases are bounded above, so building the generic value is bounded too.)
            if let Err(syntax) = serde_yaml::from_str::<serde_yaml::Value>(text) {
                if let Some(at) = syntax.location() {
                    let mut message = syntax.to_string();
                    if !message.contains(" at line ") {
                        message = format!("{message} at line {} column {}", at.line(), at.column());
                    }
                    return JobError::Parse {
                        origin: origin.to_string(),
                        field: "(top level)".into(),
                        message,
                    };
                }
            }
            JobError::Parse {
                origin: origin.to_string(),
                field: display_path(&e.path().to_string()),
                message: e.inner().to_string(),
            }
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Serialises to YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Checks values that parse but are not allowed.
    // Long function: one check per job-spec field, in the order errors are reported.
    pub fn validate(&self, origin: &str) -> Result<(), JobError> {
        let bad = |field: &str, message: String| {
            Err(JobError::Invalid {
                origin: origin.to_string(),
                field: field.to_string(),
                message,
            })
        };
        if !(1..=2).contains(&self.stage) {
            return bad("stage", format!("must be 1 or 2, got {}", self.stage));
        }
        if self.stage == 2 && self.init_checkpoint.is_none() {
            return bad(
                "init_checkpoint",
                "stage 2 starts from a stage-1 checkpoint; give its path".into(),
            );
        }
        if self.fold == 0 {
            return bad("fold", "folds are numbered from 1".into());
        }
        let k = match &self.data.folds {
            FoldsSpec::Disfa3Fold => 3,
            FoldsSpec::Kfold { k, .. } => *k,
        };
        if k < 2 {
            return bad(
                "data.folds.kfold.k",
                format!("need at least 2 folds, got {k}"),
            );
        }
        if self.fold > k {
            return bad(
                "fold",
                format!("the fold scheme has {k} folds, got fold {}", self.fold),
            );
        }
        if self.data.aus.is_empty() {
            return bad("data.aus", "list at least one AU".into());
        }
        let mut seen = std::collections::HashSet::new();
        let labelled: Option<(&str, &[u32])> = match &self.data.source {
            DataSource::Synthetic { .. } => Some(("the synthetic DISFA", &SYNTHETIC_AUS)),
            DataSource::Disfa { .. } | DataSource::DisfaVideos { .. } => {
                Some(("DISFA", &DISFA_LABELLED_AUS))
            }
            DataSource::List { .. } => None,
        };
        for (i, au) in self.data.aus.iter().enumerate() {
            if !seen.insert(au) {
                return bad(
                    &format!("data.aus[{i}]"),
                    format!("AU {au} is listed twice"),
                );
            }
            if let Some((name, known)) = labelled.filter(|(_, known)| !known.contains(au)) {
                return bad(
                    &format!("data.aus[{i}]"),
                    format!("AU {au} is not labelled in {name}; it labels AUs {known:?}"),
                );
            }
        }
        match (self.objective, self.loss.objective()) {
            (Objective::Intensity, Objective::Occurrence) => {
                return bad(
                    "loss",
                    format!(
                        "objective intensity trains with `mse` or `weighted_mse`, got `{}`",
                        loss_name(self.loss)
                    ),
                );
            }
            (Objective::Occurrence, Objective::Intensity) => {
                return bad(
                    "loss",
                    format!(
                        "`{}` is an intensity loss; set `objective: intensity`, or use lsep, \
                         bce, weighted_bce or lsep_bce",
                        loss_name(self.loss)
                    ),
                );
            }
            _ => {}
        }
        if self.data.presence_threshold == 0 || self.data.presence_threshold > 5 {
            return bad(
                "data.presence_threshold",
                format!("must be 1-5, got {}", self.data.presence_threshold),
            );
        }
        if !(16..=1024).contains(&self.data.input_size) {
            return bad(
                "data.input_size",
                format!("must be 16-1024 pixels, got {}", self.data.input_size),
            );
        }
        if let DataSource::Synthetic {
            subjects, frames, ..
        } = &self.data.source
        {
            if *subjects < 2 {
                return bad(
                    "data.source.subjects",
                    format!("need at least 2, got {subjects}"),
                );
            }
            if *frames == 0 {
                return bad("data.source.frames", "must be positive".into());
            }
        }
        let t = &self.train;
        if t.epochs == 0 {
            return bad("train.epochs", "must be at least 1".into());
        }
        if t.batch_size < 2 {
            return bad(
                "train.batch_size",
                format!(
                    "must be at least 2 (BatchNorm needs it), got {}",
                    t.batch_size
                ),
            );
        }
        for (field, v) in [("train.lr", t.lr), ("train.backbone_lr", t.backbone_lr)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("must be a positive number, got {v}"));
            }
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad(
                "train.weight_decay",
                format!("must be >= 0, got {}", t.weight_decay),
            );
        }
        let a = &self.augment;
        for (field, v) in [
            ("augment.flip", a.flip),
            ("augment.splice_upper_lower", a.splice_upper_lower),
            ("augment.splice_left_right", a.splice_left_right),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("is a probability, must be 0-1, got {v}"));
            }
        }
        for (field, v) in [("augment.crop", a.crop), ("augment.jitter", a.jitter)] {
            if !(0.0..=0.5).contains(&v) {
                return bad(field, format!("must be 0-0.5, got {v}"));
            }
        }
        Ok(())
    }
}

/// serde_path_to_error prints `.` for the root; show something readable.
fn display_path(p: &str) -> String {
    if p == "." || p.is_empty() {
        "(top level)".into()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "backbone: mobilenet_v2\nstage: 1\nfold: 1\ndata:\n  source: {kind: synthetic, subjects: 6, frames: 20}\n";

    #[test]
    fn alias_bomb_is_refused_before_it_expands() {
        // `source` is internally tagged, so serde buffers the whole mapping before it sees the
        // unknown keys: without the bound, 1.8 billion nodes would be built from 42 KB.
        let mut doc = String::from(
            "backbone: mobilenet_v2\nstage: 1\nfold: 1\ndata:\n  source:\n    kind: synthetic\n",
        );
        doc.push_str(&crate::yaml::wide_bomb_lines(4));
        let e = JobSpec::from_yaml(&doc, "bomb.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("bomb.yaml: "), "{msg}");
        assert!(msg.contains("alias") && msg.contains("line "), "{msg}");
    }

    #[test]
    fn syntax_errors_name_their_line_even_after_a_type_error() {
        // The typed pass fails first ("expected struct JobSpec"), without a position.
        for doc in [
            "[a",
            "`",
            "\t",
            "backbone: vgg19\nstage: [1\n",
            "a: [1, 2\n",
        ] {
            let e = JobSpec::from_yaml(doc, "j.yaml").unwrap_err().to_string();
            assert!(e.starts_with("j.yaml: "), "{e}");
            assert!(e.contains(" at line "), "{doc:?}: {e}");
        }
    }

    #[test]
    fn minimal_job_gets_defaults() {
        let j = JobSpec::from_yaml(MINIMAL, "t").unwrap();
        assert_eq!(j.backbone, Backbone::MobilenetV2);
        assert_eq!(j.data.aus, vec![1, 2, 4, 6, 9, 12, 25, 26]);
        assert_eq!(j.loss, LossKind::Lsep);
        assert_eq!(j.data.folds, FoldsSpec::Disfa3Fold);
        let back = JobSpec::from_yaml(&j.to_yaml(), "t").unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn unknown_backbone_names_field_and_choices() {
        let e = JobSpec::from_yaml(&MINIMAL.replace("mobilenet_v2", "resnet50"), "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.yaml"), "{e}");
        assert!(e.contains("backbone"), "{e}");
        assert!(e.contains("mobilenet_v2"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_nested_key_is_named() {
        let e = JobSpec::from_yaml(&format!("{MINIMAL}train:\n  epochz: 3\n"), "j")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train"), "{e}");
        assert!(e.contains("epochz"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            (format!("{MINIMAL}train:\n  epochs: 0\n"), "train.epochs"),
            (MINIMAL.replace("stage: 1", "stage: 3"), "stage"),
            (MINIMAL.replace("stage: 1", "stage: 2"), "init_checkpoint"),
            (MINIMAL.replace("fold: 1", "fold: 4"), "fold"),
            (format!("{MINIMAL}augment:\n  flip: 1.5\n"), "augment.flip"),
            (format!("{MINIMAL}train:\n  lr: -1\n"), "train.lr"),
        ];
        for (doc, field) in cases {
            let e = JobSpec::from_yaml(&doc, "j").unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
        }
        let e = JobSpec::from_yaml(&format!("{MINIMAL}train:\n  epochs: -2\n"), "j")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.epochs"), "{e}");
    }

    #[test]
    fn objective_and_loss_go_together() {
        let j = JobSpec::from_yaml(
            &format!(
                "{MINIMAL}objective: intensity
loss: mse
"
            ),
            "j",
        )
        .unwrap();
        assert_eq!((j.objective, j.loss), (Objective::Intensity, LossKind::Mse));
        assert!(
            j.to_yaml().contains("objective: intensity"),
            "an intensity job says so in its YAML"
        );
        let plain = JobSpec::from_yaml(MINIMAL, "j").unwrap();
        assert!(
            !plain.to_yaml().contains("objective"),
            "occurrence stays out of the YAML, so the digests of existing jobs do not change"
        );
        for (doc, says) in [
            (
                format!(
                    "{MINIMAL}objective: intensity
"
                ),
                "trains with `mse` or `weighted_mse`, got `lsep`",
            ),
            (
                format!(
                    "{MINIMAL}loss: mse
"
                ),
                "`mse` is an intensity loss",
            ),
            (
                format!(
                    "{MINIMAL}loss: weighted_mse
"
                ),
                "`weighted_mse` is an intensity loss",
            ),
        ] {
            let e = JobSpec::from_yaml(&doc, "j").unwrap_err().to_string();
            assert!(e.contains("`loss`") && e.contains(says), "{e}");
        }
    }
}
