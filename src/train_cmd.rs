//! `ausweep train`: one job, standalone.

use anyhow::{Context, Result};
use ausweep_proto::JobSpec;
use ausweep_trainer::train::{self, weights::weights_dir, RunOptions};
use clap::Args;
use std::path::PathBuf;

/// Flags of `ausweep train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The job file (YAML or JSON).
    job: PathBuf,
    /// Output directory (checkpoints/, final.safetensors, result.json).
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Weights directory (default $AUSWEEP_WEIGHTS or ~/.cache/ausweep/weights).
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// Stage 2: the stage-1 checkpoint (overrides the job file's `init_checkpoint`).
    #[arg(long)]
    init_checkpoint: Option<PathBuf>,
    /// Where packs of jobs without a `data.cache` path are built and reused (default
    /// $AUSWEEP_DATA_CACHE or ~/.cache/ausweep/data).
    #[arg(long)]
    data_cache: Option<PathBuf>,
    /// Emit a step event every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// Print a per-AU table on stderr at the end.
    #[arg(long)]
    summary: bool,
}

/// The exit code of a failed `ausweep train`: the agent↔trainer contract's kind of the first
/// typed error in the chain (a job file the spec refuses is a bad configuration).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    use ausweep_proto::trainer::TrainerExit;
    let kind = e.chain().find_map(|c| {
        if let Some(t) = c.downcast_ref::<train::TrainError>() {
            Some(t.exit())
        } else if c.downcast_ref::<ausweep_proto::JobError>().is_some() {
            Some(TrainerExit::BadConfig)
        } else {
            c.downcast_ref::<ausweep_data::DataError>()
                .map(|d| match d {
                    ausweep_data::DataError::Io { .. } => TrainerExit::Node,
                    _ => TrainerExit::BadConfig,
                })
        }
    });
    kind.unwrap_or(TrainerExit::Failed).code()
}

/// Runs `ausweep train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(&a.job).with_context(|| format!("reading {}", a.job.display()))?;
    let mut spec = {
        // Validate after the override, so a stage-2 file may leave init_checkpoint to the flag.
        // Bound alias expansion first: the generic Value below would materialise a bomb.
        ausweep_proto::yaml::check_bounded(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.job.display()))?;
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)
            .with_context(|| format!("{}: not YAML", a.job.display()))?;
        if let (Some(p), Some(map)) = (&a.init_checkpoint, doc.as_mapping_mut()) {
            map.insert("init_checkpoint".into(), p.display().to_string().into());
        }
        JobSpec::from_yaml(&serde_yaml::to_string(&doc)?, &a.job.display().to_string())?
    };
    if let Some(p) = &spec.init_checkpoint {
        if p.is_relative() && !p.exists() {
            if let Some(dir) = a.job.parent() {
                spec.init_checkpoint = Some(dir.join(p));
            }
        }
    }
    let device = train::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let opts = RunOptions {
        out_dir: a.out.clone(),
        device,
        weights_dir: a.weights_dir.unwrap_or_else(weights_dir),
        log_every: a.log_every,
        print_events: true,
        data_cache: a.data_cache.unwrap_or_else(train::weights::data_cache_dir),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let r = train::run(&spec, &opts)?;
    if a.summary {
        eprintln!(
            "\n{} stage {} fold {}: average F1 {:.1} % on {} test frames ({} epochs, {:.0} s, {:.0} images/s)",
            r.backbone,
            r.stage,
            r.fold,
            r.test.avg_f1 * 100.0,
            r.frames[2],
            r.epochs,
            r.train_seconds,
            r.images_per_sec
        );
        eprintln!(
            "  {:>5} {:>9} {:>7} {:>6} {:>9} {:>8}",
            "AU", "precision", "recall", "F1", "threshold", "support"
        );
        for (s, t) in r.test.per_au.iter().zip(&r.thresholds) {
            eprintln!(
                "  {:>5} {:>9.1} {:>7.1} {:>6.1} {:>9.2} {:>8}",
                format!("AU{}", s.au),
                s.precision * 100.0,
                s.recall * 100.0,
                s.f1 * 100.0,
                t,
                s.support
            );
        }
    }
    Ok(())
}
