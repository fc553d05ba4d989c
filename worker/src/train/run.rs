//! Runs one job: builds the model, trains stage 1 or 2, checkpoints every epoch, resumes from
//! the newest checkpoint, tunes thresholds, scores the test fold and writes `result.json`.

use super::backbone::BackboneNet;
use super::batch::{BatchMaker, Prefetch};
use super::checkpoint::{self, CheckpointMeta, EarlyStopState};
use super::dataset::{self, SplitData};
use super::error::TrainError;
use super::features::Features;
use super::head::Head;
use super::loss;
use super::metrics::{self, Scores};
use super::optim::Adam;
use super::progress::{self, Event};
use super::weights;
use ausweep_proto::job::{JobSpec, Unfreeze, WeightsSource};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
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

/// What a finished job reports (also written as `result.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Job name.
    pub job: String,
    /// Backbone.
    pub backbone: String,
    /// Stage.
    pub stage: u8,
    /// Fold.
    pub fold: u32,
    /// AUs in output order.
    pub aus: Vec<u32>,
    /// Per-AU decision thresholds used for the test scores.
    pub thresholds: Vec<f64>,
    /// Test-fold scores.
    pub test: Scores,
    /// Validation scores at the chosen thresholds (None without validation subjects).
    pub val: Option<Scores>,
    /// Parameters of backbone + head.
    pub params_total: i64,
    /// Parameters this stage trained.
    pub params_trainable: i64,
    /// Epochs trained in all (including those before a resume).
    pub epochs: u32,
    /// Epoch this run resumed after, if it resumed.
    pub resumed_from_epoch: Option<u32>,
    /// Seconds spent training.
    pub train_seconds: f64,
    /// Mean training throughput.
    pub images_per_sec: f64,
    /// The final checkpoint.
    pub checkpoint: String,
    /// Its sha256.
    pub checkpoint_sha256: String,
    /// Frames in train / validation / test.
    pub frames: [usize; 3],
    /// The trainer's peak resident memory (VmHWM) when it wrote this result, bytes.
    #[serde(default)]
    pub peak_rss_bytes: u64,
    /// The training data's identity and crop geometry.
    #[serde(default)]
    pub dataset: Option<super::provenance::DatasetIdentity>,
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

fn subset_labels(labels: &[u8], idx: &[usize], k: usize) -> Vec<u8> {
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
        peak_rss_bytes: super::peak_rss_bytes(),
        dataset: Some(identity),
    };
    let json = serde_json::to_vec_pretty(&result).map_err(|e| TrainError::Config(e.to_string()))?;
    let rpath = opts.out_dir.join("result.json");
    std::fs::write(&rpath, json).map_err(TrainError::io(&rpath))?;
    if opts.print_events {
        progress::print(&Event::Done { test });
    }
    Ok(result)
}

/// Runs a job to the end (resuming from `out_dir/checkpoints` if it has any). libtorch's RNG is
/// process-global, so a process runs one job at a time (the worker runs each in its own process).
pub fn run(spec: &JobSpec, opts: &RunOptions) -> Result<JobResult, TrainError> {
    if spec.task == ausweep_proto::job::Task::Prepare {
        return prepare_only(spec, opts);
    }
    let emit = |e: Event| {
        if opts.print_events {
            progress::print(&e);
        }
    };
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
    } = dataset::split(pack, &spec.data, spec.fold, spec.seed)?;
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

    // Model and initial weights.
    let model = Model::new(spec.backbone, k, device);
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

    if super::layout::enabled_for(device) {
        super::layout::to_channels_last(&model.backbone_vs);
    }

    // What trains.
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
    let params_total = count(&model.backbone_vs) + count(&model.head_vs);
    let params_trainable = opt.numel();

    // Resume.
    let ckpt_dir = opts.out_dir.join("checkpoints");
    let mut start_epoch = 1;
    let mut last_epoch = 0;
    let mut resumed_from = None;
    let mut seconds_before = 0.0;
    let mut best_val = f64::NEG_INFINITY;
    let mut since_best = 0;
    let digest = job_digest(spec);
    if let Some((file, meta)) = checkpoint::newest(&ckpt_dir) {
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
            best_val = e.best_val;
            since_best = e.since_best;
        }
        // Training already ended at this checkpoint: evaluate it, no optimiser needed.
        let done = meta.finished
            || meta.epoch >= spec.train.epochs
            || (spec.train.early_stopping > 0 && since_best >= spec.train.early_stopping);
        if !done {
            opt.restore(&t, meta.optim_step)
                .map_err(|message| TrainError::Checkpoint {
                    path: file.clone(),
                    message,
                })?;
        }
        start_epoch = if done {
            spec.train.epochs.max(meta.epoch) + 1
        } else {
            meta.epoch + 1
        };
        last_epoch = meta.epoch;
        resumed_from = Some(meta.epoch);
        seconds_before = meta.train_seconds;
        emit(Event::Resume {
            epoch: meta.epoch,
            checkpoint: file.display().to_string(),
        });
    }

    let cache = spec.stage == 1 && spec.train.cache_features && spec.augment.is_identity();
    emit(Event::Start {
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
    });
    let cache_dir = opts.out_dir.as_path();
    let compute = |idx: &[usize]| {
        Features::compute(
            &model,
            &bm,
            idx,
            inference_batch(spec, device),
            device,
            cache_dir,
        )
    };
    let features = (cache && start_epoch <= spec.train.epochs)
        .then(|| compute(&train))
        .transpose()?
        .map(Arc::new);

    // Stage 1's backbone is frozen: validation frames' features are computed once too.
    let val_features = (cache && !val.is_empty())
        .then(|| compute(&val))
        .transpose()?;
    let predict_val = |model: &Model| -> Result<Vec<f32>, TrainError> {
        match &val_features {
            Some(f) => f.predict(model, spec.train.batch_size * 2, device),
            None => Ok(model.predict(&bm, &val, inference_batch(spec, device))),
        }
    };
    let pos_weight = loss::inverse_frequency_weights(&bm.labels(&train)).to_device(device);
    let bs = spec.train.batch_size;
    let mut trained_images = 0usize;
    let started = Instant::now();
    let val_labels = subset_labels(&labels, &val, k);
    for epoch in start_epoch..=spec.train.epochs {
        let t0 = Instant::now();
        let mut rng =
            ChaCha8Rng::seed_from_u64(spec.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        tch::manual_seed(spec.seed.wrapping_add(epoch as u64) as i64);
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let mut batches: Vec<Vec<usize>> = order
            .chunks(bs)
            .filter(|c| c.len() >= 2)
            .map(<[usize]>::to_vec)
            .collect();
        if spec.train.max_steps_per_epoch > 0 {
            batches.truncate(spec.train.max_steps_per_epoch);
        }
        let steps = batches.len();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        // Cached stage 1 indexes pooled features; otherwise frames are prepared a few batches
        // ahead on a background thread (same order and random draws as inline).
        let mut feed: Box<dyn Iterator<Item = Result<(Tensor, Tensor), TrainError>>> =
            match &features {
                Some(f) => {
                    let f = f.clone();
                    let (bm2, train2) = (bm.shallow_clone(), train.clone());
                    Box::new(batches.clone().into_iter().map(move |pos| {
                        let idx: Vec<usize> = pos.iter().map(|&p| train2[p]).collect();
                        let feats = f.rows(&pos, device)?;
                        Ok((feats, bm2.labels(&idx).to_device(device)))
                    }))
                }
                None => Box::new(
                    Prefetch::start(
                        bm.shallow_clone(),
                        batches
                            .iter()
                            .map(|pos| pos.iter().map(|&p| train[p]).collect())
                            .collect(),
                        train.clone(),
                        spec.augment.clone(),
                        rng,
                        3,
                    )
                    .map(Ok),
                ),
            };
        for si in 0..steps {
            let Some(item) = feed.next() else { break };
            let (input, y) = item?;
            let n = input.size()[0] as usize;
            let logits = if features.is_some() {
                model.head.forward_t(&input, true)
            } else {
                tch::autocast(spec.amp && device.is_cuda(), || {
                    let pooled = if spec.stage == 1 {
                        tch::no_grad(|| model.backbone.pooled(&input, false, usize::MAX))
                    } else {
                        model.backbone.pooled(&input, true, first_train_block)
                    };
                    model.head.forward_t(&pooled, true)
                })
                .to_kind(Kind::Float)
            };
            let l = loss::compute(spec.loss, &logits, &y, &pos_weight);
            opt.zero_grad();
            l.backward();
            opt.step();
            let lv = l.double_value(&[]);
            if !lv.is_finite() {
                return Err(TrainError::Config(format!(
                    "epoch {epoch} step {}: the loss is {lv}; lower train.lr / train.backbone_lr",
                    si + 1
                )));
            }
            loss_sum += lv * n as f64;
            seen += n;
            if opts.log_every > 0 && (si + 1) % opts.log_every == 0 {
                emit(Event::Step {
                    epoch,
                    step: si + 1,
                    steps,
                    loss: lv,
                    images_per_sec: seen as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                });
            }
        }
        trained_images += seen;
        let secs = t0.elapsed().as_secs_f64();
        let val_scores = (!val.is_empty())
            .then(|| {
                let p = predict_val(&model)?;
                Ok::<_, TrainError>(metrics::score(
                    &p,
                    &val_labels,
                    &spec.data.aus,
                    &vec![0.5; k],
                ))
            })
            .transpose()?;
        emit(Event::Epoch {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            val_f1: val_scores.as_ref().map(|s| s.avg_f1),
            val_per_au: val_scores
                .as_ref()
                .map(|s| s.per_au.clone())
                .unwrap_or_default(),
            images_per_sec: seen as f64 / secs.max(1e-9),
            seconds: secs,
        });
        // Early stopping is decided before the checkpoint so the checkpoint records it.
        let mut stop = false;
        if spec.train.early_stopping > 0 {
            if let Some(v) = val_scores.as_ref().map(|s| s.avg_f1) {
                if v > best_val + 1e-9 {
                    best_val = v;
                    since_best = 0;
                } else {
                    since_best += 1;
                    stop = since_best >= spec.train.early_stopping;
                }
            }
        }
        let (tensors, step) = opt.state();
        let mut all = model.named_tensors();
        all.extend(tensors);
        let (file, meta) = checkpoint::write(
            &ckpt_dir,
            &checkpoint::epoch_stem(epoch),
            &all,
            CheckpointMeta {
                format: checkpoint::FORMAT,
                backbone: spec.backbone.name().into(),
                stage: spec.stage,
                epoch,
                aus: spec.data.aus.clone(),
                input_size: spec.data.input_size,
                thresholds: vec![0.5; k],
                metrics: val_scores.clone(),
                optim_step: step,
                sha256: String::new(),
                train_seconds: seconds_before + started.elapsed().as_secs_f64(),
                job_digest: digest.clone(),
                finished: stop || epoch >= spec.train.epochs,
                // JSON has no infinity: nothing to carry before a validation score exists.
                early_stop: best_val.is_finite().then_some(EarlyStopState {
                    best_val,
                    since_best,
                }),
                dataset: Some(dataset_identity.clone()),
            },
        )?;
        emit(Event::Checkpoint {
            epoch,
            path: file.display().to_string(),
            sha256: meta.sha256,
        });
        last_epoch = epoch;
        if stop {
            emit(Event::EarlyStop { epoch });
            break;
        }
    }
    let train_seconds = seconds_before + started.elapsed().as_secs_f64();

    // Thresholds on validation subjects, then the test fold.
    let (thresholds, val_scores) = if val.is_empty() {
        (vec![0.5; k], None)
    } else {
        let p = predict_val(&model)?;
        let th = match spec.thresholds {
            ausweep_proto::job::ThresholdMode::Fixed => vec![0.5; k],
            ausweep_proto::job::ThresholdMode::Tuned => {
                metrics::tune_thresholds(&p, &val_labels, k)
            }
        };
        let sc = metrics::score(&p, &val_labels, &spec.data.aus, &th);
        (th, Some(sc))
    };
    let test_probs = model.predict(&bm, &test, inference_batch(spec, device));
    let test_scores = metrics::score(
        &test_probs,
        &subset_labels(&labels, &test, k),
        &spec.data.aus,
        &thresholds,
    );
    let (final_file, final_meta) = checkpoint::write(
        &opts.out_dir,
        "final",
        &model.named_tensors(),
        CheckpointMeta {
            format: checkpoint::FORMAT,
            backbone: spec.backbone.name().into(),
            stage: spec.stage,
            epoch: last_epoch,
            aus: spec.data.aus.clone(),
            input_size: spec.data.input_size,
            thresholds: thresholds.clone(),
            metrics: Some(test_scores.clone()),
            optim_step: 0,
            sha256: String::new(),
            train_seconds,
            job_digest: digest.clone(),
            finished: true,
            early_stop: None,
            dataset: Some(dataset_identity.clone()),
        },
    )?;
    let result = JobResult {
        job: spec.name.clone(),
        backbone: spec.backbone.name().into(),
        stage: spec.stage,
        fold: spec.fold,
        aus: spec.data.aus.clone(),
        thresholds,
        test: test_scores.clone(),
        val: val_scores,
        params_total,
        params_trainable,
        epochs: last_epoch,
        resumed_from_epoch: resumed_from,
        train_seconds,
        images_per_sec: trained_images as f64 / started.elapsed().as_secs_f64().max(1e-9),
        checkpoint: final_file.display().to_string(),
        checkpoint_sha256: final_meta.sha256,
        frames: [train.len(), val.len(), test.len()],
        peak_rss_bytes: super::peak_rss_bytes(),
        dataset: Some(dataset_identity),
    };
    let json = serde_json::to_vec_pretty(&result).map_err(|e| TrainError::Config(e.to_string()))?;
    let rpath = opts.out_dir.join("result.json");
    std::fs::write(&rpath, json).map_err(TrainError::io(&rpath))?;
    emit(Event::Done { test: test_scores });
    Ok(result)
}

/// Frames per backbone forward pass without gradients (the feature cache, validation, test). On
/// a CPU small batches stay in cache: 16 took 18-26 % less time than 64 (MobileNet-v2 at 64 and
/// 112 px, one and two threads, the same F1); a GPU gets twice the training batch.
fn inference_batch(spec: &JobSpec, device: Device) -> usize {
    let b = spec.train.batch_size * 2;
    if device.is_cuda() {
        b
    } else {
        b.min(CPU_INFERENCE_BATCH)
    }
}

/// The CPU's inference batch (see [`inference_batch`]).
const CPU_INFERENCE_BATCH: usize = 16;
