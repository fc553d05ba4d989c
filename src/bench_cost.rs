//! `ausweep bench cost`: what each backbone costs per face at inference, the resource side of
//! the paper: parameters, multiply-adds, the ONNX file, and CPU latency with one thread (a
//! phone-class budget) and with all of them, next to onnxruntime on the same ONNX file, and the
//! AU model of ausweep's own ONNX predictor (the light build's) with one thread.

use anyhow::{Context, Result};
use ausweep_admin::report::cost::{CostRow, CostTable};
use ausweep_proto::job::Backbone;
use ausweep_trainer::predict::AuModel;
use ausweep_trainer::train::checkpoint::{self, CheckpointMeta};
use ausweep_trainer::train::Model;
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
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
    /// Also write the table as JSON here (`ausweep report --cost` reads it).
    #[arg(long)]
    json: Option<PathBuf>,
}

const AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

/// A checkpoint of `kind` (random weights: latency does not depend on them) in `dir`.
fn checkpoint(dir: &Path, kind: Backbone, size: u32) -> Result<PathBuf> {
    let m = Model::new(kind, AUS.len(), Device::Cpu);
    let meta = CheckpointMeta::untrained(kind.name(), &AUS, size);
    checkpoint::write(dir, kind.name(), &m.named_tensors(), meta)?;
    Ok(dir.join(format!("{}.safetensors", kind.name())))
}

/// Trainable parameters of a checkpoint: its backbone and head tensors but the batch norms'
/// running statistics.
fn params_of(ckpt: &Path) -> Result<u64> {
    let t = ausweep_vision::tensors::read_tensors(ckpt)?;
    Ok(t.iter()
        .filter(|(n, _)| {
            (n.starts_with("backbone.") || n.starts_with("head."))
                && !n.ends_with("running_mean")
                && !n.ends_with("running_var")
                && !n.ends_with("num_batches_tracked")
        })
        .map(|(_, t)| t.numel() as u64)
        .sum())
}

/// The cost of checkpoint `ckpt` per face: parameters, multiply-adds, its ONNX export (written
/// beside it as `X.onnx`), the size of its int8 export and the F1 its int8 kernels lost where its
/// job measured it, and libtorch's median latency of one face with one thread and with every
/// core (`reps` timed runs each); the latency is measured on this machine.
pub fn measure(ckpt: &Path, reps: usize) -> Result<CostRow> {
    use ausweep_trainer::export::{au_model, write_au_model, Kernels};
    let onnx = ckpt.with_extension("onnx");
    let exported = write_au_model(ckpt, &onnx, Kernels::Fp32)
        .with_context(|| format!("exporting {}", ckpt.display()))?;
    let int8 = au_model(ckpt, Kernels::Int8)
        .with_context(|| format!("exporting {} with int8 kernels", ckpt.display()))?;
    let size = exported.meta.input_size;
    let model = AuModel::load(ckpt, Device::Cpu)?;
    let x = Tensor::rand(
        [1, 3, i64::from(size), i64::from(size)],
        (Kind::Float, Device::Cpu),
    ) * 255.0;
    let all = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    let before = tch::get_num_threads();
    let one = ours(&model, &x, 1, reps);
    let many = ours(&model, &x, all, reps);
    tch::set_num_threads(before);
    Ok(CostRow {
        backbone: exported.meta.backbone.clone(),
        input_size: size,
        params: params_of(ckpt)?,
        macs: exported.macs,
        onnx_bytes: std::fs::metadata(&onnx)?.len(),
        ms_one_thread: one,
        ms_all_threads: many,
        threads: all as u32,
        onnxruntime_ms_one_thread: None,
        ausweep_onnx_ms_one_thread: None,
        int8_onnx_bytes: Some(int8.bytes.len() as u64),
        int8_ms_one_thread: None,
        int8_f1_drop: int8.int8.map(|d| d.points()),
    })
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

/// Writes the int8 export of `ckpt` beside it as `X.int8.onnx`.
fn int8_export(ckpt: &Path) -> Result<PathBuf> {
    use ausweep_trainer::export::{write_au_model, Kernels};
    let file = ckpt.with_extension("int8.onnx");
    write_au_model(ckpt, &file, Kernels::Int8)?;
    Ok(file)
}

/// Median milliseconds of one face through the exported model in ausweep's own ONNX predictor
/// (`ausweep predict --model X.onnx`, both builds) with one thread.
fn edge_latency(onnx: &Path, size: u32, reps: usize) -> Result<f64> {
    let mut m = ausweep_edge::model::AuOnnxModel::open(onnx, 1)?;
    let s = size as usize;
    let x: Vec<f32> = (0..3 * s * s).map(|i| ((i * 7919) % 256) as f32).collect();
    for _ in 0..3 {
        m.predict(&x, 1)?;
    }
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        m.predict(&x, 1)?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    theirs.map_or("-".into(), |t| format!("{:.2}", ours / t))
}

/// Runs the benchmark and prints the table (and writes it with `--json`).
pub fn run(a: Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "AU model per face, {s}x{s}, 8 AUs, CPU: ausweep (libtorch) and onnxruntime on the same \
         ONNX file, median of {r} runs; 1 thread and {all} threads",
        s = a.size,
        r = a.reps
    );
    println!(
        "| backbone | params (M) | multiply-adds (G) | ONNX MB | int8 MB | 1 thread ms | onnxruntime ms | ratio | ausweep ONNX ms | ratio to onnxruntime | ausweep ONNX int8 ms | {all} threads ms | onnxruntime ms | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    if !a.no_reference {
        ausweep_edge::runtime::init(Some(&crate::onnxruntime_library()?))?;
    }
    let mut rows = Vec::new();
    for name in &a.backbones {
        let kind = Backbone::parse(name).map_err(anyhow::Error::msg)?;
        let ckpt = checkpoint(tmp.path(), kind, a.size)?;
        let mut row = measure(&ckpt, a.reps)?;
        let onnx = ckpt.with_extension("onnx");
        let (r1, rn, e1, q1) = if a.no_reference {
            (None, None, None, None)
        } else {
            (
                Some(reference(&onnx, a.size, 1, a.reps)?),
                Some(reference(&onnx, a.size, all as i32, a.reps)?),
                Some(edge_latency(&onnx, a.size, a.reps)?),
                Some(edge_latency(&int8_export(&ckpt)?, a.size, a.reps)?),
            )
        };
        row.onnxruntime_ms_one_thread = r1;
        row.ausweep_onnx_ms_one_thread = e1;
        row.int8_ms_one_thread = q1;
        let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        println!(
            "| {name} | {:.2} | {:.3} | {:.1} | {} | {:.1} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            row.params as f64 / 1e6,
            row.macs as f64 / 1e9,
            row.onnx_bytes as f64 / 1e6,
            fmt(row.int8_onnx_bytes.map(|b| b as f64 / 1e6)),
            row.ms_one_thread,
            fmt(r1),
            ratio(row.ms_one_thread, r1),
            fmt(e1),
            e1.map_or("-".into(), |e| ratio(e, r1)),
            fmt(q1),
            row.ms_all_threads,
            fmt(rn),
            ratio(row.ms_all_threads, rn),
        );
        rows.push(row);
    }
    if let Some(path) = &a.json {
        let table = CostTable {
            runtime: runtime(),
            rows,
        };
        ausweep_fsutil::write(
            path,
            (serde_json::to_string_pretty(&table)? + "\n").as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} (`ausweep report --cost` reads it)",
            path.display()
        );
    }
    Ok(())
}

/// What measured the latencies, for the report's sentence.
pub fn runtime() -> String {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("ausweep's libtorch on this machine's CPU ({all} cores)")
}
