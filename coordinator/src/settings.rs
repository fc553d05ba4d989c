//! The coordinator's settings: options given on the command line over its YAML config file
//! over defaults, merged into the server's [`Config`].

use crate::sched::Timing;
use crate::server::{Config, TlsFiles};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `ausweep coordinator`'s options as given (flags and environment; the binary fills them).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// YAML config file (keys as the flags, with `_`).
    pub config: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// State directory (sled db and checkpoints).
    pub data_dir: Option<PathBuf>,
    /// Checkpoint files here instead of <data-dir>/checkpoints (e.g. a bigger or separate disk).
    pub checkpoint_dir: Option<PathBuf>,
    /// Admin token.
    pub admin_token: Option<String>,
    /// Worker join token.
    pub join_token: Option<String>,
    /// TLS certificate (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA for client certificates (enables mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: Option<u64>,
    /// Lease length, ms.
    pub lease_ms: Option<u64>,
    /// Seconds without any worker before pending jobs say so.
    pub no_worker_grace_s: Option<u64>,
    /// Most MiB of checkpoints the store may hold (0: no limit); uploads past it are refused.
    pub max_store_mib: Option<u64>,
    /// Serve Prometheus `/metrics` on this address (e.g. 0.0.0.0:9477).
    pub metrics_listen: Option<SocketAddr>,
    /// Largest manifest `submit` accepts, KiB (default 256).
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
pub fn config(a: &ServeOptions) -> Result<Config> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9000\nlease_ms: 60000\nheartbeat_ms: 10000\n",
        )
        .unwrap();
        let a = ServeOptions {
            config: Some(file.clone()),
            lease_ms: Some(45_000),
            admin_token: Some("a".into()),
            join_token: Some("j".into()),
            ..ServeOptions::default()
        };
        let c = config(&a).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!((c.timing.lease_ms, c.timing.heartbeat_ms), (45_000, 10_000));
        assert_eq!(c.metrics_listen, None);
        std::fs::write(&file, "metrics_listen: 127.0.0.1:9477\n").unwrap();
        assert_eq!(config(&a).unwrap().metrics_listen.unwrap().port(), 9477);
        std::fs::write(&file, "lisen: 1\n").unwrap();
        let e = format!("{:#}", config(&a).unwrap_err());
        assert!(e.contains("c.yaml") && e.contains("lisen"), "{e}");
    }
}
