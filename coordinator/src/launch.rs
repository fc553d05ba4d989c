//! `ausweep launch slurm`: an elastic pool of workers from Slurm. Beside the coordinator, it
//! watches the pending work through the admin API and submits worker allocations with `sbatch`
//! while runnable jobs wait (up to a maximum); the workers it starts exit by themselves after an
//! idle timeout, so the pool shrinks to nothing when the work is done.

use crate::cli::Conn;
use anyhow::{bail, Context, Result};
use ausweep_proto::v1;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Flags of `ausweep launch slurm`.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The sbatch recipe each allocation runs (e.g. experiments/deploy/slurm-worker.sbatch).
    #[arg(long)]
    pub recipe: PathBuf,
    /// Most allocations queued or running at once.
    #[arg(long, default_value_t = 4)]
    pub max_allocations: usize,
    /// An extra sbatch option, repeatable (partition, account, time limit, GRES, ...), e.g.
    /// `--sbatch-arg=--partition=gpu --sbatch-arg=--time=12:00:00`.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Workers exit after this many seconds without a job (exported as AUSWEEP_IDLE_EXIT_S).
    #[arg(long, default_value_t = 300)]
    pub idle_exit_s: u64,
    /// Seconds between two looks at the queue.
    #[arg(long, default_value_t = 15)]
    pub poll_s: u64,
    /// Slurm job name of the allocations; only allocations of this name are counted.
    #[arg(long, default_value = "ausweep-worker")]
    pub job_name: String,
}

/// Pending jobs that could run now (not waiting on a dependency), over every live sweep.
async fn runnable(admin: &mut crate::client::Admin) -> Result<usize> {
    let sweeps = admin
        .list_sweeps(v1::ListSweepsRequest {})
        .await?
        .into_inner();
    let mut n = 0;
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
        n += st
            .jobs
            .iter()
            .filter(|j| {
                j.state() == v1::JobState::Pending
                    && !j.pending_reason.starts_with("waiting on dependency")
            })
            .count();
    }
    Ok(n)
}

/// Slurm job ids of our allocations, queued or running.
fn allocations(job_name: &str) -> Result<Vec<String>> {
    let o = Command::new("squeue")
        .args(["-h", "-o", "%i", &format!("--name={job_name}")])
        .output()
        .context("running squeue (is Slurm's client installed and SLURM_CONF set?)")?;
    if !o.status.success() {
        bail!("squeue: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn sbatch(a: &SlurmArgs) -> Result<String> {
    let o = Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--job-name={}", a.job_name))
        .args(&a.sbatch_args)
        .arg(&a.recipe)
        .env("AUSWEEP_COORDINATOR", &a.conn.coordinator)
        .env("AUSWEEP_IDLE_EXIT_S", a.idle_exit_s.to_string())
        .output()
        .context("running sbatch")?;
    if !o.status.success() {
        bail!("sbatch: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// How many allocations to add: enough for the runnable jobs, up to the maximum.
pub fn to_submit(runnable: usize, allocations: usize, max: usize) -> usize {
    runnable.min(max).saturating_sub(allocations)
}

/// Runs the launcher until SIGTERM / Ctrl-C.
pub async fn run(a: SlurmArgs) -> Result<()> {
    if !a.recipe.is_file() {
        bail!("--recipe {}: no such file", a.recipe.display());
    }
    let mut admin = crate::cli::admin(&a.conn).await?;
    let mut last = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(a.poll_s.max(1)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
        let (jobs, allocs) = match (runnable(&mut admin).await, allocations(&a.job_name)) {
            (Ok(j), Ok(al)) => (j, al),
            (Err(e), _) | (_, Err(e)) => {
                let why = format!("launch: not deciding this round: {e:#}");
                if why != last {
                    eprintln!("{why}");
                    last = why;
                }
                continue;
            }
        };
        let add = to_submit(jobs, allocs.len(), a.max_allocations);
        let state = format!(
            "launch: {jobs} runnable job(s), {} allocation(s) (max {})",
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
            match sbatch(&a) {
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
    use super::to_submit;

    #[test]
    fn submits_for_runnable_jobs_up_to_the_maximum() {
        assert_eq!(to_submit(0, 0, 4), 0);
        assert_eq!(to_submit(3, 0, 4), 3);
        assert_eq!(to_submit(9, 1, 4), 3);
        assert_eq!(to_submit(2, 3, 4), 0);
        assert_eq!(to_submit(9, 4, 4), 0);
    }
}
