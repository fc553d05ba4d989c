//! The demo's last step: each backbone's best model as a checkpoint and an ONNX file in
//! `<out>/models/`, the face detector as ONNX beside them, and a `predict` line that works as
//! pasted.

use crate::predict::model_ref;
use anyhow::{Context, Result};
use ausweep_trainer::export::Kernels;
use ausweep_vision::face::export::{self, Net};
use std::path::{Path, PathBuf};

/// Writes `<out>/models/<backbone>.{safetensors,json,onnx}` for every backbone of `sweep`
/// (its best fold's final checkpoint, as `--model SWEEP:BACKBONE` picks it), `.int8.onnx` where
/// int8 kernels lost at most a point of F1, and the MTCNN nets; the checkpoints written.
pub async fn export(
    sweep: &str,
    backbones: &[String],
    conn: &ausweep_admin::Conn,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let models = out.join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("creating {}", models.display()))?;
    let cache = models.join(".download");
    let mut written = Vec::new();
    for b in backbones {
        let (ckpt, how) = model_ref::fetch_best(sweep, b, conn, &cache).await?;
        let dst = models.join(format!("{b}.safetensors"));
        for ext in ["safetensors", "json"] {
            let (from, to) = (ckpt.with_extension(ext), dst.with_extension(ext));
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
        let onnx = dst.with_extension("onnx");
        ausweep_trainer::export::write_au_model(&dst, &onnx, Kernels::Fp32)
            .with_context(|| format!("exporting {}", dst.display()))?;
        eprintln!(
            "demo: {b}: {how}\n      -> {} and {}\n      {}",
            dst.display(),
            onnx.display(),
            int8(&dst)?
        );
        written.push(dst);
    }
    std::fs::remove_dir_all(&cache).ok();
    let weights = ausweep_trainer::train::weights::weights_dir();
    for net in Net::ALL {
        let file = models.join(format!("mtcnn_{}.onnx", net.name()));
        match export::onnx(&weights, net) {
            Ok(bytes) => ausweep_fsutil::write(&file, &bytes)
                .with_context(|| format!("writing {}", file.display()))?,
            // The AU models stand without it; `ausweep predict` names the same fix.
            Err(e) => eprintln!("demo: no ONNX face detector: {e}"),
        }
    }
    Ok(written)
}

/// Writes `<backbone>.int8.onnx` beside checkpoint `dst` when its int8 kernels lost at most a
/// point of F1 on the test fold; the line saying what they lost, either way.
fn int8(dst: &Path) -> Result<String> {
    use ausweep_trainer::export::int8::Int8Drop;
    let meta = ausweep_trainer::train::checkpoint::read_meta(dst)?;
    let Some(d) = Int8Drop::of(&meta) else {
        return Ok("int8: no test-fold score with int8 kernels (an intensity model?)".into());
    };
    let what = format!(
        "int8 kernels: test-fold average F1 {:.2} % against {:.2} % ({:+.2} points)",
        d.int8_f1,
        d.fp32_f1,
        -d.points()
    );
    if !d.kept() {
        return Ok(format!("{what}: more than a point lost, no int8 file"));
    }
    let file = dst.with_extension("int8.onnx");
    ausweep_trainer::export::write_au_model(dst, &file, Kernels::Int8)
        .with_context(|| format!("exporting {}", file.display()))?;
    Ok(format!("{what} -> {}", file.display()))
}

/// Measures each model's inference cost on this machine (`ausweep bench cost`'s libtorch side)
/// and writes the table to `dir/cost.json` for the report; its path, or `None` (with a line
/// saying why) when a measurement failed: the report stands without it.
pub fn cost(models: &[PathBuf], dir: &Path) -> Result<Option<PathBuf>> {
    let mut rows = Vec::new();
    for m in models {
        match crate::bench_cost::measure(m, 10) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("demo: no inference cost table: {e:#}");
                return Ok(None);
            }
        }
    }
    let table = ausweep_admin::report::cost::CostTable {
        runtime: crate::bench_cost::runtime(),
        rows,
    };
    let path = dir.join("cost.json");
    ausweep_fsutil::write(
        &path,
        (serde_json::to_string_pretty(&table)? + "\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}
