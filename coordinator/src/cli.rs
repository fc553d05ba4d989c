//! The admin CLI as a library: `ausweep coordinator|submit|status|watch|cancel|resubmit-failed|workers|drain|report|score`.

use crate::client::{self, ClientTls};
use crate::sched::Timing;
use crate::server::{self, Config, TlsFiles};
use crate::views::{self, Output};
use anyhow::{bail, Context, Result};
use ausweep_proto::v1;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        #[arg(long, default_value_t = crate::manifest::MAX_MANIFEST_BYTES >> 10)]
        max_manifest_kib: usize,
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show all sweeps, or one sweep's jobs with why they are pending.
    Status {
        /// Sweep id.
        sweep: Option<String>,
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Follow a sweep's job changes and progress live.
    Watch {
        /// Sweep id.
        sweep: String,
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Cancel every unfinished job of a sweep.
    Cancel {
        /// Sweep id.
        sweep: String,
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Requeue a sweep's failed and cancelled jobs.
    ResubmitFailed {
        /// Sweep id.
        sweep: String,
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List registered workers.
    Workers {
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Drain a worker: it leases nothing more, checkpoints its running jobs and exits.
    Drain {
        /// Worker id (as `ausweep workers` lists it).
        worker: String,
        #[command(flatten)]
        conn: Conn,
        /// Output: table, json (one object), jsonl (watch: one object per event).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Check a manifest without a coordinator (the same errors as `submit`) and print its jobs,
    /// their dependencies and the device each needs.
    Plan {
        /// Manifest file.
        file: PathBuf,
        /// Largest manifest accepted, KiB (as `submit`).
        #[arg(long, default_value_t = crate::manifest::MAX_MANIFEST_BYTES >> 10)]
        max_manifest_kib: usize,
        /// Output: table, json (one object).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Report a sweep's results next to the published baselines (tables and the Fig. 5 chart).
    Report(crate::report::cmd::ReportArgs),
    /// Score any prediction CSV against labels with the paper's F1 protocol.
    Score(crate::report::cmd::ScoreArgs),
    /// Start workers on demand from a batch system while runnable jobs wait.
    #[command(subcommand)]
    Launch(Launch),
}

/// Batch systems `ausweep launch` submits workers to.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Launch {
    /// Submit worker allocations with sbatch while runnable jobs wait; workers exit when idle.
    Slurm(crate::launch::SlurmArgs),
}

/// How every client command reaches the coordinator: URL, TLS files and the admin token, as
/// flags or environment variables (the same for the admin verbs, `report`, `launch slurm` and
/// `predict --model SWEEP:BACKBONE`).
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
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

impl Conn {
    /// A plaintext connection to `url` (the flags' defaults otherwise).
    pub fn plain(url: &str, admin_token: Option<String>) -> Self {
        Self {
            coordinator: url.into(),
            admin_token,
            ca: None,
            client_cert: None,
            client_key: None,
            tls_domain: None,
        }
    }

    /// The TLS settings these flags give (none: plaintext, or `https://` on the system roots).
    pub fn tls(&self) -> Option<ClientTls> {
        let identity = self.client_cert.clone().zip(self.client_key.clone());
        (self.ca.is_some() || identity.is_some() || self.tls_domain.is_some()).then(|| ClientTls {
            ca: self.ca.clone(),
            identity,
            domain: self.tls_domain.clone(),
        })
    }

    /// The admin token, or an error saying how to give one (`what` names the command).
    pub fn token(&self, what: &str) -> Result<&str> {
        self.admin_token.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "{what} needs the admin token: give --admin-token or AUSWEEP_ADMIN_TOKEN"
            )
        })
    }

    /// An admin client on this connection.
    pub async fn admin(&self, what: &str) -> Result<client::Admin> {
        let token = self.token(what)?;
        let ch = client::connect(&self.coordinator, self.tls().as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", self.coordinator))?;
        Ok(client::admin(ch, token)?)
    }
}

/// `ausweep coordinator` options.
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

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    checkpoint_dir: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    join_token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    heartbeat_ms: Option<u64>,
    lease_ms: Option<u64>,
    no_worker_grace_s: Option<u64>,
    max_checkpoint_mib: Option<u64>,
    max_store_mib: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    max_manifest_kib: Option<usize>,
}

fn read_token(p: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(p)
        .with_context(|| format!("reading {}", p.display()))?
        .trim()
        .to_string())
}

/// Builds the server config: flags and environment over the file over defaults.
pub fn config(a: &ServeArgs) -> Result<Config> {
    let f: FileConfig = match &a.config {
        Some(p) => serde_yaml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}", p.display()))?,
        None => FileConfig::default(),
    };
    let admin = match (&a.admin_token, &f.admin_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => read_token(p)?,
        _ => bail!("give an admin token (--admin-token, AUSWEEP_ADMIN_TOKEN or admin_token_file)"),
    };
    let join = match (&a.join_token, &f.join_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => read_token(p)?,
        _ => bail!("give a join token (--join-token, AUSWEEP_JOIN_TOKEN or join_token_file)"),
    };
    let d = Timing::default();
    let timing = Timing {
        heartbeat_ms: a.heartbeat_ms.or(f.heartbeat_ms).unwrap_or(d.heartbeat_ms),
        lease_ms: a.lease_ms.or(f.lease_ms).unwrap_or(d.lease_ms),
        no_worker_grace_ms: a
            .no_worker_grace_s
            .or(f.no_worker_grace_s)
            .map_or(d.no_worker_grace_ms, |s| s * 1000),
    };
    let tls = match (
        a.tls_cert.clone().or(f.tls_cert),
        a.tls_key.clone().or(f.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca: a.tls_client_ca.clone().or(f.tls_client_ca),
        }),
        (None, None) => None,
        _ => bail!("TLS needs both a certificate and a key"),
    };
    Ok(Config {
        listen: a
            .listen
            .or(f.listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 7077))),
        data_dir: Some(
            a.data_dir
                .clone()
                .or(f.data_dir)
                .unwrap_or_else(|| PathBuf::from("ausweep-data")),
        ),
        checkpoint_dir: a.checkpoint_dir.clone().or(f.checkpoint_dir),
        admin_token: admin,
        join_token: join,
        timing,
        expiry_every: Duration::from_secs(1),
        max_checkpoint_bytes: f.max_checkpoint_mib.unwrap_or(8 << 10) << 20,
        max_store_bytes: a.max_store_mib.or(f.max_store_mib).unwrap_or(0) << 20,
        tls,
        metrics_listen: a.metrics_listen.or(f.metrics_listen),
        max_manifest_bytes: a
            .max_manifest_kib
            .or(f.max_manifest_kib)
            .map_or(crate::manifest::MAX_MANIFEST_BYTES, |k| k << 10),
    })
}

pub(crate) async fn admin(c: &Conn) -> Result<client::Admin> {
    c.admin("this command").await
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Runs one subcommand.
pub async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Coordinator(a) => {
            let cfg = config(&a)?;
            let h = server::serve(cfg).await?;
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
        }
        Command::Submit {
            file,
            max_manifest_kib,
            conn,
            output,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = file.display().to_string();
            // Validate locally first: the same errors, without a round trip.
            crate::manifest::parse_limited(&text, &name, max_manifest_kib << 10)?;
            let r = admin(&conn)
                .await?
                .submit(v1::SubmitRequest {
                    manifest_yaml: text,
                    file_name: name,
                })
                .await?
                .into_inner();
            if output.is_json() {
                println!("{}", views::submitted(&r));
                return Ok(());
            }
            let what = if r.created {
                "submitted"
            } else {
                "already submitted"
            };
            println!(
                "{what}: sweep {} ({} v{}, {} jobs)",
                r.sweep_id, r.name, r.version, r.jobs
            );
        }
        Command::Status {
            sweep: None,
            conn,
            output,
        } => {
            let r = admin(&conn)
                .await?
                .list_sweeps(v1::ListSweepsRequest {})
                .await?
                .into_inner();
            if output.is_json() {
                println!("{}", views::sweeps(&r));
                return Ok(());
            }
            println!(
                "{:<18} {:<16} {:>3} {:>6} {:>8} {:>8} {:>5} {:>7}",
                "SWEEP", "NAME", "V", "TOTAL", "PENDING", "RUNNING", "DONE", "FAILED"
            );
            for s in r.sweeps {
                println!(
                    "{:<18} {:<16} {:>3} {:>6} {:>8} {:>8} {:>5} {:>7}{}",
                    s.sweep_id,
                    s.name,
                    s.version,
                    s.total,
                    s.pending,
                    s.leased,
                    s.succeeded,
                    s.failed,
                    if s.cancelled { " (cancelled)" } else { "" }
                );
            }
        }
        Command::Status {
            sweep: Some(id),
            conn,
            output,
        } => {
            let r = admin(&conn)
                .await?
                .get_sweep(v1::GetSweepRequest {
                    sweep_id: id.clone(),
                })
                .await?
                .into_inner();
            if output.is_json() {
                // The id the coordinator resolved (the argument may be a name).
                let id = r.summary.as_ref().map_or(id, |s| s.sweep_id.clone());
                println!("{}", views::sweep(&id, &r));
                return Ok(());
            }
            if !r.notice.is_empty() {
                println!("note: {}", r.notice);
            }
            println!(
                "{:<14} {:>4} {:>5} {:<9} {:>7} {:>6} {:>4} {:<12} DETAIL",
                "BACKBONE", "FOLD", "STAGE", "STATE", "ATTEMPT", "FAILED", "LOST", "WORKER"
            );
            for j in r.jobs {
                let detail = match (&j.result, &j.progress) {
                    (Some(res), _) => format!("avg F1 {:.3}", res.avg_f1),
                    (None, Some(p)) => {
                        format!("epoch {} step {} loss {:.4}", p.epoch, p.step, p.loss)
                    }
                    _ if !j.pending_reason.is_empty() => j.pending_reason.clone(),
                    _ => j.last_error.clone(),
                };
                // Lost attempts do not use up the failure budget (each one extends it).
                let budget = j.max_attempts.saturating_sub(j.lost_attempts);
                println!(
                    "{:<14} {:>4} {:>5} {:<9} {:>7} {:>6} {:>4} {:<12} {}{}",
                    j.backbone,
                    j.fold,
                    j.stage,
                    views::state_shown(j.state),
                    j.attempt,
                    format!("{}/{budget}", j.failures),
                    j.lost_attempts,
                    j.worker_id,
                    detail,
                    if j.grid_point.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", j.grid_point)
                    }
                );
            }
            println!(
                "checkpoint store: {}{}",
                mib(r.store_checkpoint_bytes),
                if r.store_limit_bytes > 0 {
                    format!(" of {} allowed", mib(r.store_limit_bytes))
                } else {
                    String::new()
                }
            );
        }
        Command::Watch {
            sweep,
            conn,
            output,
        } => {
            let mut client = admin(&conn).await?;
            let status = client
                .get_sweep(v1::GetSweepRequest {
                    sweep_id: sweep.clone(),
                })
                .await?
                .into_inner();
            // Follow the sweep the name resolved to now, not a newer version submitted later.
            let sweep = status
                .summary
                .as_ref()
                .map_or(sweep, |s| s.sweep_id.clone());
            crate::watch::follow(&mut client, &sweep, status, output).await?;
        }
        Command::Cancel {
            sweep,
            conn,
            output,
        } => {
            let r = admin(&conn)
                .await?
                .cancel(v1::CancelRequest {
                    sweep_id: sweep.clone(),
                })
                .await?
                .into_inner();
            if output.is_json() {
                println!("{}", views::cancelled(&r.sweep_id, r.cancelled));
            } else {
                println!("cancelled {} jobs", r.cancelled);
            }
        }
        Command::ResubmitFailed {
            sweep,
            conn,
            output,
        } => {
            let r = admin(&conn)
                .await?
                .resubmit_failed(v1::ResubmitFailedRequest {
                    sweep_id: sweep.clone(),
                })
                .await?
                .into_inner();
            if output.is_json() {
                println!("{}", views::requeued(&r.sweep_id, r.requeued));
            } else {
                println!("requeued {} jobs", r.requeued);
            }
        }
        Command::Plan {
            file,
            max_manifest_kib,
            output,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = file.display().to_string();
            let parsed = crate::manifest::parse_limited(&text, &name, max_manifest_kib << 10)?;
            let jobs = crate::plan::expand(&parsed.sweep_id, &parsed.manifest)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            if output.is_json() {
                println!("{}", views::plan(&parsed, &jobs));
            } else {
                print!("{}", views::plan_table(&parsed, &jobs));
            }
        }
        Command::Report(a) => print!("{}", crate::report::cmd::run_report(&a).await?),
        Command::Score(a) => print!("{}", crate::report::cmd::run_score(&a)?),
        Command::Launch(Launch::Slurm(a)) => crate::launch::run(a).await?,
        Command::Workers { conn, output } => {
            let r = admin(&conn)
                .await?
                .list_workers(v1::ListWorkersRequest {})
                .await?
                .into_inner();
            if output.is_json() {
                println!("{}", views::workers(&r));
                return Ok(());
            }
            println!(
                "{:<20} {:<16} {:<6} {:<40} {:<5} WEIGHTS",
                "WORKER", "HOST", "ALIVE", "DEVICES", "JOBS"
            );
            for w in r.workers {
                let devs: Vec<String> = w
                    .devices
                    .iter()
                    .map(|d| {
                        if d.kind() == v1::DeviceKind::Cuda {
                            format!("cuda{}:{}MiB", d.index, d.memory_mib)
                        } else {
                            format!("cpu{}", d.index)
                        }
                    })
                    .collect();
                let weights: Vec<&str> = w.weights.iter().map(|h| h.name.as_str()).collect();
                println!(
                    "{:<20} {:<16} {:<6} {:<40} {:<5} {}{}",
                    w.worker_id,
                    w.hostname,
                    if w.alive { "yes" } else { "no" },
                    devs.join(","),
                    w.leased_jobs.len(),
                    if weights.is_empty() {
                        "none".to_string()
                    } else {
                        weights.join(",")
                    },
                    if w.draining { " (draining)" } else { "" }
                );
            }
        }
        Command::Drain {
            worker,
            conn,
            output,
        } => {
            let r = admin(&conn)
                .await?
                .drain_worker(v1::DrainWorkerRequest {
                    worker_id: worker.clone(),
                })
                .await?
                .into_inner();
            if !r.found {
                bail!("no worker `{worker}` (see `ausweep workers`)");
            }
            if output.is_json() {
                println!("{}", views::drained(&worker, &r));
                return Ok(());
            }
            println!(
                "draining {worker}: {} running job(s) stop at their next checkpoint",
                r.leased_jobs.len()
            );
        }
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
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9000\nlease_ms: 60000\nheartbeat_ms: 10000\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "coordinator",
            "--config",
            file.to_str().unwrap(),
            "--lease-ms",
            "45000",
            "--admin-token",
            "a",
            "--join-token",
            "j",
        ])
        .unwrap();
        let Command::Coordinator(a) = cli.cmd else {
            panic!()
        };
        let c = config(&a).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!((c.timing.lease_ms, c.timing.heartbeat_ms), (45_000, 10_000));
        assert_eq!(c.metrics_listen, None);
        std::fs::write(&file, "metrics_listen: 127.0.0.1:9477\n").unwrap();
        assert_eq!(config(&a).unwrap().metrics_listen.unwrap().port(), 9477);
        std::fs::write(&file, "lisen: 1\n").unwrap();
        assert!(config(&a).unwrap_err().to_string().contains("c.yaml"));
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
        assert_eq!(r.format, crate::report::cmd::Format::Csv);
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
        assert_eq!(config(&a).unwrap().metrics_listen.unwrap().port(), 9477);
    }
}
