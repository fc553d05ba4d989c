//! A trainer's memory does not grow with its dataset: frames are read from the pack batch by
//! batch, so ten times the pixels leave its peak resident set where it was. Real `ausweep train`
//! child processes; the figure is each one's own VmHWM from its result.json.

mod common;

use std::path::Path;
use std::process::Command;

/// Frame side: big enough that the pixel bytes dwarf allocator noise, small enough to be quick.
const SIZE: u64 = 48;

/// A stage-1 job; `cached`: no augmentation, so the frozen backbone's features are computed
/// once (the feature cache) instead of per batch. No int8 test pass: it reads the frames as the
/// test pass before it does, and would double the test's longest step.
fn job(frames: u32, cached: bool) -> String {
    let flip = if cached { 0.0 } else { 0.5 };
    format!(
        "backbone: mobilenet_v2\nweights: none\nstage: 1\nfold: 1\nseed: 1\n\
         data:\n  source: {{kind: synthetic, subjects: 27, frames: {frames}, seed: 2}}\n  input_size: {SIZE}\n  val_subjects: 2\n\
         augment: {{flip: {flip}}}\n\
         train: {{epochs: 1, batch_size: 16, lr: 0.01, max_steps_per_epoch: 3, score_int8: false}}\nloss: lsep\n"
    )
}

/// Trains `frames` frames per subject in a child process; returns (its peak RSS, the frames).
fn peak_rss(dir: &Path, frames: u32, cached: bool) -> (u64, u64) {
    let job_file = dir.join(format!("job{frames}-{cached}.yaml"));
    std::fs::write(&job_file, job(frames, cached)).unwrap();
    let out = dir.join(format!("out{frames}-{cached}"));
    let o = Command::new(common::bin())
        .arg("train")
        .arg(&job_file)
        .arg("--out")
        .arg(&out)
        .args(["--device", "cpu", "--log-every", "0", "--data-cache"])
        .arg(dir.join("data"))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ausweep train ({frames} frames/subject) failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cache_on = format!("\"feature_cache\":{cached}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&cache_on),
        "expected {cache_on} in the start event: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let rss = r["peak_rss_bytes"]
        .as_u64()
        .expect("peak_rss_bytes in result.json");
    assert!(rss > 0, "no VmHWM read: {r}");
    (rss, 27 * u64::from(frames))
}

#[test]
fn peak_rss_does_not_grow_with_the_dataset() {
    assert_flat(false);
}

/// Stage 1's feature cache (1,280 floats per frame, about the size of a 48-px frame's pixels)
/// stays out of memory too: on the CPU it is a file that batches are gathered from.
#[test]
fn the_stage_1_feature_cache_does_not_grow_the_trainer_with_the_dataset() {
    assert_flat(true);
}

/// One measurement at a time: two trainers sharing the two cores make each one's peak noisier.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Peak RSS moves by up to ~30 MiB run to run (allocator free lists); 27 × 1,170 more frames at
/// 48 px are 218 MiB of pixels, so the bound (a quarter of them) sits well above that noise and
/// well below holding the frames, or the cached features, in memory.
fn assert_flat(cached: bool) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (small, n_small) = peak_rss(dir.path(), 30, cached);
    let (large, n_large) = peak_rss(dir.path(), 1200, cached);
    let extra_pixels = (n_large - n_small) * 3 * SIZE * SIZE;
    let growth = large.saturating_sub(small);
    eprintln!(
        "peak RSS {:.1} MiB with {n_small} frames, {:.1} MiB with {n_large} ({:.1} MiB more pixels)",
        small as f64 / 1048576.0,
        large as f64 / 1048576.0,
        extra_pixels as f64 / 1048576.0
    );
    // Holding the frames in memory even once would add all of `extra_pixels`; the labels and
    // split indices that do scale with the data are a few bytes per frame.
    assert!(
        growth < extra_pixels / 4,
        "the trainer's peak RSS grew by {growth} bytes for {extra_pixels} more bytes of pixels \
         ({small} -> {large}): something holds the dataset in memory"
    );
}
