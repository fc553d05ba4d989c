//! `ausweep`: facial action unit transfer-learning sweeps (one binary, many subcommands).
//!
//! Without the default `train` feature the binary is the control plane only (coordinator,
//! admin verbs, report, plan): no libtorch, no venv.

mod alloc;
#[cfg(feature = "train")]
mod bench;
#[cfg(feature = "train")]
mod bench_cost;
#[cfg(feature = "train")]
mod bench_predict;
#[cfg(feature = "train")]
mod bench_prepare;
#[cfg(feature = "train")]
mod bench_sweep;
mod cluster_cmd;
#[cfg(feature = "train")]
mod dataset_cmd;
#[cfg(feature = "train")]
mod demo_cmd;
#[cfg(feature = "train")]
mod demo_models;
#[cfg(test)]
mod doc_commands;
#[cfg(test)]
mod doc_paths;
#[cfg(feature = "train")]
mod export_cmd;
mod predict;
#[cfg(test)]
mod source_limits;
#[cfg(feature = "train")]
mod train_cmd;
#[cfg(feature = "train")]
mod worker_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ausweep",
    version,
    about = "Facial action unit transfer-learning sweeps"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The embedded default: a small synthetic sweep on a local coordinator and worker, then
    /// the report.
    #[cfg(feature = "train")]
    Demo(demo_cmd::DemoArgs),
    /// Run one training job from a job file (standalone; JSON-lines progress on stdout).
    #[cfg(feature = "train")]
    Train(train_cmd::TrainArgs),
    /// Run a trained model on photos, folders and videos: faces, per-AU probabilities and
    /// decisions, emotions (JSON lines or OpenFace-style CSV).
    Predict(Box<predict::PredictArgs>),
    /// Write a trained model as one ONNX file (normalisation, backbone, head and sigmoid
    /// inside; AUs, thresholds and crop geometry in its metadata) for any ONNX runtime.
    #[cfg(feature = "train")]
    Export(export_cmd::ExportArgs),
    /// Inspect the converted ImageNet weights.
    #[cfg(feature = "train")]
    Weights {
        #[command(subcommand)]
        cmd: WeightsCmd,
    },
    /// Datasets: render the synthetic DISFA, inspect a DISFA tree.
    #[cfg(feature = "train")]
    Dataset {
        #[command(subcommand)]
        cmd: dataset_cmd::DatasetCmd,
    },
    /// Run the worker agent: register devices, lease jobs, supervise one trainer per device.
    #[cfg(feature = "train")]
    Worker(worker_cmd::WorkerArgs),
    #[command(flatten)]
    Cluster(Box<cluster_cmd::Command>),
    /// Benchmarks (measured next to PyTorch eager in the same run).
    #[cfg(feature = "train")]
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per subcommand into a folder.
    Man {
        /// Folder for `ausweep.1` and `ausweep-SUBCOMMAND.1` pages.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// Shell completions from the clap definitions.
fn completions(shell: clap_complete::Shell) -> Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Into a buffer first: the generator panics on a write error (e.g. `| head`).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ausweep", &mut buf);
    std::io::Write::write_all(&mut std::io::stdout(), &buf)?;
    Ok(())
}

/// Man pages from the clap definitions.
fn man(out_dir: Option<PathBuf>) -> Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)?;
        }
    }
    Ok(())
}

#[cfg(feature = "train")]
#[derive(Subcommand)]
enum WeightsCmd {
    /// List the weight files and their sources.
    List {
        /// Weights directory (default $AUSWEEP_WEIGHTS or ~/.cache/ausweep/weights).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Download published weights (torchvision's, timm's, facenet-pytorch's), check their pinned
    /// sha256 and install them converted; does nothing for a name already held.
    Fetch {
        /// Catalog names (densenet121, densenet201, mobilenet_v1, mobilenet_v2, vgg19,
        /// mtcnn_pnet, mtcnn_rnet, mtcnn_onet); `--all` for every one.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Every catalog name.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// A lab mirror holding the files under their catalog file names.
        #[arg(long, env = "AUSWEEP_WEIGHTS_MIRROR")]
        mirror: Option<String>,
        /// This URL instead of the catalog's (one name only).
        #[arg(long)]
        url: Option<String>,
        /// The full sha256 the download must have (overrides the catalog's pin).
        #[arg(long)]
        sha256: Option<String>,
        /// Download again even when already held.
        #[arg(long)]
        force: bool,
        /// Weights directory (default $AUSWEEP_WEIGHTS or ~/.cache/ausweep/weights).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Install a weights file you already have (torchvision .pth, timm .safetensors,
    /// facenet-pytorch .pt), checked tensor by tensor against the named network.
    Import {
        /// Catalog name (see `fetch`).
        name: String,
        /// The file.
        file: PathBuf,
        /// Weights directory (default $AUSWEEP_WEIGHTS or ~/.cache/ausweep/weights).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the ImageNet top-5 of a backbone on an image.
    Check {
        /// Backbone name.
        name: String,
        /// An image (jpg/png); default: scikit-image's `chelsea.png` from the venv.
        image: Option<PathBuf>,
        /// Weights directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() {
    // Before torch runs: a release binary gains CUDA when a CUDA torch is on the library path.
    #[cfg(feature = "train")]
    let _ = ausweep_trainer::train::load_cuda_backend();
    let cli = Cli::parse();
    // Processes that train or run models keep their freed pages (see `alloc`).
    #[cfg(feature = "train")]
    if matches!(cli.cmd, Cmd::Train(_) | Cmd::Predict(_) | Cmd::Bench { .. }) {
        if let Err(e) = alloc::keep_freed_pages() {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    let r: Result<()> = match cli.cmd {
        #[cfg(feature = "train")]
        Cmd::Demo(a) => demo_cmd::run(a),
        #[cfg(feature = "train")]
        // The trainer's exit code tells the agent how it failed (ausweep_proto::trainer).
        Cmd::Train(a) => train_cmd::run(a).inspect_err(|e| {
            eprintln!("error: {e:#}");
            std::process::exit(train_cmd::exit_code(e));
        }),
        Cmd::Predict(a) => predict::run(*a),
        #[cfg(feature = "train")]
        Cmd::Export(a) => export_cmd::run(a),
        #[cfg(feature = "train")]
        Cmd::Weights { cmd } => weights(cmd),
        #[cfg(feature = "train")]
        Cmd::Dataset { cmd } => dataset_cmd::run(cmd),
        #[cfg(feature = "train")]
        Cmd::Bench { cmd } => bench::run(cmd),
        #[cfg(feature = "train")]
        Cmd::Worker(args) => ausweep_agent::run(args.into()).map_err(anyhow::Error::from),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Man { out_dir } => man(out_dir),
        Cmd::Cluster(cmd) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                let r = rt.block_on(cluster_cmd::run(*cmd));
                // A stuck blocking task must not keep a failed coordinator alive.
                rt.shutdown_timeout(std::time::Duration::from_secs(5));
                r
            }),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(feature = "train")]
// Long function: one arm per `ausweep weights` verb, each a few lines.
fn weights(cmd: WeightsCmd) -> Result<()> {
    use ausweep_trainer::train::{imagenet, weights::weights_dir};
    match cmd {
        WeightsCmd::List { dir } => {
            let dir = dir.unwrap_or_else(weights_dir);
            let path = dir.join("manifest.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e} (run `make setup`)", path.display()))?;
            let m: serde_json::Value = serde_json::from_str(&text)?;
            if let Some(obj) = m.as_object() {
                for (name, v) in obj {
                    println!(
                        "{name:14} {:>4} tensors  sha256 {}  from {}",
                        v["tensors"],
                        v["sha256"].as_str().unwrap_or("?").get(..12).unwrap_or("?"),
                        v["source"].as_str().unwrap_or("?")
                    );
                }
            }
            Ok(())
        }
        WeightsCmd::Fetch {
            names,
            all,
            mirror,
            url,
            sha256,
            force,
            dir,
        } => {
            use ausweep_trainer::install::fetch;
            use ausweep_weights::catalog;
            let dir = dir.unwrap_or_else(weights_dir);
            let names: Vec<String> = if all {
                catalog::CATALOG
                    .iter()
                    .map(|e| e.name.to_string())
                    .collect()
            } else {
                names
            };
            if url.is_some() && names.len() != 1 {
                anyhow::bail!("--url names one file: give exactly one name");
            }
            let opts = fetch::FetchOptions {
                mirror,
                url,
                sha256,
                force,
            };
            for name in &names {
                let mut last = 0u64;
                let mut progress = |got: u64, total: Option<u64>| {
                    if got >= last + (16 << 20) {
                        last = got;
                        match total {
                            Some(t) => eprintln!("{name}: {} / {} MiB", got >> 20, t >> 20),
                            None => eprintln!("{name}: {} MiB", got >> 20),
                        }
                    }
                };
                match fetch::fetch(name, &dir, &opts, &mut progress)? {
                    fetch::Fetched::AlreadyHeld { source_sha256 } => println!(
                        "{name}: already in {} (source sha256 {})",
                        dir.display(),
                        &source_sha256[..12.min(source_sha256.len())]
                    ),
                    fetch::Fetched::Installed {
                        url,
                        bytes,
                        checked,
                        imported,
                    } => println!(
                        "{name}: {} MiB from {url}, {checked} {} ok -> {} ({} tensors, sha256 {})",
                        bytes >> 20,
                        &imported.source_sha256[..12],
                        imported.file.display(),
                        imported.tensors,
                        &imported.sha256[..12]
                    ),
                }
            }
            Ok(())
        }
        WeightsCmd::Import { name, file, dir } => {
            let dir = dir.unwrap_or_else(weights_dir);
            let i = ausweep_trainer::install::import::import(&name, &file, &dir, None, &[])?;
            println!(
                "{name}: {} -> {} ({} tensors{}, sha256 {}; source sha256 {})",
                file.display(),
                i.file.display(),
                i.tensors,
                if i.renamed > 0 {
                    format!(
                        ", {} renamed from torchvision's legacy DenseNet names",
                        i.renamed
                    )
                } else {
                    String::new()
                },
                &i.sha256[..12],
                &i.source_sha256[..12]
            );
            Ok(())
        }
        WeightsCmd::Check { name, image, dir } => {
            let backbone =
                ausweep_proto::job::Backbone::parse(&name).map_err(anyhow::Error::msg)?;
            let dir = dir.unwrap_or_else(weights_dir);
            let image = match image {
                Some(p) => p,
                None => default_image()?,
            };
            println!("{name} on {}:", image.display());
            for (i, (class, p)) in imagenet::top5(backbone, &image, &dir)?
                .into_iter()
                .enumerate()
            {
                println!("  {}. {class:30} {:6.2} %", i + 1, p * 100.0);
            }
            Ok(())
        }
    }
}

/// A photo of a cat: the release tarball ships it; otherwise scikit-image's, in the venv.
#[cfg(feature = "train")]
fn default_image() -> Result<PathBuf> {
    if let Some(p) = ausweep_trainer::train::weights::bundled("chelsea.png") {
        return Ok(p);
    }
    let py = python();
    let out = std::process::Command::new(&py)
        .args(["-c", "import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), 'data', 'chelsea.png'))"])
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "no image given, no photo beside the binary, and no Python at {}: {e} (give an image: `ausweep weights check NAME IMAGE`)",
                py.display()
            )
        })?;
    anyhow::ensure!(
        out.status.success(),
        "no image given and scikit-image is not in the venv (run `make setup`)"
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The venv's Python: `$AUSWEEP_PYTHON`, else `.venv/bin/python` of the source tree.
#[cfg(feature = "train")]
pub(crate) fn python() -> PathBuf {
    std::env::var_os("AUSWEEP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// ONNX Runtime's library in the venv's onnxruntime wheel (what `make setup` installs).
#[cfg(feature = "train")]
pub(crate) fn onnxruntime_library() -> Result<PathBuf> {
    let out = std::process::Command::new(crate::python())
        .args([
            "-c",
            "import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.*')))[-1])",
        ])
        .output()
        .map_err(|e| anyhow::anyhow!("running the venv's Python (make setup): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "finding onnxruntime's library: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
