//! ausweep's coordinator: manifests, plan, scheduler, store, gRPC services, auth, metrics, report.

pub mod auth;
pub mod cli;
pub mod client;
pub mod manifest;
pub mod plan;
pub mod sched;
pub mod server;
pub mod service;
pub mod store;

pub use server::{serve, Config, Handle, ServeError, TlsFiles};
