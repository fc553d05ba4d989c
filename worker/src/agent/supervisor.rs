//! One child trainer process: spawned pinned to its device, stdout JSON lines parsed into
//! progress events, a tail of stderr kept, and its exit classified into a failure kind.

use super::devices::{Dev, Kind};
use super::AgentError;
use crate::train::progress::Event;
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
    match dev.kind {
        // One device per child: the trainer sees its GPU as cuda:0.
        Kind::Cuda => c.env("CUDA_VISIBLE_DEVICES", dev.index.to_string()),
        // A CPU slot's trainer keeps to its share of the cores (libtorch's and rayon's pools).
        Kind::Cpu => c
            .env("CUDA_VISIBLE_DEVICES", "")
            .env("OMP_NUM_THREADS", dev.threads.to_string())
            .env("RAYON_NUM_THREADS", dev.threads.to_string()),
    };
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

/// Classifies a failed trainer: out of memory, bad configuration (never retried) or transient.
pub fn classify(status: &std::io::Result<ExitStatus>, tail: &str) -> (FailureKind, String) {
    use std::os::unix::process::ExitStatusExt;
    let lower = tail.to_lowercase();
    let how = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".to_string(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    };
    let last = tail.lines().last().unwrap_or("").trim();
    let kind = if lower.contains("out of memory") || lower.contains("outofmemory") {
        FailureKind::OutOfMemory
    } else if status
        .as_ref()
        .is_ok_and(|s| s.signal() == Some(libc::SIGKILL) && lower.is_empty())
    {
        // Killed without a word: the host's OOM killer or an operator; worth a retry.
        FailureKind::Transient
    } else if last.starts_with("error: data:")
        || last.starts_with("error: no ImageNet weights")
        || last.contains("field `")
        || last.starts_with("error: init_checkpoint")
    {
        FailureKind::BadConfig
    } else {
        FailureKind::Transient
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
    fn failures_are_classified() {
        let killed = Ok(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(classify(&killed, "").0, FailureKind::Transient);
        let oom = Ok(ExitStatus::from_raw(1 << 8));
        let (k, r) = classify(&oom, "error: torch: CUDA out of memory. Tried to allocate");
        assert_eq!(k, FailureKind::OutOfMemory);
        assert!(r.contains("exit code 1"), "{r}");
        assert_eq!(
            classify(&oom, "error: data: /x: no such directory").0,
            FailureKind::BadConfig
        );
        assert_eq!(classify(&oom, "segfault?").0, FailureKind::Transient);
    }
}
