//! Fault injection for crash-window tests: `AUSWEEP_FAULT_AT` names points (comma-separated)
//! at which this process kills itself with SIGKILL, as a crash or `kill -9` would. Unset in
//! normal use; read once.

use std::sync::OnceLock;

fn armed() -> &'static [String] {
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
pub fn point(point: &str) {
    if armed().iter().any(|p| p == point) {
        eprintln!("ausweep: fault injection: killed at {point}");
        // SAFETY: signals this process only; no memory is touched.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
