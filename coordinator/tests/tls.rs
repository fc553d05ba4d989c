//! TLS and mutual TLS over real loopback connections, with certificates made for the test.

use ausweep_coordinator::client::{self, ClientTls};
use ausweep_coordinator::{serve, Config, TlsFiles};
use ausweep_proto::v1;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};

const ADMIN: &str = "admin-token-0123456789";
const JOIN: &str = "join-token-0123456789";

/// A CA, a server certificate for `localhost`, and a client certificate, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
}

fn write(dir: &Path, name: &str, pem: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(dir: &Path, name: &str, issuer: &CertifiedIssuer<'static, KeyPair>) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    (
        write(dir, &format!("{name}.pem"), cert.pem()),
        write(dir, &format!("{name}.key"), key.serialize_pem()),
    )
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("ausweep test CA");
    let other = ca("someone else's CA");
    Pki {
        ca: write(dir.path(), "ca.pem", root.pem()),
        server: leaf(dir.path(), "server", &root),
        client: leaf(dir.path(), "client", &root),
        stranger: leaf(dir.path(), "stranger", &other),
        _dir: dir,
    }
}

async fn list(url: &str, tls: Option<&ClientTls>) -> Result<usize, String> {
    let ch = client::connect(url, tls).await.map_err(|e| e.to_string())?;
    let mut a = client::admin(ch, ADMIN).map_err(|e| e.to_string())?;
    a.list_sweeps(v1::ListSweepsRequest {})
        .await
        .map(|r| r.into_inner().sweeps.len())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_refuses_plaintext() {
    let p = pki();
    let mut cfg = Config::local(ADMIN, JOIN, None);
    cfg.tls = Some(TlsFiles {
        cert: p.server.0.clone(),
        key: p.server.1.clone(),
        client_ca: None,
    });
    let h = serve(cfg).await.unwrap();
    let url = format!("https://localhost:{}", h.addr.port());
    let trusting = ClientTls {
        ca: Some(p.ca.clone()),
        identity: None,
        domain: Some("localhost".into()),
    };
    assert_eq!(list(&url, Some(&trusting)).await, Ok(0));
    // Plaintext against a TLS port gets no answer.
    assert!(list(&format!("http://127.0.0.1:{}", h.addr.port()), None)
        .await
        .is_err());
    // A client that does not trust the server's CA refuses the handshake.
    let distrusting = ClientTls {
        ca: Some(p.stranger.0.clone()),
        identity: None,
        domain: Some("localhost".into()),
    };
    assert!(list(&url, Some(&distrusting)).await.is_err());
    h.kill().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let p = pki();
    let mut cfg = Config::local(ADMIN, JOIN, None);
    cfg.tls = Some(TlsFiles {
        cert: p.server.0.clone(),
        key: p.server.1.clone(),
        client_ca: Some(p.ca.clone()),
    });
    let h = serve(cfg).await.unwrap();
    let url = format!("https://localhost:{}", h.addr.port());
    let with = |identity: Option<(PathBuf, PathBuf)>| ClientTls {
        ca: Some(p.ca.clone()),
        identity,
        domain: Some("localhost".into()),
    };
    assert_eq!(list(&url, Some(&with(Some(p.client.clone())))).await, Ok(0));
    assert!(
        list(&url, Some(&with(None))).await.is_err(),
        "no client certificate"
    );
    assert!(
        list(&url, Some(&with(Some(p.stranger.clone()))))
            .await
            .is_err(),
        "certificate from another CA"
    );
    h.kill().await;
}
