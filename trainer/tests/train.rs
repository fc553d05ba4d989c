//! The trainer end to end on the synthetic DISFA: feature cache, resume, partial unfreezing.

use ausweep_proto::job::{AugmentSpec, Backbone, JobSpec, ThresholdMode, Unfreeze, WeightsSource};
use ausweep_trainer::train::{self, weights, Model, RunOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// libtorch's RNG is process-global: runs in one test binary must not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small job: 6 frames per synthetic subject, random backbone. Fine where weights are compared,
/// but its test scores mean nothing (see [`scored_job`]).
fn job(stage: u8, epochs: u32) -> JobSpec {
    job_with_frames(stage, epochs, 6)
}

/// Frames per synthetic subject of a job whose test scores are compared. Expressions ramp up over
/// several frames, so in short clips hardly any AU reaches intensity >= 2 (6 frames: no positive
/// frame in the test fold; 12: two) and every test F1 is 0 whatever the model does. 20 frames put
/// 52 positive AU labels in the test fold.
const SCORED_FRAMES: u32 = 20;

/// A job whose test scores can be compared: enough frames for positives in the test fold, and
/// ImageNet features, so that the scores are not constant (see `assert_scores_informative`).
fn scored_job(stage: u8, epochs: u32) -> JobSpec {
    let mut j = job_with_frames(stage, epochs, SCORED_FRAMES);
    j.weights = WeightsSource::Imagenet;
    j
}

fn job_with_frames(stage: u8, epochs: u32, frames: u32) -> JobSpec {
    let text = format!(
        "backbone: mobilenet_v2\nweights: none\nstage: {stage}\nfold: 2\nseed: 3\n\
         data:\n  source: {{kind: synthetic, subjects: 27, frames: {frames}, seed: 5}}\n  input_size: 32\n  val_subjects: 2\n\
         train: {{epochs: {epochs}, batch_size: 16, lr: 0.01, backbone_lr: 0.001}}\nloss: lsep_bce\n"
    );
    let mut j: JobSpec =
        ausweep_proto::job::JobSpec::from_yaml(&text.replace("stage: 2", "stage: 1"), "t").unwrap();
    j.stage = stage;
    j.augment = AugmentSpec::none();
    j
}

fn opts(dir: &Path) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        device: Device::Cpu,
        weights_dir: weights::weights_dir(),
        log_every: 0,
        print_events: false,
        data_cache: dir.join("data"),
    }
}

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    weights::read_tensors(file).unwrap()
}

/// The weights a job starts from. `run` seeds libtorch with the job's seed and builds the model
/// (random backbone, then random head) before anything else draws from that RNG, then loads any
/// ImageNet backbone; this does the same. For a `weights: none` job the frozen backbone matching
/// this bit for bit (`assert_head_trained`) proves the RNG streams line up, so the head here is
/// the run's real starting head and not some other random draw.
fn initial_tensors(j: &JobSpec) -> HashMap<String, Tensor> {
    tch::manual_seed(j.seed as i64);
    let m = Model::new(j.backbone, j.data.aus.len(), Device::Cpu);
    if j.weights == WeightsSource::Imagenet {
        let f = weights::imagenet_file(&weights::weights_dir(), j.backbone.name()).unwrap();
        weights::load_file(&m.backbone_vs, &f, Some(m.backbone.classifier_prefix())).unwrap();
    }
    m.named_tensors().into_iter().collect()
}

/// A head must move at least this far (largest element change) to count as trained: one to three
/// epochs at lr 0.01 move it by 0.1 to 0.4 here, far above float noise.
const TRAINED: f64 = 1e-3;

/// A stage-1 checkpoint left the frozen backbone at `init` bit for bit (so `init` is the run's
/// starting point) and moved the head's linear layer away from it.
fn assert_head_trained(ckpt: &HashMap<String, Tensor>, init: &HashMap<String, Tensor>, what: &str) {
    assert_eq!(
        max_diff(ckpt, init, "backbone."),
        0.0,
        "{what}: the frozen backbone is not the seed's initialisation, so the reference is wrong"
    );
    let moved = max_diff(ckpt, init, "head.fc.");
    eprintln!("{what}: head.fc moved {moved:.3e} from its initialisation");
    assert!(
        moved > TRAINED,
        "{what}: the head is still its initialisation (moved {moved:e})"
    );
}

/// Test scores that two runs cannot share by accident: for some AU the model calls some test
/// frames positive, finds at least one true one, and calls other frames negative, i.e. its
/// scores are not constant over the test fold. A head on the features of an untrained backbone
/// (`weights: none`) gives constant scores after a few epochs: every AU is then predicted for
/// all frames or for none, and equal scores would only say that both runs predicted the base rate.
fn assert_scores_informative(r: &train::JobResult, what: &str) {
    let n = r.frames[2];
    // Frames predicted positive, from TP = recall × support and precision = TP / predicted.
    let predicted = |s: &train::metrics::AuScore| {
        (s.precision > 0.0).then(|| (s.recall * s.support as f64 / s.precision).round() as usize)
    };
    let mixed: Vec<u32> = r
        .test
        .per_au
        .iter()
        .filter(|s| s.f1 > 0.0 && predicted(s).is_some_and(|p| p < n))
        .map(|s| s.au)
        .collect();
    eprintln!(
        "{what}: test F1 {:.4}; AUs with mixed predictions over the {n} test frames: {mixed:?}; \
         thresholds {:?}",
        r.test.avg_f1, r.thresholds
    );
    assert!(
        !mixed.is_empty(),
        "{what}: degenerate test scores (every AU predicted for all frames or none), so \
         comparing them proves nothing: {:?}",
        r.test
    );
}

/// The job scored its test fold a second time with the int8 kernels an export writes, recorded
/// the scores in its result and its final checkpoint, and left the f32 kernels in that checkpoint.
fn assert_int8_scored(r: &train::JobResult) {
    use ausweep_trainer::export::int8::Int8Drop;
    let int8 = r
        .int8_test
        .as_ref()
        .expect("an occurrence job scores int8 kernels");
    let aus: Vec<u32> = int8.per_au.iter().map(|s| s.au).collect();
    assert_eq!(aus, r.aus);
    let meta = ausweep_trainer::train::checkpoint::read_meta(Path::new(&r.checkpoint)).unwrap();
    // The checkpoint's JSON keeps the scores to the last bit or so (serde_json's float parsing).
    let kept = meta
        .int8
        .as_ref()
        .expect("the final checkpoint records the int8 scores");
    let same = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(
        same(kept.avg_f1, int8.avg_f1)
            && kept.per_au.len() == int8.per_au.len()
            && kept.per_au.iter().zip(&int8.per_au).all(|(a, b)| {
                a.au == b.au
                    && a.support == b.support
                    && same(a.f1, b.f1)
                    && same(a.precision, b.precision)
            }),
        "checkpoint {kept:?} vs result {int8:?}"
    );
    let d = Int8Drop::of(&meta).unwrap();
    eprintln!(
        "int8 kernels: test F1 {:.2} % against {:.2} % ({:+.2} points)",
        d.int8_f1,
        d.fp32_f1,
        -d.points()
    );
    assert!(d.points().abs() < 10.0, "{d:?}");
    let t = tensors(Path::new(&r.checkpoint));
    let w = &t["backbone.features.1.conv.0.0.weight"];
    let v = Vec::<f32>::try_from(&w.contiguous().view([-1])).unwrap();
    let channels = w.size()[0] as usize;
    assert_ne!(
        ausweep_onnx::int8::round_trip(&v, channels),
        v,
        "the final checkpoint holds int8 values, not the trained f32 kernels"
    );
}

fn max_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>, prefix: &str) -> f64 {
    let mut worst = 0.0f64;
    let mut n = 0;
    for (k, t) in a.iter().filter(|(k, _)| k.starts_with(prefix)) {
        let d = (t - &b[k]).abs().max().double_value(&[]);
        worst = worst.max(d);
        n += 1;
    }
    assert!(n > 0, "no tensors under {prefix}");
    worst
}

#[test]
fn cached_and_uncached_stage1_train_the_same_head() {
    let _g = serial();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cached = job(1, 2);
    cached.train.cache_features = true;
    let mut uncached = cached.clone();
    uncached.train.cache_features = false;
    // A stage a later one follows skips the int8 pass (the sweep's setting for stage 1).
    cached.train.score_int8 = false;
    let ra = train::run(&cached, &opts(a.path())).unwrap();
    let rb = train::run(&uncached, &opts(b.path())).unwrap();
    assert!(ra.int8_test.is_none(), "{:?}", ra.int8_test);
    assert!(rb.int8_test.is_some(), "an int8 pass by default");
    let (ta, tb) = (
        tensors(Path::new(&ra.checkpoint)),
        tensors(Path::new(&rb.checkpoint)),
    );
    let head = max_diff(&ta, &tb, "head.");
    assert!(head < 1e-4, "heads differ by {head}");
    // The frozen backbone did not move at all, in either path.
    assert_eq!(max_diff(&ta, &tb, "backbone."), 0.0);
    assert!(
        ra.params_trainable < ra.params_total / 50,
        "stage 1 trains the head only"
    );
    // And training did something: both heads moved away from the seed's initialisation.
    let init = initial_tensors(&cached);
    assert_head_trained(&ta, &init, "cached");
    assert_head_trained(&tb, &init, "uncached");
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let _g = serial();
    let full = tempfile::tempdir().unwrap();
    let mut j = scored_job(1, 3);
    j.train.cache_features = false;
    // Tuned thresholds depend on the trained model, so comparing them compares something (with
    // enough validation subjects that some AU is present there to tune on).
    j.thresholds = ThresholdMode::Tuned;
    j.data.val_subjects = 5;
    j.augment = AugmentSpec {
        flip: 0.5,
        crop: 0.1,
        jitter: 0.2,
        splice_upper_lower: 0.3,
        splice_left_right: 0.0,
    };
    let r_full = train::run(&j, &opts(full.path())).unwrap();
    assert_eq!(r_full.resumed_from_epoch, None);
    // The comparisons below mean something only if training moves the weights, and the last
    // epoch moves them too (else a resume that trains nothing would match).
    let full_final = tensors(Path::new(&r_full.checkpoint));
    assert_head_trained(&full_final, &initial_tensors(&j), "uninterrupted");
    let epoch2 = tensors(&full.path().join("checkpoints/epoch-0002.safetensors"));
    let last = max_diff(&full_final, &epoch2, "head.fc.");
    assert!(last > TRAINED, "epoch 3 did not change the head ({last:e})");
    assert_scores_informative(&r_full, "uninterrupted");
    assert_int8_scored(&r_full);
    assert!(
        r_full.thresholds.iter().any(|&t| t != 0.5),
        "tuning left every threshold at 0.5, so comparing thresholds proves nothing: {:?}",
        r_full.thresholds
    );
    // A run that died after epoch 2: only its first two checkpoints exist.
    let cut = tempfile::tempdir().unwrap();
    let ck = cut.path().join("checkpoints");
    std::fs::create_dir_all(&ck).unwrap();
    for e in ["epoch-0001", "epoch-0002"] {
        for ext in ["safetensors", "json"] {
            std::fs::copy(
                full.path().join("checkpoints").join(format!("{e}.{ext}")),
                ck.join(format!("{e}.{ext}")),
            )
            .unwrap();
        }
    }
    let r_resumed = train::run(&j, &opts(cut.path())).unwrap();
    assert_eq!(r_resumed.resumed_from_epoch, Some(2));
    assert_eq!(r_resumed.epochs, 3);
    let d = max_diff(
        &tensors(Path::new(&r_full.checkpoint)),
        &tensors(Path::new(&r_resumed.checkpoint)),
        "",
    );
    assert!(d < 1e-5, "final weights differ by {d}");
    assert_eq!(r_resumed.thresholds, r_full.thresholds);
    assert_eq!(r_resumed.test, r_full.test, "test scores");
    assert_eq!(r_resumed.int8_test, r_full.int8_test, "int8 test scores");
    // A checkpoint of a different job is refused, not silently continued.
    let mut other = j.clone();
    other.seed = 99;
    let e = train::run(&other, &opts(cut.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("another job"), "{e}");

    // Killed after the last epoch's checkpoint (or with the final weights as the resume point,
    // as a worker once uploaded them): the run evaluates that checkpoint, trains nothing, and
    // gives the uninterrupted run's result. The final file has no optimiser state.
    for (src, what) in [
        ("checkpoints/epoch-0003", "last epoch"),
        ("final", "final weights"),
    ] {
        let late = tempfile::tempdir().unwrap();
        let ck = late.path().join("checkpoints");
        std::fs::create_dir_all(&ck).unwrap();
        for ext in ["safetensors", "json"] {
            std::fs::copy(
                full.path().join(format!("{src}.{ext}")),
                ck.join(format!("epoch-0003.{ext}")),
            )
            .unwrap();
        }
        let r = train::run(&j, &opts(late.path()))
            .unwrap_or_else(|e| panic!("resume from the {what}: {e}"));
        assert_eq!((r.resumed_from_epoch, r.epochs), (Some(3), 3), "{what}");
        assert_eq!(r.thresholds, r_full.thresholds, "{what}");
        assert_eq!(r.test, r_full.test, "{what}: test scores");
        let d = max_diff(
            &tensors(Path::new(&r_full.checkpoint)),
            &tensors(Path::new(&r.checkpoint)),
            "",
        );
        assert_eq!(d, 0.0, "{what}: nothing was trained");
    }
}

#[test]
fn stage2_last_n_blocks_trains_only_those_blocks() {
    let _g = serial();
    let s1 = tempfile::tempdir().unwrap();
    let r1 = train::run(&job(1, 1), &opts(s1.path())).unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let mut j = job(2, 1);
    j.init_checkpoint = Some(PathBuf::from(&r1.checkpoint));
    j.train.unfreeze = Unfreeze::Last(2);
    let r2 = train::run(&j, &opts(s2.path())).unwrap();
    let (a, b) = (
        tensors(Path::new(&r1.checkpoint)),
        tensors(Path::new(&r2.checkpoint)),
    );
    // MobileNet-v2 has 19 blocks (features.0 … features.18): the last two train, the rest stay.
    assert_eq!(max_diff(&a, &b, "backbone.features.0."), 0.0);
    assert_eq!(max_diff(&a, &b, "backbone.features.16."), 0.0);
    assert!(max_diff(&a, &b, "backbone.features.17.conv.0.0.weight") > 0.0);
    assert!(max_diff(&a, &b, "backbone.features.18.0.weight") > 0.0);
    assert!(r2.params_trainable > r1.params_trainable && r2.params_trainable < r2.params_total);
    // A stage-1 checkpoint of another backbone is refused with a clear message.
    let mut wrong = j.clone();
    wrong.backbone = Backbone::MobilenetV1;
    let e = train::run(&wrong, &opts(tempfile::tempdir().unwrap().path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mobilenet_v2") && e.contains("mobilenet_v1"),
        "{e}"
    );
}

#[test]
fn imagenet_weights_missing_from_the_directory_is_a_clear_error() {
    let _g = serial();
    let mut j = job(1, 1);
    j.weights = WeightsSource::Imagenet;
    j.backbone = Backbone::Densenet201;
    let empty = tempfile::tempdir().unwrap();
    let mut o = opts(tempfile::tempdir().unwrap().path());
    o.weights_dir = empty.path().to_path_buf();
    let e = train::run(&j, &o).unwrap_err().to_string();
    assert!(e.contains("no ImageNet weights for densenet201"), "{e}");
}

#[test]
fn trains_on_disfa_layout_files_through_the_packed_cache() {
    let _g = serial();
    let root = tempfile::tempdir().unwrap();
    let cfg = ausweep_data::synth::SynthConfig {
        subjects: 27,
        frames: SCORED_FRAMES,
        size: 32,
        seed: 5,
    };
    ausweep_data::synth::write_disfa(root.path(), &cfg).unwrap();
    let cache = root.path().join("disfa.pack");
    let mut j = scored_job(1, 1);
    j.data.source = ausweep_proto::job::DataSource::Disfa {
        labels_root: root.path().to_path_buf(),
        frames_root: root.path().to_path_buf(),
    };
    j.data.cache = Some(cache.clone());
    let (disk_out, memory_out, again_out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let on_disk = train::run(&j, &opts(disk_out.path())).unwrap();
    assert!(cache.is_file(), "the packed cache was written");
    // The same frames rendered in memory give the same result: the reader and the cache are exact.
    let in_memory = train::run(&scored_job(1, 1), &opts(memory_out.path())).unwrap();
    assert_eq!(on_disk.frames, in_memory.frames);
    // Same frames and labels, same seed: the same trained weights and test scores. The head
    // must have trained, else two untrained runs would match whatever the reader did.
    let disk_w = tensors(Path::new(&on_disk.checkpoint));
    assert_head_trained(&disk_w, &initial_tensors(&j), "on disk");
    let d = max_diff(&disk_w, &tensors(Path::new(&in_memory.checkpoint)), "");
    assert_scores_informative(&on_disk, "on disk");
    assert_eq!(
        d, 0.0,
        "weights trained from the files and from memory differ by {d}"
    );
    assert_eq!(on_disk.test, in_memory.test, "test scores");
    // A second run reuses the cache; a changed label file invalidates it.
    let stamp = || std::fs::metadata(&cache).unwrap().modified().unwrap();
    let first = stamp();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = train::run(&j, &opts(again_out.path())).unwrap();
    assert_eq!(stamp(), first, "cache reused");
    let d = max_diff(&tensors(Path::new(&again.checkpoint)), &disk_w, "");
    assert_eq!(
        d, 0.0,
        "weights trained from the reused cache differ by {d}"
    );
    assert_eq!(
        again.test, on_disk.test,
        "test scores from the reused cache"
    );
    let label = root.path().join("ActionUnit_Labels/SN001/SN001_au1.txt");
    let text = std::fs::read_to_string(&label)
        .unwrap()
        .replacen(",0", ",5", 1);
    std::fs::write(&label, text).unwrap();
    train::run(&j, &opts(tempfile::tempdir().unwrap().path())).unwrap();
    assert_ne!(stamp(), first, "cache rebuilt after the labels changed");
}

/// An intensity job: the head's `5·sigmoid` output against DISFA's 0–5 labels with MSE, scored
/// with ICC(3,1), MAE and PCC per AU on validation and the test fold (no F1, no thresholds).
#[test]
fn an_intensity_job_learns_the_synthetic_intensities() {
    let _g = serial();
    let d = tempfile::tempdir().unwrap();
    let mut j = job_with_frames(1, 30, 40);
    j.weights = WeightsSource::Imagenet;
    j.data.input_size = 64;
    j.train.lr = 0.01;
    j.objective = ausweep_proto::job::Objective::Intensity;
    j.loss = ausweep_proto::job::LossKind::Mse;
    j.validate("t").unwrap();
    let r = train::run(&j, &opts(d.path())).unwrap();
    let s = r
        .intensity
        .as_ref()
        .expect("an intensity job reports intensity scores");
    let v = r
        .val_intensity
        .as_ref()
        .expect("validation subjects give validation scores");
    eprintln!("test: {s:?}\nval ICC {:.3}", v.avg_icc);
    assert_eq!(
        s.per_au.iter().map(|a| a.au).collect::<Vec<_>>(),
        j.data.aus,
        "one score per AU, in the job's order"
    );
    assert!(
        r.test.per_au.is_empty() && r.thresholds.is_empty(),
        "no F1 for intensity"
    );
    assert!(
        s.per_au.iter().all(|a| a.mae.is_finite() && a.mae <= 5.0),
        "{s:?}"
    );
    // ImageNet features of the synthetic faces carry the drawn intensities: the frozen backbone's
    // head alone agrees with the labels well above chance (0) on average: 0.24 when written.
    assert!(
        s.avg_icc > 0.15,
        "average test ICC(3,1) {:.3}: {s:?}",
        s.avg_icc
    );
    let saved: train::JobResult =
        serde_json::from_slice(&std::fs::read(d.path().join("result.json")).unwrap()).unwrap();
    let saved = saved
        .intensity
        .expect("result.json carries the intensity scores");
    for (a, b) in saved.per_au.iter().zip(&s.per_au) {
        assert!(
            a.au == b.au && (a.icc - b.icc).abs() < 1e-9,
            "{a:?} vs {b:?}"
        );
    }
}
