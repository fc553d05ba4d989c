//! `ausweep demo`: the embedded default. A coordinator (in this process, state under `--out`) and
//! a local CPU worker (a child process) run the synthetic-DISFA sweep of `experiments/demo.yaml`;
//! live progress, then the report next to the published baselines and the Fig. 5 chart.

use anyhow::{bail, Context, Result};
use ausweep_admin::report::cmd::{run_report, Format, ReportOptions};
use ausweep_admin::watch::Bars;
use ausweep_coordinator::{client, serve, Config};
use ausweep_proto::v1;
use rand::RngCore;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built-in demo manifest.
pub const DEMO_MANIFEST: &str = include_str!("../experiments/demo.yaml");

/// `ausweep demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Manifest to run instead of the built-in experiments/demo.yaml.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Folder for the coordinator's state, the worker, the logs and the report (replaced).
    #[arg(long, default_value = "ausweep-demo")]
    pub out: PathBuf,
    /// Leave the coordinator and its metrics port up after the report (Ctrl-C stops it).
    #[arg(long)]
    pub keep: bool,
    /// gRPC address of the coordinator.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address (default with --keep: 127.0.0.1:9477, the port
    /// experiments/prometheus/prometheus.yml scrapes; otherwise any free port).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Give up after this many minutes.
    #[arg(long, default_value_t = 30)]
    pub timeout_min: u64,
    /// Trainers the local worker runs at once, each on an equal share of the cores (default:
    /// two when the machine has two cores or more).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub cpu_slots: Option<u16>,
}

/// The local worker: a child `ausweep worker`, stopped with SIGTERM (drain) and reaped on drop.
struct LocalWorker {
    child: Child,
    log: PathBuf,
}

impl LocalWorker {
    fn start(url: &str, out: &Path, join_token_file: &Path, cpu_slots: u16) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the ausweep binary")?;
        let log = out.join("worker.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(exe);
        // SAFETY: prctl(2) only, between fork and exec: the worker (and so its trainers) goes
        // down with the demo even when the demo is killed.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .args([
                "worker",
                "--allow-cpu",
                "--name",
                "local",
                "--coordinator",
                url,
            ])
            .arg("--join-token-file")
            .arg(join_token_file)
            .arg("--cpu-slots")
            .arg(cpu_slots.to_string())
            .arg("--work-dir")
            .arg(out.join("worker"))
            // The demo is sized for the CPU; a GPU node runs it on the CPU too.
            .env("CUDA_VISIBLE_DEVICES", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting the local worker")?;
        Ok(Self { child, log })
    }

    /// The last lines of the worker's log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait (the worker drains: it has no running jobs by now).
    async fn stop(mut self) -> Result<()> {
        if self.exited().is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).context("worker pid")?;
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Some(s) = self.exited() {
                if !s.success() {
                    bail!("the local worker exited with {s}:\n{}", self.tail());
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the local worker did not stop within 60 s:\n{}",
            self.tail()
        )
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn token() -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Runs `ausweep demo`.
pub fn run(a: DemoArgs) -> Result<()> {
    tokio::runtime::Runtime::new()?.block_on(demo(a))
}

// Long function: the demo's script: coordinator, worker, sweep, live view, report, in the order the
// user sees them.
async fn demo(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let (yaml, file_name) = match &a.manifest {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            DEMO_MANIFEST.to_string(),
            "experiments/demo.yaml".to_string(),
        ),
    };
    // The same checks the coordinator makes, before anything starts.
    let parsed = ausweep_coordinator::manifest::parse(&yaml, &file_name)?;
    check_weights(&parsed.manifest)?;

    let out = &a.out;
    for sub in ["state", "worker", "report", "models"] {
        let p = out.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (admin_token, join_token) = (token(), token());
    let admin_file = out.join("admin-token");
    let join_file = out.join("join-token");
    write_secret(&admin_file, &admin_token)?;
    write_secret(&join_file, &join_token)?;

    let mut cfg = Config::local(&admin_token, &join_token, Some(out.join("state")));
    cfg.listen = a.listen;
    cfg.metrics_listen = Some(a.metrics_listen.unwrap_or(if a.keep {
        SocketAddr::from(([127, 0, 0, 1], 9477))
    } else {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }));
    let h = serve(cfg).await.context("starting the coordinator")?;
    let url = format!("http://{}", h.addr);
    eprintln!(
        "demo: coordinator on {url} (state in {})",
        out.join("state").display()
    );
    if let Some(m) = h.metrics_addr {
        eprintln!("demo: metrics on http://{m}/metrics");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = a.cpu_slots.unwrap_or(if cores >= 2 { 2 } else { 1 });
    let mut worker = LocalWorker::start(&url, out, &join_file, slots)?;
    eprintln!(
        "demo: local CPU worker started with {slots} trainer slot(s) on {cores} core(s) (log {})",
        worker.log.display()
    );

    let ch = client::connect(&url, None)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?;
    let mut admin = client::admin(ch, &admin_token)?;
    let sub = admin
        .submit(v1::SubmitRequest {
            manifest_yaml: yaml,
            file_name: file_name.clone(),
        })
        .await?
        .into_inner();
    let folds = ausweep_coordinator::manifest::folds(&parsed.manifest).len();
    let training = parsed.manifest.backbones.len()
        * folds
        * parsed.manifest.stages.len()
        * ausweep_coordinator::manifest::grid_points(&parsed.manifest).len();
    let preparing = (sub.jobs as usize).saturating_sub(training);
    eprintln!(
        "demo: submitted {file_name}: sweep {} ({} jobs: {}{} x {} folds x {} stages)",
        sub.sweep_id,
        sub.jobs,
        if preparing > 0 {
            format!("{preparing} data preparation + ")
        } else {
            String::new()
        },
        parsed
            .manifest
            .backbones
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        folds,
        parsed.manifest.stages.len()
    );

    let limit = Duration::from_secs(a.timeout_min * 60);
    follow(&mut admin, &sub.sweep_id, &mut worker, t0, limit).await?;
    let st = admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: sub.sweep_id.clone(),
        })
        .await?
        .into_inner();
    let bad: Vec<String> = st
        .jobs
        .iter()
        .filter(|j| j.state() != v1::JobState::Succeeded)
        .map(|j| format!("{} {:?}: {}", j.job_id, j.state(), j.last_error))
        .collect();
    if !bad.is_empty() {
        bail!(
            "{} job(s) did not succeed:\n{}\nworker log ({}):\n{}",
            bad.len(),
            bad.join("\n"),
            worker.log.display(),
            worker.tail()
        );
    }
    let trained = t0.elapsed();

    let conn = ausweep_admin::Conn::plain(&url, Some(admin_token.clone()));
    let mut backbones: Vec<String> = Vec::new();
    for j in &st.jobs {
        if !j.backbone.is_empty() && !backbones.contains(&j.backbone) {
            backbones.push(j.backbone.clone());
        }
    }
    let models = crate::demo_models::export(&sub.sweep_id, &backbones, &conn, out).await?;
    let cost = crate::demo_models::cost(&models, &out.join("models"))?;
    let report_dir = out.join("report");
    let report = run_report(&ReportOptions {
        sweep: sub.sweep_id.clone(),
        format: Format::Md,
        out: Some(report_dir.clone()),
        store: None,
        baselines: None,
        baselines_file: None,
        conn: ausweep_admin::Conn::plain(&url, Some(admin_token.clone())),
        cost,
    })
    .await?;
    // With an output folder the report says what it wrote; show the tables themselves too.
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap_or_default();
    println!("{md}\n{report}");
    let chart = ["fig5.png", "fig5.svg", "intensity.png", "fig2.png"]
        .iter()
        .map(|f| report_dir.join(f))
        .find(|p| p.exists());
    eprintln!(
        "demo: {} jobs trained in {}; report in {}{}",
        st.jobs.len(),
        minutes(trained),
        report_dir.display(),
        chart.map_or(String::new(), |c| format!(", chart {}", c.display()))
    );

    if let Some(first) = models.first() {
        let exe = std::env::args().next().unwrap_or_else(|| "ausweep".into());
        eprintln!(
            "demo: models in {} (checkpoint and ONNX per backbone, the face detector as ONNX; \
             docs/export.md)\ndemo: try a photo of your own: {exe} predict --device cpu --model {} PHOTO.jpg",
            out.join("models").display(),
            first.display()
        );
        // The same model without libtorch (what the light build runs), with the venv's ONNX
        // Runtime library.
        if let Ok(lib) = crate::onnxruntime_library() {
            eprintln!(
                "demo: or without libtorch (make light): {exe} predict --model {} --onnxruntime {} PHOTO.jpg",
                first.with_extension("onnx").display(),
                lib.display()
            );
        }
    }

    if a.keep {
        eprintln!(
            "demo: --keep: coordinator {url}, metrics http://{}/metrics, admin token in {}",
            h.metrics_addr.map_or("-".to_string(), |m| m.to_string()),
            admin_file.display()
        );
        eprintln!(
            "demo: try `AUSWEEP_ADMIN_TOKEN=$(cat {}) ausweep status --coordinator {url}`; Ctrl-C stops",
            admin_file.display()
        );
        tokio::signal::ctrl_c().await?;
    }
    worker.stop().await?;
    h.shutdown().await;
    eprintln!("demo: stopped cleanly after {}", minutes(t0.elapsed()));
    Ok(())
}

/// Fails early, with the fix, when a backbone needs ImageNet weights that are not converted.
fn check_weights(m: &ausweep_coordinator::manifest::Manifest) -> Result<()> {
    let dir = ausweep_trainer::train::weights::weights_dir();
    if let Some((b, f)) = m.missing_weights(&dir).first() {
        bail!(
            "{b} starts from weights {} that are missing (run `make setup`)",
            f.display()
        );
    }
    Ok(())
}

/// Live progress until every job has finished; errors if the worker dies or time runs out.
async fn follow(
    admin: &mut client::Admin,
    sweep: &str,
    worker: &mut LocalWorker,
    t0: Instant,
    limit: Duration,
) -> Result<()> {
    let status = admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: sweep.into(),
        })
        .await?
        .into_inner();
    let total = status.jobs.len();
    let tty = std::io::stderr().is_terminal();
    let mut bars = Bars::new(&status);
    let mut stream = admin
        .watch(v1::WatchRequest {
            sweep_id: sweep.into(),
        })
        .await?
        .into_inner();
    let mut done = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !bars.all_finished() {
        tokio::select! {
            e = stream.message() => {
                let Some(e) = e? else { bail!("the coordinator closed the progress stream") };
                bars.apply(&e);
                let state = e.state();
                // Without a terminal: a line when a job starts, finishes or is retried.
                let news = e.progress.is_none()
                    && (state != v1::JobState::Pending || e.attempt > 0);
                if !tty && news {
                    if state == v1::JobState::Succeeded || state == v1::JobState::Failed {
                        done += 1;
                    }
                    eprintln!(
                        "[{:>7}] {done:>2}/{total} finished  {}  {:?} (attempt {}) {}",
                        minutes(t0.elapsed()),
                        e.job_id,
                        state,
                        e.attempt,
                        e.message
                    );
                }
            }
            _ = tick.tick() => {
                // Pending reasons and dependency states change without a job event.
                if let Ok(st) = admin.get_sweep(v1::GetSweepRequest { sweep_id: sweep.into() }).await {
                    bars.refresh(&st.into_inner());
                }
                if let Some(s) = worker.exited() {
                    bail!("the local worker exited with {s}:\n{}", worker.tail());
                }
                if t0.elapsed() > limit {
                    bail!("the demo did not finish within {} min (--timeout-min)", limit.as_secs() / 60);
                }
            }
        }
    }
    Ok(())
}
