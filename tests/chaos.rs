//! Chaos, with real processes on loopback: during a sweep the coordinator (a child `ausweep
//! coordinator` on a sled store) is SIGKILLed at random points and restarted, workers are
//! SIGKILLed and restarted, and one worker's network (through a TCP proxy) is cut for longer
//! than its lease. Afterwards every job has exactly one accepted attempt, every checkpoint a
//! result references is in the store, and the F1 table equals an undisturbed run's.
//!
//! `AUSWEEP_CHAOS_RUNS` (default 1) sets the repetitions, `AUSWEEP_CHAOS_SEED` the first seed;
//! `make soak` runs many.

mod common;

use ausweep_proto::v1;
use common::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const LEASE_MS: u64 = 2_500;

/// The sweep under test: MobileNet-v2 from ImageNet weights (so the F1 table is not all zeros),
/// 3 folds x 2 stages (6 jobs), 10 cheap cached epochs in stage 1, 2 fine-tuning epochs.
fn sweep() -> String {
    "name: chaos
dataset:
  source: {kind: synthetic, subjects: 27, frames: 32, seed: 5}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {k: 3, seed: 0}
  input_size: 48
  val_subjects: 2
backbones: [mobilenet_v2]
weights: imagenet
loss: lsep_bce
thresholds: fixed
augment: {flip: 0.0}
stages:
  - freeze: backbone
    optimizer: {lr: 3.0e-3}
    epochs: 10
  - freeze: none
    optimizer: {lr: 1.0e-3, backbone_lr: 2.0e-3}
    epochs: 2
batch_size: 16
seed: 0
resources:
  device: cpu
retries: 5
"
    .to_string()
}

/// A TCP proxy in front of the coordinator whose link can be cut: open connections are closed
/// and new ones are dropped at once until it is healed.
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = watch::channel(false);
        let rx = Arc::new(rx);
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut rx = (*rx).clone();
                if *rx.borrow() {
                    continue; // dropped: the peer sees a reset
                }
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

/// Largest absolute difference between the same-named tensors of two checkpoints.
fn weight_diff(a: &Path, b: &Path) -> f64 {
    // A blob is the agent's bundle: magic (8 bytes), metadata length (u64 LE), the metadata
    // JSON, then the safetensors file.
    let read = |p: &Path| -> BTreeMap<String, tch::Tensor> {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[..8], b"AUSWCKB1", "{} is not a bundle", p.display());
        let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let st = p.with_extension("safetensors");
        std::fs::write(&st, &bytes[16 + len..]).unwrap();
        tch::Tensor::read_safetensors(&st)
            .unwrap_or_else(|e| panic!("{}: {e}", st.display()))
            .into_iter()
            .collect()
    };
    let (ta, tb) = (read(a), read(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different tensors",
        a.display(),
        b.display()
    );
    ta.iter()
        .filter(|(_, t)| t.is_floating_point())
        .map(|(k, t)| (t - &tb[k]).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

/// The reference: the same sweep with nothing disturbed.
async fn undisturbed(root: &Path) -> (F1Table, Checkpoints) {
    let mut coord = Coordinator::start(root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;
    let a = Worker::start(&coord.url(), root, "a", &[]);
    let b = Worker::start(&coord.url(), root, "b", &[]);
    let st = wait_done(&coord, &id, Duration::from_secs(300), &[&a, &b]).await;
    drop((a, b));
    audit(&mut coord, st.jobs.len())
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillCoordinator,
    KillWorker(usize),
    CutNetwork,
}

async fn chaos_run(root: &Path, seed: u64) -> ((F1Table, Checkpoints), Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut coord = Coordinator::start(root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;
    let proxy = Proxy::start(coord.port).await;
    // Worker 0 talks to the coordinator directly, worker 1 through the proxy.
    let urls = [coord.url(), proxy.url()];
    let names = ["a", "b"];
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&urls[i], root, names[i], &[]))
        .collect();
    let mut done_faults = Vec::new();
    let until = Instant::now() + Duration::from_secs(600);
    // Every kind of fault at least once per run, plus up to two more, in a random order.
    let mut plan = vec![
        Fault::KillCoordinator,
        Fault::KillWorker(rng.random_range(0..2)),
        Fault::CutNetwork,
    ];
    for _ in 0..rng.random_range(0..=2) {
        plan.push(match rng.random_range(0..3) {
            0 => Fault::KillCoordinator,
            1 => Fault::KillWorker(rng.random_range(0..2)),
            _ => Fault::CutNetwork,
        });
    }
    plan.shuffle(&mut rng);
    for fault in plan {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..6_000))).await;
        let finished = admin
            .get_sweep(v1::GetSweepRequest {
                sweep_id: id.clone(),
            })
            .await
            .map(|s| all_succeeded(&s.into_inner()))
            .unwrap_or(false);
        if finished || Instant::now() > until {
            break;
        }
        done_faults.push(format!("{fault:?}"));
        eprintln!("chaos seed {seed}: {fault:?}");
        match fault {
            Fault::KillCoordinator => {
                coord.kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_000))).await;
                coord.spawn();
                admin = coord.admin().await;
            }
            Fault::KillWorker(i) => {
                workers[i].child.kill().unwrap();
                workers[i].wait_exit(Duration::from_secs(10)).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
                // The node comes back under the same name and work dir.
                workers[i] = Worker::start(&urls[i], root, names[i], &[]);
            }
            Fault::CutNetwork => {
                proxy.set_cut(true);
                // Longer than the lease: the coordinator must hand the job to someone else.
                tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
                proxy.set_cut(false);
            }
        }
    }
    let refs: Vec<&Worker> = workers.iter().collect();
    let st = wait_done(&coord, &id, Duration::from_secs(400), &refs).await;
    drop(workers);
    (audit(&mut coord, st.jobs.len()), done_faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_survive_killed_coordinators_killed_workers_and_cut_networks() {
    let runs: u64 = std::env::var("AUSWEEP_CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let first: u64 = std::env::var("AUSWEEP_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let (reference, ref_ckpts) = undisturbed(&tmp.path().join("reference")).await;
    assert_eq!(reference.len(), 6);
    // The synthetic AUs are learnable even in this tiny setting: the table is not all zeros.
    let mean = reference.values().map(|(f1, _)| f1).sum::<f64>() / reference.len() as f64;
    assert!(mean > 0.02, "mean F1 {mean}: {reference:?}");
    eprintln!(
        "chaos: reference run {:.1} s, mean F1 {mean:.3}",
        t0.elapsed().as_secs_f64()
    );
    for seed in first..first + runs {
        let t = Instant::now();
        let ((table, ckpts), faults) =
            chaos_run(&tmp.path().join(format!("run-{seed}")), seed).await;
        if let Err(e) = same_table(&reference, &table) {
            panic!("seed {seed} (faults {faults:?}): the F1 table differs from the undisturbed run: {e}");
        }
        // Stronger than F1: the final weights themselves match (resumes are exact up to
        // floating-point reassociation).
        for (job, path) in &ckpts {
            let d = weight_diff(&ref_ckpts[job], path);
            assert!(d < 1e-4, "seed {seed}: {job}: final weights differ by {d}");
        }
        eprintln!(
            "chaos seed {seed}: {} faults {faults:?}, same F1 table, {:.1} s",
            faults.len(),
            t.elapsed().as_secs_f64()
        );
    }
}
