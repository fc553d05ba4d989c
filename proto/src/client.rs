//! Client helpers: channels (optionally TLS) and clients that attach ausweep's metadata.

use crate::v1::{admin_client::AdminClient, worker_client::WorkerClient};
use crate::wire::{
    bearer, AUTH_HEADER, MAX_MESSAGE_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION, WORKER_HEADER,
};
use std::path::PathBuf;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Adds fixed metadata to every call.
#[derive(Clone, Debug)]
pub struct Meta(Vec<(&'static str, AsciiMetadataValue)>);

impl Interceptor for Meta {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        for (k, v) in &self.0 {
            req.metadata_mut()
                .insert(MetadataKey::from_static(k), v.clone());
        }
        Ok(req)
    }
}

fn value(s: &str) -> Result<AsciiMetadataValue, Status> {
    s.parse()
        .map_err(|_| Status::invalid_argument("token or id is not ASCII"))
}

/// An admin client.
pub type Admin = AdminClient<InterceptedService<Channel, Meta>>;
/// A worker client.
pub type Worker = WorkerClient<InterceptedService<Channel, Meta>>;

/// TLS for clients (PEM files).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA that signed the coordinator's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Name to verify in the server certificate.
    pub domain: Option<String>,
}

/// Connects to a coordinator (`http://host:port` or `https://...`). `https://` always speaks
/// TLS: with `tls.ca`, or else the system's roots. A refused TLS connection is a
/// [`TlsRefusal`](crate::tls_probe::TlsRefusal) naming the cause.
pub async fn connect(
    url: &str,
    tls: Option<&ClientTls>,
) -> Result<Channel, Box<dyn std::error::Error + Send + Sync>> {
    let mut ep = Endpoint::from_shared(url.to_string())?.tcp_nodelay(true);
    let https = ep.uri().scheme_str() == Some("https");
    let system = ClientTls::default();
    let tls = tls.or(https.then_some(&system));
    if let (true, Some(t)) = (https, tls) {
        let uri = ep.uri();
        let host = uri.host().unwrap_or("localhost");
        let port = uri.port_u16().unwrap_or(443);
        crate::tls_probe::probe(
            host,
            port,
            t.domain.as_deref(),
            t.ca.as_deref(),
            t.identity.as_ref(),
        )
        .await?;
    }
    if let Some(t) = tls {
        let mut c = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &t.ca {
            c = c.ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
        }
        if let Some((cert, key)) = &t.identity {
            c = c.identity(Identity::from_pem(
                std::fs::read(cert)?,
                std::fs::read(key)?,
            ));
        }
        if let Some(d) = &t.domain {
            c = c.domain_name(d.clone());
        }
        ep = ep.tls_config(c)?;
    }
    Ok(ep.connect().await?)
}

/// An admin client sending the admin token.
pub fn admin(ch: Channel, token: &str) -> Result<Admin, Status> {
    let meta = Meta(vec![(AUTH_HEADER, value(&bearer(token))?)]);
    Ok(AdminClient::with_interceptor(ch, meta).max_decoding_message_size(64 << 20))
}

/// A worker client: with `worker_id` it sends the session token, without it the join token.
pub fn worker(ch: Channel, worker_id: Option<&str>, token: &str) -> Result<Worker, Status> {
    let mut pairs = vec![
        (AUTH_HEADER, value(&bearer(token))?),
        (PROTOCOL_HEADER, value(&PROTOCOL_VERSION.to_string())?),
    ];
    if let Some(id) = worker_id {
        pairs.push((WORKER_HEADER, value(id)?));
    }
    Ok(
        WorkerClient::with_interceptor(ch, Meta(pairs))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}
