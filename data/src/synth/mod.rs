//! Synthetic DISFA: faces whose geometry follows the 8 DISFA AU intensities, rendered in memory
//! or written in DISFA's own layout (DISFA's licence forbids redistributing the real data).

mod episodes;
mod face;
pub mod video;

use crate::error::{DataError, Result};
use crate::frame::{chw_to_rgb, save_chw_png};
use crate::{Samples, DISFA_AUS};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The 27 DISFA subject ids in numeric order (SN001–SN032 minus 014/015/019/020/022).
pub const DISFA_SUBJECT_IDS: [&str; 27] = [
    "SN001", "SN002", "SN003", "SN004", "SN005", "SN006", "SN007", "SN008", "SN009", "SN010",
    "SN011", "SN012", "SN013", "SN016", "SN017", "SN018", "SN021", "SN023", "SN024", "SN025",
    "SN026", "SN027", "SN028", "SN029", "SN030", "SN031", "SN032",
];

/// The smallest frame side at which faces are rendered with all their cues.
pub const MIN_SIZE: u32 = 32;

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// Number of subjects (identities).
    pub subjects: u32,
    /// Frames per subject (a "video").
    pub frames: u32,
    /// Side of the square frames, pixels (at least [`MIN_SIZE`] for legible faces).
    pub size: u32,
    /// Seed: the same config renders the same bytes.
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            subjects: 9,
            frames: 300,
            size: 64,
            seed: 0,
        }
    }
}

impl SynthConfig {
    /// Checks the config renders something legible: at least one subject and frame, size ≥ [`MIN_SIZE`].
    pub fn validate(&self) -> Result<()> {
        if self.subjects == 0 || self.frames == 0 {
            return Err(DataError::Config(format!(
                "synthetic data needs at least 1 subject and 1 frame (got {} subjects, {} frames)",
                self.subjects, self.frames
            )));
        }
        if self.size < MIN_SIZE {
            return Err(DataError::Config(format!(
                "synthetic frames must be at least {MIN_SIZE} px (got {})",
                self.size
            )));
        }
        Ok(())
    }
}

/// Subject names for `n` synthetic subjects: DISFA's ids in order when `n ≤ 27`, else `SN001..`.
pub fn subject_names(n: u32) -> Vec<String> {
    if n as usize <= DISFA_SUBJECT_IDS.len() {
        DISFA_SUBJECT_IDS[..n as usize]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (1..=n).map(|i| format!("SN{i:03}")).collect()
    }
}

/// Renders subjects × frames into [`Samples`] (AUs in DISFA order), in parallel and deterministically.
/// Never panics: zero subjects/frames give empty samples; sizes below [`MIN_SIZE`] still render,
/// just illegibly (use [`SynthConfig::validate`] to refuse them).
pub fn render_samples(cfg: &SynthConfig) -> Samples {
    let mut sink = crate::loader::SamplesSink::new(cfg.size.max(1), &DISFA_AUS);
    // Rendering into memory cannot fail.
    let _ = render_into(cfg, &mut sink);
    sink.samples
}

/// Renders subjects × frames to `sink` (e.g. a [`crate::pack::PackWriter`]) a parallel chunk at
/// a time, so a large synthetic set never sits in memory whole. Same frames as [`render_samples`].
pub fn render_into(cfg: &SynthConfig, sink: &mut dyn crate::pack::FrameSink) -> Result<()> {
    const CHUNK: usize = 256;
    let names = subject_names(cfg.subjects);
    let tracks: Vec<Vec<[u8; 8]>> = (0..cfg.subjects)
        .into_par_iter()
        .map(|s| episodes::intensity_track(cfg.seed, s, cfg.frames))
        .collect();
    let ids: Vec<face::Identity> = (0..cfg.subjects)
        .map(|s| face::Identity::new(cfg.seed, s))
        .collect();
    let size = cfg.size.max(1) as usize;
    let fb = 3 * size * size;
    let per = cfg.frames as usize;
    let n = cfg.subjects as usize * per;
    let mut pixels = vec![0u8; CHUNK.min(n) * fb];
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        pixels[..len * fb]
            .par_chunks_mut(fb)
            .enumerate()
            .for_each(|(j, out)| {
                let i = start + j;
                let (s, f) = (i / per, i % per);
                let pose = face::Pose::new(cfg.seed, s as u32, f as u32, &ids[s]);
                face::draw(&ids[s], &pose, &tracks[s][f], size, out);
            });
        for j in 0..len {
            let i = start + j;
            let (s, f) = (i / per, i % per);
            sink.push(
                &names[s],
                f as u32 + 1,
                &tracks[s][f],
                &pixels[j * fb..(j + 1) * fb],
            )?;
        }
    }
    Ok(())
}

/// What [`write_disfa`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SynthSummary {
    /// The output folder.
    pub out_dir: PathBuf,
    /// `<out>/ActionUnit_Labels`.
    pub labels_root: PathBuf,
    /// `<out>/Frames`.
    pub frames_root: PathBuf,
    /// Subject names written.
    pub subjects: Vec<String>,
    /// Frames per subject.
    pub frames_per_subject: u32,
    /// Frame side, pixels.
    pub size: u32,
    /// Per AU, the fraction of frames with intensity ≥ 2.
    pub positive_rate: Vec<(u32, f64)>,
    /// Fraction of frames with no AU at intensity ≥ 2.
    pub no_au_rate: f64,
}

/// Writes the synthetic dataset in DISFA's layout: `<out>/ActionUnit_Labels/SNxxx/SNxxx_auN.txt`
/// (lines `frame,intensity`, 1-based) and `<out>/Frames/SNxxx/<frame-1>.png`.
pub fn write_disfa(out_dir: &Path, cfg: &SynthConfig) -> Result<SynthSummary> {
    cfg.validate()?;
    let labels_root = out_dir.join("ActionUnit_Labels");
    let frames_root = out_dir.join("Frames");
    let names = subject_names(cfg.subjects);
    let mut counts = [0usize; 8];
    let mut none = 0usize;
    for (s, name) in names.iter().enumerate() {
        // One subject at a time keeps memory bounded for long videos.
        let one = SynthConfig {
            subjects: 1,
            ..*cfg
        };
        let subject = render_subject(&one, cfg.seed, s as u32, name);
        let ldir = labels_root.join(name);
        let fdir = frames_root.join(name);
        for d in [&ldir, &fdir] {
            std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
        }
        for (k, au) in DISFA_AUS.iter().enumerate() {
            let mut text = String::with_capacity(subject.len() * 6);
            for f in 0..subject.len() {
                let _ = writeln!(text, "{},{}", f + 1, subject.intensities[f * 8 + k]);
            }
            let path = ldir.join(format!("{name}_au{au}.txt"));
            std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))?;
        }
        for f in 0..subject.len() {
            let row = &subject.intensities[f * 8..f * 8 + 8];
            for (k, &v) in row.iter().enumerate() {
                counts[k] += usize::from(v >= 2);
            }
            none += usize::from(row.iter().all(|&v| v < 2));
        }
        let fb = subject.frame_bytes();
        subject
            .pixels
            .par_chunks(fb)
            .enumerate()
            .try_for_each(|(f, chw)| {
                save_chw_png(chw, subject.size, &fdir.join(format!("{f}.png")))
            })?;
    }
    let total = (cfg.subjects as usize * cfg.frames as usize) as f64;
    Ok(SynthSummary {
        out_dir: out_dir.to_path_buf(),
        labels_root,
        frames_root,
        subjects: names,
        frames_per_subject: cfg.frames,
        size: cfg.size,
        positive_rate: DISFA_AUS
            .iter()
            .zip(counts)
            .map(|(&au, c)| (au, c as f64 / total))
            .collect(),
        no_au_rate: none as f64 / total,
    })
}

/// Renders subject number `subject` alone (same pixels as in [`render_samples`] of the full config).
fn render_subject(one: &SynthConfig, seed: u64, subject: u32, name: &str) -> Samples {
    let track = episodes::intensity_track(seed, subject, one.frames);
    let id = face::Identity::new(seed, subject);
    let size = one.size as usize;
    let fb = 3 * size * size;
    let mut pixels = vec![0u8; one.frames as usize * fb];
    pixels.par_chunks_mut(fb).enumerate().for_each(|(f, out)| {
        let pose = face::Pose::new(seed, subject, f as u32, &id);
        face::draw(&id, &pose, &track[f], size, out);
    });
    let n = one.frames as usize;
    Samples {
        size: one.size,
        aus: DISFA_AUS.to_vec(),
        pixels,
        intensities: track.into_iter().flatten().collect(),
        subjects: vec![0; n],
        subject_names: vec![name.to_string()],
        frames: (1..=n as u32).collect(),
    }
}

/// Picks frames that show the cues: a neutral frame, then for each AU the frame where it is
/// strongest (ties: earliest), skipping duplicates.
pub fn showcase_indices(samples: &Samples) -> Vec<usize> {
    let k = samples.aus.len();
    let mut out = Vec::new();
    if let Some(i) = (0..samples.len()).find(|&i| {
        samples.intensities[i * k..(i + 1) * k]
            .iter()
            .all(|&v| v == 0)
    }) {
        out.push(i);
    }
    for c in 0..k {
        let best = (0..samples.len())
            .max_by_key(|&i| (samples.intensities[i * k + c], std::cmp::Reverse(i)));
        if let Some(i) = best {
            if samples.intensities[i * k + c] >= 2 && !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out
}

/// Writes the frames `indices` of `samples` as a PNG grid `cols` wide with a 2-pixel gap.
pub fn save_preview(samples: &Samples, indices: &[usize], cols: u32, path: &Path) -> Result<()> {
    let cols = cols.max(1);
    let bad = |msg: String| DataError::Encode {
        path: path.to_path_buf(),
        msg,
    };
    if indices.is_empty() {
        return Err(bad("no frames to preview".into()));
    }
    let n = indices.len() as u32;
    let rows = n.div_ceil(cols);
    let cell = samples.size + 2;
    let mut grid = image::RgbImage::from_pixel(
        cols.min(n) * cell + 2,
        rows * cell + 2,
        image::Rgb([255; 3]),
    );
    let fb = samples.frame_bytes();
    for (j, &i) in indices.iter().enumerate() {
        let chw = samples.pixels.get(i * fb..(i + 1) * fb).ok_or_else(|| {
            bad(format!(
                "frame index {i} out of range (len {})",
                samples.len()
            ))
        })?;
        let img = chw_to_rgb(chw, samples.size).ok_or_else(|| bad("bad frame size".into()))?;
        let (x, y) = ((j as u32 % cols) * cell + 2, (j as u32 / cols) * cell + 2);
        image::imageops::replace(&mut grid, &img, i64::from(x), i64::from(y));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    grid.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| bad(e.to_string()))
}

/// Render throughput measured by [`bench_render`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RenderBench {
    /// Frames rendered.
    pub frames: u64,
    /// Frame side, pixels.
    pub size: u32,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Frames per second.
    pub frames_per_sec: f64,
}

/// Renders `frames` frames (10 subjects) at `size` and reports the throughput (for benchmarks).
pub fn bench_render(frames: u32, size: u32) -> RenderBench {
    let subjects = 10u32;
    let cfg = SynthConfig {
        subjects,
        frames: frames.div_ceil(subjects),
        size,
        seed: 1,
    };
    let t = Instant::now();
    let s = render_samples(&cfg);
    let seconds = t.elapsed().as_secs_f64();
    RenderBench {
        frames: s.len() as u64,
        size,
        seconds,
        frames_per_sec: s.len() as f64 / seconds.max(1e-9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_deterministic_and_shaped() {
        let cfg = SynthConfig {
            subjects: 3,
            frames: 20,
            size: 32,
            seed: 9,
        };
        let a = render_samples(&cfg);
        assert_eq!(a, render_samples(&cfg));
        assert_eq!(a.len(), 60);
        assert_eq!(a.pixels.len(), 60 * 3 * 32 * 32);
        assert_eq!(a.intensities.len(), 60 * 8);
        assert_eq!(a.subject_names, ["SN001", "SN002", "SN003"]);
        assert_eq!(a.subjects[25], 1);
        assert_eq!(a.frames[25], 6);
        let b = render_samples(&SynthConfig { seed: 10, ..cfg });
        assert_ne!(a.pixels, b.pixels);
    }

    #[test]
    fn subject_names_follow_disfa() {
        let n = subject_names(27);
        assert_eq!(n[13], "SN016");
        assert_eq!(n[26], "SN032");
        assert_eq!(subject_names(30)[29], "SN030");
        assert!(subject_names(0).is_empty());
    }

    #[test]
    fn consecutive_frames_are_similar_like_video() {
        let s = render_samples(&SynthConfig {
            subjects: 2,
            frames: 30,
            size: 48,
            seed: 2,
        });
        let fb = s.frame_bytes();
        let d = |i: usize, j: usize| {
            s.pixels[i * fb..(i + 1) * fb]
                .iter()
                .zip(&s.pixels[j * fb..(j + 1) * fb])
                .map(|(a, b)| f64::from(a.abs_diff(*b)))
                .sum::<f64>()
                / fb as f64
        };
        // Next frame of the same subject vs the same frame of the other subject.
        assert!(
            d(10, 11) * 3.0 < d(10, 40),
            "{} vs {}",
            d(10, 11),
            d(10, 40)
        );
    }

    #[test]
    fn validate_and_degenerate_configs() {
        let tiny = SynthConfig {
            size: 8,
            ..Default::default()
        };
        assert!(matches!(tiny.validate(), Err(DataError::Config(_))));
        assert!(SynthConfig::default().validate().is_ok());
        let empty = render_samples(&SynthConfig {
            frames: 0,
            ..Default::default()
        });
        assert!(empty.is_empty());
        let small = render_samples(&SynthConfig {
            subjects: 1,
            frames: 2,
            size: 4,
            seed: 0,
        });
        assert_eq!(small.pixels.len(), 2 * 3 * 16);
    }

    #[test]
    fn preview_grid_has_expected_size() {
        let s = render_samples(&SynthConfig {
            subjects: 2,
            frames: 200,
            size: 32,
            seed: 4,
        });
        let idx = showcase_indices(&s);
        assert!(idx.len() >= 5, "{idx:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/preview.png");
        save_preview(&s, &idx[..4], 2, &path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (2 * 34 + 2, 2 * 34 + 2));
        assert!(save_preview(&s, &[10_000], 2, &path).is_err());
        assert!(save_preview(&s, &[], 2, &path).is_err());
    }

    #[test]
    fn bench_reports_throughput() {
        let b = bench_render(40, 32);
        assert_eq!(b.frames, 40);
        assert!(b.frames_per_sec > 0.0 && b.seconds > 0.0);
    }

    /// `cargo test -p ausweep-data -- --ignored --nocapture render_speed` prints frames/s at 64 px.
    #[test]
    #[ignore]
    fn render_speed() {
        let b = bench_render(10_000, 64);
        eprintln!("{b:?}");
    }
}
