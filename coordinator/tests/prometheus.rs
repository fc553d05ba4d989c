//! A real Prometheus server (Debian's `prometheus` package) scrapes a running coordinator;
//! every query of the Grafana dashboard must return data through Prometheus's HTTP API, and
//! `promtool` must accept our exposition, the alert rules and the scrape config, and the alert
//! rules must pass their unit tests (experiments/prometheus/alerts_test.yml): each alert fires in
//! one case and stays quiet in another.

use ausweep_coordinator::client;
use ausweep_coordinator::{serve, Config};
use ausweep_proto::v1;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ausweep_testkit::rpc;
use ausweep_testkit::wait::{self, Seen};
use ausweep_testkit::{ADMIN, JOIN};
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

/// A plain HTTP/1.0 GET; returns the body of a 200 answer.
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{}: {body}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn promtool(args: &[&str], stdin: Option<&str>) {
    let mut c = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/setup.sh installs it)");
    if let Some(text) = stdin {
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every PromQL expression of the dashboard (panel targets and template variables).
fn dashboard_queries() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("experiments/grafana/ausweep.json")).unwrap(),
    )
    .unwrap();
    let mut q = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            q.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"sweep") && vars.contains(&"baseline"),
        "{vars:?}"
    );
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(def) = v["definition"].as_str() {
            // label_values(metric, label) -> the metric must have series.
            let inner = def
                .trim_start_matches("label_values(")
                .trim_end_matches(')');
            q.push(inner.split(',').next().unwrap().trim().to_string());
        }
    }
    q
}

/// Drives a sweep to one finished and one running job; returns the sweep id and a task that
/// keeps the running job's worker heartbeating (so its lease outlives any wait on Prometheus).
// Long function: one sweep driven through every metric the dashboard reads, told in order.
async fn drive_a_sweep(addr: SocketAddr) -> (String, tokio::task::JoinHandle<()>) {
    let ch = client::connect(&format!("http://{addr}"), None)
        .await
        .unwrap();
    let mut admin = client::admin(ch.clone(), ADMIN).unwrap();
    let manifest = std::fs::read_to_string(repo("experiments/demo.yaml")).unwrap();
    let sweep = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: manifest,
            file_name: "demo.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep_id;
    let mut w = rpc::register_with(
        &ch,
        "w1",
        vec![
            rpc::cpu(),
            v1::Device {
                index: 1,
                kind: v1::DeviceKind::Cuda as i32,
                memory_mib: 81_559,
                name: "H100".into(),
                healthy: true,
            },
        ],
    )
    .await
    .client;
    w.report_device_stats(v1::DeviceStatsRequest {
        devices: vec![v1::DeviceStats {
            index: 1,
            memory_free_mib: Some(40_000),
            utilization: Some(0.9),
            temperature_c: Some(64.0),
        }],
    })
    .await
    .unwrap();
    // One job completes (final F1), a second one stays running with progress.
    let a = w
        .lease(v1::LeaseRequest { device_index: 0 })
        .await
        .unwrap()
        .into_inner()
        .assignment
        .unwrap();
    // The bytes stand in for a checkpoint (the coordinator checks only their SHA-256).
    let (chunks, sha) = ausweep_testkit::rpc::chunks(&a, b"checkpoint bytes", Default::default());
    w.upload_checkpoint(tokio_stream::iter(chunks))
        .await
        .unwrap();
    let aus = [1u32, 2, 4, 6, 9, 12, 25, 26]
        .iter()
        .map(|&au| v1::AuScore {
            au,
            f1: 0.4,
            precision: 0.4,
            recall: 0.4,
            threshold: 0.5,
        })
        .collect();
    let done = w
        .complete(v1::CompleteRequest {
            job_id: a.job_id.clone(),
            fencing_token: a.fencing_token,
            result: Some(v1::JobResult {
                aus,
                avg_f1: 0.4,
                params_total: 2_000_000,
                params_trainable: 10_000,
                train_seconds: 10.0,
                images_per_sec: 100.0,
                checkpoint_sha256: sha,
                dataset: None,
                intensity: None,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(done.accepted);
    let b = w
        .lease(v1::LeaseRequest { device_index: 0 })
        .await
        .unwrap()
        .into_inner()
        .assignment
        .unwrap();
    w.report_progress(v1::ProgressRequest {
        job_id: b.job_id.clone(),
        fencing_token: b.fencing_token,
        progress: Some(v1::Progress {
            epoch: 1,
            step: 10,
            loss: 0.7,
            images_per_sec: 80.0,
            val_f1: [("AU1".to_string(), 0.3), ("AU12".to_string(), 0.6)].into(),
        }),
    })
    .await
    .unwrap();
    // An unauthenticated call, so a non-OK code shows up too.
    let mut bad = client::admin(
        client::connect(&format!("http://{addr}"), None)
            .await
            .unwrap(),
        "wrong-token-0123456789",
    )
    .unwrap();
    let refused = bad.list_sweeps(v1::ListSweepsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let beat = tokio::spawn(async move {
        loop {
            let r = w
                .heartbeat(v1::HeartbeatRequest {
                    hostname: "node1".into(),
                    devices: vec![],
                    weights: None,
                    leases: vec![v1::ActiveLease {
                        job_id: b.job_id.clone(),
                        fencing_token: b.fencing_token,
                    }],
                })
                .await;
            if r.is_err() {
                return; // the coordinator shut down
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    (sweep, beat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long function: one scenario against a real Prometheus, told in order.
async fn prometheus_scrapes_every_dashboard_query() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} missing: install the Debian package `prometheus` (scripts/setup.sh does)"
    );
    promtool(
        &[
            "check",
            "rules",
            repo("experiments/prometheus/alerts.yml").to_str().unwrap(),
        ],
        None,
    );
    promtool(
        &[
            "check",
            "config",
            "--syntax-only",
            repo("experiments/prometheus/prometheus.yml")
                .to_str()
                .unwrap(),
        ],
        None,
    );

    let mut cfg = Config::local(ADMIN, JOIN, None);
    cfg.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let h = serve(cfg).await.unwrap();
    let maddr = h.metrics_addr.unwrap();
    let (sweep, beat) = drive_a_sweep(h.addr).await;
    let body = tokio::task::spawn_blocking(move || get(maddr, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    promtool(&["check", "metrics"], Some(&body));

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: ausweep\n    static_configs: [{{targets: ['{maddr}']}}]\n",
            repo("experiments/prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    // Prometheus cannot report a port it picked, so a free one is chosen here; another process
    // may take it first, so a start that dies without serving is retried on a new port.
    let (_guard, port) = (0..5)
        .find_map(|i| {
            let port = free_port();
            let mut child = Kill(
                Command::new(PROMETHEUS)
                    .arg(format!("--config.file={}", conf.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join(format!("data-{i}")).display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let up = wait::until_blocking(
                "prometheus to serve /-/ready or exit",
                Duration::from_secs(60),
                Duration::from_millis(100),
                || match (get(addr, "/-/ready"), child.0.try_wait()) {
                    (Ok(_), _) => Seen::Done(true),
                    (Err(_), Ok(Some(_))) => Seen::Done(false),
                    (Err(e), _) => Seen::Not(e),
                },
            );
            up.then_some((child, port))
        })
        .expect("prometheus did not start on any of 5 ports");
    let paddr = SocketAddr::from(([127, 0, 0, 1], port));
    let queries: Vec<String> = dashboard_queries()
        .into_iter()
        .map(|q| {
            q.replace("$sweep", &sweep)
                .replace("$baseline", "eac_net|jaa_net|lp_net")
                .replace("$__rate_interval", "20s")
        })
        .collect();
    assert!(queries.len() >= 20, "{queries:?}");
    // Rates need a few scrapes inside their window: wait until every query has data.
    tokio::task::spawn_blocking(move || {
        wait::until_blocking(
            "every dashboard query to return data",
            Duration::from_secs(120),
            Duration::from_millis(500),
            || {
                let missing: Vec<&String> = queries
                    .iter()
                    .filter(|q| {
                        let path = format!("/api/v1/query?query={}", urlencode(q));
                        !get(paddr, &path)
                            .ok()
                            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                            .is_some_and(|v| {
                                v["status"] == "success"
                                    && v["data"]["result"]
                                        .as_array()
                                        .is_some_and(|r| !r.is_empty())
                            })
                    })
                    .collect();
                if missing.is_empty() {
                    Seen::Done(())
                } else {
                    Seen::Not(format!("queries without data: {missing:#?}"))
                }
            },
        )
    })
    .await
    .unwrap();
    beat.abort();
    h.shutdown().await;
}

/// `promtool test rules`: every case of alerts_test.yml gets the alerts it expects (labels and
/// annotations as the rules render them), and nothing where it expects none.
#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool(
        &[
            "test",
            "rules",
            repo("experiments/prometheus/alerts_test.yml")
                .to_str()
                .unwrap(),
        ],
        None,
    );
}

/// Every alert of alerts.yml has a case in alerts_test.yml where it fires and one where it stays
/// quiet; a case naming no alert of alerts.yml (a typo passes `exp_alerts: []` vacuously) fails.
#[test]
fn every_alert_has_a_firing_and_a_quiet_case() {
    let yaml = |p: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(repo(p)).unwrap())
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let rules = yaml("experiments/prometheus/alerts.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .expect("alerts.yml: groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("alerts.yml: rules"))
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    assert!(alerts.len() >= 6, "alerts.yml: {alerts:?}");

    let tests = yaml("experiments/prometheus/alerts_test.yml");
    assert_eq!(
        tests["rule_files"].as_sequence().map(Vec::as_slice),
        Some(&[serde_yaml::Value::from("alerts.yml")][..]),
        "alerts_test.yml must test alerts.yml"
    );
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"]
        .as_sequence()
        .expect("alerts_test.yml: tests")
    {
        for case in group["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"]
                .as_str()
                .expect("alerts_test.yml: alertname")
                .to_string();
            // A missing `exp_alerts` expects none, as `exp_alerts: []` does.
            match case["exp_alerts"].as_sequence() {
                Some(exp) if !exp.is_empty() => firing.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    let mut wrong: Vec<String> = Vec::new();
    for a in &alerts {
        if !firing.contains(a) {
            wrong.push(format!("{a}: no case where it fires"));
        }
        if !quiet.contains(a) {
            wrong.push(format!(
                "{a}: no case where it stays quiet (exp_alerts: [])"
            ));
        }
    }
    for a in firing.union(&quiet).filter(|a| !alerts.contains(*a)) {
        wrong.push(format!("{a}: tested, but alerts.yml has no such alert"));
    }
    assert!(
        wrong.is_empty(),
        "experiments/prometheus/alerts_test.yml:\n{}",
        wrong.join("\n")
    );
}
