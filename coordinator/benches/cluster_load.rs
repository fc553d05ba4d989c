// Long file: one benchmark run end to end (cluster, load curve, heartbeats, restart, disk), kept in
// one file so its report reads in order.
//! `make bench-load`: the real `ausweep coordinator` binary (child process, sled store in a temp
//! dir) under 1,000 simulated workers over 100,000 jobs, all through the real gRPC client.
//!
//! Reports: submit time for the jobs (manifests with `grid:` axes); the saturating rate of
//! lease -> progress -> upload -> complete lifecycles (closed loop, every worker back to back)
//! and the CPU time the coordinator and this client used per lifecycle meanwhile (with the
//! machine's busy and stolen time: on a shared machine the steadier figure); the load–latency
//! curve: lease latency p50/p99 with lifecycles started on a fixed schedule (open loop) at 10 %, 50 %, 90 % and 100 % of that rate; saturated heartbeats/s; restart time
//! with the full store; the coordinator's RSS (VmRSS/VmHWM from /proc) idle, after submit, peak and
//! after restart; bytes on disk per job.
//!
//! Env: AUSWEEP_BIN (default target/light/release/ausweep, `make light`), AUSWEEP_LOAD_WORKERS (1000),
//! AUSWEEP_LOAD_JOBS (100000), AUSWEEP_LOAD_SECS (max seconds of the saturation phase, 60; it
//! also stops at 40 % of the jobs), AUSWEEP_LOAD_CURVE_SECS (max seconds per curve point, 10),
//! AUSWEEP_LOAD_HEARTBEAT_SECS (5), AUSWEEP_LOAD_RATES (extra curve points at fixed
//! lifecycles/s, comma-separated), AUSWEEP_LOAD_KEEP (set: keep the data dir, to profile a restart).

use ausweep_coordinator::client;
use ausweep_proto::v1;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const ADMIN: &str = "load-admin-token-0123456789";
const JOIN: &str = "load-join-token-0123456789";
const FOLDS: u64 = 10;
const BACKBONES: u64 = 5;
/// Jobs per manifest: 5 backbones x 10 folds x 1 stage x 200 grid points.
const PER_MANIFEST: u64 = 10_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AUSWEEP_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("light/release/ausweep")
}

/// A manifest of `points` grid points (learning rate x seed) x 5 backbones x 10 folds x 1 stage.
fn manifest(i: u64, points: u64) -> String {
    let seeds: Vec<String> = (0..points.div_ceil(2)).map(|s| s.to_string()).collect();
    let lrs = if points > 1 {
        "[0.001, 0.002]"
    } else {
        "[0.001]"
    };
    format!(
        "name: load-{i}\ndataset:\n  source: {{kind: synthetic, subjects: 40, frames: 4}}\n  folds: !kfold {{k: {FOLDS}}}\n  input_size: 32\n\
         backbones: [densenet121, densenet201, mobilenet_v1, mobilenet_v2, vgg19]\n\
         stages:\n  - {{freeze: backbone, optimizer: {{lr: 0.001}}, epochs: 1}}\nbatch_size: 4\nresources: {{device: cpu}}\n\
         grid:\n  train.lr: {lrs}\n  seed: [{}]\n",
        seeds.join(", ")
    )
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// (VmRSS, VmHWM) of a process, MiB.
fn rss(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// The kernel's clock ticks per second, the unit of `/proc`'s CPU times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU seconds a process has used (user + system), from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / ticks_per_sec()
}

/// The machine's busy and stolen CPU time so far, seconds (the `cpu` line of `/proc/stat`).
fn machine_cpu() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let tck = ticks_per_sec();
    // user nice system (idle iowait) irq softirq steal
    ((at(0) + at(1) + at(2) + at(5) + at(6)) / tck, at(7) / tck)
}

struct Coordinator {
    child: Child,
    url: String,
}

impl Coordinator {
    /// Starts the binary and waits until it says where it listens.
    fn start(data: &std::path::Path) -> Coordinator {
        let bin = binary();
        let mut child = Command::new(&bin)
            .args(["coordinator", "--listen", "127.0.0.1:0", "--heartbeat-ms"])
            .arg((env("AUSWEEP_LOAD_HEARTBEAT_SECS", 5) * 1000).to_string())
            .args(["--lease-ms", "600000", "--no-worker-grace-s", "600"])
            .arg("--data-dir")
            .arg(data)
            .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
            .env("AUSWEEP_JOIN_TOKEN", JOIN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (build it: make build)", bin.display()));
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("ausweep coordinator listening on ") {
                        break a.trim().to_string();
                    }
                }
                _ => panic!("the coordinator exited before listening"),
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Coordinator {
            child,
            url: format!("http://{addr}"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (the binary stops on it as on ctrl-c), then waits; killed after 20 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channels(url: &str, n: usize) -> Vec<Channel> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(client::connect(url, None).await.expect("connect"));
    }
    v
}

#[tokio::main(flavor = "multi_thread")]
// Long function: the benchmark's script, phase after phase, printing as it goes.
async fn main() {
    let workers = env("AUSWEEP_LOAD_WORKERS", 1000) as usize;
    let jobs = env("AUSWEEP_LOAD_JOBS", 100_000);
    let max_secs = env("AUSWEEP_LOAD_SECS", 60);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _dir = if std::env::var_os("AUSWEEP_LOAD_KEEP").is_some() {
        println!("keeping the data dir {}", data.display());
        let _ = dir.keep();
        None
    } else {
        Some(dir)
    };
    let mut table: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| {
        println!("{k}: {v}");
        table.push((k.to_string(), v));
    };

    let coord = Coordinator::start(&data);
    let pid = coord.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = rss(pid);
    let chans = channels(&coord.url, 16).await;
    let mut admin = client::admin(chans[0].clone(), ADMIN).expect("admin");

    // Submit: manifests of up to 10,000 jobs each.
    let t0 = Instant::now();
    let mut submitted = 0u64;
    let mut i = 0;
    while submitted < jobs {
        let want = (jobs - submitted).min(PER_MANIFEST);
        let points = want.div_ceil(BACKBONES * FOLDS).max(1);
        let r = admin
            .submit(v1::SubmitRequest {
                manifest_yaml: manifest(i, points),
                file_name: format!("load-{i}.yaml"),
            })
            .await
            .expect("submit")
            .into_inner();
        submitted += r.jobs as u64;
        i += 1;
    }
    let submit_s = t0.elapsed().as_secs_f64();
    row(
        "submit",
        format!(
            "{submitted} jobs in {i} manifests: {submit_s:.2} s ({:.0} jobs/s)",
            submitted as f64 / submit_s
        ),
    );
    let (after_submit, submit_hwm) = rss(pid);

    // Register the workers.
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for w in 0..workers {
        let ch = chans[w % chans.len()].clone();
        let mut c = client::worker(ch.clone(), None, JOIN).expect("join");
        let r = c
            .register(v1::RegisterRequest {
                worker_name: format!("load-w{w}"),
                hostname: format!("node{}", w / 8),
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
        clients.push((
            client::worker(ch, Some(&r.worker_id), &r.session_token).expect("session"),
            r.heartbeat_interval_ms,
        ));
    }
    row(
        "register",
        format!("{workers} workers in {:.2} s", t0.elapsed().as_secs_f64()),
    );

    // Every worker heartbeats on its interval through the lifecycle phases.
    let hb_stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let hearts: Vec<_> = clients
        .iter()
        .map(|(w, interval)| {
            let (stop, beats, mut hb, interval) =
                (hb_stop.clone(), beats.clone(), w.clone(), *interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(interval.max(100)));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if hb.heartbeat(v1::HeartbeatRequest::default()).await.is_ok() {
                        beats.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // Saturation (closed loop): every worker runs lease -> progress -> upload -> complete back
    // to back until 40 % of the queue is done or the time is up; the rest is for the curve.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let (coord_cpu0, self_cpu0, machine0) =
        (cpu_secs(&pid.to_string()), cpu_secs("self"), machine_cpu());
    let t0 = Instant::now();
    for (w, _) in clients.clone() {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = w;
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match lifecycle(&mut w, t).await {
                    Some((ms, ok)) => {
                        lat.push(ms);
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => break,
                }
            }
            lat
        }));
    }
    let mut peak_live = 0.0f64;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_live = peak_live.max(rss(pid).0);
        if done.load(Ordering::Relaxed) >= submitted * 2 / 5
            || t0.elapsed().as_secs() >= max_secs
            || tasks.iter().all(|t| t.is_finished())
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let el = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let saturated = n as f64 / el;
    let coord_cpu = cpu_secs(&pid.to_string()) - coord_cpu0;
    let self_cpu = cpu_secs("self") - self_cpu0;
    let machine1 = machine_cpu();
    row(
        "lifecycles (saturated, closed loop)",
        format!(
            "{n} lease -> progress -> upload -> complete in {el:.1} s = {saturated:.0}/s ({} heartbeats on the side)",
            beats.load(Ordering::Relaxed)
        ),
    );
    row(
        "CPU at saturation",
        format!(
            "coordinator {:.0} µs per lifecycle ({:.2} cores), bench client {:.0} µs per lifecycle ({:.2} cores); machine busy {:.2} of {} cores, stolen by the host {:.2}",
            coord_cpu / n.max(1) as f64 * 1e6,
            coord_cpu / el,
            self_cpu / n.max(1) as f64 * 1e6,
            self_cpu / el,
            (machine1.0 - machine0.0) / el,
            std::thread::available_parallelism().map_or(0, |c| c.get()),
            (machine1.1 - machine0.1) / el,
        ),
    );
    row(
        "lease latency at saturation",
        format!(
            "p50 {:.2} ms, p99 {:.2} ms ({} leases)",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            lat.len()
        ),
    );

    // The load–latency curve (open loop): lifecycles start on a fixed schedule at a fraction of
    // the saturating rate, whatever the answers; a lease's latency counts from its scheduled
    // start, so waiting for a free worker or a queued server shows (no coordinated omission).
    let curve_secs = env("AUSWEEP_LOAD_CURVE_SECS", 10) as f64;
    let mut finished = n;
    // The fractions of the saturating rate, then any fixed rates asked for (to compare builds at
    // the same offered load).
    let mut points: Vec<(String, f64)> = [0.1, 0.5, 0.9, 1.0]
        .iter()
        .map(|f| (format!("{:>3.0} %", f * 100.0), saturated * f))
        .collect();
    for r in std::env::var("AUSWEEP_LOAD_RATES")
        .unwrap_or_default()
        .split(',')
    {
        if let Ok(r) = r.trim().parse::<f64>() {
            points.push(("fixed".into(), r));
        }
    }
    for (label, rate) in points {
        let budget = (submitted.saturating_sub(finished) / 4).min((rate * curve_secs) as u64);
        if budget == 0 || rate < 1.0 {
            row(&format!("curve {label}"), "no jobs left".into());
            continue;
        }
        let (mut lat, ok, secs) = open_loop(&clients, rate, budget).await;
        finished += ok;
        row(
            &format!("lease latency at {label} ({rate:.0}/s offered)"),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms; {:.0} lifecycles/s achieved ({ok} in {secs:.1} s)",
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99),
                ok as f64 / secs
            ),
        );
    }
    hb_stop.store(true, Ordering::Relaxed);
    for h in hearts {
        h.abort();
    }

    // Saturated heartbeats: every worker heartbeats back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for (mut w, _) in clients.clone() {
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
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    row(
        "heartbeats (saturated)",
        format!(
            "{:.0}/s",
            beats.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
        ),
    );
    let (before_stop, peak) = rss(pid);
    let sweeps = admin
        .list_sweeps(v1::ListSweepsRequest {})
        .await
        .expect("list")
        .into_inner()
        .sweeps;
    drop((admin, clients, chans));
    coord.stop();

    // Restart on the full store: spawn until the first answered ListSweeps.
    let t0 = Instant::now();
    let coord = Coordinator::start(&data);
    let ch = client::connect(&coord.url, None).await.expect("connect");
    let mut admin = client::admin(ch, ADMIN).expect("admin");
    let after = admin
        .list_sweeps(v1::ListSweepsRequest {})
        .await
        .expect("list after restart")
        .into_inner()
        .sweeps;
    let restart_s = t0.elapsed().as_secs_f64();
    let total = |s: &[v1::SweepSummary]| s.iter().map(|s| s.total as u64).sum::<u64>();
    let succeeded = |s: &[v1::SweepSummary]| s.iter().map(|s| s.succeeded as u64).sum::<u64>();
    assert_eq!(total(&after), total(&sweeps), "jobs lost across restart");
    assert_eq!(
        succeeded(&after),
        succeeded(&sweeps),
        "results lost across restart"
    );
    row(
        "restart",
        format!(
            "{restart_s:.2} s to the first answer with {} jobs ({} done) in the store",
            total(&after),
            succeeded(&after)
        ),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (restarted, restarted_hwm) = rss(coord.pid());
    let db_mib = dir_size(&data) as f64 / (1 << 20) as f64;
    coord.stop();
    row(
        "coordinator RSS",
        format!(
            "idle {idle:.0} MiB, after submit {after_submit:.0} MiB (VmHWM {submit_hwm:.0} MiB), under load {peak_live:.0} MiB, peak (VmHWM) {peak:.0} MiB, before stop {before_stop:.0} MiB, after restart {restarted:.0} MiB (VmHWM {restarted_hwm:.0} MiB)"
        ),
    );
    row(
        "store on disk",
        format!(
            "{db_mib:.0} MiB = {:.1} KB per job",
            db_mib * 1048.576 / total(&after).max(1) as f64
        ),
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n{workers} simulated workers, {submitted} jobs; machine: {cores} cores, {cpu} (bench client on the same cores)\n"
    );
    println!("| measure | figure |\n|---|---|");
    for (k, v) in &table {
        println!("| {k} | {v} |");
    }
}

/// One lease -> progress -> upload -> complete; `since` is when it was due to start. Returns the
/// lease latency from `since` (ms) and whether the completion was accepted; None when the queue
/// is empty or the coordinator refused.
async fn lifecycle(w: &mut client::Worker, since: Instant) -> Option<(f64, bool)> {
    let r = w.lease(v1::LeaseRequest { device_index: 0 }).await.ok()?;
    let ms = since.elapsed().as_secs_f64() * 1e3;
    let a = r.into_inner().assignment?;
    let _ = w
        .report_progress(v1::ProgressRequest {
            job_id: a.job_id.clone(),
            fencing_token: a.fencing_token,
            progress: Some(v1::Progress {
                epoch: 1,
                step: 10,
                loss: 0.3,
                images_per_sec: 100.0,
                ..Default::default()
            }),
        })
        .await;
    // The final checkpoint the result names (Complete refuses an unknown one).
    let (chunks, sha) = ausweep_testkit::rpc::chunks(&a, a.job_id.as_bytes(), Default::default());
    w.upload_checkpoint(tokio_stream::iter(chunks)).await.ok()?;
    let ok = w
        .complete(v1::CompleteRequest {
            job_id: a.job_id,
            fencing_token: a.fencing_token,
            result: Some(v1::JobResult {
                avg_f1: 0.5,
                checkpoint_sha256: sha,
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().accepted)
        .unwrap_or(false);
    Some((ms, ok))
}

/// Starts `budget` lifecycles at `rate` per second on a fixed schedule, each on whichever worker
/// is free; returns the lease latencies (from the scheduled start), the completions and the
/// seconds it took.
async fn open_loop(
    clients: &[(client::Worker, u64)],
    rate: f64,
    budget: u64,
) -> (Vec<f64>, u64, f64) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|(w, _)| {
            let (rx, done, mut w) = (rx.clone(), done.clone(), w.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let Some(due) = rx.lock().await.recv().await else {
                        break;
                    };
                    match lifecycle(&mut w, due).await {
                        Some((ms, ok)) => {
                            lat.push(ms);
                            if ok {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        None => break,
                    }
                }
                lat
            })
        })
        .collect();
    for i in 0..budget {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if tx.send(due).is_err() {
            break;
        }
    }
    drop(tx);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    (
        lat,
        done.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    )
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
