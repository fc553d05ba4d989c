//! Fault injection for crash-window tests: `AUSWEEP_FAULT_AT` names points (comma-separated)
//! at which this process kills itself with SIGKILL, as a crash or `kill -9` would. Read once.
//!
//! It exists only in builds made for tests: the cargo feature `fault-injection`, which the root
//! package enables through its `[dev-dependencies]`, so `cargo test` builds the binary with it
//! and `cargo build --release` (make build, make light, make dist) without. Without the feature
//! [`point`] is empty and the variable is never read.

#[cfg(feature = "fault-injection")]
fn armed() -> &'static [String] {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("AUSWEEP_FAULT_AT")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Dies here (SIGKILL to this process; its trainers follow through PDEATHSIG) when `point` is
/// armed.
#[cfg(feature = "fault-injection")]
pub fn point(point: &str) {
    if armed().iter().any(|p| p == point) {
        eprintln!("ausweep: fault injection: killed at {point}");
        // SAFETY: signals this process only; no memory is touched.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// Nothing: this build has no fault injection (the feature `fault-injection` is off).
#[cfg(not(feature = "fault-injection"))]
#[inline]
pub fn point(_point: &str) {}

/// Panics here when `point` is armed: a bug in an operation, as a test stages one (the
/// coordinator's scheduler must then stop the process rather than linger).
#[cfg(feature = "fault-injection")]
pub fn panic_at(point: &str) {
    if armed().iter().any(|p| p == point) {
        panic!("fault injection: panic at {point}");
    }
}

/// Nothing: this build has no fault injection (the feature `fault-injection` is off).
#[cfg(not(feature = "fault-injection"))]
#[inline]
pub fn panic_at(_point: &str) {}
