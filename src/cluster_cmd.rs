//! The cluster commands' flags (`ausweep coordinator|submit|status|watch|cancel|resubmit-failed|
//! workers|drain|plan|report|score|launch`), turned into the libraries' plain options.

use anyhow::Result;
use ausweep_admin::launch::SlurmOptions;
use ausweep_admin::report::cmd::{Format, ReportOptions, ScoreOptions};
use ausweep_admin::views::Output;
use ausweep_admin::{verbs, Conn};
use ausweep_coordinator::settings::ServeOptions;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The coordinator's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the coordinator (config file, then flags and environment override it).
    Coordinator(ServeArgs),
    /// Submit a sweep manifest (idempotent: the same file gives the same sweep).
    Submit {
        /// Manifest file.
        file: PathBuf,
        /// Largest manifest to send, KiB (the coordinator has its own limit, default 256).
        #[arg(long, default_value_t = ausweep_coordinator::manifest::MAX_MANIFEST_BYTES >> 10)]
        max_manifest_kib: usize,
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Show all sweeps, or one sweep's jobs with why they are pending.
    Status {
        /// Sweep id.
        sweep: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Follow a sweep's job changes and progress live.
    Watch {
        /// Sweep id.
        sweep: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Cancel every unfinished job of a sweep.
    Cancel {
        /// Sweep id.
        sweep: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Requeue a sweep's failed and cancelled jobs.
    ResubmitFailed {
        /// Sweep id.
        sweep: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// List registered workers.
    Workers {
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Drain a worker: it leases nothing more, checkpoints its running jobs and exits.
    Drain {
        /// Worker id (as `ausweep workers` lists it).
        worker: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Check a manifest without a coordinator (the same errors as `submit`) and print its jobs,
    /// their dependencies and the device each needs.
    Plan {
        /// Manifest file.
        file: PathBuf,
        /// Largest manifest accepted, KiB (as `submit`).
        #[arg(long, default_value_t = ausweep_coordinator::manifest::MAX_MANIFEST_BYTES >> 10)]
        max_manifest_kib: usize,
        /// Output: table, json (one object).
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Report a sweep's results next to the published baselines (tables and the Fig. 5 chart).
    Report(ReportArgs),
    /// Score any prediction CSV against labels with the paper's F1 protocol (or, with
    /// --intensity, AU intensity: ICC(3,1), MAE and PCC).
    Score(ScoreArgs),
    /// Start workers on demand from a batch system while runnable jobs wait.
    #[command(subcommand)]
    Launch(Launch),
}

/// Batch systems `ausweep launch` submits workers to.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Launch {
    /// Submit worker allocations with sbatch while runnable jobs wait; workers exit when idle.
    Slurm(SlurmArgs),
}

/// How every client command reaches the coordinator: URL, TLS files and the admin token, as
/// flags or environment variables (the same for the admin verbs, `report`, `launch slurm` and
/// `predict --model SWEEP:BACKBONE`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Coordinator URL (`https://` speaks TLS: with --ca, or else the system's roots).
    #[arg(
        long,
        env = "AUSWEEP_COORDINATOR",
        default_value = "http://127.0.0.1:7077"
    )]
    pub coordinator: String,
    /// Admin token.
    #[arg(long, env = "AUSWEEP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate.
    #[arg(long, env = "AUSWEEP_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a coordinator that requires mutual TLS (with --client-key).
    #[arg(long, env = "AUSWEEP_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "AUSWEEP_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Server name to verify in the coordinator's certificate (default: the URL's host).
    #[arg(long, env = "AUSWEEP_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
}

/// `ausweep coordinator` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// YAML config file (keys as the flags, with `_`).
    #[arg(long, env = "AUSWEEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "AUSWEEP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// State directory (sled db and checkpoints).
    #[arg(long, env = "AUSWEEP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Checkpoint files here instead of <data-dir>/checkpoints (e.g. a bigger or separate disk).
    #[arg(long, env = "AUSWEEP_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Admin token.
    #[arg(long, env = "AUSWEEP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Worker join token.
    #[arg(long, env = "AUSWEEP_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// TLS certificate (PEM).
    #[arg(long, env = "AUSWEEP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS key (PEM).
    #[arg(long, env = "AUSWEEP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA for client certificates (enables mutual TLS).
    #[arg(long, env = "AUSWEEP_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Heartbeat interval, ms.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Lease length, ms.
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// Seconds without any worker before pending jobs say so.
    #[arg(long)]
    pub no_worker_grace_s: Option<u64>,
    /// Most MiB of checkpoints the store may hold (0: no limit); uploads past it are refused.
    #[arg(long, env = "AUSWEEP_MAX_STORE_MIB")]
    pub max_store_mib: Option<u64>,
    /// Serve Prometheus `/metrics` on this address (e.g. 0.0.0.0:9477).
    #[arg(long, env = "AUSWEEP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest manifest `submit` accepts, KiB (default 256).
    #[arg(long, env = "AUSWEEP_MAX_MANIFEST_KIB")]
    pub max_manifest_kib: Option<usize>,
}

/// Flags of `ausweep launch slurm`.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The sbatch recipe each allocation runs (e.g. experiments/deploy/slurm-worker.sbatch).
    #[arg(long)]
    pub recipe: PathBuf,
    /// Most allocations queued or running at once.
    #[arg(long, default_value_t = 4)]
    pub max_allocations: usize,
    /// An extra sbatch option, repeatable (partition, account, time limit, GRES, ...), e.g.
    /// `--sbatch-arg=--partition=gpu --sbatch-arg=--time=12:00:00`.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Workers exit after this many seconds without a job (exported as AUSWEEP_IDLE_EXIT_S).
    #[arg(long, default_value_t = 300)]
    pub idle_exit_s: u64,
    /// Seconds between two looks at the queue.
    #[arg(long, default_value_t = 15)]
    pub poll_s: u64,
    /// Slurm job name of the allocations; only allocations of this name are counted.
    #[arg(long, default_value = "ausweep-worker")]
    pub job_name: String,
    /// The weights directory the workers use (shared with this host): stage-1 jobs whose
    /// starting weights are missing there get no allocation. Unchecked when absent.
    #[arg(long, env = "AUSWEEP_WEIGHTS")]
    pub weights: Option<PathBuf>,
    /// Longest wait, seconds, for one `squeue` or `sbatch` (a hung slurmctld costs one round).
    #[arg(long, default_value_t = 60)]
    pub slurm_timeout_s: u64,
}

/// Output formats of `ausweep report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Markdown tables.
    Md,
    /// Long-format CSV (stable columns).
    Csv,
    /// JSON (stable keys).
    Json,
}

/// `ausweep report` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Sweep id (or, with --store, a sweep name: its newest version).
    pub sweep: String,
    /// Output format on stdout (with --out, every format and the charts are written).
    #[arg(long, value_enum, default_value = "md")]
    pub format: FormatArg,
    /// Write report.md, report.csv, folds.csv, report.json, fig5.svg and fig5.png here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Read a coordinator's state directory (or its db/) instead of asking the coordinator;
    /// the coordinator must not be running on it.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Baselines to compare with (comma-separated ids); default: those the manifest names.
    #[arg(long, value_delimiter = ',')]
    pub baselines: Option<Vec<String>>,
    /// Baselines file (default: the built-in experiments/baselines.yaml).
    #[arg(long)]
    pub baselines_file: Option<PathBuf>,
    /// An inference cost table (`ausweep bench cost --json FILE`): adds "Inference cost" (each
    /// backbone's cost per face beside its best F1) and fig2.svg/png (F1 against faces/s).
    #[arg(long)]
    pub cost: Option<PathBuf>,
    /// How to reach the coordinator (not needed with --store).
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `ausweep score` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Predictions CSV (header of AU columns; probabilities or 0/1; with --intensity, 0–5 in
    /// OpenFace's AU<nn>_r or AU<n> columns).
    #[arg(long)]
    pub pred: PathBuf,
    /// Labels CSV (header of AU columns; 0/1; with --intensity, 0–5).
    #[arg(long)]
    pub labels: PathBuf,
    /// AUs to score (default: every AU column of the labels).
    #[arg(long, value_delimiter = ',')]
    pub aus: Vec<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Score AU intensity (0–5) instead of occurrence: ICC(3,1), MAE and PCC per AU and
    /// averaged (docs/intensity.md).
    #[arg(long)]
    pub intensity: bool,
}

/// How an admin command prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputArg {
    /// Aligned tables for people (the default).
    #[default]
    Table,
    /// One JSON object on one line.
    Json,
    /// JSON lines: one object per event (`watch`); the same as `json` elsewhere.
    Jsonl,
}

impl From<OutputArg> for Output {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Table => Output::Table,
            OutputArg::Json => Output::Json,
            OutputArg::Jsonl => Output::Jsonl,
        }
    }
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Md => Format::Md,
            FormatArg::Csv => Format::Csv,
            FormatArg::Json => Format::Json,
        }
    }
}

impl From<ConnArgs> for Conn {
    fn from(a: ConnArgs) -> Self {
        Conn {
            coordinator: a.coordinator,
            admin_token: a.admin_token,
            ca: a.ca,
            client_cert: a.client_cert,
            client_key: a.client_key,
            tls_domain: a.tls_domain,
        }
    }
}

impl From<ServeArgs> for ServeOptions {
    fn from(a: ServeArgs) -> Self {
        ServeOptions {
            config: a.config,
            listen: a.listen,
            data_dir: a.data_dir,
            checkpoint_dir: a.checkpoint_dir,
            admin_token: a.admin_token,
            join_token: a.join_token,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            tls_client_ca: a.tls_client_ca,
            heartbeat_ms: a.heartbeat_ms,
            lease_ms: a.lease_ms,
            no_worker_grace_s: a.no_worker_grace_s,
            max_store_mib: a.max_store_mib,
            metrics_listen: a.metrics_listen,
            max_manifest_kib: a.max_manifest_kib,
        }
    }
}

impl From<SlurmArgs> for SlurmOptions {
    fn from(a: SlurmArgs) -> Self {
        SlurmOptions {
            conn: a.conn.into(),
            recipe: a.recipe,
            max_allocations: a.max_allocations,
            sbatch_args: a.sbatch_args,
            idle_exit_s: a.idle_exit_s,
            poll_s: a.poll_s,
            job_name: a.job_name,
            weights: a.weights,
            slurm_timeout_s: a.slurm_timeout_s,
        }
    }
}

impl From<ReportArgs> for ReportOptions {
    fn from(a: ReportArgs) -> Self {
        ReportOptions {
            sweep: a.sweep,
            format: a.format.into(),
            out: a.out,
            store: a.store,
            baselines: a.baselines,
            baselines_file: a.baselines_file,
            conn: a.conn.into(),
            cost: a.cost,
        }
    }
}

impl From<ScoreArgs> for ScoreOptions {
    fn from(a: ScoreArgs) -> Self {
        ScoreOptions {
            pred: a.pred,
            labels: a.labels,
            aus: a.aus,
            json: a.json,
            intensity: a.intensity,
        }
    }
}

/// Runs one cluster command.
pub async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Coordinator(a) => coordinator(a.into()).await,
        Command::Submit {
            file,
            max_manifest_kib,
            conn,
            output,
        } => verbs::submit(&conn.into(), &file, max_manifest_kib << 10, output.into()).await,
        Command::Status {
            sweep: None,
            conn,
            output,
        } => verbs::sweeps(&conn.into(), output.into()).await,
        Command::Status {
            sweep: Some(id),
            conn,
            output,
        } => verbs::sweep(&conn.into(), id, output.into()).await,
        Command::Watch {
            sweep,
            conn,
            output,
        } => verbs::watch(&conn.into(), sweep, output.into()).await,
        Command::Cancel {
            sweep,
            conn,
            output,
        } => verbs::cancel(&conn.into(), sweep, output.into()).await,
        Command::ResubmitFailed {
            sweep,
            conn,
            output,
        } => verbs::resubmit_failed(&conn.into(), sweep, output.into()).await,
        Command::Workers { conn, output } => verbs::workers(&conn.into(), output.into()).await,
        Command::Drain {
            worker,
            conn,
            output,
        } => verbs::drain(&conn.into(), worker, output.into()).await,
        Command::Plan {
            file,
            max_manifest_kib,
            output,
        } => verbs::plan(&file, max_manifest_kib << 10, output.into()),
        Command::Report(a) => {
            let text = ausweep_admin::report::cmd::run_report(&a.into()).await?;
            print!("{text}");
            Ok(())
        }
        Command::Score(a) => {
            print!("{}", ausweep_admin::report::cmd::run_score(&a.into())?);
            Ok(())
        }
        Command::Launch(Launch::Slurm(a)) => ausweep_admin::launch::run(a.into()).await,
    }
}

/// `ausweep coordinator`: serves until it fails or Ctrl-C.
async fn coordinator(a: ServeOptions) -> Result<()> {
    let cfg = ausweep_coordinator::settings::config(&a)?;
    let h = ausweep_coordinator::serve(cfg).await?;
    eprintln!("ausweep coordinator listening on {}", h.addr);
    if let Some(m) = h.metrics_addr {
        eprintln!("ausweep coordinator metrics on http://{m}/metrics");
    }
    tokio::select! {
        r = h.wait() => if let Err(e) = r {
            eprintln!("ausweep coordinator: exiting: {e}");
            return Err(e.into());
        },
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    #[test]
    fn score_intensity_flag_reaches_the_options() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["x", "score", "--pred", "p.csv", "--labels", "l.csv"];
            argv.extend(extra);
            let Command::Score(s) = Cli::try_parse_from(argv).unwrap().cmd else {
                panic!()
            };
            ScoreOptions::from(s)
        };
        assert!(!parse(&[]).intensity);
        let o = parse(&["--intensity", "--json", "--aus", "6,12"]);
        assert!(o.intensity && o.json);
        assert_eq!(o.aus, [6, 12]);
    }

    #[test]
    fn report_score_and_metrics_flags_parse() {
        let cli = Cli::try_parse_from([
            "x", "score", "--pred", "p.csv", "--labels", "l.csv", "--aus", "1,2,26",
        ])
        .unwrap();
        let Command::Score(s) = cli.cmd else { panic!() };
        assert_eq!(s.aus, [1, 2, 26]);
        let cli = Cli::try_parse_from([
            "x",
            "report",
            "abc",
            "--format",
            "csv",
            "--store",
            "d",
            "--baselines",
            "eac_net,jaa_net",
        ])
        .unwrap();
        let Command::Report(r) = cli.cmd else {
            panic!()
        };
        assert_eq!(r.sweep, "abc");
        assert_eq!(r.format, FormatArg::Csv);
        assert_eq!(r.baselines.unwrap(), ["eac_net", "jaa_net"]);
        assert!(Cli::try_parse_from(["x", "report", "abc", "--format", "pdf"]).is_err());
        let cli = Cli::try_parse_from([
            "x",
            "coordinator",
            "--metrics-listen",
            "0.0.0.0:9477",
            "--admin-token",
            "a",
            "--join-token",
            "j",
        ])
        .unwrap();
        let Command::Coordinator(a) = cli.cmd else {
            panic!()
        };
        assert_eq!(
            ausweep_coordinator::settings::config(&a.into())
                .unwrap()
                .metrics_listen
                .unwrap()
                .port(),
            9477
        );
    }
}
