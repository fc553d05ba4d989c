//! One child trainer process: spawned pinned to its device, stdout JSON lines parsed into
//! progress events, a tail of stderr kept, and its exit classified into a failure kind.

use super::devices::{Dev, Kind};
use super::AgentError;
use ausweep_proto::trainer::progress::Event;
use ausweep_proto::trainer::TrainerExit;
use ausweep_proto::v1::FailureKind;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Lines of stderr kept for the failure report.
const TAIL_LINES: usize = 30;

/// How to start a trainer.
#[derive(Debug, Clone)]
pub struct TrainerCmd {
    /// The executable (the agent's own binary unless overridden).
    pub program: PathBuf,
    /// Arguments placed before the job's own (normally `train`).
    pub prefix: Vec<String>,
    /// The weights directory the trainer reads (`AUSWEEP_WEIGHTS`): the one the agent advertises.
    pub weights_dir: PathBuf,
}

/// A running trainer.
pub struct Trainer {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_task: tokio::task::JoinHandle<()>,
    /// The child's process id.
    pub pid: u32,
}

/// Starts `program prefix… job.yaml --out out --device D [--init-checkpoint F]` in `dir`.
pub fn spawn(
    cmd: &TrainerCmd,
    dir: &Path,
    dev: &Dev,
    init: Option<&str>,
    label: String,
) -> Result<Trainer, AgentError> {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.prefix)
        .args(["job.yaml", "--out", "out", "--log-every", "5", "--device"])
        .arg(match dev.kind {
            Kind::Cpu => "cpu",
            Kind::Cuda => "cuda:0",
        })
        .current_dir(dir)
        .env("AUSWEEP_WEIGHTS", &cmd.weights_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(init) = init {
        c.args(["--init-checkpoint", init]);
    }
    c.envs(device_env(dev));
    // SAFETY: prctl and signal are async-signal-safe. PDEATHSIG asks the kernel to kill the
    // child when the agent dies, so no trainer outlives a killed agent. SIGTERM is ignored (the
    // disposition survives exec): a batch system signals every process of a job step (Slurm's
    // `scancel --signal=TERM`, its `--signal=TERM@T` before the time limit), and the trainer
    // must keep going to its next checkpoint while the agent drains; the agent stops it itself.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = c.spawn().map_err(|e| AgentError::Io {
        path: cmd.program.clone(),
        source: e,
    })?;
    let pid = child.id().unwrap_or(0);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| AgentError::Checkpoint("trainer has no stdout".into()))?;
    let stderr = child.stderr.take();
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let t = tail.clone();
    let stderr_task = tokio::spawn(async move {
        let Some(stderr) = stderr else { return };
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[{label}] {l}");
            if let Ok(mut t) = t.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(l);
            }
        }
    });
    Ok(Trainer {
        child,
        lines: BufReader::new(stdout).lines(),
        tail,
        stderr_task,
        pid,
    })
}

/// The environment that pins a trainer to its leased device, whatever started the agent.
/// A GPU is named by its UUID (CUDA numbers devices fastest-first unless told the PCI order,
/// so an NVML index can name another GPU); the trainer sees it as `cuda:0`. A CPU slot's
/// trainer sees no GPU and keeps to its share of the cores (libtorch's and rayon's pools).
pub fn device_env(dev: &Dev) -> Vec<(&'static str, String)> {
    match dev.kind {
        Kind::Cuda => vec![
            (
                "CUDA_VISIBLE_DEVICES",
                if dev.uuid.is_empty() {
                    dev.index.to_string()
                } else {
                    dev.uuid.clone()
                },
            ),
            // Without a UUID the index is NVML's, which is the PCI order.
            ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".into()),
        ],
        Kind::Cpu => vec![
            ("CUDA_VISIBLE_DEVICES", String::new()),
            ("OMP_NUM_THREADS", dev.threads.to_string()),
            ("RAYON_NUM_THREADS", dev.threads.to_string()),
        ],
    }
}

/// What the trainer said on one stdout line.
pub enum Line {
    /// A progress event.
    Event(Box<Event>),
    /// A line that is not an event (kept for the log).
    Other(String),
}

impl Trainer {
    /// The next stdout line; `None` at end of output.
    pub async fn next_line(&mut self) -> Option<Line> {
        match self.lines.next_line().await {
            Ok(Some(l)) => Some(match serde_json::from_str::<Event>(&l) {
                Ok(e) => Line::Event(Box::new(e)),
                Err(_) => Line::Other(l),
            }),
            _ => None,
        }
    }

    /// Kills the child (SIGKILL).
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Waits for the child to exit; returns its status and the tail of its stderr.
    pub async fn wait(mut self) -> (std::io::Result<ExitStatus>, String) {
        let status = self.child.wait().await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.stderr_task).await;
        let tail = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        (status, tail)
    }
}

/// Classifies a failed trainer by how it ended: its exit code (the agent↔trainer contract,
/// [`TrainerExit`]) or the signal that killed it; never by what it wrote. `resuming`: the
/// attempt was told to resume from a checkpoint (a bad checkpoint otherwise is the
/// dependency's, which no retry mends). The reason carries the tail of stderr for people.
pub fn classify(
    status: &std::io::Result<ExitStatus>,
    tail: &str,
    resuming: bool,
) -> (FailureKind, String) {
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".to_string(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    };
    let ended = status
        .as_ref()
        .ok()
        .and_then(|s| s.code())
        .map(TrainerExit::from_code);
    // Killed by a signal (the host's OOM killer, an operator) or not waited for: worth a retry.
    let kind = match ended {
        Some(TrainerExit::BadConfig) => FailureKind::BadConfig,
        Some(TrainerExit::Node) => FailureKind::Node,
        Some(TrainerExit::OutOfMemory) => FailureKind::OutOfMemory,
        Some(TrainerExit::BadCheckpoint) if resuming => FailureKind::BadCheckpoint,
        Some(TrainerExit::BadCheckpoint) => FailureKind::BadConfig,
        Some(TrainerExit::Done | TrainerExit::Failed) | None => FailureKind::Transient,
    };
    let reason = if tail.is_empty() {
        format!("trainer {how}")
    } else {
        format!("trainer {how}: {tail}")
    };
    (kind, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn failures_are_classified_by_exit_code_never_by_text() {
        let exited = |e: TrainerExit| Ok(ExitStatus::from_raw(e.code() << 8));
        let killed = Ok(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(classify(&killed, "", false).0, FailureKind::Transient);
        // Words that once decided the kind decide nothing now.
        let (k, r) = classify(
            &exited(TrainerExit::Failed),
            "error: torch: CUDA out of memory. Tried to allocate",
            false,
        );
        assert_eq!(k, FailureKind::Transient);
        assert!(
            r.contains("exit code 1") && r.contains("out of memory"),
            "{r}"
        );
        let cases = [
            (TrainerExit::OutOfMemory, false, FailureKind::OutOfMemory),
            (TrainerExit::BadConfig, false, FailureKind::BadConfig),
            (TrainerExit::Node, false, FailureKind::Node),
            (TrainerExit::BadCheckpoint, true, FailureKind::BadCheckpoint),
            (TrainerExit::BadCheckpoint, false, FailureKind::BadConfig),
            (TrainerExit::Failed, true, FailureKind::Transient),
        ];
        for (e, resuming, want) in cases {
            assert_eq!(classify(&exited(e), "", resuming).0, want, "{e:?}");
        }
        let odd = Ok(ExitStatus::from_raw(2 << 8));
        assert_eq!(classify(&odd, "field `x`", false).0, FailureKind::Transient);
    }

    fn gpu(index: u32, uuid: &str) -> Dev {
        Dev {
            index,
            kind: Kind::Cuda,
            name: "test GPU".into(),
            uuid: uuid.into(),
            memory_mib: 1,
            compute: None,
            threads: 0,
        }
    }

    /// The environment a real child trainer process starts with (a shell that writes `env`).
    async fn child_env(dev: &Dev, inherited: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let cmd = TrainerCmd {
            program: "/bin/sh".into(),
            prefix: vec!["-c".into(), "env > env.txt".into(), "sh".into()],
            weights_dir: dir.path().into(),
        };
        // What the agent inherited from whoever started it (systemd, a shell, Slurm).
        for (k, v) in inherited {
            std::env::set_var(k, v);
        }
        let t = spawn(&cmd, dir.path(), dev, None, "env".into()).unwrap();
        let (status, tail) = t.wait().await;
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "{status:?} {tail}"
        );
        let text = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("CUDA_"))
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_trainer_is_pinned_to_its_gpu_by_uuid_whatever_the_agent_inherited() {
        // An agent started by hand on a mixed node: CUDA's default order is fastest-first.
        let inherited = [
            ("CUDA_DEVICE_ORDER", "FASTEST_FIRST"),
            ("CUDA_VISIBLE_DEVICES", "0,1"),
        ];
        let uuid = "GPU-5f1c7a3e-0000-4000-8000-000000000001";
        assert_eq!(
            child_env(&gpu(1, uuid), &inherited).await,
            vec![
                "CUDA_DEVICE_ORDER=PCI_BUS_ID".to_string(),
                format!("CUDA_VISIBLE_DEVICES={uuid}")
            ]
        );
        // NVML gave no UUID: the NVML index, read in NVML's (PCI) order.
        assert_eq!(
            child_env(&gpu(1, ""), &inherited).await,
            vec![
                "CUDA_DEVICE_ORDER=PCI_BUS_ID".to_string(),
                "CUDA_VISIBLE_DEVICES=1".to_string()
            ]
        );
    }
}
