//! Test support shared by the tests of every ausweep crate: tokens and timings, an in-process
//! coordinator with worker-side RPC helpers, coordinator and worker child processes, condition
//! waits with deadlines, and the Python references.
//!
//! Timings here are sized so a machine ten times slower than a loaded 2-core CI runner still
//! passes: leases are ten heartbeats long, waits are conditions with generous deadlines that
//! report what they last saw.

pub mod procs;
pub mod python;
pub mod rpc;
pub mod wait;

use std::path::PathBuf;

/// The admin token every test coordinator accepts.
pub const ADMIN: &str = "admin-token-0123456789";
/// The worker join token every test coordinator accepts.
pub const JOIN: &str = "join-token-0123456789";
/// Heartbeat interval of test coordinators (ms).
pub const HEARTBEAT_MS: u64 = 1_000;
/// Lease of test coordinators (ms): ten heartbeats may be missed before a job is taken back.
pub const LEASE_MS: u64 = 10_000;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A file of the repository, read as text (panics with the path when it cannot be read).
pub fn repo_text(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `experiments/demo.yaml`, the embedded default sweep.
pub fn demo_manifest() -> String {
    repo_text("experiments/demo.yaml")
}
