//! The admin service: submit, list, get, cancel, resubmit-failed, watch, workers, drain and
//! checkpoint download.

use super::{convert, status};
use crate::auth::{self, TokenHash};
use crate::sched::Scheduler;
use crate::store::blobs::Blobs;
use crate::{manifest, plan};
use ausweep_proto::v1::{self, admin_server::Admin};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The admin service.
pub struct AdminSvc {
    sched: Scheduler,
    admin: TokenHash,
    blobs: Blobs,
    max_manifest: usize,
}

impl AdminSvc {
    /// A service checking calls against the admin token's hash; checkpoints come from `blobs`;
    /// manifests up to `max_manifest` bytes.
    pub fn new(sched: Scheduler, admin: TokenHash, blobs: Blobs, max_manifest: usize) -> Self {
        Self {
            sched,
            admin,
            blobs,
            max_manifest,
        }
    }

    fn auth<T>(&self, req: &Request<T>) -> Result<(), Status> {
        auth::require(req.metadata(), &self.admin, "admin")
    }

    /// The id of the sweep an argument names (id, name: its newest version, or id prefix).
    async fn sweep_id(&self, arg: &str) -> Result<String, Status> {
        let arg = sweep_arg(arg)?;
        self.sched
            .call(move |st, _, _| st.resolve_sweep(&arg))
            .await
            .map_err(status)
    }
}

fn sweep_arg(id: &str) -> Result<String, Status> {
    if auth::valid_id(id, 64) {
        Ok(id.to_string())
    } else {
        Err(Status::invalid_argument(format!(
            "`{id}` is not a sweep id"
        )))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::JobEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminSvc {
    async fn submit(
        &self,
        req: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitReply>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        let file = if r.file_name.is_empty() {
            "<manifest>".to_string()
        } else {
            r.file_name.chars().take(200).collect()
        };
        if r.manifest_yaml.len() > self.max_manifest {
            return Err(Status::invalid_argument(format!(
                "{file}: the manifest is {} bytes; this coordinator accepts at most {} \
                 (ausweep coordinator --max-manifest-kib)",
                r.manifest_yaml.len(),
                self.max_manifest
            )));
        }
        let max = self.max_manifest;
        // Parsing, expanding and encoding a large sweep is CPU work: on a blocking thread, off
        // the runtime and the scheduler's loop (its transient allocations stay in that thread's
        // arena, which the trim below hands back whole).
        let (parsed, jobs, specs) = tokio::task::spawn_blocking(move || {
            let parsed = manifest::parse_limited(&r.manifest_yaml, &file, max)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let jobs = plan::expand(&parsed.sweep_id, &parsed.manifest)
                .map_err(|e| Status::invalid_argument(format!("{file}: {e}")))?;
            let specs = plan::encode_specs(&parsed.sweep_id, &jobs)
                .map_err(|e| Status::internal(format!("{file}: {e}")))?;
            Ok::<_, Status>((parsed, jobs, specs))
        })
        .await
        .map_err(|e| Status::internal(format!("submit: {e}")))??;
        let out = self
            .sched
            .call(move |st, now, b| st.submit(&parsed, jobs, specs, now, b))
            .await
            .map_err(status)?;
        if out.jobs >= crate::memory::LARGE_SUBMIT_JOBS {
            // The plan and the records' encodings are freed by now; hand them back, off the
            // answer's path.
            tokio::task::spawn_blocking(crate::memory::release_free_memory);
        }
        Ok(Response::new(v1::SubmitReply {
            sweep_id: out.sweep_id,
            name: out.name,
            version: out.version,
            created: out.created,
            jobs: out.jobs,
        }))
    }

    async fn list_sweeps(
        &self,
        req: Request<v1::ListSweepsRequest>,
    ) -> Result<Response<v1::ListSweepsReply>, Status> {
        self.auth(&req)?;
        let v = self
            .sched
            .call(|st, _, _| Ok(st.list_sweeps()))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::ListSweepsReply {
            sweeps: v.iter().map(convert::summary).collect(),
        }))
    }

    async fn get_sweep(
        &self,
        req: Request<v1::GetSweepRequest>,
    ) -> Result<Response<v1::SweepStatus>, Status> {
        self.auth(&req)?;
        let id = self.sweep_id(&req.get_ref().sweep_id).await?;
        let d = self
            .sched
            .call(move |st, now, _| st.sweep_detail(&id, now))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::SweepStatus {
            summary: Some(convert::summary(&d.view)),
            jobs: d.jobs.iter().map(convert::job).collect(),
            notice: d.notice,
            manifest_json: d.view.sweep.canonical.clone(),
            store_checkpoint_bytes: self.blobs.usage().0,
            store_limit_bytes: self.blobs.usage().1,
        }))
    }

    async fn cancel(
        &self,
        req: Request<v1::CancelRequest>,
    ) -> Result<Response<v1::CancelReply>, Status> {
        self.auth(&req)?;
        let id = self.sweep_id(&req.get_ref().sweep_id).await?;
        let n = self
            .sched
            .call({
                let id = id.clone();
                move |st, now, b| st.cancel(&id, now, b)
            })
            .await
            .map_err(status)?;
        Ok(Response::new(v1::CancelReply {
            cancelled: n,
            sweep_id: id,
        }))
    }

    async fn resubmit_failed(
        &self,
        req: Request<v1::ResubmitFailedRequest>,
    ) -> Result<Response<v1::ResubmitFailedReply>, Status> {
        self.auth(&req)?;
        let id = self.sweep_id(&req.get_ref().sweep_id).await?;
        let n = self
            .sched
            .call({
                let id = id.clone();
                move |st, _, b| st.resubmit_failed(&id, b)
            })
            .await
            .map_err(status)?;
        Ok(Response::new(v1::ResubmitFailedReply {
            requeued: n,
            sweep_id: id,
        }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        req: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.auth(&req)?;
        let id = self.sweep_id(&req.get_ref().sweep_id).await?;
        // Subscribe before the snapshot so nothing falls between them.
        let mut rx = self.sched.subscribe();
        let sid = id.clone();
        let detail = self
            .sched
            .call(move |st, now, _| st.sweep_detail(&sid, now))
            .await
            .map_err(status)?;
        let (tx, out) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            for j in &detail.jobs {
                let e = v1::JobEvent {
                    sweep_id: id.clone(),
                    job_id: j.job.id.clone(),
                    state: convert::job_state(j.job.state) as i32,
                    attempt: j.job.attempt,
                    progress: j.progress.as_ref().map(convert::progress_out),
                    message: if j.pending_reason.is_empty() {
                        j.job.last_error.clone()
                    } else {
                        j.pending_reason.clone()
                    },
                };
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e.sweep == id => {
                        if tx.send(Ok(convert::event(&e))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "watcher fell {n} events behind; watch again"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn list_workers(
        &self,
        req: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersReply>, Status> {
        self.auth(&req)?;
        let v = self
            .sched
            .call(|st, now, _| Ok(st.list_workers(now)))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::ListWorkersReply {
            workers: v.iter().map(convert::worker).collect(),
        }))
    }

    async fn drain_worker(
        &self,
        req: Request<v1::DrainWorkerRequest>,
    ) -> Result<Response<v1::DrainWorkerReply>, Status> {
        self.auth(&req)?;
        let id = req.into_inner().worker_id;
        let leased = self
            .sched
            .call(move |st, _, batch| st.drain(&id, batch))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::DrainWorkerReply {
            found: leased.is_some(),
            leased_jobs: leased.unwrap_or_default(),
        }))
    }

    type DownloadCheckpointStream = super::ChunkStream;

    async fn download_checkpoint(
        &self,
        req: Request<v1::DownloadRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        self.auth(&req)?;
        let sha = req.into_inner().sha256;
        Ok(Response::new(super::blob_stream(&self.blobs, sha)?))
    }
}
