//! `ausweep coordinator` and `ausweep worker` child processes, killed on drop so a failing test
//! leaves nothing behind. The binary's path comes from the caller (`env!("CARGO_BIN_EXE_ausweep")`
//! in the root package's tests).

use crate::wait::{self, Seen};
use crate::{ADMIN, HEARTBEAT_MS, JOIN};
use ausweep_coordinator::client;
use ausweep_proto::v1;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

fn append(log: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
}

/// The text of a log file from byte `from` on.
fn read_from(log: &Path, from: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// What a wait for `child` to exit sees: its status, or `context()` while it runs.
pub fn exit_seen(child: &mut Child, context: impl FnOnce() -> String) -> Seen<ExitStatus> {
    match child.try_wait() {
        Ok(Some(s)) => Seen::Done(s),
        Ok(None) => Seen::Not(context()),
        Err(e) => Seen::Never(e.to_string()),
    }
}

/// A coordinator child process on a sled store in `data`. Its first start binds port 0 and
/// reads the port it got from its log (no race for a free port); restarts reuse that port.
pub struct Coordinator {
    /// The running process, if any.
    pub child: Option<Child>,
    /// The `ausweep` binary.
    pub bin: PathBuf,
    /// The port it serves on (0 before the first start).
    pub port: u16,
    /// Its `--data-dir`.
    pub data: PathBuf,
    /// Its stderr, appended across restarts.
    pub log: PathBuf,
    /// `--lease-ms`.
    pub lease_ms: u64,
    /// Extra environment for the next spawn (e.g. a fault to inject).
    pub env: Vec<(String, String)>,
}

impl Coordinator {
    /// Starts a coordinator under `root` (`root/coord`, `root/coordinator.log`).
    pub fn start(bin: &Path, root: &Path, lease_ms: u64) -> Self {
        std::fs::create_dir_all(root).expect("create the test root");
        let mut c = Coordinator {
            child: None,
            bin: bin.to_path_buf(),
            port: 0,
            data: root.join("coord"),
            log: root.join("coordinator.log"),
            lease_ms,
            env: Vec::new(),
        };
        c.spawn();
        c
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        read_from(&self.log, 0)
    }

    /// Starts the process (again); on the first start, waits for the port it bound.
    pub fn spawn(&mut self) {
        let from = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let child = Command::new(&self.bin)
            .args([
                "coordinator",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .arg("--data-dir")
            .arg(&self.data)
            .args([
                "--heartbeat-ms",
                &HEARTBEAT_MS.to_string(),
                "--lease-ms",
                &self.lease_ms.to_string(),
            ])
            .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
            .env("AUSWEEP_JOIN_TOKEN", JOIN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(append(&self.log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
        if self.port == 0 {
            let log = self.log.clone();
            self.port = wait::until_blocking(
                "the coordinator to report its port",
                Duration::from_secs(60),
                Duration::from_millis(20),
                || {
                    let text = read_from(&log, from);
                    match text
                        .lines()
                        .find_map(|l| l.split("listening on ").nth(1))
                        .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok())
                    {
                        Some(a) => Seen::Done(a.port()),
                        None => Seen::Not(text),
                    }
                },
            );
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (20 s, then SIGKILL): the store is closed cleanly.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            wait::until_blocking(
                "the coordinator to exit after SIGTERM",
                Duration::from_secs(20),
                Duration::from_millis(50),
                || exit_seen(&mut c, || "still running".into()),
            );
        }
    }

    /// An admin client, once the coordinator answers (60 s).
    pub async fn admin(&self) -> client::Admin {
        let url = self.url();
        wait::until(
            "the coordinator to answer",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let url = url.clone();
                let log = self.log.clone();
                async move {
                    let err = match client::connect(&url, None).await {
                        Ok(ch) => {
                            let mut a = client::admin(ch, ADMIN).expect("admin client");
                            match a.list_sweeps(v1::ListSweepsRequest {}).await {
                                Ok(_) => return Seen::Done(a),
                                Err(s) => s.message().to_string(),
                            }
                        }
                        Err(e) => e.to_string(),
                    };
                    Seen::Not(format!("{err}\n{}", read_from(&log, 0)))
                }
            },
        )
        .await
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `ausweep worker --allow-cpu` child process.
pub struct Worker {
    /// The process.
    pub child: Child,
    /// Its `--name`.
    pub name: String,
    /// Its `--work-dir`.
    pub dir: PathBuf,
    /// Its stderr, appended across restarts.
    pub log: PathBuf,
}

impl Worker {
    /// Starts worker `name` against `url`, working in `root/name`, logging to `root/name.log`,
    /// with extra environment `env`. One core per worker (`AUSWEEP_CPU_CORES=1`): two CPU
    /// workers share two cores without oversubscribing them.
    pub fn start(bin: &Path, url: &str, root: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let token = root.join("join-token");
        std::fs::write(&token, JOIN).expect("write the join token");
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("create the work dir");
        let log = root.join(format!("{name}.log"));
        let mut c = Command::new(bin);
        c.args([
            "worker",
            "--allow-cpu",
            "--coordinator",
            url,
            "--name",
            name,
        ])
        .arg("--join-token-file")
        .arg(&token)
        .arg("--work-dir")
        .arg(&dir)
        .args(["--drain-timeout-s", "120"])
        .env("CUDA_VISIBLE_DEVICES", "")
        .env("AUSWEEP_CPU_CORES", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(append(&log));
        for (k, v) in env {
            c.env(k, v);
        }
        Worker {
            child: c
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
            name: name.into(),
            dir,
            log,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        read_from(&self.log, 0)
    }

    /// Sends a signal (`-TERM`, `-KILL`, ...); panics when the process is gone.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {sig} {}: no such process", self.name);
    }

    /// Waits for the process to exit (panics with its log after `limit`).
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let what = format!("worker {} to exit", self.name);
        let log = self.log.clone();
        let child = &mut self.child;
        wait::until(&what, limit, Duration::from_millis(50), || {
            let seen = exit_seen(child, || read_from(&log, 0));
            async move { seen }
        })
        .await
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every worker's log, headed by its path: context for a failed wait.
pub fn logs(workers: &[&Worker]) -> String {
    workers
        .iter()
        .map(|w| format!("--- {}\n{}", w.log.display(), w.log()))
        .collect::<Vec<_>>()
        .join("\n")
}
