//! The gRPC services: admin (token) and worker (join token, then per-worker session).

pub mod admin;
pub(crate) mod convert;
pub mod worker;

use crate::sched::SchedError;
use tonic::Status;

/// Maps a scheduler error to a gRPC status.
pub(crate) fn status(e: SchedError) -> Status {
    match e {
        SchedError::NoSweep(_) | SchedError::NoJob(_) => Status::not_found(e.to_string()),
        SchedError::UnknownWorker(_) => Status::not_found(e.to_string()),
        SchedError::NoDevice { .. } | SchedError::Plan(_) => {
            Status::invalid_argument(e.to_string())
        }
        SchedError::MissingCheckpoint(_) => Status::failed_precondition(e.to_string()),
        SchedError::Store(_) | SchedError::Stopped => Status::unavailable(e.to_string()),
    }
}
