//! Where ausweep keeps its files: the weights directory and what a release tarball ships.

use std::path::PathBuf;

/// `$var` when set, else `~/.cache/ausweep/<sub>`.
pub fn cache_dir(var: &str, sub: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(var) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/ausweep").join(sub)
}

/// The directory holding converted weights: `$AUSWEEP_WEIGHTS`, else `~/.cache/ausweep/weights`
/// when it has a manifest, else the release tarball's own (`<exe>/../share/ausweep/weights`).
pub fn weights_dir() -> PathBuf {
    let user = cache_dir("AUSWEEP_WEIGHTS", "weights");
    if std::env::var_os("AUSWEEP_WEIGHTS").is_some() || user.join("manifest.json").is_file() {
        return user;
    }
    bundled("weights")
        .filter(|d| d.join("manifest.json").is_file())
        .unwrap_or(user)
}

/// `<dir of the executable>/../share/ausweep/<sub>`: what a release tarball ships beside the
/// binary; None when it is not there.
pub fn bundled(sub: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let d = exe.parent()?.parent()?.join("share/ausweep").join(sub);
    d.exists().then_some(d)
}
