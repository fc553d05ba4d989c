//! Protocol constants shared by coordinator and worker: version and metadata keys.

/// The protocol version; a worker call with another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// Metadata key carrying [`PROTOCOL_VERSION`] on every worker call.
pub const PROTOCOL_HEADER: &str = "x-ausweep-protocol";
/// Metadata key carrying the worker id on worker calls after Register.
pub const WORKER_HEADER: &str = "x-ausweep-worker";
/// Metadata key carrying `Bearer <token>` (admin, join or session token).
pub const AUTH_HEADER: &str = "authorization";
/// Largest checkpoint chunk a peer should send, bytes.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest single message accepted, bytes (a chunk plus headroom; manifests are smaller).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Formats a bearer credential for the `authorization` metadata value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
