//! ausweep's coordinator, the server: manifests, the job plan, the durable scheduler and its
//! store, gRPC services, auth, metrics, the published baselines, and its settings.

pub mod auth;
pub mod baselines;
pub mod gc;
pub mod manifest;
mod memory;
pub mod metrics;
pub mod plan;
pub mod sched;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;

/// Client helpers (moved to the proto crate so the worker does not depend on the coordinator).
pub use ausweep_proto::client;
pub use server::{serve, Config, Handle, ServeError, TlsFiles};
