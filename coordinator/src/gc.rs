//! Checkpoint garbage collection: blobs go only after the records naming them are durably
//! deleted, and blobs no record names (left by a crash between the two) go at start.

use crate::sched::Scheduler;
use crate::server::ServeError;
use crate::store::blobs::Blobs;
use std::collections::HashSet;
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

/// At start, before serving: removes blobs that no checkpoint record names. Returns how many.
pub async fn sweep_orphans(sched: &Scheduler, blobs: &Blobs) -> Result<usize, ServeError> {
    let named: HashSet<String> = sched
        .call(|st, _, _| Ok(st.checkpoint_shas()))
        .await
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let b = blobs.clone();
    let removed = tokio::task::spawn_blocking(move || -> Result<usize, ServeError> {
        let mut n = 0;
        for sha in b.list()? {
            if !named.contains(&sha) {
                b.remove(&sha)?;
                n += 1;
            }
        }
        Ok(n)
    })
    .await
    .map_err(|e| ServeError::Config(e.to_string()))??;
    if removed > 0 {
        eprintln!("ausweep coordinator: removed {removed} checkpoint blob(s) no record names");
    }
    Ok(removed)
}
