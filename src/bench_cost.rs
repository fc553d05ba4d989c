//! `ausweep bench cost`: what each backbone costs per face at inference, the resource side of
//! the paper: parameters, multiply-adds, the ONNX file, and CPU latency with one thread (a
//! phone-class budget) and with all of them, next to onnxruntime on the same ONNX file.

use anyhow::{Context, Result};
use ausweep_proto::job::{Backbone, Objective};
use ausweep_trainer::predict::AuModel;
use ausweep_trainer::train::checkpoint::{self, CheckpointMeta, FORMAT};
use ausweep_trainer::train::Model;
use clap::Args as ClapArgs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Flags of `ausweep bench cost`.
#[derive(ClapArgs)]
pub struct Args {
    /// Backbones, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mobilenet_v1,mobilenet_v2,densenet121,densenet201,vgg19"
    )]
    backbones: Vec<String>,
    /// The AU model's input side in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Timed runs per thread count (after three warm-up runs); the median is reported.
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Skip the onnxruntime reference.
    #[arg(long)]
    no_reference: bool,
}

const AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

/// A checkpoint of `kind` (random weights: latency does not depend on them) in `dir`.
fn checkpoint(dir: &Path, kind: Backbone, size: u32) -> Result<(std::path::PathBuf, i64)> {
    let m = Model::new(kind, AUS.len(), Device::Cpu);
    let params: i64 = m
        .backbone_vs
        .trainable_variables()
        .iter()
        .chain(m.head_vs.trainable_variables().iter())
        .map(Tensor::numel)
        .sum::<usize>() as i64;
    let meta = CheckpointMeta {
        format: FORMAT,
        backbone: kind.name().into(),
        stage: 2,
        epoch: 1,
        aus: AUS.to_vec(),
        input_size: size,
        thresholds: vec![0.5; AUS.len()],
        metrics: None,
        optim_step: 0,
        sha256: String::new(),
        train_seconds: 0.0,
        job_digest: String::new(),
        finished: true,
        early_stop: None,
        dataset: None,
        objective: Objective::Occurrence,
    };
    checkpoint::write(dir, kind.name(), &m.named_tensors(), meta)?;
    Ok((dir.join(format!("{}.safetensors", kind.name())), params))
}

/// Median milliseconds of one face through `model` on `threads` libtorch threads.
fn ours(model: &AuModel, x: &Tensor, threads: i32, reps: usize) -> f64 {
    tch::set_num_threads(threads);
    for _ in 0..3 {
        model.predict(x);
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            model.predict(x);
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// onnxruntime's median milliseconds on the same file (scripts/onnx_bench.py).
fn reference(onnx: &Path, size: u32, threads: i32, reps: usize) -> Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/onnx_bench.py");
    let out = Command::new(crate::python())
        .arg(script)
        .arg(onnx)
        .args([size.to_string(), reps.to_string(), threads.to_string()])
        .output()
        .context("running the venv's Python (make setup)")?;
    anyhow::ensure!(
        out.status.success(),
        "onnx_bench.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["median_ms"]
        .as_f64()
        .context("onnx_bench.py printed no median_ms")
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    theirs.map_or("-".into(), |t| format!("{:.2}", ours / t))
}

/// Runs the benchmark and prints the table.
pub fn run(a: Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let all = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    let x = Tensor::rand(
        [1, 3, i64::from(a.size), i64::from(a.size)],
        (Kind::Float, Device::Cpu),
    ) * 255.0;
    println!(
        "AU model per face, {s}x{s}, 8 AUs, CPU: ausweep (libtorch) and onnxruntime on the same \
         ONNX file, median of {r} runs; 1 thread and {all} threads",
        s = a.size,
        r = a.reps
    );
    println!(
        "| backbone | params (M) | multiply-adds (G) | ONNX MB | 1 thread ms | onnxruntime ms | ratio | {all} threads ms | onnxruntime ms | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for name in &a.backbones {
        let kind = Backbone::parse(name).map_err(anyhow::Error::msg)?;
        let (ckpt, params) = checkpoint(tmp.path(), kind, a.size)?;
        let onnx = ckpt.with_extension("onnx");
        let exported = ausweep_trainer::export::write_au_model(&ckpt, &onnx)?;
        let mb = std::fs::metadata(&onnx)?.len() as f64 / 1e6;
        let model = AuModel::load(&ckpt, Device::Cpu)?;
        let one = ours(&model, &x, 1, a.reps);
        let many = ours(&model, &x, all, a.reps);
        let (r1, rn) = if a.no_reference {
            (None, None)
        } else {
            (
                Some(reference(&onnx, a.size, 1, a.reps)?),
                Some(reference(&onnx, a.size, all, a.reps)?),
            )
        };
        let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        println!(
            "| {name} | {:.2} | {:.3} | {mb:.1} | {one:.1} | {} | {} | {many:.1} | {} | {} |",
            params as f64 / 1e6,
            exported.macs as f64 / 1e9,
            fmt(r1),
            ratio(one, r1),
            fmt(rn),
            ratio(many, rn),
        );
    }
    Ok(())
}
