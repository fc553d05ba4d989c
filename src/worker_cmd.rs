//! `ausweep worker`'s flags, turned into the agent's plain [`Config`].

use ausweep_agent::Config;
use std::path::PathBuf;

/// Flags of `ausweep worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Coordinator URL (`http://host:port`, or `https://` with TLS).
    #[arg(long, env = "AUSWEEP_COORDINATOR")]
    pub coordinator: String,
    /// File holding the worker join token.
    #[arg(long, env = "AUSWEEP_JOIN_TOKEN_FILE")]
    pub join_token_file: PathBuf,
    /// GPU indices to offer (default: all NVML lists), e.g. `0,2`.
    #[arg(long, value_parser = parse_devices)]
    pub devices: Option<DeviceList>,
    /// Offer the CPU when no GPU is found.
    #[arg(long)]
    pub allow_cpu: bool,
    /// With --allow-cpu: offer the CPU as this many devices, each trainer on an equal share of
    /// the cores (two one-thread trainers train ~1.5x the images of one two-thread trainer on
    /// small images).
    #[arg(long, default_value_t = 1, env = "AUSWEEP_CPU_SLOTS",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub cpu_slots: u16,
    /// With --allow-cpu: cores this worker's trainers share (default: all the process may use),
    /// e.g. two workers on one node with `--cpu-cores` half each.
    #[arg(long, env = "AUSWEEP_CPU_CORES", value_parser = clap::value_parser!(u16).range(1..))]
    pub cpu_cores: Option<u16>,
    /// Working directory: attempt directories and the checkpoint cache.
    #[arg(long, default_value = "ausweep-worker")]
    pub work_dir: PathBuf,
    /// Most jobs run at once (default: one per device).
    #[arg(long)]
    pub max_jobs: Option<usize>,
    /// Worker name, unique per node (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate; enables TLS (`https://`
    /// without it uses the system's roots). `--ca` as for every client command.
    #[arg(long, visible_alias = "ca", env = "AUSWEEP_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --tls-key).
    #[arg(
        long,
        visible_alias = "client-cert",
        env = "AUSWEEP_CLIENT_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(
        long,
        visible_alias = "client-key",
        env = "AUSWEEP_CLIENT_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Server name to verify in the coordinator's certificate.
    #[arg(long, env = "AUSWEEP_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Heartbeat interval in ms (default: what the coordinator asks for).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Longest wait, seconds, for running jobs to reach their next checkpoint on SIGTERM.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout_s: u64,
    /// Exit (0) after this many seconds without a job (`ausweep launch` sets it for the workers
    /// it starts); never when absent.
    #[arg(long, env = "AUSWEEP_IDLE_EXIT_S")]
    pub idle_exit_s: Option<u64>,
    /// Lease nothing while the work directory's disk has less free space than this, MiB.
    #[arg(long, default_value_t = 1024, env = "AUSWEEP_MIN_FREE_DISK_MIB")]
    pub min_free_disk_mib: u64,
    /// How long to keep trying to reach the coordinator at start, seconds.
    #[arg(long, default_value_t = 300)]
    pub connect_timeout_s: u64,
    /// Weights directory the trainers read and the worker advertises (default: $AUSWEEP_WEIGHTS,
    /// else ~/.cache/ausweep/weights). Files added with `ausweep weights fetch/import` are
    /// advertised at the next heartbeat.
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// Trainer executable (default: this binary's `train`); for tests and wrappers.
    #[arg(long, env = "AUSWEEP_TRAINER", hide = true)]
    pub trainer: Option<PathBuf>,
}

/// A parsed `--devices` list.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceList(pub Vec<u32>);

impl From<WorkerArgs> for Config {
    fn from(a: WorkerArgs) -> Self {
        Config {
            coordinator: a.coordinator,
            join_token_file: a.join_token_file,
            devices: a.devices.map(|d| d.0),
            allow_cpu: a.allow_cpu,
            cpu_slots: a.cpu_slots,
            cpu_cores: a.cpu_cores,
            work_dir: a.work_dir,
            max_jobs: a.max_jobs,
            name: a.name,
            tls_ca: a.tls_ca,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            tls_domain: a.tls_domain,
            heartbeat_ms: a.heartbeat_ms,
            drain_timeout_s: a.drain_timeout_s,
            idle_exit_s: a.idle_exit_s,
            min_free_disk_mib: a.min_free_disk_mib,
            connect_timeout_s: a.connect_timeout_s,
            weights_dir: a.weights_dir,
            trainer: a.trainer,
        }
    }
}

fn parse_devices(s: &str) -> Result<DeviceList, String> {
    ausweep_agent::devices::parse_list(s).map(DeviceList)
}
