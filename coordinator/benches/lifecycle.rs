//! `cargo bench -p ausweep-coordinator`: simulated workers over loopback gRPC against a sled-backed
//! coordinator. Measures durable lease -> upload -> complete lifecycles/s, lease latency p50/p99,
//! heartbeats/s, and restart (recovery) time with 100,000 jobs in the store.
//! Env: AUSWEEP_BENCH_WORKERS (default 1000), AUSWEEP_BENCH_SECS (default 5),
//! AUSWEEP_BENCH_RESTART_JOBS (default 100000).

use ausweep_coordinator::sched::{State, Timing};
use ausweep_coordinator::store::{Batch, SledStore, Store};
use ausweep_coordinator::{client, manifest, plan, serve, Config};
use ausweep_proto::v1;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token-0123";
const JOIN: &str = "bench-join-token-01234";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A manifest of `points` grid points x 5 backbones x `folds` folds x 1 stage.
fn manifest_text(points: u64, folds: u64) -> String {
    let seeds: Vec<String> = (0..points).map(|i| i.to_string()).collect();
    format!(
        "name: bench\ndataset:\n  source: {{kind: synthetic, subjects: 40, frames: 4}}\n  folds: !kfold {{k: {folds}}}\n  input_size: 32\n\
         backbones: [densenet121, densenet201, mobilenet_v1, mobilenet_v2, vgg19]\n\
         stages:\n  - {{freeze: backbone, optimizer: {{lr: 0.001}}, epochs: 1}}\nbatch_size: 4\nresources: {{device: cpu}}\n\
         grid:\n  seed: [{}]\n",
        seeds.join(", ")
    )
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread")]
// Long function: the benchmark's script, phase after phase, printing as it goes.
async fn main() {
    let workers = env("AUSWEEP_BENCH_WORKERS", 1000) as usize;
    let secs = env("AUSWEEP_BENCH_SECS", 5);
    let restart_jobs = env("AUSWEEP_BENCH_RESTART_JOBS", 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::local(ADMIN, JOIN, Some(dir.path().to_path_buf()));
    cfg.timing = Timing {
        heartbeat_ms: 5_000,
        lease_ms: 60_000,
        no_worker_grace_ms: 60_000,
    };
    let h = serve(cfg).await.expect("serve");
    let url = format!("http://{}", h.addr);
    // A few connections shared by the simulated workers (HTTP/2 multiplexes them).
    let mut chans = Vec::new();
    for _ in 0..8 {
        chans.push(client::connect(&url, None).await.expect("connect"));
    }
    let mut admin = client::admin(chans[0].clone(), ADMIN).expect("admin");
    admin
        .submit(v1::SubmitRequest {
            manifest_yaml: manifest_text(1000, 20),
            file_name: "bench".into(),
        })
        .await
        .expect("submit");
    let mut clients = Vec::new();
    for i in 0..workers {
        let ch = chans[i % chans.len()].clone();
        let mut w = client::worker(ch.clone(), None, JOIN).expect("worker");
        let r = w
            .register(v1::RegisterRequest {
                worker_name: format!("w{i}"),
                hostname: "bench".into(),
                weights: ausweep_testkit::rpc::held_all(),
                devices: vec![v1::Device {
                    index: 0,
                    kind: v1::DeviceKind::Cpu as i32,
                    memory_mib: 0,
                    name: "cpu".into(),
                    healthy: true,
                }],
            })
            .await
            .expect("register")
            .into_inner();
        clients.push(client::worker(ch, Some(&r.worker_id), &r.session_token).expect("session"));
    }
    println!("{workers} simulated workers over loopback gRPC, sled store, {secs}s per phase");

    // Phase 1: lifecycles.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for mut w in clients.clone() {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let Ok(r) = w.lease(v1::LeaseRequest { device_index: 0 }).await else {
                    break;
                };
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                let Some(a) = r.into_inner().assignment else {
                    break;
                };
                // The bytes stand in for a checkpoint (the coordinator checks only their SHA-256).
                let (chunks, sha) =
                    ausweep_testkit::rpc::chunks(&a, a.job_id.as_bytes(), Default::default());
                if w.upload_checkpoint(tokio_stream::iter(chunks))
                    .await
                    .is_err()
                {
                    break;
                }
                let res = v1::JobResult {
                    avg_f1: 0.5,
                    checkpoint_sha256: sha,
                    ..Default::default()
                };
                if w.complete(v1::CompleteRequest {
                    job_id: a.job_id,
                    fencing_token: a.fencing_token,
                    result: Some(res),
                })
                .await
                .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let el = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "lifecycles (lease -> upload -> complete, durable): {n} in {el:.1}s = {:.0}/s; lease latency p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / el,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    // Phase 2: heartbeats.
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for mut w in clients.clone() {
        let (stop, beats) = (stop.clone(), beats.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if w.heartbeat(v1::HeartbeatRequest::default()).await.is_err() {
                    break;
                }
                beats.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "heartbeats: {:.0}/s",
        beats.load(Ordering::Relaxed) as f64 / el
    );
    h.shutdown().await;

    // Phase 3: restart with many jobs in the store.
    let dir = tempfile::tempdir().expect("tempdir");
    let folds = 20;
    let points = restart_jobs.div_ceil(5 * folds).min(1000);
    let p = manifest::parse(&manifest_text(points, folds), "restart").expect("manifest");
    let jobs = plan::expand(&p.sweep_id, &p.manifest).expect("plan");
    let njobs = jobs.len();
    {
        let store = SledStore::open(dir.path()).expect("sled");
        let mut st = State::new(Timing::default(), 1);
        let mut b = Batch::new();
        let specs = plan::encode_specs(&p.sweep_id, &jobs).expect("specs");
        st.submit(&p, jobs, specs, 1, &mut b).expect("submit");
        store.commit(&b).expect("commit");
    }
    let t0 = Instant::now();
    let store = SledStore::open(dir.path()).expect("sled");
    let st = State::load(&store, Timing::default(), 2).expect("load");
    let el = t0.elapsed();
    println!(
        "restart: open + recover {} jobs in {:.2}s ({njobs} planned)",
        st.job_ids().count(),
        el.as_secs_f64()
    );
}
