//! ausweep's wire contract: the job spec a trainer runs (shared by coordinator and worker) and the
//! gRPC protocol `ausweep.v1` (admin and worker services).

pub mod client;
pub mod fault;
pub mod job;
pub mod tls_probe;
pub mod trainer;
pub mod wire;
pub mod yaml;

pub use job::{JobError, JobSpec};

/// Generated messages, clients and servers of `ausweep.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("ausweep.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ausweep_v1_descriptor.bin"));
}
