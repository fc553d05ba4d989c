//! The Python references (`scripts/*.py`) run in the venv `make setup` builds.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `.venv/bin/python` of the repository; panics naming `make setup` when it is missing, so a
/// test that needs a reference fails instead of skipping quietly.
pub fn venv_python() -> PathBuf {
    let p = crate::repo().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (make test does) to build the venv",
        p.display()
    );
    p
}

/// Runs `scripts/<script>` with `args` in the venv; panics with its stderr when it fails.
pub fn run(script: &str, args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new(venv_python())
        .arg(crate::repo().join("scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
