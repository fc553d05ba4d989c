//! `ausweep demo` as a process: a tiny manifest through the local coordinator and worker to the
//! report and chart, and a bad manifest refused before anything starts.

mod common;

use std::path::Path;
use std::process::Command;

const TINY: &str = "name: tiny-demo
dataset:
  source: {kind: synthetic, subjects: 9, frames: 8, seed: 5}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {k: 3, seed: 0}
  input_size: 32
  val_subjects: 1
run_folds: [1, 2]
backbones: [mobilenet_v2]
weights: none
loss: lsep
augment: {flip: 0.0}
stages:
  - freeze: backbone
    optimizer: {lr: 3.0e-3}
    epochs: 1
  - freeze: none
    optimizer: {lr: 1.0e-3}
    epochs: 1
batch_size: 8
resources:
  device: cpu
baselines: [eac_net]
";

fn demo(manifest: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ausweep"))
        .arg("demo")
        .arg("--manifest")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .args(["--timeout-min", "5", "--cpu-slots", "2"])
        .output()
        .unwrap()
}

#[test]
fn demo_runs_a_sweep_to_the_report_and_stops_its_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("tiny.yaml");
    std::fs::write(&m, TINY).unwrap();
    let out_dir = tmp.path().join("out");
    let out = demo(&m, &out_dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The tables are printed, with our two stages and the baseline the manifest names.
    assert!(stdout.contains("| mobilenet_v2 stage 1 |"), "{stdout}");
    assert!(stdout.contains("| mobilenet_v2 stage 2 |"), "{stdout}");
    // The data is synthetic: the report says so, and that the baselines are not comparable.
    assert!(
        stdout
            .contains("Measured on: the synthetic DISFA (9 subjects × 8 rendered frames, 32 px)."),
        "{stdout}"
    );
    assert!(
        stdout.contains("EAC-Net (published, on DISFA: not comparable)"),
        "{stdout}"
    );
    assert!(stderr.contains("4 jobs trained"), "{stderr}");
    // Two CPU slots: both folds' chains run at once, each trainer on half the cores.
    assert!(
        stderr.contains("leased to local device 0") && stderr.contains("leased to local device 1"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    for f in ["report.md", "report.csv", "report.json", "fig5.svg"] {
        assert!(out_dir.join("report").join(f).is_file(), "{f} missing");
    }
    // The models are kept, as a checkpoint and as ONNX, with the face detector beside them.
    let models = out_dir.join("models");
    for f in [
        "mobilenet_v2.safetensors",
        "mobilenet_v2.json",
        "mobilenet_v2.onnx",
        "cost.json",
        "mtcnn_pnet.onnx",
        "mtcnn_rnet.onnx",
        "mtcnn_onet.onnx",
    ] {
        assert!(models.join(f).is_file(), "models/{f} missing: {stderr}");
    }
    // The report sets each backbone's cost per face, measured here, beside its best F1, and
    // draws F1 against faces/s (the paper's Fig. 2).
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| mobilenet_v2 | 32 |"))
        .unwrap_or_else(|| panic!("no cost row: {stdout}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[3], "2.24", "{row}");
    let faces_per_s: f64 = cells[7].parse().unwrap();
    let best_f1: f64 = cells[9].parse().unwrap();
    assert!(
        faces_per_s > 0.0 && (0.0..=100.0).contains(&best_f1),
        "{row}"
    );
    assert!(
        out_dir.join("report/fig2.svg").is_file(),
        "fig2.svg missing: {stderr}"
    );
    // The predict lines work as pasted, on a photograph in place of PHOTO.jpg: libtorch's and
    // the ONNX one (the light build's engine), which find the same face.
    let photo = common::photo(tmp.path(), "astronaut");
    let found: Vec<serde_json::Value> = [
        "demo: try a photo of your own: ",
        "demo: or without libtorch (make light): ",
    ]
    .iter()
    .map(|prefix| run_printed_predict(&stderr, prefix, &photo))
    .collect();
    assert_eq!(found[0].as_array().map(Vec::len), Some(4));
    for k in 0..4 {
        let (a, b) = (found[0][k].as_f64().unwrap(), found[1][k].as_f64().unwrap());
        assert!((a - b).abs() < 1.0, "boxes {found:?}");
    }
    // Tokens are private to the user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "admin token mode {mode:o}");
    // The worker drained and said so.
    let log = std::fs::read_to_string(out_dir.join("worker.log")).unwrap();
    assert!(log.contains("drained; exiting"), "{log}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = format!("with {} thread(s)", (cores / 2).max(1));
    let started: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("trainer started"))
        .collect();
    assert_eq!(started.len(), 4, "{log}");
    assert!(started.iter().all(|l| l.contains(&share)), "{share}: {log}");
}

#[test]
fn a_bad_manifest_is_refused_with_its_line_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("bad.yaml");
    std::fs::write(&m, TINY.replace("mobilenet_v2]", "mobilenet_v3]")).unwrap();
    let out_dir = tmp.path().join("out");
    let out = demo(&m, &out_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.yaml:9"), "{stderr}");
    assert!(stderr.contains("mobilenet_v3"), "{stderr}");
    assert!(!out_dir.join("state").exists(), "a coordinator was started");
}

/// Runs the predict line the demo printed after `prefix`, on `photo` in place of PHOTO.jpg;
/// the box of the one face it must find.
fn run_printed_predict(stderr: &str, prefix: &str, photo: &std::path::Path) -> serde_json::Value {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?}: {stderr}"));
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| {
            if w == "PHOTO.jpg" {
                photo.display().to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    let p = Command::new(&words[0]).args(&words[1..]).output().unwrap();
    let printed = String::from_utf8_lossy(&p.stdout);
    assert!(
        p.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&p.stderr)
    );
    let faces: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(
        faces["faces"].as_array().map(Vec::len),
        Some(1),
        "{printed}"
    );
    faces["faces"][0]["bbox"].clone()
}
