//! ausweep's coordinator: manifests, plan, scheduler, store, gRPC services, auth, metrics, report.

pub mod manifest;
pub mod plan;
pub mod store;
pub mod sched;
