//! Packed dataset: one file of raw uint8 CHW frames with their labels, read batch by batch with
//! positioned reads (never copied whole). Every trainer on a node reads the same file, so the
//! kernel's page cache holds its frames once for all of them; nothing of it is mapped into a
//! trainer, so a trainer's resident memory does not grow with what it has read. (A memory
//! mapping was measured to do worse: even dropping its pages every 64 MiB read, fault-around
//! left 280 MiB of the pack resident in the trainer at 224 px.)
//!
//! Layout (version 2, little-endian): magic `AUSWPACK` (8 bytes), version u32, zero padding to
//! byte 64; pixels (`n × 3 × size × size` u8, frame after frame); intensities (`n × k` u8);
//! subject indices (`n` u32); frame numbers (`n` u32); JSON header ([`PackHeader`]); footer:
//! trailer offset u64, header length u64, magic `AUSWPEND`. Pixels come first so a
//! [`PackWriter`] streams frames to disk as they are decoded or rendered and writes the (small)
//! labels at the end: building a pack never holds more than a chunk of frames in memory.
//!
//! Files are written to a temp file and renamed, so a reader never sees a half-written pack;
//! [`open_or_build`] holds a lock file while it builds, so two trainers never build one pack
//! twice at once.

use crate::error::{DataError, Result};
use crate::Samples;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// File magic.
pub const MAGIC: &[u8; 8] = b"AUSWPACK";
/// Footer magic (the last 8 bytes of a complete pack).
pub const END_MAGIC: &[u8; 8] = b"AUSWPEND";
/// Format version; a file of another version is rebuilt by [`open_or_build`].
pub const VERSION: u32 = 2;
/// Byte offset of the first frame.
pub const PIXEL_OFFSET: u64 = 64;
const FOOTER: usize = 24;

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

/// Where frames go as a reader produces them: a [`PackWriter`] on disk or [`Samples`] in memory.
pub trait FrameSink {
    /// Appends one frame: its subject's name, 1-based frame number, AU intensities and CHW pixels.
    fn push(&mut self, subject: &str, frame: u32, intensities: &[u8], pixels: &[u8]) -> Result<()>;
}

fn bad(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::BadCache {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Streams frames into a new pack: temp file beside `path`, renamed into place by
/// [`PackWriter::finish`]; dropped unfinished, it removes the temp file.
pub struct PackWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    size: u32,
    aus: Vec<u32>,
    intensities: Vec<u8>,
    subjects: Vec<u32>,
    frames: Vec<u32>,
    subject_names: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl PackWriter {
    /// Starts a pack of `size`-pixel frames labelled with `aus` at `path`.
    pub fn create(path: &Path, size: u32, aus: &[u32]) -> Result<PackWriter> {
        if size == 0 || aus.is_empty() {
            return Err(bad(
                path,
                "a pack needs a frame size > 0 and at least one AU",
            ));
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pack");
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut out = std::io::BufWriter::with_capacity(4 << 20, file);
        let mut pre = [0u8; PIXEL_OFFSET as usize];
        pre[..8].copy_from_slice(MAGIC);
        pre[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out.write_all(&pre).map_err(|e| DataError::io(&tmp, e))?;
        Ok(PackWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(out),
            size,
            aus: aus.to_vec(),
            intensities: Vec::new(),
            subjects: Vec::new(),
            frames: Vec::new(),
            subject_names: Vec::new(),
            index: Default::default(),
        })
    }

    /// Frames written so far.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame was written yet.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes the labels and header, makes the file durable and renames it into place.
    pub fn finish(mut self, source_hash: &str) -> Result<()> {
        let Some(mut out) = self.out.take() else {
            return Err(bad(&self.path, "pack writer already finished"));
        };
        let header = PackHeader {
            size: self.size,
            n: self.frames.len() as u64,
            aus: self.aus.clone(),
            subject_names: self.subject_names.clone(),
            source_hash: source_hash.to_string(),
            pixel_offset: PIXEL_OFFSET,
        };
        let fb = 3 * self.size as u64 * self.size as u64;
        let trailer = PIXEL_OFFSET + header.n * fb;
        let tmp = self.tmp.clone();
        let result = (|| -> std::io::Result<()> {
            let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
            out.write_all(&self.intensities)?;
            for s in &self.subjects {
                out.write_all(&s.to_le_bytes())?;
            }
            for f in &self.frames {
                out.write_all(&f.to_le_bytes())?;
            }
            out.write_all(&json)?;
            out.write_all(&trailer.to_le_bytes())?;
            out.write_all(&(json.len() as u64).to_le_bytes())?;
            out.write_all(END_MAGIC)?;
            drop(out.into_inner().map_err(|e| e.into_error())?);
            ausweep_fsutil::commit(&tmp, &self.path)
        })();
        result.map_err(|e| DataError::io(&self.path, e))
    }
}

impl FrameSink for PackWriter {
    fn push(&mut self, subject: &str, frame: u32, intensities: &[u8], pixels: &[u8]) -> Result<()> {
        let fb = 3 * self.size as usize * self.size as usize;
        if pixels.len() != fb || intensities.len() != self.aus.len() {
            return Err(bad(
                &self.path,
                format!(
                    "{subject} frame {frame}: {} pixel bytes and {} intensities, expected {fb} and {}",
                    pixels.len(),
                    intensities.len(),
                    self.aus.len()
                ),
            ));
        }
        let Some(out) = self.out.as_mut() else {
            return Err(bad(&self.path, "pack writer already finished"));
        };
        out.write_all(pixels)
            .map_err(|e| DataError::io(&self.tmp, e))?;
        let next = self.subject_names.len() as u32;
        let si = *self.index.entry(subject.to_string()).or_insert(next);
        if si == next {
            self.subject_names.push(subject.to_string());
        }
        self.subjects.push(si);
        self.frames.push(frame);
        self.intensities.extend_from_slice(intensities);
        Ok(())
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes in-memory `samples` to `path` atomically.
pub fn write(path: &Path, samples: &Samples, source_hash: &str) -> Result<()> {
    samples
        .validate()
        .map_err(|m| bad(path, format!("refusing to pack invalid samples: {m}")))?;
    let mut w = PackWriter::create(path, samples.size, &samples.aus)?;
    push_all(&mut w, samples)?;
    w.finish(source_hash)
}

/// Pushes every frame of in-memory `samples` to `sink`, in order.
fn push_all(sink: &mut dyn FrameSink, samples: &Samples) -> Result<()> {
    let (k, fb) = (samples.aus.len(), samples.frame_bytes());
    for i in 0..samples.len() {
        sink.push(
            &samples.subject_names[samples.subjects[i] as usize],
            samples.frames[i],
            &samples.intensities[i * k..(i + 1) * k],
            &samples.pixels[i * fb..(i + 1) * fb],
        )?;
    }
    Ok(())
}

fn read_u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// An open pack: labels in memory, frames read from the file on demand.
#[derive(Debug)]
pub struct PackedCache {
    path: PathBuf,
    header: PackHeader,
    intensities: Vec<u8>,
    subjects: Vec<u32>,
    frames: Vec<u32>,
    file: std::fs::File,
}

impl PackedCache {
    /// Opens and validates a pack, reading its labels (nothing of the pixels is read here).
    pub fn open(path: &Path) -> Result<PackedCache> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let read = |at: u64, n: usize| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, at)
                .map_err(|e| DataError::io(path, e))?;
            Ok(buf)
        };
        if len < 12 {
            return Err(bad(path, "not an ausweep pack (bad magic)"));
        }
        let pre = read(0, 12)?;
        if &pre[..8] != MAGIC {
            return Err(bad(path, "not an ausweep pack (bad magic)"));
        }
        let version = u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]);
        if version != VERSION {
            return Err(bad(
                path,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        let footer = (len >= PIXEL_OFFSET + FOOTER as u64)
            .then(|| read(len - FOOTER as u64, FOOTER))
            .transpose()?
            .filter(|f| &f[16..] == END_MAGIC)
            .ok_or_else(|| bad(path, "truncated: no footer (an interrupted write?)"))?;
        let (trailer, hlen) = (u64_le(&footer), u64_le(&footer[8..]));
        let hstart = (len - FOOTER as u64)
            .checked_sub(hlen)
            .filter(|&h| h >= trailer && trailer >= PIXEL_OFFSET)
            .ok_or_else(|| bad(path, "truncated or corrupt trailer"))?;
        let too_big = || bad(path, "header or labels too large");
        let hbytes = read(hstart, usize::try_from(hlen).map_err(|_| too_big())?)?;
        let header: PackHeader =
            serde_json::from_slice(&hbytes).map_err(|e| bad(path, format!("bad header: {e}")))?;
        let n = header.n;
        let k = header.aus.len() as u64;
        let fb = 3 * u64::from(header.size) * u64::from(header.size);
        let pixels_end = n.checked_mul(fb).and_then(|p| p.checked_add(PIXEL_OFFSET));
        let labels_end = n.checked_mul(k + 8).and_then(|l| l.checked_add(trailer));
        if header.pixel_offset != PIXEL_OFFSET
            || pixels_end != Some(trailer)
            || labels_end != Some(hstart)
        {
            return Err(bad(
                path,
                format!(
                    "file is {len} bytes, header promises {n} frames of {} px (truncated or corrupt)",
                    header.size
                ),
            ));
        }
        let labels = read(
            trailer,
            usize::try_from(hstart - trailer).map_err(|_| too_big())?,
        )?;
        let (n, k) = (n as usize, k as usize);
        let intensities = labels[..n * k].to_vec();
        let subjects = read_u32s(&labels[n * k..n * k + 4 * n]);
        let frames = read_u32s(&labels[n * k + 4 * n..]);
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
            file,
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

    /// Frame `i`'s CHW pixels.
    pub fn frame(&self, i: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.frame_bytes()];
        self.gather(&[i], &mut out)?;
        Ok(out)
    }

    /// Reads frames `idx` into `out` (`idx.len() × frame_bytes()`, frame after frame) with one
    /// positioned read each: no mapping, no copy of anything but these frames.
    pub fn gather(&self, idx: &[usize], out: &mut [u8]) -> Result<()> {
        let fb = self.frame_bytes();
        if out.len() != idx.len() * fb {
            return Err(bad(
                &self.path,
                format!("gather of {} frames into {} bytes", idx.len(), out.len()),
            ));
        }
        for (&i, dst) in idx.iter().zip(out.chunks_exact_mut(fb.max(1))) {
            if i >= self.len() {
                return Err(bad(
                    &self.path,
                    format!("frame {i} out of range ({} frames)", self.len()),
                ));
            }
            self.file
                .read_exact_at(dst, PIXEL_OFFSET + (i * fb) as u64)
                .map_err(|e| DataError::io(&self.path, e))?;
        }
        Ok(())
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

    /// Reads the whole pack into an owned [`Samples`] (tests and small tools only: the
    /// trainer never does this).
    pub fn to_samples(&self) -> Result<Samples> {
        let mut pixels = vec![0u8; self.len() * self.frame_bytes()];
        let all: Vec<usize> = (0..self.len()).collect();
        self.gather(&all, &mut pixels)?;
        Ok(Samples {
            size: self.header.size,
            aus: self.header.aus.clone(),
            pixels,
            intensities: self.intensities.clone(),
            subjects: self.subjects.clone(),
            subject_names: self.header.subject_names.clone(),
            frames: self.frames.clone(),
        })
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

/// Opens the pack at `path` if it is valid for `source_hash` and `size`; otherwise, holding
/// `<path>.lock` (so concurrent builders of one pack wait for each other and the second reuses
/// the first's work), calls `build` with a [`PackWriter`] and renames the result into place.
pub fn open_or_build(
    path: &Path,
    source_hash: &str,
    size: u32,
    aus: &[u32],
    build: impl FnOnce(&mut PackWriter) -> Result<()>,
) -> Result<PackedCache> {
    if check(path, source_hash, size) == CacheState::Valid {
        return PackedCache::open(path);
    }
    let lock_path = path.with_extension("lock");
    let _lock =
        ausweep_fsutil::FileLock::take(&lock_path).map_err(|e| DataError::io(&lock_path, e))?;
    // Another process may have built it while we waited.
    if check(path, source_hash, size) == CacheState::Valid {
        return PackedCache::open(path);
    }
    let mut w = PackWriter::create(path, size, aus)?;
    build(&mut w)?;
    if w.is_empty() {
        return Err(DataError::Empty(format!(
            "building {}: the source produced no frames",
            path.display()
        )));
    }
    w.finish(source_hash)?;
    PackedCache::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{render_samples, SynthConfig};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn sample(size: u32, seed: u64) -> Samples {
        render_samples(&SynthConfig {
            subjects: 2,
            frames: 5,
            size,
            seed,
        })
    }

    fn copy_in(s: &Samples) -> impl FnOnce(&mut PackWriter) -> Result<()> + '_ {
        move |w| push_all(w, s)
    }

    #[test]
    fn round_trip_zero_copy_frames_and_gather() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/pack.bin");
        let s = sample(32, 1);
        write(&path, &s, "h1").unwrap();
        let p = PackedCache::open(&path).unwrap();
        assert_eq!(p.to_samples().unwrap(), s);
        assert_eq!(p.len(), 10);
        assert_eq!(p.source_hash(), "h1");
        assert_eq!(p.frame(3).unwrap(), &s.pixels[3 * 3072..4 * 3072]);
        assert!(p.frame(10).is_err());
        let mut out = vec![0u8; 2 * 3072];
        p.gather(&[7, 1], &mut out).unwrap();
        assert_eq!(&out[..3072], &s.pixels[7 * 3072..8 * 3072]);
        assert_eq!(&out[3072..], &s.pixels[3072..2 * 3072]);
        assert!(p.gather(&[10], &mut out[..3072]).is_err(), "out of range");
        assert!(p.gather(&[1], &mut out).is_err(), "wrong buffer size");
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
        let aus = crate::DISFA_AUS;
        let builds = Cell::new(0);
        let (s1, s2) = (sample(32, 1), sample(32, 2));
        let counted = |s| {
            builds.set(builds.get() + 1);
            copy_in(s)
        };
        assert_eq!(check(&path, "a", 32), CacheState::Missing);
        let p = open_or_build(&path, "a", 32, &aus, counted(&s1)).unwrap();
        assert_eq!((builds.get(), p.to_samples().unwrap()), (1, s1.clone()));
        let p = open_or_build(&path, "a", 32, &aus, |_| panic!("valid pack rebuilt")).unwrap();
        assert_eq!(p.to_samples().unwrap(), s1);
        drop(p);
        let p = open_or_build(&path, "b", 32, &aus, counted(&s2)).unwrap();
        assert_eq!(builds.get(), 2, "hash change rebuilds");
        assert_eq!(p.to_samples().unwrap(), s2);
        assert!(matches!(check(&path, "b", 40), CacheState::Stale(m) if m.contains("size")));
        let err = open_or_build(&path, "b", 40, &aus, copy_in(&s2)).unwrap_err();
        assert!(err.to_string().contains("expected 4800"), "{err}");
        // A different version (or corruption) rebuilds.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8] = 99;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            PackedCache::open(&path),
            Err(DataError::BadCache { .. })
        ));
        assert!(matches!(check(&path, "b", 32), CacheState::Stale(m) if m.contains("version 99")));
        open_or_build(&path, "b", 32, &aus, counted(&s2)).unwrap();
        assert_eq!(builds.get(), 3);
        // A failing or empty build is returned, and the old file is untouched.
        let before = std::fs::read(&path).unwrap();
        let e =
            open_or_build(&path, "c", 32, &aus, |_| Err(DataError::Empty("x".into()))).unwrap_err();
        assert!(matches!(e, DataError::Empty(m) if m == "x"));
        let e = open_or_build(&path, "c", 32, &aus, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("no frames"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");
    }

    #[test]
    fn concurrent_builders_build_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack.bin");
        let s = sample(32, 3);
        let builds = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let p = open_or_build(&path, "h", 32, &s.aus, |w| {
                        builds.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that the others arrive while this one holds the lock.
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        copy_in(&s)(w)
                    })
                    .unwrap();
                    assert_eq!(p.len(), s.len());
                });
            }
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn truncated_or_garbage_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack.bin");
        write(&path, &sample(32, 1), "h").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [1, 30, bytes.len() / 2] {
            std::fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
            let e = PackedCache::open(&path).unwrap_err();
            assert!(e.to_string().contains("truncated"), "cut {cut}: {e}");
        }
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
