//! Checkpoint garbage collection: blobs go only after the records naming them are durably
//! deleted, and blobs no record names (left by a crash between the two) go at start.

use crate::sched::Scheduler;
use crate::server::ServeError;
use crate::store::blobs::Blobs;
use tokio::sync::mpsc;

/// Removes the blobs of every committed batch of deleted checkpoint records.
pub async fn remove_garbage(mut rx: mpsc::UnboundedReceiver<Vec<String>>, blobs: Blobs) {
    while let Some(shas) = rx.recv().await {
        let b = blobs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for sha in shas {
                if let Err(e) = b.remove(&sha) {
                    eprintln!("ausweep coordinator: removing checkpoint {sha}: {e}");
                }
            }
        })
        .await;
    }
}

/// At start, before serving: removes the blobs of `found` (the files [`Blobs::open_listing`]
/// found) that no checkpoint record names. Returns how many.
pub async fn sweep_orphans(
    sched: &Scheduler,
    blobs: &Blobs,
    found: Vec<String>,
) -> Result<usize, ServeError> {
    let orphans = sched
        .call(move |st, _, _| Ok(st.unrecorded_checkpoints(found)))
        .await
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let removed = orphans.len();
    let b = blobs.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ServeError> {
        for sha in orphans {
            b.remove(&sha)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| ServeError::Config(e.to_string()))??;
    if removed > 0 {
        eprintln!("ausweep coordinator: removed {removed} checkpoint blob(s) no record names");
    }
    Ok(removed)
}
