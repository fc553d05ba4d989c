// Long file: one fixture (a checkpoint whose every layer matters, crops of a photograph,
// onnxruntime) shared by the parity tests of every exported net and of the ONNX predictor; a
// second test binary would link libtorch again (compile time is most of `make test`).
//! `ausweep export` checked by a runtime no one here wrote: every backbone the project trains,
//! exported by the real binary, run in onnxruntime (PyPI, in the test venv) on face crops of a
//! real photograph, against ausweep's own libtorch outputs for the same crops; and `ausweep
//! predict --model X.onnx` (both builds) against the libtorch predictor.

mod common;

use ausweep_proto::job::{Backbone, Objective};
use ausweep_trainer::predict::AuModel;
use ausweep_trainer::train::checkpoint::{self, CheckpointMeta};
use ausweep_trainer::train::{imagenet, Model};
use ausweep_vision::face::{image_tensor, AlignSpec, Detector, DetectorConfig, FaceCrop};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];
const THRESHOLDS: [f64; 8] = [0.5, 0.45, 0.55, 0.4, 0.6, 0.5, 0.35, 0.65];
const SIZE: i64 = 64;
/// fp32 parity between ausweep's libtorch model and onnxruntime on the exported file.
const TOLERANCE: f64 = 1e-4;

/// Four face crops `[4,3,64,64]` (0–255) of a real photograph: the astronaut's face as
/// `ausweep predict` aligns it, and three more at other scales, places and angles.
fn crops(dir: &Path) -> Tensor {
    let photo = common::photo(dir, "astronaut");
    let img = image::open(&photo).unwrap().to_rgb8();
    let t = image_tensor(&img).unsqueeze(0).to_kind(Kind::Float);
    let det = Detector::load(
        &ausweep_trainer::train::weights::weights_dir(),
        Device::Cpu,
        DetectorConfig::default(),
    )
    .unwrap();
    let faces = det.detect(&t).unwrap();
    let face = faces[0].first().expect("MTCNN finds the astronaut's face");
    let spec = AlignSpec::default();
    let c = spec.crop_of(face);
    let variants = [
        c,
        FaceCrop {
            side: c.side * 1.5,
            ..c
        },
        FaceCrop {
            centre: [c.centre[0] + 20.0, c.centre[1] - 10.0],
            angle: c.angle + 0.3,
            ..c
        },
        FaceCrop {
            side: c.side * 0.7,
            angle: c.angle - 0.2,
            ..c
        },
    ];
    ausweep_vision::face::align::extract(&spec, &t, &variants, &[0; 4], SIZE).unwrap()
}

/// libtorch's generator is global and building any net draws from it (the detector's too,
/// before its weights load): one test at a time builds nets, so every test's model is the
/// same from run to run whatever the other test threads do.
fn rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A checkpoint of `kind` in `dir/final.*` whose every layer matters: seeded weights, batch
/// norms with statistics and affines far from the identity, and a head standardised on the
/// crops' features so that the probabilities spread over (0, 1) instead of sitting at 0.5.
fn checkpoint(dir: &Path, kind: Backbone, crops: &Tensor, objective: Objective) -> PathBuf {
    tch::manual_seed(7);
    let m = Model::new(kind, AUS.len(), Device::Cpu);
    tch::no_grad(|| {
        if kind == Backbone::MobilenetV2 {
            // The one backbone whose ImageNet weights `make setup` converts: real weights, as a
            // lab's model starts from.
            let file =
                ausweep_trainer::train::weights::weights_dir().join("mobilenet_v2.safetensors");
            ausweep_vision::tensors::load_file(&m.backbone_vs, &file, Some("classifier")).unwrap();
        }
        for (name, mut t) in m.backbone_vs.variables() {
            if kind == Backbone::MobilenetV2 {
                break;
            }
            let r = Tensor::rand_like(&t);
            if name.ends_with("running_mean") || (t.dim() == 1 && name.ends_with("bias")) {
                t.copy_(&(r * 0.2 - 0.1));
            } else if name.ends_with("running_var") || (t.dim() == 1 && name.ends_with("weight")) {
                t.copy_(&(r + 0.5));
            }
        }
        let (mean, std) = imagenet::norm(Device::Cpu);
        let x = (crops / 255.0 - mean) / std;
        let pooled = m.backbone.pooled(&x, false, 0);
        let var = pooled.var_dim(0, false, false);
        let spread = var.mean(Kind::Float) + 1e-6;
        let mut head = m.head_vs.variables();
        head.get_mut("bn.running_mean")
            .unwrap()
            .copy_(&pooled.mean_dim(0, false, Kind::Float));
        head.get_mut("bn.running_var")
            .unwrap()
            .copy_(&(var + spread));
        let fc = head.get_mut("fc.weight").unwrap();
        fc.copy_(&(&*fc * 4.0));
    });
    let meta = CheckpointMeta {
        thresholds: THRESHOLDS.to_vec(),
        objective,
        ..CheckpointMeta::untrained(kind.name(), &AUS, SIZE as u32)
    };
    checkpoint::write(dir, "final", &m.named_tensors(), meta).unwrap();
    dir.join("final.safetensors")
}

/// The largest |a − b|; infinite where onnxruntime gave no finite value (null).
fn max_diff(a: &[Vec<f64>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len(), "rows");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "columns");
            x.iter().zip(y).map(|(p, q)| {
                let d = (p - f64::from(*q)).abs();
                if d.is_nan() {
                    f64::INFINITY
                } else {
                    d
                }
            })
        })
        .fold(0.0, f64::max)
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap_or_else(|| panic!("not rows: {v}"));
            r.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
        })
        .collect()
}

/// Runs `model` in onnxruntime on input `x` (scripts/onnx_check.py): its outputs (batch and one
/// item at a time, each row flattened), inputs and metadata.
fn onnxruntime(model: &Path, x: &Tensor) -> serde_json::Value {
    let raw = model.with_extension("input.f32");
    let bytes: Vec<u8> = Vec::<f32>::try_from(x.to_kind(Kind::Float).contiguous().view([-1]))
        .unwrap()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&raw, bytes).unwrap();
    let shape: Vec<String> = x.size().iter().map(i64::to_string).collect();
    let report = model.with_extension("ort.json");
    ausweep_testkit::python::run(
        "onnx_check.py",
        &[
            model.as_os_str(),
            raw.as_os_str(),
            shape.join(",").as_ref(),
            report.as_os_str(),
        ],
    );
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

/// `t` as rows of its first dimension.
fn own_rows(t: &Tensor) -> Vec<Vec<f32>> {
    let n = t.size()[0];
    let flat = Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap();
    flat.chunks(flat.len() / n as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Runs `ausweep export FLAGS --model CKPT --out OUT` with the real binary.
fn export(ckpt: &Path, out: &Path, flags: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ausweep"))
        .arg("export")
        .args(flags)
        .arg("--model")
        .arg(ckpt)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Exports `kind` with the real binary, runs it in onnxruntime, and compares.
fn parity(kind: Backbone, objective: Objective) {
    let d = tempfile::tempdir().unwrap();
    let (x, ckpt) = {
        let _one = rng();
        let x = crops(d.path());
        let ckpt = checkpoint(&d.path().join("model"), kind, &x, objective);
        (x, ckpt)
    };
    let onnx = d.path().join("model.onnx");
    let out = export(&ckpt, &onnx, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "export failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} stage 2, 8 AU(s)", kind.name()))
            && stdout.contains("MB, ONNX opset 17, "),
        "{stdout}"
    );

    let own = {
        let _one = rng();
        AuModel::load(&ckpt, Device::Cpu).unwrap()
    }
    .predict(&x);
    let own_probs: Vec<Vec<f32>> = own.iter().map(|p| p.probs.clone()).collect();
    let flat: Vec<f32> = own_probs.iter().flatten().copied().collect();
    let (lo, hi) = flat
        .iter()
        .fold((1.0f32, 0.0f32), |(l, h), &p| (l.min(p), h.max(p)));
    eprintln!("{}: probabilities in [{lo:.3}, {hi:.3}]", kind.name());
    assert!(
        hi - lo > 0.2,
        "the model's probabilities sit in [{lo}, {hi}]: too flat to test parity"
    );

    let r = onnxruntime(&onnx, &x);
    assert_eq!(
        r["inputs"],
        serde_json::json!([["crops", ["batch", 3, SIZE, SIZE]]]),
        "{r}"
    );
    let batch = max_diff(&rows(&r["batch"]["probs"]), &own_probs);
    let single = max_diff(&rows(&r["single"]["probs"]), &own_probs);
    assert!(
        batch <= TOLERANCE && single <= TOLERANCE,
        "{}: onnxruntime differs from ausweep by {batch:e} (batch of 4), {single:e} (one at a time)",
        kind.name()
    );
    let meta = &r["metadata"];
    let recorded = checkpoint::read_meta(&ckpt).unwrap();
    assert_eq!(meta["ausweep.aus"], "1,2,4,6,9,12,25,26", "{meta}");
    assert_eq!(
        meta["ausweep.thresholds"],
        "0.5,0.45,0.55,0.4,0.6,0.5,0.35,0.65"
    );
    assert_eq!(meta["ausweep.backbone"], kind.name());
    assert_eq!(meta["ausweep.input_size"], "64");
    assert_eq!(meta["ausweep.source_sha256"], recorded.sha256.as_str());
    let back: CheckpointMeta =
        serde_json::from_str(meta["ausweep.checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!(back, recorded);
    match objective {
        Objective::Occurrence => {
            assert_eq!(r["outputs"], serde_json::json!(["probs"]));
            assert_eq!(meta["ausweep.objective"], "occurrence");
        }
        Objective::Intensity => {
            assert_eq!(r["outputs"], serde_json::json!(["probs", "intensity"]));
            assert_eq!(meta["ausweep.objective"], "intensity");
            let levels: Vec<Vec<f32>> = own.iter().map(|p| p.intensity.clone().unwrap()).collect();
            let d = max_diff(&rows(&r["batch"]["intensity"]), &levels);
            assert!(d <= 5.0 * TOLERANCE, "intensity differs by {d:e}");
        }
    }
    eprintln!("{}", stdout.trim());
    eprintln!(
        "{}: onnxruntime {} vs ausweep: max |Δp| {batch:.2e} (batch), {single:.2e} (single)",
        kind.name(),
        r["onnxruntime"]
    );
}

#[test]
fn densenet121_runs_the_same_in_onnxruntime() {
    parity(Backbone::Densenet121, Objective::Occurrence);
}

#[test]
fn densenet201_runs_the_same_in_onnxruntime() {
    parity(Backbone::Densenet201, Objective::Occurrence);
}

#[test]
fn mobilenet_v1_runs_the_same_in_onnxruntime() {
    parity(Backbone::MobilenetV1, Objective::Occurrence);
}

#[test]
fn mobilenet_v2_runs_the_same_in_onnxruntime() {
    parity(Backbone::MobilenetV2, Objective::Occurrence);
}

#[test]
fn vgg19_runs_the_same_in_onnxruntime() {
    parity(Backbone::Vgg19, Objective::Occurrence);
}

/// Runs `ausweep export --int8` on `ckpt`; its status, stdout and stderr.
fn export_int8(ckpt: &Path, out: &Path) -> (bool, String) {
    let o = export(ckpt, out, &["--int8"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Records test-fold scores in `ckpt`'s metadata as a job would: average F1 `fp32` with the f32
/// kernels and `int8` with the int8 ones.
fn record_int8_scores(ckpt: &Path, fp32: f64, int8: f64) {
    use ausweep_trainer::train::metrics::Scores;
    let json = ckpt.with_extension("json");
    let mut meta: CheckpointMeta =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scores = |avg_f1| Scores {
        per_au: Vec::new(),
        avg_f1,
    };
    meta.metrics = Some(scores(fp32));
    meta.int8 = Some(scores(int8));
    std::fs::write(&json, serde_json::to_string(&meta).unwrap()).unwrap();
}

/// `ausweep export --int8`: refused without a test-fold score and where int8 kernels lost more
/// than a point of F1; otherwise a file about a quarter of the fp32 one that onnxruntime runs to
/// within 1e-4 of ausweep's libtorch model with the same int8 kernels (the model a job scores
/// its test fold with), i.e. the F1 a job records for int8 is the int8 file's.
fn int8_parity(kind: Backbone) {
    let d = tempfile::tempdir().unwrap();
    let (x, ckpt) = {
        let _one = rng();
        let x = crops(d.path());
        let ckpt = checkpoint(&d.path().join("model"), kind, &x, Objective::Occurrence);
        (x, ckpt)
    };
    let onnx = d.path().join("model.int8.onnx");
    let (ok, text) = export_int8(&ckpt, &onnx);
    assert!(
        !ok && text.contains("has no int8 score of its test fold"),
        "{text}"
    );
    record_int8_scores(&ckpt, 0.60, 0.585);
    let (ok, text) = export_int8(&ckpt, &onnx);
    assert!(
        !ok && text.contains("int8 kernels lose 1.50 points of average F1 on the test fold"),
        "{text}"
    );
    assert!(!onnx.exists(), "a refused export wrote {}", onnx.display());
    record_int8_scores(&ckpt, 0.60, 0.595);
    let (ok, text) = export_int8(&ckpt, &onnx);
    assert!(
        ok && text.contains(
            "int8 kernels: test-fold average F1 59.50 % against 60.00 % with fp32 (-0.50 points)"
        ) && text.contains("MB, int8 kernels, ONNX opset 17"),
        "{text}"
    );

    // ausweep's model with the kernels a job scores int8 with, saved and loaded as a checkpoint.
    let (own, fp32) = {
        let _one = rng();
        let m = Model::new(kind, AUS.len(), Device::Cpu);
        m.load_checkpoint(&ckpt).unwrap();
        let meta = checkpoint::read_meta(&ckpt).unwrap();
        let dir = d.path().join("int8_reference");
        ausweep_trainer::export::int8::with_int8_kernels(&m, || {
            checkpoint::write(&dir, "final", &m.named_tensors(), meta).unwrap()
        })
        .unwrap();
        let load = |f: &Path| AuModel::load(f, Device::Cpu).unwrap().predict(&x);
        (load(&dir.join("final.safetensors")), load(&ckpt))
    };
    let own: Vec<Vec<f32>> = own.iter().map(|p| p.probs.clone()).collect();
    let fp32: Vec<Vec<f32>> = fp32.iter().map(|p| p.probs.clone()).collect();
    let r = onnxruntime(&onnx, &x);
    let batch = max_diff(&rows(&r["batch"]["probs"]), &own);
    let single = max_diff(&rows(&r["single"]["probs"]), &own);
    let moved = max_diff(&rows(&r["batch"]["probs"]), &fp32);
    let fp32_file = d.path().join("model.fp32.onnx");
    let status = export(&ckpt, &fp32_file, &[]).status;
    assert!(status.success(), "fp32 export: {status}");
    let fp32_bytes = std::fs::metadata(&fp32_file).unwrap().len();
    let int8_bytes = std::fs::metadata(&onnx).unwrap().len();
    eprintln!(
        "{} int8: onnxruntime vs ausweep's int8 kernels: max |Δp| {batch:.2e} (batch), {single:.2e} \
         (single); vs fp32: {moved:.2e}; file {:.2} MB against {:.2} MB fp32",
        kind.name(),
        int8_bytes as f64 / 1e6,
        fp32_bytes as f64 / 1e6
    );
    assert!(
        batch <= TOLERANCE && single <= TOLERANCE,
        "{}: the int8 file differs from ausweep's int8 kernels by {batch:e} (batch), {single:e}",
        kind.name()
    );
    assert!(
        moved > 1e-6,
        "{}: the int8 file computes the fp32 model exactly ({moved:e}): no int8 kernels",
        kind.name()
    );
    assert!(
        (int8_bytes as f64) < 0.3 * fp32_bytes as f64,
        "int8 file {int8_bytes} B against fp32 {fp32_bytes} B"
    );
    let kernels = r["metadata"]["ausweep.kernels"]
        .as_str()
        .unwrap_or_default();
    assert!(
        kernels.starts_with(
            "int8 (weight-only, per output channel, symmetric); test-fold average F1 59.50 %"
        ),
        "{kernels}"
    );

    predicts_with_int8(kind, &ckpt, &onnx, d.path());
}

/// ausweep's own ONNX predictor runs the int8 file `onnx` (the detector exported beside it from
/// `ckpt`) on the astronaut in `dir` and says that it runs int8 kernels.
fn predicts_with_int8(kind: Backbone, ckpt: &Path, onnx: &Path, dir: &Path) {
    let detector = export(ckpt, &dir.join("model.fp32.onnx"), &["--detector"]).status;
    assert!(detector.success(), "export --detector: {detector}");
    let lib = onnxruntime_library();
    let out = Command::new(env!("CARGO_BIN_EXE_ausweep"))
        .args(["predict", "--onnxruntime", lib.to_str().unwrap(), "--model"])
        .arg(onnx)
        .arg(dir.join("astronaut.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stderr.contains(&format!("{} stage 2 (int8 kernels), 64 px", kind.name())),
        "{stderr}"
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let faces = line["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{line}");
    assert_eq!(faces[0]["aus"].as_array().map(Vec::len), Some(8), "{line}");
}

#[test]
fn an_int8_mobilenet_v2_runs_as_its_int8_kernels_in_onnxruntime() {
    int8_parity(Backbone::MobilenetV2);
}

#[test]
fn an_int8_densenet121_runs_as_its_int8_kernels_in_onnxruntime() {
    int8_parity(Backbone::Densenet121);
}

#[test]
fn an_intensity_model_exports_its_levels_too() {
    parity(Backbone::MobilenetV2, Objective::Intensity);
}

#[test]
fn a_damaged_checkpoint_is_refused_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let x = Tensor::zeros([1, 3, SIZE, SIZE], (Kind::Float, Device::Cpu));
    let _one = rng();
    let ckpt = checkpoint(
        &d.path().join("model"),
        Backbone::MobilenetV2,
        &x,
        Objective::Occurrence,
    );
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&ckpt, bytes).unwrap();
    let onnx = d.path().join("model.onnx");
    let out = export(&ckpt, &onnx, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not match the recorded") && err.contains("final.safetensors"),
        "{err}"
    );
    assert!(!onnx.exists(), "a refused export left {}", onnx.display());
}

#[test]
fn the_face_detector_runs_the_same_in_onnxruntime() {
    use ausweep_vision::face::nets::{ONet, PNet, RNet};
    let d = tempfile::tempdir().unwrap();
    let _one = rng();
    let x = crops(d.path());
    let ckpt = checkpoint(
        &d.path().join("model"),
        Backbone::MobilenetV1,
        &x,
        Objective::Occurrence,
    );
    let out = export(&ckpt, &d.path().join("onnx/au.onnx"), &["--detector"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weights = ausweep_trainer::train::weights::weights_dir();
    let file = |n: &str| weights.join(format!("mtcnn_{n}.safetensors"));
    let norm = |t: &Tensor| (t - 127.5) * 0.0078125;
    let photo = common::photo(d.path(), "astronaut");
    let img = image::open(&photo).unwrap().to_rgb8();
    let image = image_tensor(&img).unsqueeze(0).to_kind(Kind::Float);
    let spec = AlignSpec::default();
    let c = FaceCrop {
        centre: [224.0, 117.0],
        side: 110.0,
        angle: 0.0,
    };
    let boxes = [
        c,
        FaceCrop { side: 80.0, ..c },
        FaceCrop {
            centre: [100.0, 300.0],
            ..c
        },
    ];
    let check = |net: &str, x: &Tensor, own: Vec<(&str, Tensor)>| {
        let r = onnxruntime(&d.path().join(format!("onnx/mtcnn_{net}.onnx")), x);
        for (name, t) in own {
            let want = own_rows(&t);
            let diff = max_diff(&rows(&r["batch"][name]), &want);
            let single = max_diff(&rows(&r["single"][name]), &want);
            assert!(
                diff <= TOLERANCE && single <= TOLERANCE,
                "{net} `{name}`: onnxruntime differs by {diff:e} (batch), {single:e} (single)"
            );
            eprintln!("{net} {name}: max |Δ| {diff:.2e}");
        }
    };
    let _guard = tch::no_grad_guard();
    let p = PNet::load(&file("pnet"), Device::Cpu).unwrap();
    let (reg, prob) = p.forward(&norm(&image));
    check("pnet", &image, vec![("regression", reg), ("probs", prob)]);
    let r24 = ausweep_vision::face::align::extract(&spec, &image, &boxes, &[0; 3], 24).unwrap();
    let r = RNet::load(&file("rnet"), Device::Cpu).unwrap();
    let (reg, prob) = r.forward(&norm(&r24));
    check("rnet", &r24, vec![("regression", reg), ("probs", prob)]);
    let o48 = ausweep_vision::face::align::extract(&spec, &image, &boxes, &[0; 3], 48).unwrap();
    let o = ONet::load(&file("onet"), Device::Cpu).unwrap();
    let (reg, marks, prob) = o.forward(&norm(&o48));
    check(
        "onet",
        &o48,
        vec![("regression", reg), ("landmarks", marks), ("probs", prob)],
    );
}

#[test]
fn the_cost_bench_counts_parameters_and_times_both_runtimes() {
    let out = Command::new(env!("CARGO_BIN_EXE_ausweep"))
        .args([
            "bench",
            "cost",
            "--backbones",
            "mobilenet_v2",
            "--size",
            "64",
            "--reps",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| mobilenet_v2 |"))
        .unwrap_or_else(|| panic!("no mobilenet_v2 row: {stdout}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // torchvision's MobileNet-v2 without its classifier (2,223,872) plus the 8-AU head's BN
    // (2 × 1280) and linear layer (1280 × 8 + 8).
    assert_eq!(cells[2], "2.24", "{row}");
    // 64 px: (64/224)² of the 224-px count, give or take the borders.
    let gmacs: f64 = cells[3].parse().unwrap();
    assert!((0.02..0.03).contains(&gmacs), "{row}");
    for i in [5, 6, 8, 9] {
        let ms: f64 = cells[i]
            .parse()
            .unwrap_or_else(|_| panic!("cell {i}: {row}"));
        assert!(ms > 0.0, "{row}");
    }
}

/// ONNX Runtime's library from the test venv's onnxruntime wheel.
fn onnxruntime_library() -> PathBuf {
    let venv = ausweep_testkit::python::venv_python();
    let site = venv
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("lib/python3.11/site-packages/onnxruntime/capi");
    std::fs::read_dir(&site)
        .unwrap_or_else(|e| panic!("{}: {e} (make setup installs onnxruntime)", site.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
        })
        .unwrap_or_else(|| panic!("no libonnxruntime.so.* in {}", site.display()))
}

/// A model exported with its detector (`dir/model/final.{safetensors,onnx}`, the MTCNN nets
/// beside it), and inputs: three photographs (a face, a cat, a large and a small face) and a
/// six-frame video of the face.
fn predictor_fixture(dir: &Path) -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let ckpt = {
        let _one = rng();
        let x = crops(dir);
        checkpoint(
            &dir.join("model"),
            Backbone::MobilenetV2,
            &x,
            Objective::Occurrence,
        )
    };
    let onnx = dir.join("model/final.onnx");
    let out = export(&ckpt, &onnx, &["--detector"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let astronaut = common::photo(dir, "astronaut");
    let cat = common::photo(dir, "chelsea");
    // Two faces of very different sizes in one frame: each crop must be sampled at its own
    // rate, not at its batch mate's.
    let big = image::open(&astronaut).unwrap().to_rgb8();
    let mut pair =
        image::RgbImage::from_pixel(big.width() + 160, big.height(), image::Rgb([90, 90, 90]));
    image::imageops::overlay(&mut pair, &big, 0, 0);
    let small = image::imageops::resize(&big, 150, 150, image::imageops::FilterType::Triangle);
    image::imageops::overlay(&mut pair, &small, i64::from(big.width()) + 5, 100);
    let two = dir.join("two_faces.png");
    pair.save(&two).unwrap();
    let video = dir.join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i"])
        .arg(&astronaut)
        .args([
            "-vf",
            "scale=320:320,crop=288:288:6*n:3*n",
            "-frames:v",
            "6",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "12"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(st.success());
    (ckpt, onnx, vec![astronaut, cat, two, video])
}

/// `ausweep predict` (binary `bin`) on `inputs` with `model_args`: its JSON lines.
fn predict_lines(bin: &Path, model_args: &[&str], inputs: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new(bin)
        .arg("predict")
        .args(model_args)
        .args(["--batch", "3"])
        .args(inputs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "predict {model_args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Faces per frame, and over every AU×face cell: decisions that differ, and the largest
/// probability difference; panics when the frames or faces differ.
fn compare_predictions(a: &[serde_json::Value], b: &[serde_json::Value]) -> (usize, usize, f64) {
    assert_eq!(a.len(), b.len(), "frames");
    let (mut cells, mut differ, mut dp) = (0, 0, 0.0f64);
    for (fa, fb) in a.iter().zip(b) {
        let key = |f: &serde_json::Value| (f["input"].clone(), f["frame"].clone());
        assert_eq!(key(fa), key(fb));
        let (xa, xb) = (
            fa["faces"].as_array().unwrap(),
            fb["faces"].as_array().unwrap(),
        );
        assert_eq!(xa.len(), xb.len(), "faces in {:?}", key(fa));
        for (p, q) in xa.iter().zip(xb) {
            for k in 0..4 {
                let (u, v) = (
                    p["bbox"][k].as_f64().unwrap(),
                    q["bbox"][k].as_f64().unwrap(),
                );
                assert!((u - v).abs() < 1.0, "box {:?}: {u} vs {v}", key(fa));
            }
            for (ua, ub) in p["aus"]
                .as_array()
                .unwrap()
                .iter()
                .zip(q["aus"].as_array().unwrap())
            {
                cells += 1;
                differ += usize::from(ua["present"] != ub["present"]);
                let d = (ua["prob"].as_f64().unwrap() - ub["prob"].as_f64().unwrap()).abs();
                dp = dp.max(d);
            }
        }
    }
    (cells, differ, dp)
}

/// The ONNX predictor (ONNX Runtime for the nets; MTCNN's steps, pooling and the aligned crop
/// in plain Rust) against the libtorch predictor on three photographs and a video: the same
/// faces, the same decisions on at least 99 % of AU×face cells, probabilities within 1e-3.
#[test]
fn the_onnx_predictor_finds_the_faces_and_decisions_of_the_libtorch_one() {
    let d = tempfile::tempdir().unwrap();
    let (ckpt, onnx, inputs) = predictor_fixture(d.path());
    let bin = Path::new(env!("CARGO_BIN_EXE_ausweep"));
    let torch = predict_lines(
        bin,
        &["--device", "cpu", "--model", ckpt.to_str().unwrap()],
        &inputs,
    );
    let lib = onnxruntime_library();
    let ort = predict_lines(
        bin,
        &[
            "--model",
            onnx.to_str().unwrap(),
            "--onnxruntime",
            lib.to_str().unwrap(),
        ],
        &inputs,
    );
    let faces: usize = torch
        .iter()
        .map(|f| f["faces"].as_array().unwrap().len())
        .sum();
    assert_eq!(torch.len(), 9, "3 photos + 6 video frames");
    assert!(
        faces >= 9,
        "the faces must be found in the photos and the video: {faces}"
    );
    assert_eq!(
        torch[2]["faces"].as_array().map(Vec::len),
        Some(2),
        "{}",
        torch[2]
    );
    let (cells, differ, dp) = compare_predictions(&torch, &ort);
    eprintln!("onnx predictor: {faces} faces, {cells} cells, {differ} decisions differ, max |Δp| {dp:.2e}");
    assert!(
        differ * 100 <= cells,
        "{differ} of {cells} decisions differ"
    );
    assert!(dp <= 1e-3, "max |Δp| {dp}");
    // The probabilities spread: a model whose outputs sat at one value would prove nothing.
    let probs: Vec<f64> = torch
        .iter()
        .flat_map(|f| f["faces"].as_array().unwrap().iter())
        .flat_map(|f| {
            f["aus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["prob"].as_f64().unwrap())
        })
        .collect();
    let (lo, hi) = probs
        .iter()
        .fold((1.0f64, 0.0f64), |(l, h), &p| (l.min(p), h.max(p)));
    assert!(lo < 0.2 && hi > 0.8, "probabilities span only {lo}..{hi}");
}

/// The light build (`make light`: no libtorch) predicts exactly as the full build's ONNX
/// engine: the same code on the same files. Run by `make light-check`, which builds it and
/// names it in AUSWEEP_LIGHT_BIN.
#[test]
#[ignore = "needs the light binary: make light-check runs it"]
fn the_light_build_predicts_as_the_full_build() {
    let light = std::env::var_os("AUSWEEP_LIGHT_BIN")
        .map(PathBuf::from)
        .expect("AUSWEEP_LIGHT_BIN: the light binary (make light-check sets it)");
    let d = tempfile::tempdir().unwrap();
    let (ckpt, onnx, inputs) = predictor_fixture(d.path());
    let lib = onnxruntime_library();
    let args = [
        "--model",
        onnx.to_str().unwrap(),
        "--onnxruntime",
        lib.to_str().unwrap(),
    ];
    let full = predict_lines(Path::new(env!("CARGO_BIN_EXE_ausweep")), &args, &inputs);
    let light_out = predict_lines(&light, &args, &inputs);
    assert_eq!(
        full, light_out,
        "the light build's predictions differ from the full build's"
    );
    let torch = predict_lines(
        Path::new(env!("CARGO_BIN_EXE_ausweep")),
        &["--device", "cpu", "--model", ckpt.to_str().unwrap()],
        &inputs,
    );
    let (cells, differ, dp) = compare_predictions(&torch, &light_out);
    eprintln!(
        "light predictor vs libtorch: {cells} cells, {differ} decisions differ, max |Δp| {dp:.2e}"
    );
    assert!(
        differ * 100 <= cells && dp <= 1e-3,
        "{differ}/{cells}, {dp}"
    );
    // A checkpoint is refused by name: this build has no libtorch.
    let out = Command::new(&light)
        .args(["predict", "--model", ckpt.to_str().unwrap()])
        .arg(&inputs[0])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("runs exported models only"),
        "{err}"
    );
}
