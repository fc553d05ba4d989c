//! The one way ausweep replaces a file and the one way it locks one.
//!
//! **The fsync rule**: a file that replaces another is written beside it under a temporary
//! name, its data fsynced, renamed over the destination, and the destination's folder fsynced
//! (best effort: not every file system can fsync a folder). After a crash the destination is
//! either the old file or the whole new one, never a torn one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Makes the finished temporary file `tmp` the file `dst`, by the fsync rule.
pub fn commit(tmp: &Path, dst: &Path) -> std::io::Result<()> {
    File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, dst)?;
    sync_parent(dst);
    Ok(())
}

/// Writes `bytes` as `dst` by the fsync rule (through `<dst>.<pid>.tmp`, removed on failure).
pub fn write(dst: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(dst);
    let r = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, dst));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r?;
    sync_parent(dst);
    Ok(())
}

/// The temporary name `write` uses for `dst`: beside it, unique to this process.
pub fn tmp_path(dst: &Path) -> PathBuf {
    let mut name = dst.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    dst.with_file_name(name)
}

/// fsyncs the folder holding `path` so a rename into it survives a crash (best effort).
pub fn sync_parent(path: &Path) {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
}

/// An exclusive advisory lock on a file (created if missing, with its folder), held until the
/// value is dropped; waits while another process or handle holds it.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for and takes the lock on `path`.
    pub fn take(path: &Path) -> std::io::Result<Self> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.lock()?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, b"old").unwrap();
        write(&p, b"new and longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new and longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"], "only the destination is left");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, b"old").unwrap();
        // The destination is a non-empty folder now: the rename must fail.
        let q = dir.path().join("sub");
        std::fs::create_dir(&q).unwrap();
        std::fs::write(q.join("x"), b"x").unwrap();
        let e = write(&q, b"new").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::IsADirectory | std::io::ErrorKind::DirectoryNotEmpty
            ),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!tmp_path(&q).exists(), "the temporary is removed");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/.lock");
        let first = FileLock::take(&p).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert!(
            matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "a second handle must not get the lock while the first holds it"
        );
        drop(first);
        f.try_lock().expect("free once the first is dropped");
    }
}
