//! Why a TLS connection to a coordinator is refused, in one line: one handshake of our own
//! (rustls, as tonic uses) before the channel's, classified from rustls' typed errors. tonic
//! alone reports a refused client certificate as "broken pipe" on the first call.

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// How long the probe waits for each of connect, handshake and the server's first answer.
const WAIT: Duration = Duration::from_secs(10);

/// Why a TLS connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRefusal {
    /// The coordinator asks for a client certificate (mutual TLS) and none was given.
    #[error("the coordinator requires a client certificate (mutual TLS): give --client-cert and --client-key (AUSWEEP_CLIENT_CERT, AUSWEEP_CLIENT_KEY)")]
    ClientCertRequired,
    /// The coordinator refused the client certificate that was given.
    #[error("the coordinator refused the client certificate {cert} ({alert}): is it signed by the CA the coordinator trusts (its --tls-client-ca)?")]
    ClientCertRefused {
        /// The certificate file.
        cert: String,
        /// The TLS alert the coordinator sent.
        alert: String,
    },
    /// The coordinator's certificate is signed by a CA we do not trust.
    #[error("the coordinator's certificate is signed by an unknown CA: give the CA that signed it with --ca (AUSWEEP_CA){}", ca_given(.ca))]
    UnknownCa {
        /// The CA file given, if any.
        ca: Option<String>,
    },
    /// The coordinator's certificate does not name the host in the URL.
    #[error("the coordinator's certificate is not valid for the name `{name}`: connect by a name it holds, or give --tls-domain")]
    NameMismatch {
        /// The name that was checked.
        name: String,
    },
    /// The coordinator's certificate has expired (or is not valid yet).
    #[error("the coordinator's certificate has expired or is not yet valid: renew it")]
    Expired,
    /// The coordinator does not speak TLS at that address.
    #[error(
        "the coordinator does not answer TLS at this address: is it plaintext (then use http://)?"
    )]
    NotTls,
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Any other TLS failure, with rustls' words.
    #[error("TLS: {0}")]
    Other(String),
}

fn ca_given(ca: &Option<String>) -> String {
    ca.as_ref()
        .map(|c| format!(" ({c} did not sign it)"))
        .unwrap_or_default()
}

/// Records whether the server asked for a client certificate, and answers with ours if any.
#[derive(Debug)]
struct Recorder {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for Recorder {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }
    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

fn file_err(p: &Path, why: impl std::fmt::Display) -> TlsRefusal {
    TlsRefusal::File {
        path: p.display().to_string(),
        why: why.to_string(),
    }
}

fn certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, TlsRefusal> {
    let v: Vec<_> = CertificateDer::pem_file_iter(p)
        .map_err(|e| file_err(p, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(p, e))?;
    if v.is_empty() {
        return Err(file_err(p, "no PEM certificate in it"));
    }
    Ok(v)
}

/// The client configuration the probe uses: the given CA (or the system's roots), our identity.
fn config(
    ca: Option<&Path>,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<(rustls::ClientConfig, Arc<Recorder>), TlsRefusal> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(p) => {
            for c in certs(p)? {
                roots.add(c).map_err(|e| file_err(p, e))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let key = match identity {
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
            let signer = provider
                .key_provider
                .load_private_key(der)
                .map_err(|e| file_err(key, e))?;
            Some(Arc::new(CertifiedKey::new(chain, signer)))
        }
        None => None,
    };
    let recorder = Arc::new(Recorder {
        key,
        asked: AtomicBool::new(false),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsRefusal::Other(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(recorder.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok((cfg, recorder))
}

/// The typed rustls error inside an I/O error, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

fn classify(e: &std::io::Error, name: &str, ca: Option<&Path>, cert: Option<&Path>) -> TlsRefusal {
    use rustls::Error as E;
    match rustls_error(e) {
        Some(E::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => TlsRefusal::UnknownCa {
                ca: ca.map(|p| p.display().to_string()),
            },
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsRefusal::NameMismatch { name: name.into() }
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsRefusal::Expired,
            other => TlsRefusal::Other(format!("the coordinator's certificate: {other:?}")),
        },
        Some(E::AlertReceived(AlertDescription::CertificateRequired)) => match cert {
            None => TlsRefusal::ClientCertRequired,
            Some(c) => TlsRefusal::ClientCertRefused {
                cert: c.display().to_string(),
                alert: "certificate required".into(),
            },
        },
        Some(E::AlertReceived(a)) if cert.is_some() => TlsRefusal::ClientCertRefused {
            cert: cert.map(|c| c.display().to_string()).unwrap_or_default(),
            alert: format!("{a:?}"),
        },
        Some(E::InvalidMessage(_)) | Some(E::InappropriateMessage { .. }) => TlsRefusal::NotTls,
        Some(other) => TlsRefusal::Other(other.to_string()),
        None => TlsRefusal::Other(e.to_string()),
    }
}

/// Shakes hands with `host:port` as a client with `ca` (or the system roots) and `identity`,
/// then sends HTTP/2's preface and waits for the server's first bytes: the server has then
/// either accepted us or said why not. `Ok` when it accepted, or when the TCP connection itself
/// failed (the channel's own connect reports that).
pub async fn probe(
    host: &str,
    port: u16,
    domain: Option<&str>,
    ca: Option<&Path>,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<(), TlsRefusal> {
    let (cfg, recorder) = config(ca, identity)?;
    let name = domain
        .unwrap_or(host)
        .trim_matches(|c| c == '[' || c == ']');
    let server = ServerName::try_from(name.to_string())
        .map_err(|e| TlsRefusal::Other(format!("`{name}` is not a server name: {e}")))?;
    let tcp = match tokio::time::timeout(WAIT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => s,
        _ => return Ok(()),
    };
    let cert = identity.map(|(c, _)| c.as_path());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let mut tls = match tokio::time::timeout(WAIT, connector.connect(server, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(classify(&e, name, ca, cert)),
        Err(_) => return Err(TlsRefusal::Other("the TLS handshake timed out".into())),
    };
    // HTTP/2's client preface and an empty SETTINGS frame: a server that accepted us answers
    // with its SETTINGS; one that refused our (missing) certificate sends its alert instead.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let asked = || recorder.asked.load(Ordering::SeqCst);
    let refused = |e: Option<std::io::Error>| match e {
        Some(e) if rustls_error(&e).is_some() => classify(&e, name, ca, cert),
        _ if asked() && cert.is_none() => TlsRefusal::ClientCertRequired,
        Some(e) => TlsRefusal::Other(format!("the coordinator closed the connection: {e}")),
        None => TlsRefusal::Other("the coordinator closed the connection".into()),
    };
    if let Err(e) = tls.write_all(&hello).await {
        return Err(refused(Some(e)));
    }
    let _ = tls.flush().await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, tls.read(&mut buf)).await {
        Ok(Ok(0)) => Err(refused(None)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(refused(Some(e))),
        // A server that says nothing has not refused us; the channel will tell.
        Err(_) => Ok(()),
    }
}
