//! Chaos, with real processes on loopback: during a sweep the coordinator (a child `ausweep
//! coordinator` on a sled store) is SIGKILLed at random points and restarted, workers are
//! SIGKILLed and restarted, and a worker's network (through a TCP proxy) is cut for longer than
//! its lease. Every fault waits until it hits a leased job; every kind hits one in every run.
//! Afterwards every job has exactly one accepted attempt, a job a worker fault hit was accepted
//! from a later attempt, every checkpoint a result references is in the store, and the F1 table
//! and final weights equal an undisturbed run's.
//!
//! `AUSWEEP_CHAOS_RUNS` (default 1) sets the repetitions, `AUSWEEP_CHAOS_SEED` the first seed;
//! `make soak` runs many.

mod common;

use ausweep_coordinator::client;
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

/// The sweep under test: MobileNet-v2 from ImageNet weights (so the F1 table is not all zeros),
/// 3 folds x 2 stages (6 jobs), 10 cheap cached epochs in stage 1, 4 fine-tuning epochs. It must
/// outlast the three required faults: with one-core workers (no oversubscribed trainers), two
/// fine-tuning epochs once let the sweep finish after two.
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
    epochs: 4
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
    let mut coord = start_coordinator(root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;
    let a = start_worker(&coord.url(), root, "a", &[]);
    let b = start_worker(&coord.url(), root, "b", &[]);
    let st = wait_done(&coord, &id, Duration::from_secs(300), &[&a, &b]).await;
    drop((a, b));
    audit(&mut coord, st.jobs.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillCoordinator,
    KillWorker,
    CutNetwork,
}

impl Fault {
    fn kind(self) -> &'static str {
        match self {
            Fault::KillCoordinator => "kill-coordinator",
            Fault::KillWorker => "kill-worker",
            Fault::CutNetwork => "cut-network",
        }
    }
}

/// One injected fault and the leased jobs it hit (job id, attempt at the time).
#[derive(Debug)]
struct Hit {
    fault: Fault,
    leased: Vec<(String, u32)>,
}

/// What a chaos run leaves to check.
struct Run {
    table: F1Table,
    checkpoints: Checkpoints,
    hits: Vec<Hit>,
    /// Extra faults not injected because the sweep had finished.
    skipped: usize,
    /// Per job: the attempt whose result was accepted.
    accepted: BTreeMap<String, u32>,
}

const NAMES: [&str; 2] = ["a", "b"];

/// The leased jobs of worker `i` (of every worker when `None`).
fn leased(st: &v1::SweepStatus, worker: Option<usize>) -> Vec<(String, u32)> {
    st.jobs
        .iter()
        .filter(|j| j.state() == v1::JobState::Leased)
        .filter(|j| worker.is_none_or(|i| j.worker_id == NAMES[i]))
        .map(|j| (j.job_id.clone(), j.attempt))
        .collect()
}

/// Of the jobs a fault was aimed at, those it hit: a job whose result landed between the poll
/// and the fault had already finished.
async fn still_held(
    admin: &mut client::Admin,
    id: &str,
    leased: Vec<(String, u32)>,
) -> Vec<(String, u32)> {
    let st = status(admin, id).await;
    leased
        .into_iter()
        .filter(|(job, _)| {
            st.jobs
                .iter()
                .any(|j| &j.job_id == job && j.state() != v1::JobState::Succeeded)
        })
        .collect()
}

async fn chaos_run(root: &Path, seed: u64) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut coord = start_coordinator(root, LEASE_MS);
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;
    // Each worker talks to the coordinator through its own proxy, so either one can be cut off.
    let proxies = [
        Proxy::start(coord.port).await,
        Proxy::start(coord.port).await,
    ];
    let urls = [proxies[0].url(), proxies[1].url()];
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| start_worker(&urls[i], root, NAMES[i], &[]))
        .collect();
    let mut hits = Vec::new();
    let mut skipped = 0;
    // Every kind of fault once per run in a random order, then up to two more while jobs remain.
    // Each waits until it would hit a leased job, so none is wasted on an idle cluster.
    let mut plan = vec![Fault::KillCoordinator, Fault::KillWorker, Fault::CutNetwork];
    plan.shuffle(&mut rng);
    let required = plan.len();
    for _ in 0..rng.random_range(0..=2) {
        plan.push(
            [Fault::KillCoordinator, Fault::KillWorker, Fault::CutNetwork][rng.random_range(0..3)],
        );
    }
    for (n, fault) in plan.into_iter().enumerate() {
        // A random moment inside a job's run, not right at its lease.
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
        let refs: Vec<&Worker> = workers.iter().collect();
        let st = wait_sweep(
            &mut admin,
            &id,
            Duration::from_secs(300),
            &format!("a leased job for {fault:?} to hit (seed {seed})"),
            &refs,
            |st| !leased(st, None).is_empty() || all_succeeded(st),
        )
        .await;
        if all_succeeded(&st) {
            assert!(
                n >= required,
                "seed {seed}: the sweep finished before {fault:?} could hit a job (faults so far {hits:?}): the chaos sweep is too short"
            );
            skipped += 1;
            continue;
        }
        // A worker fault goes to a worker that holds a lease.
        let busy: Vec<usize> = (0..2)
            .filter(|&i| !leased(&st, Some(i)).is_empty())
            .collect();
        let worker =
            (fault != Fault::KillCoordinator).then(|| busy[rng.random_range(0..busy.len())]);
        let mut hit = leased(&st, worker);
        match fault {
            Fault::KillCoordinator => {
                coord.kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_000))).await;
                coord.spawn();
                admin = coord.admin().await;
            }
            Fault::KillWorker => {
                let i = worker.unwrap();
                workers[i].child.kill().unwrap();
                workers[i].wait_exit(Duration::from_secs(30)).await;
                hit = still_held(&mut admin, &id, hit).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
                // The node comes back under the same name and work dir.
                workers[i] = start_worker(&urls[i], root, NAMES[i], &[]);
            }
            Fault::CutNetwork => {
                let i = worker.unwrap();
                proxies[i].set_cut(true);
                hit = still_held(&mut admin, &id, hit).await;
                // Longer than the lease: the coordinator must hand the job to someone else.
                tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
                proxies[i].set_cut(false);
            }
        }
        eprintln!("chaos seed {seed}: {fault:?} on {worker:?} hit {hit:?}");
        hits.push(Hit { fault, leased: hit });
    }
    let refs: Vec<&Worker> = workers.iter().collect();
    let st = wait_done(&coord, &id, Duration::from_secs(600), &refs).await;
    drop(workers);
    let (table, checkpoints) = audit(&mut coord, st.jobs.len());
    Run {
        table,
        checkpoints,
        hits,
        skipped,
        accepted: accepted_attempts(&coord),
    }
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
    // Per fault kind: faults injected, leased jobs they hit.
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut retried_accepted = 0;
    let mut skipped = 0;
    for seed in first..first + runs {
        let t = Instant::now();
        let run = chaos_run(&tmp.path().join(format!("run-{seed}")), seed).await;
        let faults: Vec<Fault> = run.hits.iter().map(|h| h.fault).collect();
        // Every kind of fault was injected, each while it hit at least one leased job.
        for kind in ["kill-coordinator", "kill-worker", "cut-network"] {
            assert!(
                run.hits
                    .iter()
                    .any(|h| h.fault.kind() == kind && !h.leased.is_empty()),
                "seed {seed}: no {kind} hit a leased job: {:?}",
                run.hits
            );
        }
        for h in &run.hits {
            let e = tally.entry(h.fault.kind()).or_default();
            e.0 += 1;
            e.1 += h.leased.len();
        }
        // A killed worker or a cut network loses its lease: the job it held was accepted from
        // a later attempt (a retry, resumed from its newest checkpoint when it had one).
        for h in run
            .hits
            .iter()
            .filter(|h| h.fault != Fault::KillCoordinator)
        {
            for (job, attempt) in &h.leased {
                assert!(
                    run.accepted[job] > *attempt,
                    "seed {seed}: {job} held attempt {attempt} when {:?} hit it, yet attempt {} was accepted",
                    h.fault,
                    run.accepted[job]
                );
            }
        }
        let retried = run.accepted.values().filter(|&&a| a > 1).count();
        assert!(
            retried >= 1,
            "seed {seed}: no accepted result came from a retried attempt: {:?}",
            run.accepted
        );
        retried_accepted += retried;
        skipped += run.skipped;
        if let Err(e) = same_table(&reference, &run.table) {
            panic!("seed {seed} (faults {faults:?}): the F1 table differs from the undisturbed run: {e}");
        }
        // Stronger than F1: the final weights themselves match (resumes are exact up to
        // floating-point reassociation).
        for (job, path) in &run.checkpoints {
            let d = weight_diff(&ref_ckpts[job], path);
            assert!(d < 1e-4, "seed {seed}: {job}: final weights differ by {d}");
        }
        eprintln!(
            "chaos seed {seed}: {} faults {faults:?}, {retried} results from retried attempts, same F1 table, {:.1} s",
            faults.len(),
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!("chaos: {runs} runs; per fault kind (injected, leased jobs hit): {tally:?}; {retried_accepted} accepted results from retried attempts; {skipped} extra faults skipped (sweep finished)");
}
