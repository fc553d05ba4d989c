//! The admin verbs, each one call to the coordinator printed as a table or JSON:
//! `submit`, `status`, `watch`, `cancel`, `resubmit-failed`, `workers`, `drain`, and `plan`
//! (no coordinator).

use crate::conn::Conn;
use crate::views::{self, Output};
use anyhow::{bail, Context, Result};
use ausweep_proto::v1;
use std::path::Path;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// `ausweep submit`: checks the manifest here (at most `max_bytes`), then submits it.
pub async fn submit(conn: &Conn, file: &Path, max_bytes: usize, output: Output) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    // Validate locally first: the same errors, without a round trip.
    ausweep_coordinator::manifest::parse_limited(&text, &name, max_bytes)?;
    let r = conn
        .admin("this command")
        .await?
        .submit(v1::SubmitRequest {
            manifest_yaml: text,
            file_name: name,
        })
        .await?
        .into_inner();
    if output.is_json() {
        println!("{}", views::submitted(&r));
        return Ok(());
    }
    let what = if r.created {
        "submitted"
    } else {
        "already submitted"
    };
    println!(
        "{what}: sweep {} ({} v{}, {} jobs)",
        r.sweep_id, r.name, r.version, r.jobs
    );
    Ok(())
}

/// `ausweep status`: every sweep.
pub async fn sweeps(conn: &Conn, output: Output) -> Result<()> {
    let r = conn
        .admin("this command")
        .await?
        .list_sweeps(v1::ListSweepsRequest {})
        .await?
        .into_inner();
    if output.is_json() {
        println!("{}", views::sweeps(&r));
        return Ok(());
    }
    println!(
        "{:<18} {:<16} {:>3} {:>6} {:>8} {:>8} {:>5} {:>7}",
        "SWEEP", "NAME", "V", "TOTAL", "PENDING", "RUNNING", "DONE", "FAILED"
    );
    for s in r.sweeps {
        println!(
            "{:<18} {:<16} {:>3} {:>6} {:>8} {:>8} {:>5} {:>7}{}",
            s.sweep_id,
            s.name,
            s.version,
            s.total,
            s.pending,
            s.leased,
            s.succeeded,
            s.failed,
            if s.cancelled { " (cancelled)" } else { "" }
        );
    }
    Ok(())
}

/// `ausweep status SWEEP`: one sweep's jobs, with why the pending ones wait.
pub async fn sweep(conn: &Conn, id: String, output: Output) -> Result<()> {
    let r = conn
        .admin("this command")
        .await?
        .get_sweep(v1::GetSweepRequest {
            sweep_id: id.clone(),
        })
        .await?
        .into_inner();
    if output.is_json() {
        // The id the coordinator resolved (the argument may be a name).
        let id = r.summary.as_ref().map_or(id, |s| s.sweep_id.clone());
        println!("{}", views::sweep(&id, &r));
        return Ok(());
    }
    if !r.notice.is_empty() {
        println!("note: {}", r.notice);
    }
    println!(
        "{:<14} {:>4} {:>5} {:<9} {:>7} {:>6} {:>4} {:<12} DETAIL",
        "BACKBONE", "FOLD", "STAGE", "STATE", "ATTEMPT", "FAILED", "LOST", "WORKER"
    );
    for j in r.jobs {
        let detail = match (&j.result, &j.progress) {
            (Some(res), _) => match &res.intensity {
                Some(i) => format!("avg ICC {:.3}, MAE {:.3}", i.avg_icc, i.avg_mae),
                None => format!("avg F1 {:.3}", res.avg_f1),
            },
            (None, Some(p)) => {
                format!("epoch {} step {} loss {:.4}", p.epoch, p.step, p.loss)
            }
            _ if !j.pending_reason.is_empty() => j.pending_reason.clone(),
            _ => j.last_error.clone(),
        };
        // Lost attempts do not use up the failure budget (each one extends it).
        let budget = j.max_attempts.saturating_sub(j.lost_attempts);
        println!(
            "{:<14} {:>4} {:>5} {:<9} {:>7} {:>6} {:>4} {:<12} {}{}",
            j.backbone,
            j.fold,
            j.stage,
            views::state_shown(j.state),
            j.attempt,
            format!("{}/{budget}", j.failures),
            j.lost_attempts,
            j.worker_id,
            detail,
            if j.grid_point.is_empty() {
                String::new()
            } else {
                format!(" [{}]", j.grid_point)
            }
        );
    }
    println!(
        "checkpoint store: {}{}",
        mib(r.store_checkpoint_bytes),
        if r.store_limit_bytes > 0 {
            format!(" of {} allowed", mib(r.store_limit_bytes))
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `ausweep watch SWEEP`: the sweep's changes and progress, live.
pub async fn watch(conn: &Conn, sweep: String, output: Output) -> Result<()> {
    let mut client = conn.admin("this command").await?;
    let status = client
        .get_sweep(v1::GetSweepRequest {
            sweep_id: sweep.clone(),
        })
        .await?
        .into_inner();
    // Follow the sweep the name resolved to now, not a newer version submitted later.
    let sweep = status
        .summary
        .as_ref()
        .map_or(sweep, |s| s.sweep_id.clone());
    crate::watch::follow(&mut client, &sweep, status, output).await?;
    Ok(())
}

/// `ausweep cancel SWEEP`.
pub async fn cancel(conn: &Conn, sweep: String, output: Output) -> Result<()> {
    let r = conn
        .admin("this command")
        .await?
        .cancel(v1::CancelRequest {
            sweep_id: sweep.clone(),
        })
        .await?
        .into_inner();
    if output.is_json() {
        println!("{}", views::cancelled(&r.sweep_id, r.cancelled));
    } else {
        println!("cancelled {} jobs", r.cancelled);
    }
    Ok(())
}

/// `ausweep resubmit-failed SWEEP`.
pub async fn resubmit_failed(conn: &Conn, sweep: String, output: Output) -> Result<()> {
    let r = conn
        .admin("this command")
        .await?
        .resubmit_failed(v1::ResubmitFailedRequest {
            sweep_id: sweep.clone(),
        })
        .await?
        .into_inner();
    if output.is_json() {
        println!("{}", views::requeued(&r.sweep_id, r.requeued));
    } else {
        println!("requeued {} jobs", r.requeued);
    }
    Ok(())
}

/// `ausweep plan FILE`: the manifest's jobs, checked without a coordinator.
pub fn plan(file: &Path, max_bytes: usize, output: Output) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let parsed = ausweep_coordinator::manifest::parse_limited(&text, &name, max_bytes)?;
    let jobs = ausweep_coordinator::plan::expand(&parsed.sweep_id, &parsed.manifest)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if output.is_json() {
        println!("{}", views::plan(&parsed, &jobs));
    } else {
        print!("{}", views::plan_table(&parsed, &jobs));
    }
    Ok(())
}

/// `ausweep workers`.
pub async fn workers(conn: &Conn, output: Output) -> Result<()> {
    let r = conn
        .admin("this command")
        .await?
        .list_workers(v1::ListWorkersRequest {})
        .await?
        .into_inner();
    if output.is_json() {
        println!("{}", views::workers(&r));
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<6} {:<40} {:<5} WEIGHTS",
        "WORKER", "HOST", "ALIVE", "DEVICES", "JOBS"
    );
    for w in r.workers {
        let devs: Vec<String> = w
            .devices
            .iter()
            .map(|d| {
                if d.kind() == v1::DeviceKind::Cuda {
                    format!("cuda{}:{}MiB", d.index, d.memory_mib)
                } else {
                    format!("cpu{}", d.index)
                }
            })
            .collect();
        let weights: Vec<&str> = w.weights.iter().map(|h| h.name.as_str()).collect();
        println!(
            "{:<20} {:<16} {:<6} {:<40} {:<5} {}{}",
            w.worker_id,
            w.hostname,
            if w.alive { "yes" } else { "no" },
            devs.join(","),
            w.leased_jobs.len(),
            if weights.is_empty() {
                "none".to_string()
            } else {
                weights.join(",")
            },
            if w.draining { " (draining)" } else { "" }
        );
    }
    Ok(())
}

/// `ausweep drain WORKER`.
pub async fn drain(conn: &Conn, worker: String, output: Output) -> Result<()> {
    let r = conn
        .admin("this command")
        .await?
        .drain_worker(v1::DrainWorkerRequest {
            worker_id: worker.clone(),
        })
        .await?
        .into_inner();
    if !r.found {
        bail!("no worker `{worker}` (see `ausweep workers`)");
    }
    if output.is_json() {
        println!("{}", views::drained(&worker, &r));
        return Ok(());
    }
    println!(
        "draining {worker}: {} running job(s) stop at their next checkpoint",
        r.leased_jobs.len()
    );
    Ok(())
}
