//! Cheap fingerprints of source data, so a packed cache is rebuilt when the data changes:
//! label/list files by content, frame images by name, size and modification time.

use crate::disfa::DisfaLayout;
use crate::error::{DataError, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::UNIX_EPOCH;

/// Feeds every file under `root` (sorted walk) into `h`: its relative path, and either its
/// contents (`contents`) or its size and mtime.
fn hash_tree(h: &mut Sha256, root: &Path, rel: &Path, contents: bool) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| DataError::io(&dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| DataError::io(&dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if meta.is_dir() {
            hash_tree(h, root, &rel, contents)?;
            continue;
        }
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        if contents {
            let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        } else {
            h.update(meta.len().to_le_bytes());
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(mtime.to_le_bytes());
        }
    }
    Ok(())
}

/// Hash of a DISFA tree: every label file's contents plus every frame file's name, size and mtime
/// (and the layout's extension/subject settings). Hex sha256.
pub fn disfa_source_hash(layout: &DisfaLayout) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"ausweep-disfa-v1\0");
    h.update(format!("{:?}|{:?}\0", layout.frame_ext, layout.subjects).as_bytes());
    hash_tree(&mut h, &layout.labels_dir(), Path::new(""), true)?;
    h.update(b"\0frames\0");
    hash_tree(&mut h, &layout.frames_dir(), Path::new(""), false)?;
    Ok(hex::encode(h.finalize()))
}

/// Hash of a list dataset: both list files' contents plus each listed image's size and mtime
/// (a missing image hashes as absent, so the later read reports it).
pub fn list_source_hash(paths: &Path, labels: &Path, images_root: &Path) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"ausweep-list-v1\0");
    let list = std::fs::read(paths).map_err(|e| DataError::io(paths, e))?;
    h.update((list.len() as u64).to_le_bytes());
    h.update(&list);
    let lab = std::fs::read(labels).map_err(|e| DataError::io(labels, e))?;
    h.update((lab.len() as u64).to_le_bytes());
    h.update(&lab);
    for rel in String::from_utf8_lossy(&list)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match std::fs::metadata(images_root.join(rel)) {
            Ok(m) => {
                h.update(m.len().to_le_bytes());
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.update(mtime.to_le_bytes());
            }
            Err(_) => h.update(b"absent"),
        }
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{write_disfa, SynthConfig};

    #[test]
    fn disfa_hash_changes_with_labels_and_frames_only() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            subjects: 1,
            frames: 4,
            size: 32,
            seed: 3,
        };
        let sum = write_disfa(dir.path(), &cfg).unwrap();
        let layout = DisfaLayout::new(&sum.labels_root, &sum.frames_root);
        let h0 = disfa_source_hash(&layout).unwrap();
        assert_eq!(h0.len(), 64);
        assert_eq!(h0, disfa_source_hash(&layout).unwrap(), "stable");
        // Parent folder as roots resolves to the same trees.
        assert_eq!(
            h0,
            disfa_source_hash(&DisfaLayout::new(dir.path(), dir.path())).unwrap()
        );

        let label = layout.label_file("SN001", 12);
        let text = std::fs::read_to_string(&label).unwrap();
        std::fs::write(&label, text.replacen("2,", "2,4\n#", 1)).unwrap();
        let h1 = disfa_source_hash(&layout).unwrap();
        assert_ne!(h0, h1, "label edit");

        std::fs::write(sum.frames_root.join("SN001/0.png"), b"other bytes").unwrap();
        let h2 = disfa_source_hash(&layout).unwrap();
        assert_ne!(h1, h2, "frame replaced");

        let mut sel = layout.clone();
        sel.subjects = Some(vec!["SN001".into()]);
        assert_ne!(h2, disfa_source_hash(&sel).unwrap(), "settings count");
        assert!(disfa_source_hash(&DisfaLayout::new(dir.path().join("nope"), dir.path())).is_err());
    }

    #[test]
    fn list_hash_tracks_lists_and_images() {
        let dir = tempfile::tempdir().unwrap();
        let (p, l) = (dir.path().join("p.txt"), dir.path().join("l.txt"));
        std::fs::create_dir(dir.path().join("S1")).unwrap();
        std::fs::write(dir.path().join("S1/0.png"), b"x").unwrap();
        std::fs::write(&p, "S1/0.png\n").unwrap();
        std::fs::write(&l, "0 1\n").unwrap();
        let h0 = list_source_hash(&p, &l, dir.path()).unwrap();
        std::fs::write(&l, "1 1\n").unwrap();
        let h1 = list_source_hash(&p, &l, dir.path()).unwrap();
        assert_ne!(h0, h1);
        std::fs::write(dir.path().join("S1/0.png"), b"xy").unwrap();
        assert_ne!(h1, list_source_hash(&p, &l, dir.path()).unwrap());
    }
}
