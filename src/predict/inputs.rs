//! Inputs of `ausweep predict`: image files, folders (recursively, sorted) and videos, read as
//! RGB frames; videos through ffmpeg, every `stride`-th frame.

use anyhow::{anyhow, bail, Context, Result};
use ausweep_edge::video as ffmpeg;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGE_EXT: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"];
const VIDEO_EXT: [&str; 8] = ["avi", "mp4", "mov", "mkv", "webm", "m4v", "mpg", "wmv"];

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A still image.
    Image(PathBuf),
    /// A video.
    Video(PathBuf),
}

impl Input {
    /// Its path.
    pub fn path(&self) -> &Path {
        match self {
            Input::Image(p) | Input::Video(p) => p,
        }
    }
}

fn ext(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Expands the command line's paths: folders to their images and videos (sorted, recursive),
/// files by extension (an unknown extension is tried as an image).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found).with_context(|| format!("reading folder {}", p.display()))?;
            found.sort();
            if found.is_empty() {
                bail!("{}: the folder has no images or videos", p.display());
            }
            out.extend(found.into_iter().map(classify));
        } else if p.exists() {
            out.push(classify(p.clone()));
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, found)?;
        } else {
            let x = ext(&p);
            if IMAGE_EXT.contains(&x.as_str()) || VIDEO_EXT.contains(&x.as_str()) {
                found.push(p);
            }
        }
    }
    Ok(())
}

/// Image or video, by the name's extension.
pub fn expand_kind(p: &Path) -> Input {
    classify(p.to_path_buf())
}

fn classify(p: PathBuf) -> Input {
    if VIDEO_EXT.contains(&ext(&p).as_str()) {
        Input::Video(p)
    } else {
        Input::Image(p)
    }
}

/// Reads an image file as RGB.
pub fn read_image(p: &Path) -> Result<RgbImage> {
    let img = image::ImageReader::open(p)
        .with_context(|| format!("{}: cannot open", p.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", p.display()))?
        .decode()
        .map_err(|e| anyhow!("{}: not a readable image ({e})", p.display()))?;
    Ok(img.to_rgb8())
}

/// A video's size, frame rate and frame count (ffprobe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// Frames, when the container says.
    pub frames: Option<u64>,
}

/// Probes `p` with ffprobe.
pub fn probe(p: &Path) -> Result<VideoInfo> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=width,height,avg_frame_rate,r_frame_rate,nb_frames")
        .args(["-of", "json"])
        .arg(p)
        .output()
        .map_err(|e| anyhow!("running ffprobe (install ffmpeg; `make setup` does): {e}"))?;
    if !out.status.success() {
        bail!(
            "{}: not a readable video ({})",
            p.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("{}: ffprobe output: {e}", p.display()))?;
    let s = v["streams"]
        .get(0)
        .ok_or_else(|| anyhow!("{}: no video stream", p.display()))?;
    let dim = |k: &str| {
        s[k].as_u64()
            .filter(|&x| x > 0 && x <= 16384)
            .map(|x| x as u32)
    };
    let (Some(width), Some(height)) = (dim("width"), dim("height")) else {
        bail!("{}: the video stream has no usable size", p.display());
    };
    let rate = |k: &str| {
        let r = s[k].as_str()?;
        let (n, d) = r.split_once('/')?;
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (d > 0.0 && n > 0.0).then_some(n / d)
    };
    let fps = rate("avg_frame_rate")
        .or_else(|| rate("r_frame_rate"))
        .unwrap_or(25.0);
    let frames = s["nb_frames"].as_str().and_then(|n| n.parse().ok());
    Ok(VideoInfo {
        width,
        height,
        fps,
        frames,
    })
}

/// Every `stride`-th frame of a video, decoded by ffmpeg (the one wrapper, in the worker's
/// preparation) into raw RGB.
pub struct VideoFrames {
    frames: Option<ffmpeg::Frames>,
    info: VideoInfo,
    stride: u64,
    next: u64,
    path: PathBuf,
    buf: Vec<u8>,
}

impl VideoFrames {
    /// Starts decoding `p`.
    pub fn open(p: &Path, stride: u64) -> Result<Self> {
        let info = probe(p)?;
        let stride = stride.max(1);
        let frames = ffmpeg::Frames::open_every(p, info.width, info.height, stride)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(VideoFrames {
            frames: Some(frames),
            info,
            stride,
            next: 0,
            path: p.to_path_buf(),
            buf: Vec::new(),
        })
    }

    /// The next sampled frame: (0-based frame index, seconds, image); `None` at the end. At the
    /// end, ffmpeg's failure or its complaints (a damaged stream it concealed) are an error that
    /// names the file.
    pub fn next_frame(&mut self) -> Result<Option<(u64, f64, RgbImage)>> {
        let Some(frames) = self.frames.as_mut() else {
            return Ok(None);
        };
        let n = frames
            .read_batch(1, &mut self.buf)
            .map_err(|e| anyhow!("{e}"))?;
        if n == 0 {
            let said = self
                .frames
                .take()
                .map(ffmpeg::Frames::finish)
                .transpose()
                .map_err(|e| anyhow!("{e}"))?
                .unwrap_or_default();
            if !said.is_empty() {
                bail!(
                    "{}: the video is damaged: ffmpeg: {said}",
                    self.path.display()
                );
            }
            return Ok(None);
        }
        let index = self.next * self.stride;
        self.next += 1;
        let img = RgbImage::from_raw(
            self.info.width,
            self.info.height,
            std::mem::take(&mut self.buf),
        )
        .ok_or_else(|| anyhow!("{}: frame of the wrong size", self.path.display()))?;
        Ok(Some((index, index as f64 / self.info.fps, img)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_sorted_and_recursive_and_missing_paths_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        for f in ["b.png", "a.JPG", "sub/c.mp4", "notes.txt"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let got = expand(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(
            got,
            vec![
                Input::Image(d.path().join("a.JPG")),
                Input::Image(d.path().join("b.png")),
                Input::Video(d.path().join("sub/c.mp4")),
            ]
        );
        let err = expand(&[d.path().join("nope.png")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.png") && err.contains("no such file"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_image_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("broken.png");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\n garbage").unwrap();
        let err = format!("{:#}", read_image(&p).unwrap_err());
        assert!(
            err.contains("broken.png") && err.contains("not a readable image"),
            "{err}"
        );
    }
}
