//! Checkpoint transfer: a trainer checkpoint (safetensors + its JSON metadata) travels as one
//! content-addressed bundle, streamed in chunks with its sha256, retried; downloads land in a
//! local cache so a job's checkpoint is fetched once per node.

use super::session::{Retry, Session};
use super::AgentError;
use ausweep_proto::v1::{self, checkpoint_chunk::Part};
use ausweep_proto::wire::CHUNK_BYTES;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

/// First bytes of a bundle.
const MAGIC: &[u8; 8] = b"AUSWCKB1";
/// Uploads tried before an upload is given up.
const UPLOAD_TRIES: u32 = 5;

/// Test hook: corrupt the data of this many uploads (`AUSWEEP_FAULT_CORRUPT_UPLOADS`).
static CORRUPT_UPLOADS: AtomicU32 = AtomicU32::new(0);

/// Reads the fault-injection setting from the environment (tests only).
pub fn init_faults() {
    if let Some(n) = std::env::var("AUSWEEP_FAULT_CORRUPT_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        CORRUPT_UPLOADS.store(n, Ordering::Relaxed);
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// What an upload is for the coordinator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UploadKind {
    /// An epoch checkpoint with optimiser state (a resume point), with its validation F1.
    Epoch {
        /// Validation mean F1 at that epoch.
        val_f1: Option<f64>,
    },
    /// The final weights the result names (never a resume point).
    Final,
}

/// The local checkpoint cache: `<dir>/<sha256>.ckpt`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creates) the cache directory.
    pub fn open(dir: PathBuf) -> Result<Self, AgentError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self { dir })
    }

    /// Empties the cache (at agent start: what a killed agent left is re-downloaded on demand);
    /// returns the bytes freed.
    pub fn clear(&self) -> u64 {
        let mut freed = 0;
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let len = e.metadata().map_or(0, |m| m.len());
            if e.path().is_file() && std::fs::remove_file(e.path()).is_ok() {
                freed += len;
            }
        }
        freed
    }

    /// Where bundle `sha` lives.
    pub fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.ckpt"))
    }

    /// Packs `file` (`X.safetensors`) and `X.json` into a bundle in the cache; returns its
    /// sha256. The reading, hashing, writing and fsync (gigabytes for a large model with its
    /// optimiser state) run on a blocking thread: the runtime keeps heartbeating meanwhile.
    pub async fn pack(&self, file: &Path) -> Result<(String, u64), AgentError> {
        let (cache, file) = (self.clone(), file.to_path_buf());
        off_runtime(move || cache.pack_blocking(&file)).await
    }

    /// [`Cache::pack`] on the calling thread.
    pub fn pack_blocking(&self, file: &Path) -> Result<(String, u64), AgentError> {
        let json_path = file.with_extension("json");
        let json = std::fs::read(&json_path).map_err(io(&json_path))?;
        let tmp = self.dir.join(format!(
            ".pack-{}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut h = Sha256::new();
        let mut size = 0u64;
        {
            let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            let mut put = |b: &[u8]| -> Result<(), AgentError> {
                h.update(b);
                size += b.len() as u64;
                out.write_all(b).map_err(io(&tmp))
            };
            put(MAGIC)?;
            put(&(json.len() as u64).to_le_bytes())?;
            put(&json)?;
            let mut f = std::fs::File::open(file).map_err(io(file))?;
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                let n = f.read(&mut buf).map_err(io(file))?;
                if n == 0 {
                    break;
                }
                put(&buf[..n])?;
            }
        }
        let sha = hex::encode(h.finalize());
        let dst = self.path(&sha);
        ausweep_fsutil::commit(&tmp, &dst).map_err(io(&dst))?;
        Ok((sha, size))
    }

    /// Unpacks bundle `sha` into `<dst_stem>.safetensors` and `<dst_stem>.json`; returns the
    /// checkpoint's epoch (from its metadata). Runs on a blocking thread, as [`Cache::pack`].
    pub async fn unpack(&self, sha: &str, dst_stem: &Path) -> Result<u32, AgentError> {
        let (cache, sha, dst) = (self.clone(), sha.to_string(), dst_stem.to_path_buf());
        off_runtime(move || cache.unpack_blocking(&sha, &dst)).await
    }

    /// [`Cache::unpack`] on the calling thread.
    pub fn unpack_blocking(&self, sha: &str, dst_stem: &Path) -> Result<u32, AgentError> {
        let src = self.path(sha);
        let bad = |m: &str| AgentError::Checkpoint(format!("{}: {m}", src.display()));
        let mut f = std::fs::File::open(&src).map_err(io(&src))?;
        let mut head = [0u8; 16];
        f.read_exact(&mut head).map_err(|_| bad("too short"))?;
        if &head[..8] != MAGIC {
            return Err(bad("not an ausweep checkpoint bundle"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[8..]);
        let len = u64::from_le_bytes(len);
        if len > 16 << 20 {
            return Err(bad("metadata too large"));
        }
        let mut json = vec![0u8; len as usize];
        f.read_exact(&mut json)
            .map_err(|_| bad("truncated metadata"))?;
        let meta: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| bad(&format!("metadata: {e}")))?;
        let epoch = meta
            .get("epoch")
            .and_then(|e| e.as_u64())
            .ok_or_else(|| bad("metadata has no epoch"))? as u32;
        if let Some(dir) = dst_stem.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let tensors = dst_stem.with_extension("safetensors");
        let mut out = std::fs::File::create(&tensors).map_err(io(&tensors))?;
        std::io::copy(&mut f, &mut out).map_err(io(&tensors))?;
        out.sync_all().map_err(io(&tensors))?;
        // The metadata last: it marks the checkpoint complete for the trainer.
        let meta_path = dst_stem.with_extension("json");
        std::fs::write(&meta_path, &json).map_err(io(&meta_path))?;
        Ok(epoch)
    }

    /// Makes sure bundle `sha` is in the cache, downloading it (verified) when it is not.
    pub async fn fetch(&self, session: &Session, sha: &str) -> Result<PathBuf, AgentError> {
        let dst = self.path(sha);
        if dst.exists() {
            return Ok(dst);
        }
        let mut last = String::new();
        for _ in 0..UPLOAD_TRIES {
            match self.download_once(session, sha).await {
                Ok(()) => return Ok(dst),
                Err(e) => {
                    eprintln!("ausweep worker: download of checkpoint {sha}: {e}; retrying");
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(AgentError::Checkpoint(format!(
            "download of {sha} failed: {last}"
        )))
    }

    async fn download_once(&self, session: &Session, sha: &str) -> Result<(), AgentError> {
        let req = v1::DownloadRequest { sha256: sha.into() };
        let stream = session
            .call(Retry::For(Duration::from_secs(60)), |mut c| {
                let req = req.clone();
                async move { c.download_checkpoint(req).await }
            })
            .await?;
        self.store_download(sha, stream).await
    }

    /// Writes a downloaded bundle (the chunks of a `DownloadCheckpoint` answer, from any client)
    /// into the cache: hashed as it arrives, fsynced, and renamed into place only when its
    /// sha256 is `sha`. The one download-and-verify path, for the agent and for `predict`.
    pub async fn store_download<S>(&self, sha: &str, mut stream: S) -> Result<(), AgentError>
    where
        S: tokio_stream::Stream<Item = Result<v1::CheckpointChunk, tonic::Status>> + Unpin,
    {
        let tmp = self.dir.join(format!(
            ".dl-{}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        // tokio's files write and fsync on its blocking threads, never on the runtime's.
        let mut out = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        let mut h = Sha256::new();
        while let Some(chunk) = stream.next().await {
            if let Some(Part::Data(d)) = chunk?.part {
                h.update(&d);
                out.write_all(&d).await.map_err(io(&tmp))?;
            }
        }
        out.sync_all().await.map_err(io(&tmp))?;
        drop(out);
        let got = hex::encode(h.finalize());
        if got != sha {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(AgentError::Checkpoint(format!(
                "downloaded data has sha256 {got}, expected {sha}"
            )));
        }
        let dst = self.path(sha);
        let (t, d) = (tmp.clone(), dst.clone());
        tokio::task::spawn_blocking(move || ausweep_fsutil::commit(&t, &d))
            .await
            .map_err(|e| AgentError::Checkpoint(format!("storing {}: {e}", dst.display())))?
            .map_err(io(&dst))?;
        Ok(())
    }

    /// Uploads bundle `sha` for an attempt (retried on transport errors and on rejected data).
    /// Returns whether the coordinator accepted it for the current lease (false: fenced); a
    /// full coordinator store is [`AgentError::StoreFull`].
    #[allow(clippy::too_many_arguments)] // one per field of the upload header
    pub async fn upload(
        &self,
        session: &Session,
        job_id: &str,
        fencing_token: u64,
        sha: &str,
        size: u64,
        epoch: u32,
        kind: UploadKind,
    ) -> Result<bool, AgentError> {
        let mut last = String::new();
        for attempt in 1..=UPLOAD_TRIES {
            let header = v1::CheckpointHeader {
                job_id: job_id.into(),
                fencing_token,
                sha256: sha.into(),
                size,
                epoch,
                kind: match kind {
                    UploadKind::Epoch { .. } => v1::CheckpointKind::Epoch,
                    UploadKind::Final => v1::CheckpointKind::Final,
                } as i32,
                val_f1: match kind {
                    UploadKind::Epoch { val_f1 } => val_f1,
                    UploadKind::Final => None,
                },
            };
            let path = self.path(sha);
            let r = session
                .call(Retry::For(Duration::from_secs(120)), |mut c| {
                    let (header, path) = (header.clone(), path.clone());
                    async move { c.upload_checkpoint(chunks(header, path)).await }
                })
                .await;
            match r {
                Ok(reply) => return Ok(reply.accepted),
                Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                    return Err(AgentError::StoreFull(e.message().to_string()));
                }
                Err(e) => {
                    eprintln!(
                        "ausweep worker: upload of checkpoint {sha} (epoch {epoch}) rejected \
                         (try {attempt}/{UPLOAD_TRIES}): {}",
                        e.message()
                    );
                    last = e.message().to_string();
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
            }
        }
        Err(AgentError::Checkpoint(format!(
            "upload of {sha} failed {UPLOAD_TRIES} times: {last}"
        )))
    }
}

/// Runs blocking file work on tokio's blocking threads (the runtime's threads keep serving
/// heartbeats and progress meanwhile).
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Checkpoint(format!("file work stopped: {e}")))?
}

/// The chunk stream of one upload: the header, then the file in [`CHUNK_BYTES`] pieces.
fn chunks(
    header: v1::CheckpointHeader,
    path: PathBuf,
) -> impl tokio_stream::Stream<Item = v1::CheckpointChunk> {
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::CheckpointChunk>(4);
    tokio::spawn(async move {
        let first = v1::CheckpointChunk {
            part: Some(Part::Header(header)),
        };
        if tx.send(first).await.is_err() {
            return;
        }
        let Ok(mut f) = tokio::fs::File::open(&path).await else {
            return; // the short upload fails its size check and is retried
        };
        let mut corrupt = CORRUPT_UPLOADS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        loop {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let n = match f.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            if corrupt {
                buf[n / 2] ^= 0xff;
                corrupt = false;
            }
            let c = v1::CheckpointChunk {
                part: Some(Part::Data(buf)),
            };
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        let src = dir.path().join("epoch-0002.safetensors");
        std::fs::write(&src, b"tensor bytes").unwrap();
        std::fs::write(src.with_extension("json"), br#"{"epoch": 2}"#).unwrap();
        let (sha, size) = cache.pack_blocking(&src).unwrap();
        assert_eq!(size, std::fs::metadata(cache.path(&sha)).unwrap().len());
        let dst = dir.path().join("out/epoch-0002");
        assert_eq!(cache.unpack_blocking(&sha, &dst).unwrap(), 2);
        assert_eq!(
            std::fs::read(dst.with_extension("safetensors")).unwrap(),
            b"tensor bytes"
        );
        // A damaged bundle is refused.
        std::fs::write(cache.path("bad"), b"AUSWCKB1").unwrap();
        let err = cache.unpack_blocking("bad", &dst).unwrap_err().to_string();
        assert!(err.ends_with("bad.ckpt: too short"), "{err}");
    }

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; creates a file, touches no memory of ours.
        assert_eq!(
            unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
            0,
            "mkfifo {}",
            p.display()
        );
    }

    /// Runs `body` on a one-thread runtime in a thread of its own and waits for it with a
    /// deadline: a body that blocks the runtime's only thread never lets its other tasks run.
    fn on_one_thread<F>(what: &str, body: impl FnOnce() -> F + Send + 'static)
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = tx.send(rt.block_on(body()));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(r) => r.unwrap_or_else(|e| panic!("{what}: {e}")),
            Err(_) => panic!(
                "{what}: not finished within 30 s: it blocked the runtime's thread, so the task \
                 feeding it never ran"
            ),
        }
    }

    /// The checkpoint is a FIFO that a task of the same one-thread runtime fills: packing it
    /// finishes only if the packing leaves the runtime's thread free for that task.
    #[test]
    fn packing_and_unpacking_leave_the_runtime_free() {
        on_one_thread("pack", || async {
            let dir = tempfile::tempdir().unwrap();
            let cache = Cache::open(dir.path().join("cache")).unwrap();
            let src = dir.path().join("epoch-0001.safetensors");
            std::fs::write(src.with_extension("json"), br#"{"epoch": 1}"#).unwrap();
            mkfifo(&src);
            let fifo = src.clone();
            let feed = tokio::spawn(async move {
                let mut f = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&fifo)
                    .await?;
                f.write_all(b"tensor bytes").await
            });
            let (sha, _) = cache.pack(&src).await.map_err(|e| e.to_string())?;
            feed.await.unwrap().map_err(|e| e.to_string())?;
            // Unpacking reads a bundle that a task of the runtime writes into a FIFO too.
            let bundle = std::fs::read(cache.path(&sha)).unwrap();
            std::fs::remove_file(cache.path(&sha)).unwrap();
            mkfifo(&cache.path(&sha));
            let fifo = cache.path(&sha);
            let feed = tokio::spawn(async move {
                let mut f = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&fifo)
                    .await?;
                f.write_all(&bundle).await
            });
            let dst = dir.path().join("out/epoch-0001");
            let epoch = cache.unpack(&sha, &dst).await.map_err(|e| e.to_string())?;
            feed.await.unwrap().map_err(|e| e.to_string())?;
            assert_eq!(epoch, 1);
            assert_eq!(
                std::fs::read(dst.with_extension("safetensors")).unwrap(),
                b"tensor bytes"
            );
            Ok(())
        });
    }

    /// The longest gap of a 50 ms ticker (as the agent's heartbeat) on a two-thread runtime
    /// while `n` tasks pack `mib`-MiB checkpoints at once, on the runtime's threads (before)
    /// and off them (after). A measurement, not a check:
    /// `cargo test -p ausweep-agent --lib heartbeat_gap -- --ignored --nocapture`
    /// (AUSWEEP_GAP_N, AUSWEEP_GAP_MIB).
    #[test]
    #[ignore]
    fn heartbeat_gap_while_packing() {
        let env = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let (n, mib) = (env("AUSWEEP_GAP_N", 4), env("AUSWEEP_GAP_MIB", 512));
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        let files: Vec<PathBuf> = (0..n)
            .map(|i| {
                let f = dir.path().join(format!("t{i}.safetensors"));
                let block = vec![i as u8; 1 << 20];
                let mut out = std::fs::File::create(&f).unwrap();
                for _ in 0..mib {
                    out.write_all(&block).unwrap();
                }
                std::fs::write(f.with_extension("json"), br#"{"epoch": 1}"#).unwrap();
                f
            })
            .collect();
        for off in [false, true] {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let worst = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let total = rt.block_on(async {
                let w = worst.clone();
                let ticker = tokio::spawn(async move {
                    let mut last = std::time::Instant::now();
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let now = std::time::Instant::now();
                        w.fetch_max((now - last).as_micros() as u64, Ordering::Relaxed);
                        last = now;
                    }
                });
                let t0 = std::time::Instant::now();
                let mut packs = tokio::task::JoinSet::new();
                for f in files.clone() {
                    let c = cache.clone();
                    packs.spawn(async move {
                        if off {
                            c.pack(&f).await.map(|_| ())
                        } else {
                            c.pack_blocking(&f).map(|_| ())
                        }
                    });
                }
                while let Some(r) = packs.join_next().await {
                    r.unwrap().unwrap();
                }
                let total = t0.elapsed();
                // A few more ticks so the ticker has seen the end of the packing.
                tokio::time::sleep(Duration::from_millis(200)).await;
                ticker.abort();
                total
            });
            println!(
                "{n} trainers x {mib} MiB packed {}: {:.2} s in all, longest heartbeat gap {:.0} ms",
                if off { "off the runtime (after)" } else { "on the runtime (before)" },
                total.as_secs_f64(),
                worst.load(Ordering::Relaxed) as f64 / 1000.0
            );
        }
    }
}
