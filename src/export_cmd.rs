//! `ausweep export`: a trained model as one ONNX file that any ONNX runtime runs.

use crate::predict::model_ref;
use anyhow::{Context, Result};
use ausweep_vision::face::export::{self, Net};
use clap::Args;
use std::path::PathBuf;

/// Flags of `ausweep export`.
#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint (`X.safetensors` beside its `X.json`), an `ausweep train` output folder, or
    /// SWEEP:BACKBONE for the best fold's final checkpoint from the coordinator.
    #[arg(long)]
    model: String,
    /// The ONNX file to write.
    #[arg(long, short)]
    out: PathBuf,
    /// Also write the face detector (MTCNN) as `mtcnn_{pnet,rnet,onet}.onnx` beside --out, so a
    /// whole predictor runs from ONNX files.
    #[arg(long)]
    detector: bool,
    /// Store the convolution and dense kernels as int8 (about 4× smaller; activations stay f32).
    /// Refused unless the checkpoint's job measured its test fold with them and lost at most one
    /// point of average F1.
    #[arg(long)]
    int8: bool,
    /// Weights directory with the MTCNN weights (default $AUSWEEP_WEIGHTS or ~/.cache/ausweep/weights).
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// Where downloaded sweep checkpoints are kept (default ~/.cache/ausweep/checkpoints).
    #[arg(long)]
    checkpoint_cache: Option<PathBuf>,
    #[command(flatten)]
    remote: crate::cluster_cmd::ConnArgs,
}

/// Writes the ONNX model and says what it holds.
pub fn run(a: ExportArgs) -> Result<()> {
    let cache = a
        .checkpoint_cache
        .clone()
        .unwrap_or_else(crate::predict::default_cache);
    let (ckpt, how) = model_ref::resolve(&a.model, &a.remote.clone().into(), &cache)?;
    if let Some(dir) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    use ausweep_trainer::export::{int8::Int8Drop, Kernels};
    let kernels = if a.int8 {
        let meta = ausweep_trainer::train::checkpoint::read_meta(&ckpt)?;
        let d = Int8Drop::check(&ckpt, &meta)?;
        println!(
            "int8 kernels: test-fold average F1 {:.2} % against {:.2} % with fp32 ({:+.2} points)",
            d.int8_f1,
            d.fp32_f1,
            -d.points()
        );
        Kernels::Int8
    } else {
        Kernels::Fp32
    };
    let exported = ausweep_trainer::export::write_au_model(&ckpt, &a.out, kernels)
        .with_context(|| format!("exporting {}", ckpt.display()))?;
    let meta = &exported.meta;
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({:.1} MB{}, ONNX opset {}, {:.0} M multiply-adds per face): {} stage {}, {} \
         AU(s) {:?}, {objective}, input `{input}` [N,3,{s},{s}] RGB 0-255, output \
         `{probs}`{extra}; from {how}",
        a.out.display(),
        bytes as f64 / 1e6,
        if a.int8 { ", int8 kernels" } else { "" },
        ausweep_onnx::OPSET,
        exported.macs as f64 / 1e6,
        meta.backbone,
        meta.stage,
        meta.aus.len(),
        meta.aus,
        objective = format!("{:?}", meta.objective).to_lowercase(),
        input = ausweep_trainer::export::INPUT,
        s = meta.input_size,
        probs = ausweep_trainer::export::PROBS,
        extra = if meta.objective == ausweep_proto::job::Objective::Intensity {
            format!(" and `{}` (0-5)", ausweep_trainer::export::INTENSITY)
        } else {
            String::new()
        },
    );
    if a.detector {
        let dir = a
            .out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let weights = a
            .weights_dir
            .clone()
            .unwrap_or_else(ausweep_trainer::train::weights::weights_dir);
        for net in Net::ALL {
            let out = dir.join(format!("mtcnn_{}.onnx", net.name()));
            let bytes = export::onnx(&weights, net)?;
            ausweep_fsutil::write(&out, &bytes).with_context(|| out.display().to_string())?;
            println!(
                "wrote {} ({:.1} MB)",
                out.display(),
                bytes.len() as f64 / 1e6
            );
        }
    }
    Ok(())
}
