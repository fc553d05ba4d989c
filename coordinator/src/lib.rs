//! ausweep's coordinator: manifests, plan, scheduler, store, gRPC services, auth, metrics, report.

pub mod auth;
pub mod cli;
pub mod gc;
pub mod launch;
pub mod manifest;
mod memory;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod sched;
pub mod server;
pub mod service;
pub mod store;
pub mod views;
pub mod watch;

/// Client helpers (moved to the proto crate so the worker does not depend on the coordinator).
pub use ausweep_proto::client;
pub use server::{serve, Config, Handle, ServeError, TlsFiles};
