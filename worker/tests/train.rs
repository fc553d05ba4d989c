//! The trainer end to end on the synthetic DISFA: feature cache, resume, partial unfreezing.

use ausweep_proto::job::{AugmentSpec, Backbone, JobSpec, Unfreeze, WeightsSource};
use ausweep_worker::train::{self, weights, RunOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// libtorch's RNG is process-global: runs in one test binary must not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn job(stage: u8, epochs: u32) -> JobSpec {
    let text = format!(
        "backbone: mobilenet_v2\nweights: none\nstage: {stage}\nfold: 2\nseed: 3\n\
         data:\n  source: {{kind: synthetic, subjects: 27, frames: 6, seed: 5}}\n  input_size: 32\n  val_subjects: 2\n\
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
    }
}

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    weights::read_tensors(file).unwrap()
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
    let ra = train::run(&cached, &opts(a.path())).unwrap();
    let rb = train::run(&uncached, &opts(b.path())).unwrap();
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
    // And training did something: the head is not its initialisation.
    let init = HashMap::from([(
        "head.fc.weight".to_string(),
        Tensor::zeros_like(&ta["head.fc.weight"]),
    )]);
    assert!(
        max_diff(
            &HashMap::from([(
                "head.fc.weight".to_string(),
                ta["head.fc.weight"].shallow_clone()
            )]),
            &init,
            "head.fc"
        ) > 0.0
    );
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let _g = serial();
    let full = tempfile::tempdir().unwrap();
    let mut j = job(1, 3);
    j.train.cache_features = false;
    j.augment = AugmentSpec {
        flip: 0.5,
        crop: 0.1,
        jitter: 0.2,
        splice_upper_lower: 0.3,
        splice_left_right: 0.0,
    };
    let r_full = train::run(&j, &opts(full.path())).unwrap();
    assert_eq!(r_full.resumed_from_epoch, None);
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
    assert!((r_full.test.avg_f1 - r_resumed.test.avg_f1).abs() < 1e-9);
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
        frames: 6,
        size: 32,
        seed: 5,
    };
    ausweep_data::synth::write_disfa(root.path(), &cfg).unwrap();
    let cache = root.path().join("disfa.pack");
    let mut j = job(1, 1);
    j.data.source = ausweep_proto::job::DataSource::Disfa {
        labels_root: root.path().to_path_buf(),
        frames_root: root.path().to_path_buf(),
    };
    j.data.cache = Some(cache.clone());
    let on_disk = train::run(&j, &opts(tempfile::tempdir().unwrap().path())).unwrap();
    assert!(cache.is_file(), "the packed cache was written");
    // The same frames rendered in memory give the same result: the reader and the cache are exact.
    let in_memory = train::run(&job(1, 1), &opts(tempfile::tempdir().unwrap().path())).unwrap();
    assert_eq!(on_disk.frames, in_memory.frames);
    assert!((on_disk.test.avg_f1 - in_memory.test.avg_f1).abs() < 1e-9);
    // A second run reuses the cache; a changed label file invalidates it.
    let stamp = || std::fs::metadata(&cache).unwrap().modified().unwrap();
    let first = stamp();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = train::run(&j, &opts(tempfile::tempdir().unwrap().path())).unwrap();
    assert_eq!(stamp(), first, "cache reused");
    assert!((again.test.avg_f1 - on_disk.test.avg_f1).abs() < 1e-9);
    let label = root.path().join("ActionUnit_Labels/SN001/SN001_au1.txt");
    let text = std::fs::read_to_string(&label)
        .unwrap()
        .replacen(",0", ",5", 1);
    std::fs::write(&label, text).unwrap();
    train::run(&j, &opts(tempfile::tempdir().unwrap().path())).unwrap();
    assert_ne!(stamp(), first, "cache rebuilt after the labels changed");
}
