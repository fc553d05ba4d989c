//! DISFA-like videos: per subject a left (and optionally right) camera video of the synthetic
//! face moving and changing scale over a cluttered background, in DISFA's file names, with
//! DISFA's label files and the renderer's ground-truth eye positions, so face preparation can
//! be tested and measured against the truth.
//!
//! Layout under the output folder:
//! `Videos_LeftCamera/LeftVideoSNxxx_comp.avi`, `Videos_RightCamera/RightVideoSNxxx_comp.avi`,
//! `ActionUnit_Labels/SNxxx/SNxxx_auN.txt` (all 12 DISFA AUs; those the renderer does not draw
//! are 0) and `Landmarks/SNxxx_{left,right}.csv` (`frame,left_x,left_y,right_x,right_y`,
//! 1-based frames, eye centres in video pixels).

use super::episodes::{intensity_track, rng_for};
use super::face::{self, Identity, Pose, FACE_SCALE};
use super::subject_names;
use crate::error::{DataError, Result};
use crate::raster::{Canvas, Rgb, Xf};
use crate::DISFA_AUS;
use rand::Rng;
use rayon::prelude::*;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every AU DISFA labels, in its file order.
pub const DISFA_LABEL_AUS: [u32; 12] = [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26];

/// Which cameras to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Camera {
    /// `Videos_LeftCamera/LeftVideoSNxxx_comp.avi` (DISFA's usual choice).
    Left,
    /// `Videos_RightCamera/RightVideoSNxxx_comp.avi`.
    Right,
}

impl Camera {
    /// Folder and file-name prefix of this camera's videos.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Camera::Left => ("Videos_LeftCamera", "LeftVideo"),
            Camera::Right => ("Videos_RightCamera", "RightVideo"),
        }
    }

    /// The lower-case name used in file names and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Camera::Left => "left",
            Camera::Right => "right",
        }
    }

    /// The video of `subject` under `root`.
    pub fn video(self, root: &Path, subject: &str) -> PathBuf {
        let (dir, prefix) = self.names();
        root.join(dir).join(format!("{prefix}{subject}_comp.avi"))
    }
}

impl std::str::FromStr for Camera {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "left" => Ok(Camera::Left),
            "right" => Ok(Camera::Right),
            other => Err(format!("camera `{other}`: use left or right")),
        }
    }
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSynthConfig {
    /// Number of subjects (DISFA ids).
    pub subjects: u32,
    /// Labelled frames per subject (DISFA: 4,845).
    pub frames: u32,
    /// Video width, pixels (DISFA: 1024).
    pub width: u32,
    /// Video height, pixels (DISFA: 768).
    pub height: u32,
    /// Render seed: the same identities and AU tracks as `dataset synth` with this seed.
    pub seed: u64,
    /// Cameras to write.
    pub cameras: Vec<Camera>,
    /// Subjects whose videos are one frame shorter than their labels (a DISFA defect).
    pub short_subjects: Vec<String>,
}

impl VideoSynthConfig {
    /// Checks the sizes: at least one subject and frame, frames at least 64 × 48, even sides.
    pub fn validate(&self) -> Result<()> {
        if self.subjects == 0 || self.frames == 0 || self.cameras.is_empty() {
            return Err(DataError::Config(format!(
                "synthetic videos need at least 1 subject, 1 frame and 1 camera (got {} subjects, {} frames, {} cameras)",
                self.subjects,
                self.frames,
                self.cameras.len()
            )));
        }
        if self.width < 64 || self.height < 48 || self.width % 2 == 1 || self.height % 2 == 1 {
            return Err(DataError::Config(format!(
                "video size {}x{}: both sides even, at least 64x48",
                self.width, self.height
            )));
        }
        Ok(())
    }
}

/// What [`write_videos`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoSynthSummary {
    /// The videos, per subject and camera.
    pub videos: Vec<PathBuf>,
    /// `<out>/ActionUnit_Labels`.
    pub labels_root: PathBuf,
    /// Frames rendered in all.
    pub frames: u64,
}

/// Where the head is in frame `f` of a video: face-local transform and eye centres (pixels).
pub struct HeadPlacement {
    xf: Xf,
    /// Left and right eye centres (as seen), pixels.
    pub eyes: [(f32, f32); 2],
}

/// The placement of subject `s`'s head in frame `f` seen by `camera` in a `w × h` video: a seated
/// person's slow sway and lean (±5 % of the width, ±3 % of the height, ±6 % scale, a few degrees
/// of roll) plus the renderer's per-frame jitter; the face is about a third of the frame high.
/// `au` (the frame's AU intensities) sets how open the eyes are.
pub fn placement(
    seed: u64,
    s: u32,
    f: u32,
    au: &[u8; 8],
    camera: Camera,
    size: (u32, u32),
) -> HeadPlacement {
    let id = Identity::new(seed, s);
    let pose = Pose::new(seed, s, f, &id);
    head(&id, &pose, au, seed, s, f, camera, size.0, size.1)
}

#[allow(clippy::too_many_arguments)]
fn head(
    id: &Identity,
    pose: &Pose,
    au: &[u8; 8],
    seed: u64,
    s: u32,
    f: u32,
    camera: Camera,
    w: u32,
    h: u32,
) -> HeadPlacement {
    let mut r = rng_for(seed, 0x4EAD, u64::from(s), 0);
    let ph: [f32; 4] = std::array::from_fn(|_| r.random_range(0.0..6.3));
    let t = f as f32;
    let wave = |period: f32, k: usize| (t * std::f32::consts::TAU / period + ph[k]).sin();
    let (dx, dy, scale, angle) = pose.jitter();
    let (w, h) = (w as f32, h as f32);
    let side = 0.37 * h * (1.0 + 0.06 * wave(317.0, 0)) * scale;
    let view = match camera {
        Camera::Left => 0.04,
        Camera::Right => -0.04,
    };
    let cx = w * (0.5 + view + 0.05 * wave(263.0, 1) + 0.015 * wave(41.0, 2)) + dx * side;
    let cy = h * (0.47 + 0.03 * wave(199.0, 3)) + dy * side;
    let xf = Xf::pixels(
        cx,
        cy,
        FACE_SCALE * side,
        angle * 1.5 + 0.05 * wave(151.0, 2),
    );
    let eyes = face::eye_centres(id, au).map(|(x, y)| xf.fwd(x, y));
    HeadPlacement { xf, eyes }
}

/// A subject's static, cluttered room behind the head: a graded wall with shelves, frames,
/// posters and a door, different per subject and camera.
fn background(seed: u64, s: u32, camera: Camera, w: usize, h: usize) -> Vec<Rgb> {
    let mut r = rng_for(seed, 0xB6, u64::from(s), camera as u64);
    let top: Rgb = std::array::from_fn(|_| r.random_range(0.35..0.8));
    let bottom: Rgb = top.map(|c| c * r.random_range(0.6..0.9));
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        let t = (y as f32 + 0.5) / h as f32;
        px.extend(std::iter::repeat_n(crate::raster::mix(top, bottom, t), w));
    }
    let mut c = Canvas::over(w, h, px, Xf::pixels(0.0, 0.0, 1.0, 0.0));
    for _ in 0..40 {
        let (rw, rh) = (
            r.random_range(0.02..0.25) * w as f32,
            r.random_range(0.02..0.3) * h as f32,
        );
        let (x0, y0) = (r.random_range(0.0..w as f32), r.random_range(0.0..h as f32));
        let color: Rgb = std::array::from_fn(|_| r.random_range(0.05..0.95));
        c.rect(
            x0 as usize,
            y0 as usize,
            (x0 + rw) as usize,
            (y0 + rh) as usize,
            color,
        );
        // A frame's or shelf's darker edge.
        if r.random_bool(0.5) {
            let edge = color.map(|v| v * 0.4);
            c.rect(
                x0 as usize,
                (y0 + rh) as usize,
                (x0 + rw) as usize,
                (y0 + rh) as usize + 3,
                edge,
            );
        }
    }
    c.into_pixels()
}

/// The `frames` CHW frames of subject `s` seen by `camera`, rendered in parallel; `first` is the
/// 0-based index of the first.
#[allow(clippy::too_many_arguments)]
fn render_chunk(
    id: &Identity,
    bg: &[Rgb],
    track: &[[u8; 8]],
    cfg: &VideoSynthConfig,
    s: u32,
    camera: Camera,
    first: u32,
    out: &mut [u8],
) {
    let (w, h) = (cfg.width as usize, cfg.height as usize);
    let fb = 3 * w * h;
    out.par_chunks_mut(fb).enumerate().for_each(|(j, rgb)| {
        let f = first + j as u32;
        let pose = Pose::new(cfg.seed, s, f, id);
        let au = &track[f as usize];
        let place = head(id, &pose, au, cfg.seed, s, f, camera, cfg.width, cfg.height);
        let mut c = Canvas::over(w, h, bg.to_vec(), place.xf);
        face::paint(&mut c, id, au);
        let mut chw = vec![0u8; fb];
        pose.finish(&c, &mut chw);
        let plane = w * h;
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            px[0] = chw[i];
            px[1] = chw[plane + i];
            px[2] = chw[2 * plane + i];
        }
    });
}

/// Writes the DISFA-like video set under `out_dir` (see the module docs).
pub fn write_videos(out_dir: &Path, cfg: &VideoSynthConfig) -> Result<VideoSynthSummary> {
    cfg.validate()?;
    let labels_root = out_dir.join("ActionUnit_Labels");
    let marks = out_dir.join("Landmarks");
    let names = subject_names(cfg.subjects);
    let mut videos = Vec::new();
    let mut total = 0u64;
    for (s, name) in names.iter().enumerate() {
        let s = s as u32;
        let track = intensity_track(cfg.seed, s, cfg.frames);
        let id = Identity::new(cfg.seed, s);
        write_labels(&labels_root, name, &track)?;
        let n = if cfg.short_subjects.contains(name) {
            cfg.frames - 1
        } else {
            cfg.frames
        };
        for &camera in &cfg.cameras {
            let video = camera.video(out_dir, name);
            encode(&video, cfg, n, |first, out| {
                let bg = background(cfg.seed, s, camera, cfg.width as usize, cfg.height as usize);
                render_chunk(&id, &bg, &track, cfg, s, camera, first, out);
            })?;
            let mut text = String::from("frame,left_x,left_y,right_x,right_y\n");
            for f in 0..n {
                let p = head(
                    &id,
                    &Pose::new(cfg.seed, s, f, &id),
                    &track[f as usize],
                    cfg.seed,
                    s,
                    f,
                    camera,
                    cfg.width,
                    cfg.height,
                );
                let [(lx, ly), (rx, ry)] = p.eyes;
                let _ = writeln!(text, "{},{lx:.3},{ly:.3},{rx:.3},{ry:.3}", f + 1);
            }
            std::fs::create_dir_all(&marks).map_err(|e| DataError::io(&marks, e))?;
            let path = marks.join(format!("{name}_{}.csv", camera.as_str()));
            std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))?;
            videos.push(video);
            total += u64::from(n);
        }
    }
    Ok(VideoSynthSummary {
        videos,
        labels_root,
        frames: total,
    })
}

/// DISFA's label files for one subject: the renderer's 8 AUs from its track, the other 4 zero.
fn write_labels(labels_root: &Path, name: &str, track: &[[u8; 8]]) -> Result<()> {
    let dir = labels_root.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    for au in DISFA_LABEL_AUS {
        let col = DISFA_AUS.iter().position(|&a| a == au);
        let mut text = String::with_capacity(track.len() * 7);
        for (f, row) in track.iter().enumerate() {
            let _ = writeln!(text, "{},{}", f + 1, col.map_or(0, |k| row[k]));
        }
        let path = dir.join(format!("{name}_au{au}.txt"));
        std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))?;
    }
    Ok(())
}

/// Pipes `n` frames, rendered a chunk at a time by `render(first, rgb_out)`, into ffmpeg's MPEG-4
/// encoder at 20 fps, writing `video` through a temp file renamed into place.
fn encode(
    video: &Path,
    cfg: &VideoSynthConfig,
    n: u32,
    render: impl Fn(u32, &mut [u8]),
) -> Result<()> {
    const CHUNK: u32 = 32;
    let dir = video.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp.avi",
        video
            .file_name()
            .map_or("video".into(), |n| n.to_string_lossy())
    ));
    let mut child = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt",
        ])
        .args(["rgb24", "-s", &format!("{}x{}", cfg.width, cfg.height)])
        .args(["-r", "20", "-i", "-", "-c:v", "mpeg4", "-q:v", "3"])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| {
            DataError::Config(format!("cannot run ffmpeg ({e}); make setup installs it"))
        })?;
    let fb = 3 * cfg.width as usize * cfg.height as usize;
    let mut buf = vec![0u8; CHUNK as usize * fb];
    let mut stdin = child.stdin.take();
    let mut first = 0;
    while first < n {
        let len = CHUNK.min(n - first);
        let out = &mut buf[..len as usize * fb];
        render(first, out);
        let Some(pipe) = stdin.as_mut() else { break };
        if let Err(e) = pipe.write_all(out) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(DataError::io(video, e));
        }
        first += len;
    }
    drop(stdin);
    let status = child.wait().map_err(|e| DataError::io(video, e))?;
    if !status.success() {
        return Err(DataError::Decode {
            path: video.to_path_buf(),
            msg: format!("ffmpeg (encoding) exited with {status}"),
        });
    }
    ausweep_fsutil::commit(&tmp, video).map_err(|e| DataError::io(video, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_moves_and_scales_but_stays_in_the_frame() {
        let (w, h) = (1024, 768);
        let ps: Vec<_> = (0..600)
            .map(|f| placement(3, 1, f, &[0; 8], Camera::Left, (w, h)))
            .collect();
        let xs: Vec<f32> = ps
            .iter()
            .map(|p| (p.eyes[0].0 + p.eyes[1].0) / 2.0)
            .collect();
        let dists: Vec<f32> = ps
            .iter()
            .map(|p| (p.eyes[1].0 - p.eyes[0].0).hypot(p.eyes[1].1 - p.eyes[0].1))
            .collect();
        let span = |v: &[f32]| {
            v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min)
        };
        assert!(span(&xs) > 40.0, "the head barely moves: {}", span(&xs));
        let mean = dists.iter().sum::<f32>() / dists.len() as f32;
        assert!(span(&dists) / mean > 0.05, "no scale change");
        // Eyes 0.19–0.24 face units apart × 1.2 × 0.37 h: about 65–80 px at 768 px.
        assert!((55.0..95.0).contains(&mean), "eye distance {mean}");
        for p in &ps {
            for (x, y) in p.eyes {
                assert!(x > 100.0 && x < 924.0 && y > 100.0 && y < 668.0, "{x},{y}");
            }
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        let cfg = VideoSynthConfig {
            subjects: 1,
            frames: 2,
            width: 63,
            height: 48,
            seed: 0,
            cameras: vec![Camera::Left],
            short_subjects: vec![],
        };
        assert!(cfg.validate().is_err());
        assert!(VideoSynthConfig {
            frames: 0,
            width: 64,
            ..cfg
        }
        .validate()
        .is_err());
    }
}
