//! How a client reaches the coordinator: one connection description for every admin verb,
//! `report`, `launch slurm` and `predict --model SWEEP:BACKBONE`.

use anyhow::Result;
use ausweep_coordinator::client::{self, ClientTls};
use std::path::PathBuf;

/// How every client command reaches the coordinator: URL, TLS files and the admin token (the
/// binary fills it from the same flags and environment for every client command).
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// Coordinator URL (`https://` speaks TLS: with --ca, or else the system's roots).
    pub coordinator: String,
    /// Admin token.
    pub admin_token: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a coordinator that requires mutual TLS (with --client-key).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Server name to verify in the coordinator's certificate (default: the URL's host).
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
