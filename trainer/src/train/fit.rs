//! The training loop of one job: epochs of shuffled batches, validation and early stopping, a
//! checkpoint per epoch; then thresholds on validation, the test fold, `final` and the result.

use super::batch::{BatchMaker, Prefetch};
use super::checkpoint::{self, CheckpointMeta, EarlyStopState};
use super::error::TrainError;
use super::features::Features;
use super::loss;
use super::metrics::{self, Scores};
use super::optim::Adam;
use super::provenance::DatasetIdentity;
use super::run::{emit, inference_batch, write_result, Model, RunOptions};
use ausweep_metrics::{AuIntensity, IntensityScores};
use ausweep_proto::job::{JobSpec, Objective};
use ausweep_proto::trainer::progress::Event;
use ausweep_proto::trainer::result::JobResult;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::{Kind, Tensor};

/// Where training starts: after a checkpoint of this job, or at epoch 1.
pub(super) struct Resumed {
    /// First epoch to train.
    pub start_epoch: u32,
    /// Last epoch trained (0: none).
    pub last_epoch: u32,
    /// The epoch resumed after, if any.
    pub from: Option<u32>,
    /// Training seconds before this process.
    pub seconds_before: f64,
    /// Best validation F1 so far (early stopping).
    pub best_val: f64,
    /// Epochs since it improved.
    pub since_best: u32,
}

/// One job's training, from its first epoch to its result.
pub(super) struct Fit<'a> {
    pub spec: &'a JobSpec,
    pub opts: &'a RunOptions,
    pub model: &'a Model,
    pub bm: &'a BatchMaker,
    pub train: &'a [usize],
    pub val: &'a [usize],
    pub val_labels: Vec<u8>,
    /// Stage 1's cached pooled features of the training frames.
    pub features: Option<Arc<Features>>,
    pub val_features: Option<Features>,
    pub first_train_block: usize,
    pub pos_weight: Tensor,
    pub ckpt_dir: PathBuf,
    pub digest: String,
    pub identity: DatasetIdentity,
    pub opt: &'a mut Adam,
    pub resumed: Resumed,
    pub trained_images: usize,
    pub started: Instant,
}

type Feed = Box<dyn Iterator<Item = Result<(Tensor, Tensor), TrainError>>>;

impl Fit<'_> {
    /// Trains the remaining epochs, checkpointing each; stops early when validation stalls.
    pub fn epochs(&mut self) -> Result<(), TrainError> {
        let spec = self.spec;
        for epoch in self.resumed.start_epoch..=spec.train.epochs {
            let t0 = Instant::now();
            let (loss_sum, seen) = self.epoch(epoch, t0)?;
            self.trained_images += seen;
            let secs = t0.elapsed().as_secs_f64();
            let (val_scores, val_intensity) = self.validate()?;
            emit(
                self.opts,
                Event::Epoch {
                    epoch,
                    loss: loss_sum / seen.max(1) as f64,
                    val_f1: val_scores.as_ref().map(|s| s.avg_f1),
                    val_per_au: val_scores
                        .as_ref()
                        .map(|s| s.per_au.clone())
                        .unwrap_or_default(),
                    val_icc: val_intensity.as_ref().map(|s| s.avg_icc),
                    images_per_sec: seen as f64 / secs.max(1e-9),
                    seconds: secs,
                },
            );
            // Early stopping is decided before the checkpoint so the checkpoint records it.
            let watched = match &val_intensity {
                Some(s) => Some(s.avg_icc),
                None => val_scores.as_ref().map(|s| s.avg_f1),
            };
            let stop = self.early_stop(watched);
            self.checkpoint(epoch, val_scores, stop)?;
            self.resumed.last_epoch = epoch;
            if stop {
                emit(self.opts, Event::EarlyStop { epoch });
                break;
            }
        }
        Ok(())
    }

    /// The epoch's batches: frames shuffled by a seed of the job and the epoch, so a resumed run
    /// draws what an uninterrupted one would.
    fn batches(&self, epoch: u32) -> (Vec<Vec<usize>>, ChaCha8Rng) {
        let spec = self.spec;
        let mut rng =
            ChaCha8Rng::seed_from_u64(spec.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        tch::manual_seed(spec.seed.wrapping_add(epoch as u64) as i64);
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut rng);
        let mut batches: Vec<Vec<usize>> = order
            .chunks(spec.train.batch_size)
            .filter(|c| c.len() >= 2)
            .map(<[usize]>::to_vec)
            .collect();
        if spec.train.max_steps_per_epoch > 0 {
            batches.truncate(spec.train.max_steps_per_epoch);
        }
        (batches, rng)
    }

    /// Inputs and labels of each batch: cached stage-1 features, or frames prepared a few
    /// batches ahead on a background thread (same order and random draws as inline).
    fn feed(&self, batches: Vec<Vec<usize>>, rng: ChaCha8Rng) -> Feed {
        let device = self.opts.device;
        match &self.features {
            Some(f) => {
                let f = f.clone();
                let (bm, train) = (self.bm.shallow_clone(), self.train.to_vec());
                Box::new(batches.into_iter().map(move |pos| {
                    let idx: Vec<usize> = pos.iter().map(|&p| train[p]).collect();
                    let feats = f.rows(&pos, device)?;
                    Ok((feats, bm.labels(&idx).to_device(device)))
                }))
            }
            None => Box::new(
                Prefetch::start(
                    self.bm.shallow_clone(),
                    batches
                        .iter()
                        .map(|pos| pos.iter().map(|&p| self.train[p]).collect())
                        .collect(),
                    self.train.to_vec(),
                    self.spec.augment.clone(),
                    rng,
                    3,
                )
                .map(Ok),
            ),
        }
    }

    /// Trains one epoch: (sum of loss × images, images).
    fn epoch(&mut self, epoch: u32, t0: Instant) -> Result<(f64, usize), TrainError> {
        let (spec, device) = (self.spec, self.opts.device);
        let (batches, rng) = self.batches(epoch);
        let steps = batches.len();
        let mut feed = self.feed(batches, rng);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for si in 0..steps {
            let Some(item) = feed.next() else { break };
            let (input, y) = item?;
            let n = input.size()[0] as usize;
            let logits = if self.features.is_some() {
                self.model.head.forward_t(&input, true)
            } else {
                tch::autocast(spec.amp && device.is_cuda(), || {
                    let pooled = if spec.stage == 1 {
                        tch::no_grad(|| self.model.backbone.pooled(&input, false, usize::MAX))
                    } else {
                        self.model
                            .backbone
                            .pooled(&input, true, self.first_train_block)
                    };
                    self.model.head.forward_t(&pooled, true)
                })
                .to_kind(Kind::Float)
            };
            let l = loss::compute(spec.loss, &logits, &y, &self.pos_weight);
            self.opt.zero_grad();
            l.backward();
            self.opt.step();
            let lv = l.double_value(&[]);
            if !lv.is_finite() {
                return Err(TrainError::Config(format!(
                    "epoch {epoch} step {}: the loss is {lv}; lower train.lr / train.backbone_lr",
                    si + 1
                )));
            }
            loss_sum += lv * n as f64;
            seen += n;
            if self.opts.log_every > 0 && (si + 1) % self.opts.log_every == 0 {
                emit(
                    self.opts,
                    Event::Step {
                        epoch,
                        step: si + 1,
                        steps,
                        loss: lv,
                        images_per_sec: seen as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                    },
                );
            }
        }
        Ok((loss_sum, seen))
    }

    /// Validation scores at 0.5 (occurrence) or ICC, MAE and PCC (intensity); none without
    /// validation subjects.
    fn validate(&self) -> Result<(Option<Scores>, Option<IntensityScores>), TrainError> {
        if self.val.is_empty() {
            return Ok((None, None));
        }
        let p = self.predict_val()?;
        let aus = &self.spec.data.aus;
        Ok(if self.intensity() {
            (None, Some(intensity_scores(&p, &self.val_labels, aus)))
        } else {
            let th = vec![0.5; aus.len()];
            (Some(metrics::score(&p, &self.val_labels, aus, &th)), None)
        })
    }

    /// Whether the job predicts intensities.
    fn intensity(&self) -> bool {
        self.spec.objective == Objective::Intensity
    }

    /// Whether validation (mean F1, or mean ICC for intensity) has not improved for
    /// `early_stopping` epochs (updates the record).
    fn early_stop(&mut self, val: Option<f64>) -> bool {
        let patience = self.spec.train.early_stopping;
        let (Some(v), true) = (val, patience > 0) else {
            return false;
        };
        if v > self.resumed.best_val + 1e-9 {
            self.resumed.best_val = v;
            self.resumed.since_best = 0;
            false
        } else {
            self.resumed.since_best += 1;
            self.resumed.since_best >= patience
        }
    }

    /// The checkpoint of `epoch`: model, optimiser state and where early stopping stands.
    fn checkpoint(&self, epoch: u32, val: Option<Scores>, stop: bool) -> Result<(), TrainError> {
        let spec = self.spec;
        let (tensors, step) = self.opt.state();
        let mut all = self.model.named_tensors();
        all.extend(tensors);
        let r = &self.resumed;
        let (file, meta) = checkpoint::write(
            &self.ckpt_dir,
            &checkpoint::epoch_stem(epoch),
            &all,
            CheckpointMeta {
                format: checkpoint::FORMAT,
                backbone: spec.backbone.name().into(),
                stage: spec.stage,
                epoch,
                aus: spec.data.aus.clone(),
                input_size: spec.data.input_size,
                thresholds: vec![0.5; spec.data.aus.len()],
                metrics: val,
                optim_step: step,
                sha256: String::new(),
                train_seconds: r.seconds_before + self.started.elapsed().as_secs_f64(),
                job_digest: self.digest.clone(),
                finished: stop || epoch >= spec.train.epochs,
                // JSON has no infinity: nothing to carry before a validation score exists.
                early_stop: r.best_val.is_finite().then_some(EarlyStopState {
                    best_val: r.best_val,
                    since_best: r.since_best,
                }),
                dataset: Some(self.identity.clone()),
                objective: spec.objective,
                int8: None,
            },
        )?;
        emit(
            self.opts,
            Event::Checkpoint {
                epoch,
                path: file.display().to_string(),
                sha256: meta.sha256,
            },
        );
        Ok(())
    }

    /// Validation probabilities (from cached features in stage 1).
    fn predict_val(&self) -> Result<Vec<f32>, TrainError> {
        let (spec, device) = (self.spec, self.opts.device);
        match &self.val_features {
            Some(f) => f.predict(self.model, spec.train.batch_size * 2, device),
            None => Ok(self
                .model
                .predict(self.bm, self.val, inference_batch(spec, device))),
        }
    }

    /// Thresholds on validation, scores on the test fold, `final` and `result.json`.
    /// `params`: all parameters and those this stage trained.
    pub fn finish(
        self,
        test: &[usize],
        test_labels: &[u8],
        params: [i64; 2],
    ) -> Result<JobResult, TrainError> {
        let (spec, device) = (self.spec, self.opts.device);
        let k = spec.data.aus.len();
        if self.intensity() {
            // ICC, MAE and PCC on validation and the test fold; no thresholds, no F1.
            let (_, val) = self.validate()?;
            let p = self
                .model
                .predict(self.bm, test, inference_batch(spec, device));
            write_test_intensities(&self.opts.out_dir, &spec.data.aus, &p, test_labels)?;
            let scores = Outcome {
                thresholds: Vec::new(),
                test: Scores {
                    per_au: Vec::new(),
                    avg_f1: 0.0,
                },
                val: None,
                intensity: Some(intensity_scores(&p, test_labels, &spec.data.aus)),
                val_intensity: val,
                int8: None,
            };
            return self.seal(scores, test.len(), params);
        }
        let (thresholds, val) = if self.val.is_empty() {
            (vec![0.5; k], None)
        } else {
            let p = self.predict_val()?;
            let th = match spec.thresholds {
                ausweep_proto::job::ThresholdMode::Fixed => vec![0.5; k],
                ausweep_proto::job::ThresholdMode::Tuned => {
                    metrics::tune_thresholds(&p, &self.val_labels, k)
                }
            };
            let sc = metrics::score(&p, &self.val_labels, &spec.data.aus, &th);
            (th, Some(sc))
        };
        let predict_test = || {
            self.model
                .predict(self.bm, test, inference_batch(spec, device))
        };
        let test_probs = predict_test();
        let score = |p: &[f32]| metrics::score(p, test_labels, &spec.data.aus, &thresholds);
        // The same frames with the kernels an int8 export computes with: its F1 drop.
        let int8 = if spec.train.score_int8 {
            Some(score(&crate::export::int8::with_int8_kernels(
                self.model,
                predict_test,
            )?))
        } else {
            None
        };
        let scores = Outcome {
            test: score(&test_probs),
            int8,
            thresholds,
            val,
            intensity: None,
            val_intensity: None,
        };
        self.seal(scores, test.len(), params)
    }

    /// Writes `final` (with the test scores of an occurrence job) and `result.json`, and
    /// reports the job done.
    fn seal(
        self,
        o: Outcome,
        test_frames: usize,
        params: [i64; 2],
    ) -> Result<JobResult, TrainError> {
        let spec = self.spec;
        let train_seconds = self.resumed.seconds_before + self.started.elapsed().as_secs_f64();
        let (final_file, final_meta) = checkpoint::write(
            &self.opts.out_dir,
            "final",
            &self.model.named_tensors(),
            CheckpointMeta {
                format: checkpoint::FORMAT,
                backbone: spec.backbone.name().into(),
                stage: spec.stage,
                epoch: self.resumed.last_epoch,
                aus: spec.data.aus.clone(),
                input_size: spec.data.input_size,
                thresholds: o.thresholds.clone(),
                metrics: o.intensity.is_none().then(|| o.test.clone()),
                optim_step: 0,
                sha256: String::new(),
                train_seconds,
                job_digest: self.digest.clone(),
                finished: true,
                early_stop: None,
                dataset: Some(self.identity.clone()),
                objective: spec.objective,
                int8: o.int8.clone(),
            },
        )?;
        let result = JobResult {
            job: spec.name.clone(),
            backbone: spec.backbone.name().into(),
            stage: spec.stage,
            fold: spec.fold,
            aus: spec.data.aus.clone(),
            thresholds: o.thresholds,
            test: o.test.clone(),
            val: o.val,
            params_total: params[0],
            params_trainable: params[1],
            epochs: self.resumed.last_epoch,
            resumed_from_epoch: self.resumed.from,
            train_seconds,
            images_per_sec: self.trained_images as f64
                / self.started.elapsed().as_secs_f64().max(1e-9),
            checkpoint: final_file.display().to_string(),
            checkpoint_sha256: final_meta.sha256,
            frames: [self.train.len(), self.val.len(), test_frames],
            intensity: o.intensity,
            val_intensity: o.val_intensity,
            peak_rss_bytes: super::peak_rss_bytes(),
            dataset: Some(self.identity),
            int8_test: o.int8,
        };
        write_result(self.opts, &result)?;
        emit(self.opts, Event::Done { test: o.test });
        Ok(result)
    }
}

/// What a job's end measured: F1 scores (empty for intensity) or intensity scores.
struct Outcome {
    thresholds: Vec<f64>,
    test: Scores,
    val: Option<Scores>,
    intensity: Option<IntensityScores>,
    val_intensity: Option<IntensityScores>,
    int8: Option<Scores>,
}

/// The test fold's intensities as `ausweep score --intensity` reads them, so anyone can score the
/// trainer's own predictions again: `test_predictions.csv` in OpenFace's `AUxx_r` layout (one
/// row per frame, 0–5) and `test_labels.csv` (`AU<n>` columns, the labels' levels).
fn write_test_intensities(
    dir: &std::path::Path,
    aus: &[u32],
    p: &[f32],
    labels: &[u8],
) -> Result<(), TrainError> {
    let k = aus.len().max(1);
    let mut pred = String::from("frame, success");
    let mut lab = aus
        .iter()
        .map(|a| format!("AU{a}"))
        .collect::<Vec<_>>()
        .join(",");
    for a in aus {
        pred.push_str(&format!(", AU{a:02}_r"));
    }
    for (i, (row, y)) in p.chunks_exact(k).zip(labels.chunks_exact(k)).enumerate() {
        pred.push_str(&format!("\n{}, 1", i + 1));
        for v in row {
            pred.push_str(&format!(", {:.6}", f64::from(*v) * loss::INTENSITY_SCALE));
        }
        let y: Vec<String> = y.iter().map(u8::to_string).collect();
        lab.push_str(&format!("\n{}", y.join(",")));
    }
    for (name, text) in [("test_predictions.csv", pred), ("test_labels.csv", lab)] {
        let path = dir.join(name);
        ausweep_fsutil::write(&path, format!("{text}\n").as_bytes())
            .map_err(TrainError::io(&path))?;
    }
    Ok(())
}

/// ICC(3,1), MAE and PCC of a head's sigmoid outputs `p` (`len × K`, read as `5·p`) against
/// intensity labels 0–5 of the same frames.
fn intensity_scores(p: &[f32], labels: &[u8], aus: &[u32]) -> IntensityScores {
    let k = aus.len();
    let per_au = aus
        .iter()
        .enumerate()
        .map(|(c, &au)| {
            let pc: Vec<f64> = p
                .iter()
                .skip(c)
                .step_by(k)
                .map(|&v| f64::from(v) * loss::INTENSITY_SCALE)
                .collect();
            let yc: Vec<f64> = labels
                .iter()
                .skip(c)
                .step_by(k)
                .map(|&v| f64::from(v))
                .collect();
            AuIntensity::compute(au, &pc, &yc)
        })
        .collect();
    IntensityScores::new(per_au)
}
