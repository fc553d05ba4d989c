//! `ausweep launch slurm`: an elastic pool of workers from Slurm. Beside the coordinator, it
//! watches the pending work through the admin API and submits worker allocations with `sbatch`
//! while runnable jobs wait (up to a maximum); the workers it starts exit by themselves after an
//! idle timeout, so the pool shrinks to nothing when the work is done.

use crate::conn::Conn;
use anyhow::{bail, Context, Result};
use ausweep_proto::v1;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `ausweep launch slurm` runs with (its flags fill it).
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub conn: Conn,
    /// The sbatch recipe each allocation runs (e.g. experiments/deploy/slurm-worker.sbatch).
    pub recipe: PathBuf,
    /// Most allocations queued or running at once.
    pub max_allocations: usize,
    /// An extra sbatch option, repeatable (partition, account, time limit, GRES, ...), e.g.
    /// `--sbatch-arg=--partition=gpu --sbatch-arg=--time=12:00:00`.
    pub sbatch_args: Vec<String>,
    /// Workers exit after this many seconds without a job (exported as AUSWEEP_IDLE_EXIT_S).
    pub idle_exit_s: u64,
    /// Seconds between two looks at the queue.
    pub poll_s: u64,
    /// Slurm job name of the allocations; only allocations of this name are counted.
    pub job_name: String,
    /// The weights directory the workers use (shared with this host): stage-1 jobs whose
    /// starting weights are missing there get no allocation. Unchecked when absent.
    pub weights: Option<PathBuf>,
    /// Longest wait, seconds, for one `squeue` or `sbatch` (a hung slurmctld costs one round).
    pub slurm_timeout_s: u64,
}

/// What the launcher saw: jobs a new worker could run now, and why the other pending ones
/// would not run on one (reason → jobs).
#[derive(Debug, Default, PartialEq)]
pub struct Demand {
    /// Pending jobs a new allocation could run.
    pub runnable: usize,
    /// Pending jobs no allocation would help, by reason.
    pub blocked: BTreeMap<String, usize>,
}

impl Demand {
    /// One line for the log: runnable count and why the others do not count.
    pub fn describe(&self) -> String {
        let mut s = format!("{} runnable job(s)", self.runnable);
        if !self.blocked.is_empty() {
            let why: Vec<String> = self
                .blocked
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            s.push_str(&format!("; not submitting for {}", why.join(", ")));
        }
        s
    }
}

/// Why a pending job would not run on a new allocation (None: it would), from the class of its
/// pending reason (the coordinator's `pending_class`) and the starting weights it lacks
/// (`missing`: backbone to file).
pub fn blocker(j: &v1::JobStatus, missing: &BTreeMap<String, PathBuf>) -> Option<String> {
    match j.pending_class() {
        v1::PendingClass::DependencyWaiting => return Some("waiting on a dependency".into()),
        v1::PendingClass::DependencyFailed => {
            return Some("whose dependency failed or was cancelled (resubmit-failed)".into())
        }
        v1::PendingClass::SweepCancelled => return Some("of a cancelled sweep".into()),
        _ => {}
    }
    if j.stage == 1 {
        if let Some(f) = missing.get(&j.backbone) {
            let imagenet = f.file_name() == Some(format!("{}.safetensors", j.backbone).as_ref());
            return Some(if imagenet {
                format!(
                    "missing weights {} (`ausweep weights fetch {}`)",
                    f.display(),
                    j.backbone
                )
            } else {
                format!("missing weights {}", f.display())
            });
        }
    }
    None
}

/// Pending jobs over every live sweep, sorted into those an allocation would run and the rest.
async fn demand(
    admin: &mut ausweep_coordinator::client::Admin,
    weights: Option<&Path>,
) -> Result<Demand> {
    let sweeps = admin
        .list_sweeps(v1::ListSweepsRequest {})
        .await?
        .into_inner();
    let mut d = Demand::default();
    for s in sweeps
        .sweeps
        .iter()
        .filter(|s| !s.cancelled && s.pending > 0)
    {
        let st = admin
            .get_sweep(v1::GetSweepRequest {
                sweep_id: s.sweep_id.clone(),
            })
            .await?
            .into_inner();
        let missing: BTreeMap<String, PathBuf> = match weights {
            Some(dir) => ausweep_coordinator::manifest::from_canonical(&st.manifest_json)
                .with_context(|| format!("sweep {}: its manifest", s.sweep_id))?
                .missing_weights(dir)
                .into_iter()
                .map(|(b, f)| (b.to_string(), f))
                .collect(),
            None => BTreeMap::new(),
        };
        for j in st
            .jobs
            .iter()
            .filter(|j| j.state() == v1::JobState::Pending)
        {
            match blocker(j, &missing) {
                None => d.runnable += 1,
                Some(why) => *d.blocked.entry(why).or_default() += 1,
            }
        }
    }
    Ok(d)
}

/// Runs an external command to its end, or kills it after `limit`: its output, or an error
/// naming the command and what went wrong (not found, timed out, its stderr on failure).
pub async fn bounded(mut cmd: tokio::process::Command, limit: Duration) -> Result<String> {
    let name = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("running {name}"))?;
    let o = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(o) => o.with_context(|| format!("waiting for {name}"))?,
        Err(_) => bail!(
            "{name} did not finish within {} s (killed)",
            limit.as_secs_f64()
        ),
    };
    if !o.status.success() {
        bail!("{name}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Slurm job ids of our allocations, queued or running.
async fn allocations(job_name: &str, limit: Duration) -> Result<Vec<String>> {
    let mut c = tokio::process::Command::new("squeue");
    c.args(["-h", "-o", "%i", &format!("--name={job_name}")]);
    let out = bounded(c, limit)
        .await
        .context("is Slurm's client installed and SLURM_CONF set?")?;
    Ok(out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

async fn sbatch(a: &SlurmOptions) -> Result<String> {
    let mut c = tokio::process::Command::new("sbatch");
    c.arg("--parsable")
        .arg(format!("--job-name={}", a.job_name))
        .args(&a.sbatch_args)
        .arg(&a.recipe)
        .env("AUSWEEP_COORDINATOR", &a.conn.coordinator)
        .env("AUSWEEP_IDLE_EXIT_S", a.idle_exit_s.to_string());
    Ok(bounded(c, Duration::from_secs(a.slurm_timeout_s.max(1)))
        .await?
        .trim()
        .to_string())
}

/// How many allocations to add: enough for the runnable jobs, up to the maximum.
pub fn to_submit(runnable: usize, allocations: usize, max: usize) -> usize {
    runnable.min(max).saturating_sub(allocations)
}

/// Runs the launcher until SIGTERM / Ctrl-C.
pub async fn run(a: SlurmOptions) -> Result<()> {
    if !a.recipe.is_file() {
        bail!("--recipe {}: no such file", a.recipe.display());
    }
    let mut admin = a.conn.admin("launch slurm").await?;
    let mut last = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(a.poll_s.max(1)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
        let (demand, allocs) = match (
            demand(&mut admin, a.weights.as_deref()).await,
            allocations(&a.job_name, Duration::from_secs(a.slurm_timeout_s.max(1))).await,
        ) {
            (Ok(d), Ok(al)) => (d, al),
            (Err(e), _) | (_, Err(e)) => {
                let why = format!("launch: not deciding this round: {e:#}");
                if why != last {
                    eprintln!("{why}");
                    last = why;
                }
                continue;
            }
        };
        let add = to_submit(demand.runnable, allocs.len(), a.max_allocations);
        let state = format!(
            "launch: {}, {} allocation(s) (max {})",
            demand.describe(),
            allocs.len(),
            a.max_allocations
        );
        if add == 0 {
            if state != last {
                eprintln!("{state}");
                last = state;
            }
            continue;
        }
        for _ in 0..add {
            match sbatch(&a).await {
                Ok(id) => eprintln!("{state}: submitted allocation {id}"),
                Err(e) => {
                    eprintln!("{state}: {e:#}");
                    break;
                }
            }
        }
        last.clear();
    }
    eprintln!("launch: stopped (allocations already submitted keep running until idle)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{blocker, bounded, to_submit, Demand};
    use ausweep_proto::v1;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    fn job(stage: u32, backbone: &str, class: v1::PendingClass) -> v1::JobStatus {
        v1::JobStatus {
            stage,
            backbone: backbone.into(),
            pending_class: class as i32,
            // The words are for people: the launcher must not read them.
            pending_reason: "sweep cancelled; waiting on dependency".into(),
            ..Default::default()
        }
    }

    #[test]
    fn jobs_no_allocation_would_run_are_not_counted_and_say_why() {
        let missing = BTreeMap::from([(
            "densenet121".to_string(),
            PathBuf::from("/w/densenet121.safetensors"),
        )]);
        let free = v1::PendingClass::NoWorker;
        assert_eq!(blocker(&job(1, "mobilenet_v2", free), &missing), None);
        assert_eq!(blocker(&job(2, "densenet121", free), &missing), None);
        let cases = [
            (
                job(1, "densenet121", free),
                "missing weights /w/densenet121.safetensors (`ausweep weights fetch densenet121`)",
            ),
            (
                job(2, "mobilenet_v2", v1::PendingClass::DependencyWaiting),
                "waiting on a dependency",
            ),
            (
                job(2, "mobilenet_v2", v1::PendingClass::DependencyFailed),
                "failed or was cancelled",
            ),
            (
                job(1, "mobilenet_v2", v1::PendingClass::SweepCancelled),
                "cancelled sweep",
            ),
        ];
        for (j, want) in cases {
            let got = blocker(&j, &missing).unwrap_or_default();
            assert!(got.contains(want), "{:?}: {got:?}", j.pending_class());
        }
        let d = Demand {
            runnable: 2,
            blocked: BTreeMap::from([("missing weights /w/x".to_string(), 3)]),
        };
        assert_eq!(
            d.describe(),
            "2 runnable job(s); not submitting for 3 missing weights /w/x"
        );
    }

    #[test]
    fn submits_for_runnable_jobs_up_to_the_maximum() {
        assert_eq!(to_submit(0, 0, 4), 0);
        assert_eq!(to_submit(3, 0, 4), 3);
        assert_eq!(to_submit(9, 1, 4), 3);
        assert_eq!(to_submit(2, 3, 4), 0);
        assert_eq!(to_submit(9, 4, 4), 0);
    }

    #[tokio::test]
    async fn a_hung_slurm_command_is_killed_at_its_limit_and_named() {
        let mut c = tokio::process::Command::new("sleep");
        c.arg("600");
        let err = bounded(c, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "sleep did not finish within 0.3 s (killed)"
        );
        let mut c = tokio::process::Command::new("sh");
        c.args(["-c", "echo 'sbatch: error: invalid partition' >&2; exit 1"]);
        let err = bounded(c, Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(err.to_string(), "sh: sbatch: error: invalid partition");
        let mut c = tokio::process::Command::new("echo");
        c.arg("4242");
        assert_eq!(bounded(c, Duration::from_secs(30)).await.unwrap(), "4242\n");
    }
}
