//! `ausweep bench`: throughput measured next to PyTorch eager doing the same work in one run.

use anyhow::{Context, Result};
use ausweep_proto::job::Backbone;
use ausweep_worker::train::{loss, optim::Adam, Model};
use clap::Subcommand;
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
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Train {
            backbones,
            batch,
            size,
            steps,
            stage,
            no_reference,
        } => {
            println!(
                "training step, stage {stage}, {size}x{size} input, LSEP, Adam, CPU ({} threads)",
                tch::get_num_threads()
            );
            println!(
                "{:14} {:>5} {:>14} {:>14} {:>7}",
                "backbone", "batch", "ausweep img/s", "pytorch img/s", "ratio"
            );
            for name in &backbones {
                let kind = Backbone::parse(name).map_err(anyhow::Error::msg)?;
                for &b in &batch {
                    let ours = train_step_rate(kind, b, size, steps, stage);
                    let theirs = if no_reference {
                        None
                    } else {
                        Some(reference(name, b, size, steps, stage)?)
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
    }
}

fn train_step_rate(kind: Backbone, batch: usize, size: i64, steps: usize, stage: u8) -> f64 {
    tch::manual_seed(0);
    let model = Model::new(kind, 8, Device::Cpu);
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
    let x = Tensor::randn([b, 3, size, size], (Kind::Float, Device::Cpu));
    let y = Tensor::rand([b, 8], (Kind::Float, Device::Cpu))
        .lt(0.3)
        .to_kind(Kind::Float);
    let mut step = || {
        let pooled = if stage == 1 {
            tch::no_grad(|| model.backbone.pooled(&x, false, usize::MAX))
        } else {
            model.backbone.pooled(&x, true, 0)
        };
        let l = loss::lsep(&model.head.forward_t(&pooled, true), &y);
        opt.zero_grad();
        l.backward();
        opt.step();
    };
    step();
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    (batch * steps) as f64 / t.elapsed().as_secs_f64()
}

fn reference(name: &str, batch: usize, size: i64, steps: usize, stage: u8) -> Result<f64> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference.py");
    let out = std::process::Command::new(crate::python())
        .arg(script)
        .args([
            "train-bench",
            name,
            &batch.to_string(),
            &size.to_string(),
            &steps.to_string(),
            &stage.to_string(),
        ])
        .output()
        .context("running the PyTorch reference (make setup)")?;
    anyhow::ensure!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["images_per_sec"]
        .as_f64()
        .context("reference printed no images_per_sec")
}
