//! The gRPC services: admin (token) and worker (join token, then per-worker session).

pub mod admin;
pub mod convert;
pub mod worker;

use crate::sched::SchedError;
use tonic::Status;

/// Maps a scheduler error to a gRPC status.
pub(crate) fn status(e: SchedError) -> Status {
    match e {
        SchedError::NoSweep(_) | SchedError::NoJob(_) | SchedError::UnknownSweep { .. } => {
            Status::not_found(e.to_string())
        }
        SchedError::UnknownWorker(_) => Status::not_found(e.to_string()),
        SchedError::NoDevice { .. } | SchedError::Plan(_) => {
            Status::invalid_argument(e.to_string())
        }
        SchedError::MissingCheckpoint(_) => Status::failed_precondition(e.to_string()),
        SchedError::Store(_) | SchedError::Stopped => Status::unavailable(e.to_string()),
    }
}

/// The response stream of a checkpoint download.
pub(crate) type ChunkStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<ausweep_proto::v1::CheckpointChunk, Status>> + Send>,
>;

/// Streams blob `sha` from `blobs`: a header chunk with its size, then data chunks.
pub(crate) fn blob_stream(
    blobs: &crate::store::blobs::Blobs,
    sha: String,
) -> Result<ChunkStream, Status> {
    use ausweep_proto::v1;
    use ausweep_proto::wire::CHUNK_BYTES;
    let mut file = blobs.open_blob(&sha).map_err(|e| match e {
        crate::store::blobs::BlobError::BadName(_) => Status::invalid_argument(e.to_string()),
        crate::store::blobs::BlobError::NotFound(_) => Status::not_found(e.to_string()),
        _ => Status::internal(e.to_string()),
    })?;
    let size = file
        .metadata()
        .map_err(|e| Status::internal(e.to_string()))?
        .len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let header = v1::CheckpointHeader {
        sha256: sha,
        size,
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let _ = tx.blocking_send(Ok(v1::CheckpointChunk {
            part: Some(v1::checkpoint_chunk::Part::Header(header)),
        }));
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let c = v1::CheckpointChunk {
                        part: Some(v1::checkpoint_chunk::Part::Data(buf[..n].to_vec())),
                    };
                    if tx.blocking_send(Ok(c)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                    return;
                }
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
