//! `ausweep bench`: throughput measured next to PyTorch eager doing the same work in one run.

use anyhow::{Context, Result};
use ausweep_proto::job::Backbone;
use ausweep_trainer::train::{loss, optim::Adam, Model};
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Training images/s per backbone and batch size (CPU), and PyTorch eager's on the same step.
    Train {
        /// Backbones, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "mobilenet_v2,densenet121"
        )]
        backbones: Vec<String>,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "8,32")]
        batch: Vec<usize>,
        /// Input side in pixels.
        #[arg(long, default_value_t = 112)]
        size: i64,
        /// Timed steps (after one warm-up step).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// 1 = frozen backbone + head, 2 = fine-tune everything.
        #[arg(long, default_value_t = 2)]
        stage: u8,
        /// Skip the PyTorch reference.
        #[arg(long)]
        no_reference: bool,
        /// Device: cpu or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Mixed precision (autocast) on CUDA, in both ausweep and the reference.
        #[arg(long)]
        amp: bool,
    },
    /// Loader images/s: decoding frames each epoch vs the packed cache, next to what training consumes.
    Loader {
        /// Subjects of the synthetic DISFA written to disk.
        #[arg(long, default_value_t = 27)]
        subjects: u32,
        /// Frames per subject.
        #[arg(long, default_value_t = 100)]
        frames: u32,
        /// Frame side in pixels.
        #[arg(long, default_value_t = 64)]
        size: u32,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch: usize,
    },
    /// A whole sweep through ausweep next to the same sweep as a PyTorch pipeline (Dataset
    /// decoding frames each epoch, DataLoader workers, frozen backbone re-run every stage-1 epoch).
    Sweep {
        /// The manifest (synthetic source); default the embedded demo.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Run only the first N folds.
        #[arg(long)]
        folds: Option<u32>,
        /// DataLoader worker processes of the reference.
        #[arg(long, default_value_t = 2)]
        loader_workers: usize,
        /// Skip the PyTorch reference.
        #[arg(long)]
        no_reference: bool,
    },
    /// Dataset preparation frames/s (decode, detect, align, write) and alignment accuracy on
    /// synthetic DISFA-like videos, next to facenet-pytorch's MTCNN + OpenCV on the same videos.
    Prepare(crate::bench_prepare::Args),
    /// Per backbone: parameters, multiply-adds and ONNX file size per face, and CPU latency with
    /// one thread and all threads, next to onnxruntime on the same exported file.
    Cost(crate::bench_cost::Args),
    /// `ausweep predict` faces/s (MTCNN + alignment + AU model) next to facenet-pytorch's MTCNN +
    /// the same MobileNet-v2 and head in PyTorch eager, on the same photos.
    Predict {
        /// The AU model's input side in pixels.
        #[arg(long, default_value_t = 224)]
        size: u32,
        /// Passes over the photos (after one warm-up pass).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Device: cpu or cuda:N (the reference runs on the CPU only).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Skip the PyTorch reference.
        #[arg(long)]
        no_reference: bool,
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Predict {
            size,
            reps,
            device,
            no_reference,
        } => crate::bench_predict::run(size, reps, &device, no_reference),
        BenchCmd::Prepare(args) => crate::bench_prepare::run(args),
        BenchCmd::Cost(args) => crate::bench_cost::run(args),
        BenchCmd::Train {
            backbones,
            batch,
            size,
            steps,
            stage,
            no_reference,
            device,
            amp,
        } => {
            let dev = ausweep_trainer::train::parse_device(&device).map_err(anyhow::Error::msg)?;
            if dev.is_cuda() {
                tch::Cuda::cudnn_set_benchmark(true);
            }
            println!(
                "training step, stage {stage}, {size}x{size} input, LSEP, Adam, {device}{} ({} CPU threads)",
                if amp { " amp" } else { "" },
                tch::get_num_threads()
            );
            println!(
                "{:14} {:>5} {:>14} {:>14} {:>7}",
                "backbone", "batch", "ausweep img/s", "pytorch img/s", "ratio"
            );
            for name in &backbones {
                let kind = Backbone::parse(name).map_err(anyhow::Error::msg)?;
                for &b in &batch {
                    let ours = train_step_rate(kind, b, size, steps, stage, dev, amp);
                    let theirs = if no_reference {
                        None
                    } else {
                        Some(reference(name, b, size, steps, stage, &device, amp)?)
                    };
                    match theirs {
                        Some(t) => {
                            println!("{name:14} {b:>5} {ours:>14.1} {t:>14.1} {:>7.2}", ours / t)
                        }
                        None => println!("{name:14} {b:>5} {ours:>14.1} {:>14} {:>7}", "-", "-"),
                    }
                }
            }
            Ok(())
        }
        BenchCmd::Sweep {
            manifest,
            folds,
            loader_workers,
            no_reference,
        } => crate::bench_sweep::run(manifest, folds, loader_workers, no_reference),
        BenchCmd::Loader {
            subjects,
            frames,
            size,
            batch,
        } => loader(subjects, frames, size, batch),
    }
}

fn loader(subjects: u32, frames: u32, size: u32, batch: usize) -> Result<()> {
    use ausweep_data::{disfa, pack, synth};
    use ausweep_proto::job::AugmentSpec;
    use ausweep_trainer::train::batch::{BatchMaker, Prefetch};
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use std::sync::Arc;
    let dir = tempfile::tempdir()?;
    let cfg = synth::SynthConfig {
        subjects,
        frames,
        size,
        seed: 0,
    };
    let n = (subjects * frames) as usize;
    println!(
        "{subjects} subjects x {frames} frames at {size} px, batch {batch}, {} threads",
        rayon::current_num_threads()
    );
    // Decoding PNG frames every epoch (what a loader without a pack does), on up to 3 subjects.
    let few = synth::SynthConfig {
        subjects: subjects.min(3),
        ..cfg
    };
    synth::write_disfa(dir.path(), &few)?;
    let layout = disfa::DisfaLayout::new(dir.path(), dir.path());
    let opts = disfa::ReadOptions {
        size,
        ..Default::default()
    };
    let t = Instant::now();
    let (decoded, _) = disfa::read(&layout, &opts)?;
    let decode = decoded.len() as f64 / t.elapsed().as_secs_f64();
    drop(decoded);
    // The pack, rendered straight into the file.
    let path = dir.path().join("bench.pack");
    let t = Instant::now();
    let p = pack::open_or_build(&path, "bench", size, &ausweep_data::DISFA_AUS, |w| {
        synth::render_into(&cfg, w)
    })?;
    let build = t.elapsed().as_secs_f64();
    let pack_bytes = std::fs::metadata(&path)?.len();
    let labels = Tensor::from_slice(
        &p.intensities()
            .iter()
            .map(|&v| u8::from(v >= 2))
            .collect::<Vec<u8>>(),
    )
    .view([n as i64, 8])
    .to_kind(Kind::Float);
    let p = Arc::new(p);
    let bm = BatchMaker::new(
        Arc::clone(&p),
        labels,
        &ausweep_data::DISFA_AUS,
        Device::Cpu,
    );
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let batches: Vec<Vec<usize>> = order.chunks(batch).map(<[usize]>::to_vec).collect();
    let rss_before = peak_rss_mib();
    // Warm the page cache once (the pack was just written, so this is mostly a no-op).
    for b in &batches {
        let _ = bm.frames(b);
    }
    let t = Instant::now();
    let mut count = 0;
    for b in &batches {
        count += bm.frames(b).size()[0] as usize;
    }
    let gather = count as f64 / t.elapsed().as_secs_f64();
    let rss_after = peak_rss_mib();
    let aug = AugmentSpec {
        flip: 0.5,
        crop: 0.1,
        jitter: 0.2,
        splice_upper_lower: 0.2,
        splice_left_right: 0.0,
    };
    let t = Instant::now();
    let count: usize = Prefetch::start(
        bm.shallow_clone(),
        batches,
        order.clone(),
        aug,
        rand_chacha::ChaCha8Rng::seed_from_u64(0),
        3,
    )
    .map(|(x, _)| x.size()[0] as usize)
    .sum();
    let cpu_aug = count as f64 / t.elapsed().as_secs_f64();
    println!(
        "pack: {:.0} MiB, built in {build:.1} s; trainer peak RSS {rss_before:.0} MiB before the epoch, {rss_after:.0} MiB after reading all of it",
        pack_bytes as f64 / 1048576.0
    );
    println!("{:52} {:>12}", "stage", "images/s");
    println!(
        "{:52} {decode:>12.0}",
        "decode PNG frames (every epoch without a pack)"
    );
    println!(
        "{:52} {gather:>12.0}",
        "shuffled uint8 batches from the pack (1 thread)"
    );
    println!(
        "{:52} {cpu_aug:>12.0}",
        "augmented float batches on the CPU (prefetch)"
    );
    for name in ["mobilenet_v2", "densenet121"] {
        let kind = Backbone::parse(name).map_err(anyhow::Error::msg)?;
        let consume = train_step_rate(kind, batch, size as i64, 3, 2, Device::Cpu, false);
        println!(
            "{:52} {consume:>12.1}  pack/decode headroom x{:.1} / x{:.1}",
            format!("{name} stage-2 training consumes (CPU)"),
            gather / consume,
            decode / consume
        );
    }
    Ok(())
}

/// This process's peak resident set (VmHWM), MiB; 0 where /proc is not there.
fn peak_rss_mib() -> f64 {
    ausweep_trainer::train::peak_rss_bytes() as f64 / 1048576.0
}

fn train_step_rate(
    kind: Backbone,
    batch: usize,
    size: i64,
    steps: usize,
    stage: u8,
    device: Device,
    amp: bool,
) -> f64 {
    tch::manual_seed(0);
    let model = Model::new(kind, 8, device);
    let cl = ausweep_trainer::train::layout::enabled_for(device);
    if cl {
        ausweep_trainer::train::layout::to_channels_last(&model.backbone_vs);
    }
    let mut opt = Adam::new(0.0);
    for (n, t) in model.head_vs.variables() {
        opt.add(n, t, 1e-4);
    }
    if stage == 2 {
        for (n, t) in model
            .backbone_vs
            .trainable_variables()
            .into_iter()
            .enumerate()
        {
            opt.add(format!("b{n}"), t, 1e-4);
        }
    }
    let b = batch as i64;
    let x = Tensor::randn([b, 3, size, size], (Kind::Float, device));
    let x = if cl {
        ausweep_trainer::train::layout::channels_last(&x)
    } else {
        x
    };
    let y = Tensor::rand([b, 8], (Kind::Float, device))
        .lt(0.3)
        .to_kind(Kind::Float);
    let mut step = || {
        let logits = tch::autocast(amp && device.is_cuda(), || {
            let pooled = if stage == 1 {
                tch::no_grad(|| model.backbone.pooled(&x, false, usize::MAX))
            } else {
                model.backbone.pooled(&x, true, 0)
            };
            model.head.forward_t(&pooled, true)
        });
        let l = loss::lsep(&logits.to_kind(Kind::Float), &y);
        opt.zero_grad();
        l.backward();
        opt.step();
    };
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    step();
    step();
    sync();
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    sync();
    (batch * steps) as f64 / t.elapsed().as_secs_f64()
}

fn reference(
    name: &str,
    batch: usize,
    size: i64,
    steps: usize,
    stage: u8,
    device: &str,
    amp: bool,
) -> Result<f64> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference.py");
    let mut cmd = std::process::Command::new(crate::python());
    cmd.arg(script).args([
        "train-bench",
        name,
        &batch.to_string(),
        &size.to_string(),
        &steps.to_string(),
        &stage.to_string(),
        device,
        if amp { "amp" } else { "fp32" },
        // Same memory format as ausweep's trainer on this device (like for like).
        if device != "cpu" && ausweep_trainer::train::layout::enabled_for(Device::Cuda(0)) {
            "channels_last"
        } else {
            "nchw"
        },
    ]);
    let v = reference_json(&mut cmd)?;
    v["images_per_sec"]
        .as_f64()
        .context("reference printed no images_per_sec")
}

/// Runs a PyTorch reference script and parses the JSON object it prints.
pub(crate) fn reference_json(cmd: &mut std::process::Command) -> Result<serde_json::Value> {
    let out = cmd
        .output()
        .context("running the PyTorch reference (make setup)")?;
    anyhow::ensure!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
