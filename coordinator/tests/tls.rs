//! TLS and mutual TLS over real loopback connections, with certificates made for the test.

use ausweep_coordinator::client::{self, ClientTls};
use ausweep_coordinator::{serve, TlsFiles};
use ausweep_proto::tls_probe::TlsRefusal;
use ausweep_proto::v1;
use ausweep_testkit::{rpc, ADMIN};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use tonic::Code;

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

/// Why a call failed: the gRPC code (`None` when the channel did not connect) and every cause
/// in the error's chain, outermost first.
#[derive(Debug, PartialEq)]
struct Failure {
    code: Option<Code>,
    causes: String,
    /// Why TLS was refused, when the connect said so.
    refusal: Option<TlsRefusal>,
}

fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut v = vec![e.to_string()];
    let mut s = e.source();
    while let Some(c) = s {
        v.push(c.to_string());
        s = c.source();
    }
    v.join(" <- ")
}

/// Asserts that `r` failed with gRPC code `code` (`None`: the channel did not connect) and a
/// cause that contains one of `why`; `what` names the case.
fn assert_fails(what: &str, r: Result<usize, Failure>, code: Option<Code>, why: &[&str]) {
    match r {
        Ok(n) => panic!("{what}: answered ({n} sweeps); expected {code:?} with one of {why:?}"),
        Err(f) => assert!(
            f.code == code && why.iter().any(|w| f.causes.contains(w)),
            "{what}: expected {code:?} with one of {why:?}, got {f:?}"
        ),
    }
}

async fn list(url: &str, tls: Option<&ClientTls>) -> Result<usize, Failure> {
    let ch = client::connect(url, tls).await.map_err(|e| Failure {
        code: None,
        causes: causes(&*e),
        refusal: e.downcast_ref::<TlsRefusal>().cloned(),
    })?;
    let mut a = client::admin(ch, ADMIN).expect("admin client");
    a.list_sweeps(v1::ListSweepsRequest {})
        .await
        .map(|r| r.into_inner().sweeps.len())
        .map_err(|s| Failure {
            code: Some(s.code()),
            causes: causes(&s),
            refusal: None,
        })
}

/// Asserts that connecting failed with this TLS refusal, and that its message is one line.
fn assert_refused(what: &str, r: Result<usize, Failure>, want: TlsRefusal) {
    match r {
        Ok(n) => panic!("{what}: answered ({n} sweeps); expected {want:?}"),
        Err(f) => {
            assert_eq!(f.refusal.as_ref(), Some(&want), "{what}: {f:?}");
            assert!(!f.causes.contains('\n'), "{what}: {}", f.causes);
        }
    }
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_refuses_plaintext() {
    let p = pki();
    let mut cfg = rpc::config(None);
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
    // Plaintext against the TLS port: the connection opens (the server is up) and the server
    // hangs up on the HTTP/2 preface, which is no TLS record; no gRPC answer comes.
    assert_fails(
        "plaintext against the TLS port",
        list(&format!("http://127.0.0.1:{}", h.addr.port()), None).await,
        Some(Code::Unknown),
        &[
            "broken pipe",
            "connection reset",
            "Connection reset",
            "connection closed",
        ],
    );
    // A client that does not trust the server's CA refuses the handshake.
    let distrusting = ClientTls {
        ca: Some(p.stranger.0.clone()),
        identity: None,
        domain: Some("localhost".into()),
    };
    assert_refused(
        "a client trusting another CA",
        list(&url, Some(&distrusting)).await,
        TlsRefusal::UnknownCa {
            ca: Some(p.stranger.0.display().to_string()),
        },
    );
    // `https://` without a CA: the system's roots, which do not hold the test's CA.
    assert_refused(
        "https without --ca",
        list(&url, None).await,
        TlsRefusal::UnknownCa { ca: None },
    );
    // A client that expects another name refuses the certificate.
    let elsewhere = ClientTls {
        ca: Some(p.ca.clone()),
        identity: None,
        domain: Some("example.org".into()),
    };
    assert_refused(
        "a client expecting another server name",
        list(&url, Some(&elsewhere)).await,
        TlsRefusal::NameMismatch {
            name: "example.org".into(),
        },
    );
    h.kill().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let p = pki();
    let mut cfg = rpc::config(None);
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
    // TLS 1.3: the client finishes its side of the handshake, and only the server's alert
    // after it says why; the connect waits for it and names it.
    assert_refused(
        "no client certificate",
        list(&url, Some(&with(None))).await,
        TlsRefusal::ClientCertRequired,
    );
    assert_refused(
        "a client certificate from another CA",
        list(&url, Some(&with(Some(p.stranger.clone())))).await,
        TlsRefusal::ClientCertRefused {
            cert: p.stranger.0.display().to_string(),
            alert: "UnknownCA".into(),
        },
    );
    h.kill().await;
}

#[tokio::test]
async fn an_expired_certificate_and_a_plaintext_coordinator_are_named() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let root = ca("ausweep test CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &root).unwrap();
    let mut cfg = rpc::config(None);
    cfg.tls = Some(TlsFiles {
        cert: write(dir.path(), "old.pem", cert.pem()),
        key: write(dir.path(), "old.key", key.serialize_pem()),
        client_ca: None,
    });
    let ca_file = write(dir.path(), "ca.pem", root.pem());
    let h = serve(cfg).await.unwrap();
    let trusting = ClientTls {
        ca: Some(ca_file),
        ..Default::default()
    };
    assert_refused(
        "an expired server certificate",
        list(
            &format!("https://localhost:{}", h.addr.port()),
            Some(&trusting),
        )
        .await,
        TlsRefusal::Expired,
    );
    h.kill().await;
    // `https://` against a plaintext coordinator.
    let h = serve(rpc::config(None)).await.unwrap();
    let plain = ClientTls {
        ca: Some(p.ca.clone()),
        ..Default::default()
    };
    assert_refused(
        "https against a plaintext coordinator",
        list(
            &format!("https://localhost:{}", h.addr.port()),
            Some(&plain),
        )
        .await,
        TlsRefusal::NotTls,
    );
    h.kill().await;
}
