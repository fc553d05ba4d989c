//! Runs one job: builds the model, trains stage 1 or 2, checkpoints every epoch, resumes from
//! the newest checkpoint, tunes thresholds, scores the test fold and writes `result.json`.

use super::backbone::BackboneNet;
use super::batch::BatchMaker;
use super::checkpoint::{self, CheckpointMeta};
use super::dataset::{self, SplitData};
use super::error::TrainError;
use super::features::Features;
use super::fit::{Fit, Resumed};
use super::head::Head;
use super::loss;
use super::metrics::Scores;
use super::optim::Adam;
use super::weights;
use ausweep_proto::job::{JobSpec, Objective, Unfreeze, WeightsSource};
use ausweep_proto::trainer::progress::{self, Event};
use ausweep_proto::trainer::result::JobResult;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Where and how a job runs (what is not part of the job itself).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory: checkpoints/, final.safetensors, result.json.
    pub out_dir: PathBuf,
    /// The device.
    pub device: Device,
    /// Directory of converted ImageNet weights.
    pub weights_dir: PathBuf,
    /// Emit a step event every this many steps (0 = none).
    pub log_every: usize,
    /// Print events as JSON lines on stdout.
    pub print_events: bool,
    /// Where packs of data specs without a `cache` path are built and shared.
    pub data_cache: PathBuf,
}

/// The model: a backbone and a head in separate stores (names stay torchvision's).
pub struct Model {
    /// Backbone parameters.
    pub backbone_vs: nn::VarStore,
    /// Head parameters.
    pub head_vs: nn::VarStore,
    /// The backbone.
    pub backbone: BackboneNet,
    /// The head.
    pub head: Head,
}

impl Model {
    /// A randomly initialised backbone + head for `k` AUs on `device`.
    pub fn new(kind: ausweep_proto::job::Backbone, k: usize, device: Device) -> Self {
        let backbone_vs = nn::VarStore::new(device);
        let head_vs = nn::VarStore::new(device);
        let backbone = BackboneNet::new(&backbone_vs.root(), kind, false);
        let head = Head::new(&head_vs.root(), backbone.out_channels(), k as i64);
        Model {
            backbone_vs,
            head_vs,
            backbone,
            head,
        }
    }

    /// Loads `backbone.*` and `head.*` from a checkpoint file.
    pub fn load_checkpoint(
        &self,
        file: &Path,
    ) -> Result<std::collections::HashMap<String, Tensor>, TrainError> {
        let t = weights::read_tensors(file)?;
        weights::load_into(&self.backbone_vs, &t, "backbone.", None, file)?;
        weights::load_into(&self.head_vs, &t, "head.", None, file)?;
        Ok(t)
    }

    /// Backbone and head tensors with their checkpoint prefixes.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v = weights::named_with_prefix(&self.backbone_vs, "backbone.");
        v.extend(weights::named_with_prefix(&self.head_vs, "head."));
        v
    }

    /// Sigmoid probabilities for frames `idx`, in inference mode, as a flat `len × K` vector.
    pub fn predict(&self, bm: &BatchMaker, idx: &[usize], batch: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len());
        tch::no_grad(|| {
            for chunk in idx.chunks(batch.max(1)) {
                let x = bm.plain(chunk);
                let p = self
                    .head
                    .forward_t(&self.backbone.pooled(&x, false, 0), false)
                    .sigmoid();
                let v: Vec<f32> =
                    Vec::try_from(p.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1))
                        .unwrap_or_default();
                out.extend(v);
            }
        });
        out
    }
}

fn count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

pub(super) fn subset_labels(labels: &[u8], idx: &[usize], k: usize) -> Vec<u8> {
    idx.iter()
        .flat_map(|&i| labels[i * k..(i + 1) * k].iter().copied())
        .collect()
}

/// sha256 of the job's canonical YAML without its name: what makes two runs the same run.
pub fn job_digest(spec: &JobSpec) -> String {
    use sha2::{Digest, Sha256};
    let mut s = spec.clone();
    s.name.clear();
    hex::encode(Sha256::digest(s.to_yaml().as_bytes()))
}

/// A sweep's data-preparation job: prepares (or finds prepared) the job's data on the job's
/// device and records its identity as the job's artifact: `final.safetensors` without tensors,
/// `final.json` naming the dataset, and a `result.json` without scores.
fn prepare_only(spec: &JobSpec, opts: &RunOptions) -> Result<JobResult, TrainError> {
    let started = std::time::Instant::now();
    let pack = dataset::open_preparing_on(&spec.data, &opts.data_cache, opts.device)?;
    let identity = super::provenance::identity(&spec.data, &pack);
    let seconds = started.elapsed().as_secs_f64();
    let (file, meta) = checkpoint::write(
        &opts.out_dir,
        "final",
        &[],
        CheckpointMeta {
            format: checkpoint::FORMAT,
            backbone: spec.backbone.name().into(),
            stage: 0,
            epoch: 0,
            aus: identity.aus.clone(),
            input_size: identity.size,
            thresholds: Vec::new(),
            metrics: None,
            optim_step: 0,
            sha256: String::new(),
            train_seconds: seconds,
            job_digest: job_digest(spec),
            finished: true,
            early_stop: None,
            dataset: Some(identity.clone()),
            objective: spec.objective,
            int8: None,
        },
    )?;
    let test = Scores {
        per_au: Vec::new(),
        avg_f1: 0.0,
    };
    let result = JobResult {
        job: spec.name.clone(),
        backbone: spec.backbone.name().into(),
        stage: 0,
        fold: spec.fold,
        aus: Vec::new(),
        thresholds: Vec::new(),
        test: test.clone(),
        val: None,
        params_total: 0,
        params_trainable: 0,
        epochs: 0,
        resumed_from_epoch: None,
        train_seconds: seconds,
        images_per_sec: identity.frames as f64 / seconds.max(1e-9),
        checkpoint: file.display().to_string(),
        checkpoint_sha256: meta.sha256,
        frames: [pack.len(), 0, 0],
        intensity: None,
        val_intensity: None,
        peak_rss_bytes: super::peak_rss_bytes(),
        dataset: Some(identity),
        int8_test: None,
    };
    write_result(opts, &result)?;
    emit(opts, Event::Done { test });
    Ok(result)
}

/// Runs a job to the end (resuming from `out_dir/checkpoints` if it has any). libtorch's RNG is
/// process-global, so a process runs one job at a time (the worker runs each in its own process).
pub fn run(spec: &JobSpec, opts: &RunOptions) -> Result<JobResult, TrainError> {
    if spec.task == ausweep_proto::job::Task::Prepare {
        return prepare_only(spec, opts);
    }
    let device = opts.device;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tch::manual_seed(spec.seed as i64);
    let k = spec.data.aus.len();
    let pack = dataset::open(&spec.data, &opts.data_cache)?;
    let dataset_identity = super::provenance::identity(&spec.data, &pack);
    let SplitData {
        pack,
        labels,
        train,
        val,
        test,
        ..
    } = dataset::split(pack, &spec.data, spec.fold, spec.seed, spec.objective)?;
    if train.len() < 2 || test.is_empty() {
        return Err(TrainError::Config(format!(
            "fold {}: {} training and {} test frames; need at least 2 and 1",
            spec.fold,
            train.len(),
            test.len()
        )));
    }
    let label_t = Tensor::from_slice(&labels)
        .view([pack.len() as i64, k as i64])
        .to_kind(Kind::Float);
    let bm = BatchMaker::new(pack, label_t, &spec.data.aus, device);

    let model = Model::new(spec.backbone, k, device);
    init_weights(spec, opts, &model)?;
    if super::layout::enabled_for(device) {
        super::layout::to_channels_last(&model.backbone_vs);
    }
    let (mut opt, first_train_block) = optimiser(spec, &model);
    let params_total = count(&model.backbone_vs) + count(&model.head_vs);
    let params_trainable = opt.numel();
    let ckpt_dir = opts.out_dir.join("checkpoints");
    let digest = job_digest(spec);
    let resumed = resume(spec, opts, &ckpt_dir, &model, &mut opt, &digest)?;

    let cache = spec.stage == 1 && spec.train.cache_features && spec.augment.is_identity();
    emit(
        opts,
        Event::Start {
            job: spec.name.clone(),
            backbone: spec.backbone.name().into(),
            stage: spec.stage,
            fold: spec.fold,
            frames: [train.len(), val.len(), test.len()],
            params_total,
            params_trainable,
            device: format!("{device:?}"),
            feature_cache: cache,
            threads: usize::try_from(tch::get_num_threads()).unwrap_or(0),
        },
    );
    let compute = |idx: &[usize]| {
        Features::compute(
            &model,
            &bm,
            idx,
            inference_batch(spec, device),
            device,
            opts.out_dir.as_path(),
        )
    };
    let features = (cache && resumed.start_epoch <= spec.train.epochs)
        .then(|| compute(&train))
        .transpose()?
        .map(Arc::new);
    // Stage 1's backbone is frozen: validation frames' features are computed once too.
    let val_features = (cache && !val.is_empty())
        .then(|| compute(&val))
        .transpose()?;
    let mut fit = Fit {
        spec,
        opts,
        model: &model,
        bm: &bm,
        train: &train,
        val: &val,
        val_labels: subset_labels(&labels, &val, k),
        features,
        val_features,
        first_train_block,
        pos_weight: if spec.objective == Objective::Intensity {
            loss::intensity_weights(&bm.labels(&train))
        } else {
            loss::inverse_frequency_weights(&bm.labels(&train))
        }
        .to_device(device),
        ckpt_dir,
        digest,
        identity: dataset_identity,
        opt: &mut opt,
        resumed,
        trained_images: 0,
        started: Instant::now(),
    };
    fit.epochs()?;
    fit.finish(
        &test,
        &subset_labels(&labels, &test, k),
        [params_total, params_trainable],
    )
}

/// Loads the job's starting weights: the stage-1 checkpoint for stage 2, else ImageNet weights,
/// a weights file or nothing (backbone only; the head starts random).
fn init_weights(spec: &JobSpec, opts: &RunOptions, model: &Model) -> Result<(), TrainError> {
    match (spec.stage, &spec.weights) {
        (2, _) => {
            let init = spec.init_checkpoint.as_deref().ok_or_else(|| {
                TrainError::Config("init_checkpoint: stage 2 needs the stage-1 checkpoint".into())
            })?;
            let meta = checkpoint::read_meta(init)?;
            if meta.aus != spec.data.aus || meta.backbone != spec.backbone.name() {
                return Err(TrainError::Checkpoint {
                    path: init.into(),
                    message: format!(
                        "was trained as {} on AUs {:?}; this job is {} on AUs {:?}",
                        meta.backbone,
                        meta.aus,
                        spec.backbone.name(),
                        spec.data.aus
                    ),
                });
            }
            model.load_checkpoint(init)?;
        }
        (_, WeightsSource::Imagenet) => {
            let f = weights::imagenet_file(&opts.weights_dir, spec.backbone.name())?;
            weights::load_file(
                &model.backbone_vs,
                &f,
                Some(model.backbone.classifier_prefix()),
            )?;
        }
        (_, WeightsSource::File(f)) => {
            weights::load_file(
                &model.backbone_vs,
                f,
                Some(model.backbone.classifier_prefix()),
            )?;
        }
        (_, WeightsSource::None) => {}
    }
    Ok(())
}

/// What trains: the optimiser over the head and the unfrozen backbone blocks, and the first
/// trained block (`usize::MAX` in stage 1: the backbone is frozen).
fn optimiser(spec: &JobSpec, model: &Model) -> (Adam, usize) {
    let nb = model.backbone.num_blocks();
    let first_train_block = match (spec.stage, spec.train.unfreeze) {
        (1, _) => usize::MAX,
        (_, Unfreeze::All) => 0,
        (_, Unfreeze::Last(n)) => nb.saturating_sub(n as usize),
    };
    let frozen_prefixes: Vec<String> = (0..nb.min(first_train_block))
        .flat_map(|i| model.backbone.block_prefixes(i).to_vec())
        .collect();
    let mut opt = Adam::new(spec.train.weight_decay);
    let mut backbone_vars: Vec<(String, Tensor)> =
        model.backbone_vs.variables().into_iter().collect();
    backbone_vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in backbone_vars {
        let trainable =
            t.requires_grad() && !frozen_prefixes.iter().any(|p| name.starts_with(p.as_str()));
        if !trainable {
            let _ = t.set_requires_grad(false);
        } else {
            opt.add(format!("backbone.{name}"), t, spec.train.backbone_lr);
        }
    }
    for (name, t) in weights::named_with_prefix(&model.head_vs, "head.") {
        if t.requires_grad() {
            opt.add(name, t, spec.train.lr);
        }
    }
    (opt, first_train_block)
}

/// Continues from the newest checkpoint in `ckpt_dir` (model, optimiser, early-stopping state)
/// when there is one of this job; a fresh start otherwise.
fn resume(
    spec: &JobSpec,
    opts: &RunOptions,
    ckpt_dir: &Path,
    model: &Model,
    opt: &mut Adam,
    digest: &str,
) -> Result<Resumed, TrainError> {
    let mut r = Resumed {
        start_epoch: 1,
        last_epoch: 0,
        from: None,
        seconds_before: 0.0,
        best_val: f64::NEG_INFINITY,
        since_best: 0,
    };
    let Some((file, meta)) = checkpoint::newest(ckpt_dir) else {
        return Ok(r);
    };
    if meta.job_digest != digest {
        return Err(TrainError::Checkpoint {
            path: file,
            message: format!(
                "belongs to another job (digest {}…, this job {}…); use a fresh --out directory",
                meta.job_digest.get(..12).unwrap_or(""),
                digest.get(..12).unwrap_or("")
            ),
        });
    }
    let t = model.load_checkpoint(&file)?;
    if let Some(e) = meta.early_stop {
        r.best_val = e.best_val;
        r.since_best = e.since_best;
    }
    // Training already ended at this checkpoint: evaluate it, no optimiser needed.
    let done = meta.finished
        || meta.epoch >= spec.train.epochs
        || (spec.train.early_stopping > 0 && r.since_best >= spec.train.early_stopping);
    if !done {
        opt.restore(&t, meta.optim_step)
            .map_err(|message| TrainError::Checkpoint {
                path: file.clone(),
                message,
            })?;
    }
    r.start_epoch = if done {
        spec.train.epochs.max(meta.epoch) + 1
    } else {
        meta.epoch + 1
    };
    r.last_epoch = meta.epoch;
    r.from = Some(meta.epoch);
    r.seconds_before = meta.train_seconds;
    emit(
        opts,
        Event::Resume {
            epoch: meta.epoch,
            checkpoint: file.display().to_string(),
        },
    );
    Ok(r)
}

/// Prints `e` as a progress line when the run prints events.
pub(super) fn emit(opts: &RunOptions, e: Event) {
    if opts.print_events {
        progress::print(&e);
    }
}

/// Writes `result.json` in the output folder (atomically: the agent reads it after the exit).
pub(super) fn write_result(opts: &RunOptions, result: &JobResult) -> Result<(), TrainError> {
    let json = serde_json::to_vec_pretty(result).map_err(|e| TrainError::Config(e.to_string()))?;
    let rpath = opts.out_dir.join("result.json");
    ausweep_fsutil::write(&rpath, &json).map_err(TrainError::io(&rpath))
}

/// Frames per backbone forward pass without gradients (the feature cache, validation, test). On
/// a CPU small batches stay in cache: 16 took 18-26 % less time than 64 (MobileNet-v2 at 64 and
/// 112 px, one and two threads, the same F1); a GPU gets twice the training batch.
pub(super) fn inference_batch(spec: &JobSpec, device: Device) -> usize {
    let b = spec.train.batch_size * 2;
    if device.is_cuda() {
        b
    } else {
        b.min(CPU_INFERENCE_BATCH)
    }
}

/// The CPU's inference batch (see [`inference_batch`]).
const CPU_INFERENCE_BATCH: usize = 16;
