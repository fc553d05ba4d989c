//! Packed cache: one file holding a [`Samples`] (header, labels, then raw uint8 CHW pixels),
//! memory-mapped on open so epochs read pixels without copying. Written atomically.
//!
//! Layout (little-endian): magic `AUSWPACK` (8 bytes), version u32, header length u64, JSON
//! header ([`PackHeader`]), intensities (`n × k` u8), subject indices (`n` u32), frame numbers
//! (`n` u32), zero padding to a multiple of 64, pixels (`n × 3 × size × size` u8).

use crate::error::{DataError, Result};
use crate::Samples;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File magic.
pub const MAGIC: &[u8; 8] = b"AUSWPACK";
/// Format version; a file of another version is rebuilt by [`open_or_build`].
pub const VERSION: u32 = 1;
const ALIGN: usize = 64;

/// The JSON header of a pack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackHeader {
    /// Frame side, pixels.
    pub size: u32,
    /// Number of frames.
    pub n: u64,
    /// AU columns.
    pub aus: Vec<u32>,
    /// Subject table.
    pub subject_names: Vec<String>,
    /// Caller-provided hash of the source data and settings.
    pub source_hash: String,
    /// Byte offset of the pixels.
    pub pixel_offset: u64,
}

/// An open, memory-mapped pack.
#[derive(Debug)]
pub struct PackedCache {
    path: PathBuf,
    header: PackHeader,
    intensities: Vec<u8>,
    subjects: Vec<u32>,
    frames: Vec<u32>,
    map: memmap2::Mmap,
}

fn bad(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::BadCache {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Serialises everything before the pixels (magic … padding).
fn preamble(samples: &Samples, source_hash: &str) -> Result<Vec<u8>> {
    let n = samples.len();
    let mut header = PackHeader {
        size: samples.size,
        n: n as u64,
        aus: samples.aus.clone(),
        subject_names: samples.subject_names.clone(),
        source_hash: source_hash.to_string(),
        pixel_offset: 0,
    };
    // The offset depends on the header length, which depends on the offset's digits: iterate.
    loop {
        let json = serde_json::to_vec(&header).map_err(|e| DataError::Config(e.to_string()))?;
        let body = 8 + 4 + 8 + json.len() + samples.intensities.len() + 8 * n;
        let offset = body.div_ceil(ALIGN) * ALIGN;
        if offset as u64 == header.pixel_offset {
            let mut out = Vec::with_capacity(offset);
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&(json.len() as u64).to_le_bytes());
            out.extend_from_slice(&json);
            out.extend_from_slice(&samples.intensities);
            for s in &samples.subjects {
                out.extend_from_slice(&s.to_le_bytes());
            }
            for f in &samples.frames {
                out.extend_from_slice(&f.to_le_bytes());
            }
            out.resize(offset, 0);
            return Ok(out);
        }
        header.pixel_offset = offset as u64;
    }
}

/// Writes `samples` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write(path: &Path, samples: &Samples, source_hash: &str) -> Result<()> {
    samples
        .validate()
        .map_err(|m| bad(path, format!("refusing to pack invalid samples: {m}")))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pack");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(&preamble(samples, source_hash).map_err(std::io::Error::other)?)?;
        w.write_all(&samples.pixels)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename durable; not every platform can fsync a folder, so best effort.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

fn read_u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl PackedCache {
    /// Opens and validates a pack, memory-mapping its pixels.
    pub fn open(path: &Path) -> Result<PackedCache> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: packs are only ever replaced by rename (see `write`), never modified in place,
        // so the mapped bytes do not change under us while this mapping lives.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        if map.len() < 20 || &map[..8] != MAGIC {
            return Err(bad(path, "not an ausweep pack (bad magic)"));
        }
        let version = u32::from_le_bytes([map[8], map[9], map[10], map[11]]);
        if version != VERSION {
            return Err(bad(
                path,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&map[12..20]);
        let hlen =
            usize::try_from(u64::from_le_bytes(len8)).map_err(|_| bad(path, "header too long"))?;
        let hbytes = map
            .get(20..20usize.saturating_add(hlen))
            .ok_or_else(|| bad(path, "truncated header"))?;
        let header: PackHeader =
            serde_json::from_slice(hbytes).map_err(|e| bad(path, format!("bad header: {e}")))?;
        let n = usize::try_from(header.n).map_err(|_| bad(path, "too many frames"))?;
        let k = header.aus.len();
        let fb = 3 * header.size as usize * header.size as usize;
        let labels_at = 20 + hlen;
        let labels_len = n
            .checked_mul(k + 8)
            .ok_or_else(|| bad(path, "size overflow"))?;
        let pixels_len = n
            .checked_mul(fb)
            .ok_or_else(|| bad(path, "size overflow"))?;
        let offset = usize::try_from(header.pixel_offset).map_err(|_| bad(path, "bad offset"))?;
        if offset < labels_at + labels_len || offset.checked_add(pixels_len) != Some(map.len()) {
            return Err(bad(
                path,
                format!(
                    "file is {} bytes, header promises {} frames of {} px at offset {offset} (truncated or corrupt)",
                    map.len(),
                    n,
                    header.size
                ),
            ));
        }
        let intensities = map[labels_at..labels_at + n * k].to_vec();
        let subjects = read_u32s(&map[labels_at + n * k..labels_at + n * k + 4 * n]);
        let frames = read_u32s(&map[labels_at + n * k + 4 * n..labels_at + n * k + 8 * n]);
        if let Some(s) = subjects
            .iter()
            .find(|&&s| s as usize >= header.subject_names.len())
        {
            return Err(bad(path, format!("subject index {s} out of range")));
        }
        Ok(PackedCache {
            path: path.to_path_buf(),
            header,
            intensities,
            subjects,
            frames,
            map,
        })
    }

    /// The file this pack was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header.
    pub fn header(&self) -> &PackHeader {
        &self.header
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Frame side, pixels.
    pub fn size(&self) -> u32 {
        self.header.size
    }

    /// The source hash it was built from.
    pub fn source_hash(&self) -> &str {
        &self.header.source_hash
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        3 * self.header.size as usize * self.header.size as usize
    }

    /// All pixels (`len × 3 × size × size`, CHW per frame), straight from the mapping.
    pub fn pixels(&self) -> &[u8] {
        &self.map[self.header.pixel_offset as usize..]
    }

    /// Frame `i`'s CHW pixels without copying, or `None` if out of range.
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let fb = self.frame_bytes();
        self.pixels()
            .get(i.checked_mul(fb)?..(i + 1).checked_mul(fb)?)
    }

    /// AU intensities, `len × aus.len()`.
    pub fn intensities(&self) -> &[u8] {
        &self.intensities
    }

    /// Subject index per frame.
    pub fn subjects(&self) -> &[u32] {
        &self.subjects
    }

    /// 1-based frame number per frame.
    pub fn frames(&self) -> &[u32] {
        &self.frames
    }

    /// AU columns.
    pub fn aus(&self) -> &[u32] {
        &self.header.aus
    }

    /// Subject names.
    pub fn subject_names(&self) -> &[String] {
        &self.header.subject_names
    }

    /// Copies the pack into an owned [`Samples`].
    pub fn to_samples(&self) -> Samples {
        Samples {
            size: self.header.size,
            aus: self.header.aus.clone(),
            pixels: self.pixels().to_vec(),
            intensities: self.intensities.clone(),
            subjects: self.subjects.clone(),
            subject_names: self.header.subject_names.clone(),
            frames: self.frames.clone(),
        }
    }
}

/// Whether a pack file can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// Valid, same source hash and size.
    Valid,
    /// No file.
    Missing,
    /// Present but unusable; the reason says why (hash, size, version, corruption).
    Stale(String),
}

/// Checks the pack at `path` against `source_hash` and `size` without building anything.
pub fn check(path: &Path, source_hash: &str, size: u32) -> CacheState {
    if !path.exists() {
        return CacheState::Missing;
    }
    match PackedCache::open(path) {
        Err(e) => CacheState::Stale(e.to_string()),
        Ok(p) if p.source_hash() != source_hash => CacheState::Stale("source hash changed".into()),
        Ok(p) if p.size() != size => {
            CacheState::Stale(format!("frame size {} != wanted {size}", p.size()))
        }
        Ok(_) => CacheState::Valid,
    }
}

/// Opens the pack at `path` if it is valid for `source_hash` and `size`; otherwise calls `build`,
/// writes its result atomically and opens that.
pub fn open_or_build(
    path: &Path,
    source_hash: &str,
    size: u32,
    build: impl FnOnce() -> Result<Samples>,
) -> Result<PackedCache> {
    if check(path, source_hash, size) == CacheState::Valid {
        return PackedCache::open(path);
    }
    let samples = build()?;
    if samples.size != size {
        return Err(DataError::Config(format!(
            "cache build produced {} px frames, expected {size}",
            samples.size
        )));
    }
    write(path, &samples, source_hash)?;
    PackedCache::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{render_samples, SynthConfig};
    use std::cell::Cell;

    fn sample(size: u32, seed: u64) -> Samples {
        render_samples(&SynthConfig {
            subjects: 2,
            frames: 5,
            size,
            seed,
        })
    }

    #[test]
    fn round_trip_and_zero_copy_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/pack.bin");
        let s = sample(32, 1);
        write(&path, &s, "h1").unwrap();
        let p = PackedCache::open(&path).unwrap();
        assert_eq!(p.to_samples(), s);
        assert_eq!(p.len(), 10);
        assert_eq!(p.source_hash(), "h1");
        assert_eq!(p.header().pixel_offset % 64, 0);
        assert_eq!(p.frame(3), Some(&s.pixels[3 * 3072..4 * 3072]));
        assert_eq!(p.frame(10), None);
        // The frame slice points into the mapping, not a copy.
        let base = p.pixels().as_ptr() as usize;
        assert_eq!(p.frame(2).unwrap().as_ptr() as usize, base + 2 * 3072);
        // No temp file left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn open_or_build_reuses_and_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack.bin");
        let builds = Cell::new(0);
        let build = |seed| {
            let b = &builds;
            move || {
                b.set(b.get() + 1);
                Ok(sample(32, seed))
            }
        };
        assert_eq!(check(&path, "a", 32), CacheState::Missing);
        let p = open_or_build(&path, "a", 32, build(1)).unwrap();
        assert_eq!((builds.get(), p.to_samples()), (1, sample(32, 1)));
        let p = open_or_build(&path, "a", 32, build(2)).unwrap();
        assert_eq!(builds.get(), 1, "valid cache reused");
        assert_eq!(p.to_samples(), sample(32, 1));
        drop(p);
        let p = open_or_build(&path, "b", 32, build(2)).unwrap();
        assert_eq!(builds.get(), 2, "hash change rebuilds");
        assert_eq!(p.to_samples(), sample(32, 2));
        assert!(matches!(check(&path, "b", 40), CacheState::Stale(m) if m.contains("size")));
        let err = open_or_build(&path, "b", 40, build(2)).unwrap_err();
        assert!(matches!(err, DataError::Config(_)), "built size must match");
        assert_eq!(builds.get(), 3, "size change rebuilds");
        // A different version (or corruption) rebuilds.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8] = 99;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            PackedCache::open(&path),
            Err(DataError::BadCache { .. })
        ));
        assert!(matches!(check(&path, "b", 32), CacheState::Stale(m) if m.contains("version 99")));
        open_or_build(&path, "b", 32, build(2)).unwrap();
        assert_eq!(builds.get(), 4);
        // A failing build is returned, and the old file is untouched.
        let before = std::fs::read(&path).unwrap();
        let e = open_or_build(&path, "c", 32, || Err(DataError::Empty("x".into()))).unwrap_err();
        assert!(matches!(e, DataError::Empty(_)));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn truncated_or_garbage_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack.bin");
        write(&path, &sample(32, 1), "h").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let e = PackedCache::open(&path).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(
            PackedCache::open(&path),
            Err(DataError::BadCache { .. })
        ));
        let mut bad = sample(32, 1);
        bad.frames.pop();
        assert!(write(&path, &bad, "h").is_err());
    }
}
