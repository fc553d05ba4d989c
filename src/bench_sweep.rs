//! `ausweep bench sweep`: a whole sweep through ausweep (coordinator, worker, packed data,
//! stage-1 feature cache) next to the same sweep as a lab would write it in PyTorch
//! (`scripts/reference.py sweep`), on the same prepared frames, backbones, epochs and batches.

use anyhow::{bail, Context, Result};
use ausweep_coordinator::manifest::{self, Manifest};
use ausweep_data::folds::{validation_split, FoldScheme};
use ausweep_data::synth;
use ausweep_proto::job::{DataSource, FoldsSpec, ThresholdMode, WeightsSource};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs the comparison on `manifest` (default: the embedded demo), its first `folds` folds.
// Long function: the benchmark's script: one sweep in each configuration, measured and printed in
// order.
pub fn run(
    manifest: Option<PathBuf>,
    folds: Option<u32>,
    workers: usize,
    no_reference: bool,
) -> Result<()> {
    let (yaml, file) = match &manifest {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            crate::demo_cmd::DEMO_MANIFEST.to_string(),
            "experiments/demo.yaml".into(),
        ),
    };
    let m = manifest::parse(&yaml, &file)?.manifest;
    let DataSource::Synthetic {
        subjects,
        frames,
        seed,
    } = m.dataset.source
    else {
        bail!("{file}: bench sweep renders the synthetic set; give a manifest with `source: {{kind: synthetic, ...}}`");
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cfg = synth::SynthConfig {
        subjects,
        frames,
        size: m.dataset.input_size,
        seed,
    };
    synth::write_disfa(&data, &cfg)?;
    let run_folds: Vec<u32> = manifest::folds(&m)
        .into_iter()
        .take(folds.map_or(usize::MAX, |f| f as usize))
        .collect();

    // The same manifest reading the prepared frames from disk, as the reference does.
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&yaml)?;
    let map = doc
        .as_mapping_mut()
        .context("the manifest is not a mapping")?;
    let source: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{kind: disfa, labels_root: {:?}, frames_root: {:?}}}",
        data.display().to_string(),
        data.display().to_string()
    ))?;
    map.get_mut("dataset")
        .and_then(|d| d.as_mapping_mut())
        .context("the manifest has no dataset")?
        .insert("source".into(), source);
    map.insert("run_folds".into(), serde_yaml::to_value(&run_folds)?);
    map.insert("name".into(), format!("{}-bench", m.name).into());
    let bench_manifest = dir.path().join("manifest.yaml");
    std::fs::write(&bench_manifest, serde_yaml::to_string(&doc)?)?;
    let plan = plan(&m, &run_folds, subjects, frames)?;
    let images: u64 = plan["train_images"].as_u64().unwrap_or(0);
    println!(
        "sweep {file}: {} backbone(s) x {} fold(s) x 2 stages, {subjects} subjects x {frames} frames at {} px, {images} training images",
        m.backbones.len(),
        run_folds.len(),
        m.dataset.input_size
    );

    let out = dir.path().join("ausweep");
    let t = Instant::now();
    let o = std::process::Command::new(std::env::current_exe()?)
        .arg("demo")
        .arg("--manifest")
        .arg(&bench_manifest)
        .arg("--out")
        .arg(&out)
        .output()
        .context("running ausweep demo")?;
    let ours_s = t.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!(
            "the ausweep sweep failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let ours = ausweep_f1(&out.join("report/report.json"))?;

    let theirs = if no_reference {
        None
    } else {
        let plan_file = dir.path().join("plan.json");
        std::fs::write(&plan_file, serde_json::to_vec_pretty(&plan)?)?;
        let res = dir.path().join("reference.json");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference.py");
        let t = Instant::now();
        let o = std::process::Command::new(crate::python())
            .arg(script)
            .arg("sweep")
            .arg(&plan_file)
            .arg(&data)
            .arg(&res)
            .arg(workers.to_string())
            .output()
            .context("running the PyTorch reference sweep (make setup)")?;
        let secs = t.elapsed().as_secs_f64();
        if !o.status.success() {
            bail!(
                "the reference sweep failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&res)?)?;
        let mut f1 = std::collections::BTreeMap::new();
        for j in v["jobs"].as_array().into_iter().flatten() {
            let key = (
                j["backbone"].as_str().unwrap_or("?").to_string(),
                j["stage"].as_u64().unwrap_or(0),
            );
            f1.entry(key)
                .or_insert_with(Vec::new)
                .push(j["avg_f1"].as_f64().unwrap_or(f64::NAN));
        }
        Some((secs, f1))
    };

    println!("{:28} {:>10} {:>12}", "", "wall s", "train img/s");
    println!(
        "{:28} {ours_s:>10.1} {:>12.1}",
        "ausweep (coordinator+worker)",
        images as f64 / ours_s
    );
    if let Some((secs, _)) = &theirs {
        println!(
            "{:28} {secs:>10.1} {:>12.1}",
            "PyTorch reference pipeline",
            images as f64 / secs
        );
        println!("ausweep is {:.2}x faster (wall time ratio)", secs / ours_s);
    }
    println!(
        "\n{:16} {:>5} {:>14} {:>14}",
        "backbone", "stage", "ausweep F1 %", "reference F1 %"
    );
    for ((b, stage), f) in &ours {
        let r = theirs
            .as_ref()
            .and_then(|(_, t)| t.get(&(b.clone(), *stage)))
            .map_or("-".to_string(), |v| format!("{:.1}", mean(v) * 100.0));
        // The report's F1 is in %, the reference's a fraction.
        println!("{b:16} {stage:>5} {:>14.1} {r:>14}", mean(f));
    }
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// (backbone, stage) -> average F1 of each fold, from ausweep's report.json.
fn ausweep_f1(report: &Path) -> Result<std::collections::BTreeMap<(String, u64), Vec<f64>>> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report).with_context(|| format!("reading {}", report.display()))?,
    )?;
    let mut out = std::collections::BTreeMap::new();
    for c in v["cells"].as_array().into_iter().flatten() {
        let (Some(b), Some(stage)) = (c["backbone"].as_str(), c["stage"].as_u64()) else {
            continue;
        };
        for f in c["folds"].as_array().into_iter().flatten() {
            if let Some(x) = f["avg_f1"].as_f64() {
                out.entry((b.to_string(), stage))
                    .or_insert_with(Vec::new)
                    .push(x);
            }
        }
    }
    if out.is_empty() {
        bail!("{}: no per-fold F1 in the report", report.display());
    }
    Ok(out)
}

/// The reference's jobs: per backbone and fold, the subjects of each part and both stages'
/// settings, from the same manifest expansion and split functions the trainer uses.
fn plan(m: &Manifest, folds: &[u32], subjects: u32, frames: u32) -> Result<serde_json::Value> {
    let names = synth::subject_names(subjects);
    let grid = manifest::grid_points(m)
        .into_iter()
        .next()
        .context("no grid point")?;
    let scheme = match &m.dataset.folds {
        FoldsSpec::Disfa3Fold => FoldScheme::Disfa3Fold,
        FoldsSpec::Kfold { k, seed } => FoldScheme::KFold { k: *k, seed: *seed },
    };
    if m.stages.len() != 2 {
        bail!(
            "bench sweep compares the paper's two stages; the manifest has {}",
            m.stages.len()
        );
    }
    let mut jobs = Vec::new();
    let mut images = 0u64;
    for &b in &m.backbones {
        for &fold in folds {
            let spec = |stage| {
                manifest::job_spec(m, b, fold, stage, &grid)
                    .map_err(|(f, e)| anyhow::anyhow!("{f}: {e}"))
            };
            let (s1, s2) = (spec(1)?, spec(2)?);
            let fs = scheme.split(&names, fold)?;
            let (train, val) = validation_split(&fs.train, s1.data.val_subjects, s1.seed);
            let weights = match &s1.weights {
                WeightsSource::Imagenet => Some(
                    ausweep_trainer::train::weights::weights_dir().join(format!("{b}.safetensors")),
                ),
                WeightsSource::File(f) => Some(f.clone()),
                WeightsSource::None => None,
            };
            let per_subject = u64::from(frames);
            for s in [&s1, &s2] {
                let steps = (train.len() as u64 * per_subject).div_ceil(s.train.batch_size as u64);
                let steps = match s.train.max_steps_per_epoch {
                    0 => steps,
                    n => steps.min(n as u64),
                };
                images += u64::from(s.train.epochs)
                    * (steps * s.train.batch_size as u64).min(train.len() as u64 * per_subject);
            }
            let stage = |s: &ausweep_proto::JobSpec| {
                serde_json::json!({"epochs": s.train.epochs, "lr": s.train.lr,
                    "backbone_lr": s.train.backbone_lr, "weight_decay": s.train.weight_decay})
            };
            jobs.push(serde_json::json!({
                "backbone": b.name(), "fold": fold, "seed": s1.seed, "weights": weights,
                "train": train, "val": val, "test": fs.test, "aus": s1.data.aus,
                "presence_threshold": s1.data.presence_threshold,
                "input_size": s1.data.input_size, "batch_size": s1.train.batch_size,
                "max_steps_per_epoch": s1.train.max_steps_per_epoch,
                "thresholds": if s1.thresholds == ThresholdMode::Tuned { "tuned" } else { "fixed" },
                "loss": s1.loss,
                "stage1": stage(&s1), "stage2": stage(&s2),
            }));
        }
    }
    Ok(serde_json::json!({"jobs": jobs, "train_images": images}))
}
