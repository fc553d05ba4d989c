//! Inputs of `ausweep predict`: image files, folders (recursively, sorted) and videos, read as
//! RGB frames; videos through ffmpeg, every `stride`-th frame.

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

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

/// Every `stride`-th frame of a video, decoded by an ffmpeg child into raw RGB.
pub struct VideoFrames {
    child: Child,
    stdout: ChildStdout,
    /// What ffmpeg wrote on stderr (at `-v error`, only errors), gathered by a thread.
    stderr: Option<std::thread::JoinHandle<String>>,
    info: VideoInfo,
    stride: u64,
    next: u64,
    path: PathBuf,
}

impl VideoFrames {
    /// Starts decoding `p`.
    pub fn open(p: &Path, stride: u64) -> Result<Self> {
        let info = probe(p)?;
        let stride = stride.max(1);
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(p)
            .args(["-vf", &format!("select=not(mod(n\\,{stride}))")])
            .args([
                "-fps_mode",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow!("running ffmpeg (install ffmpeg; `make setup` does): {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("ffmpeg has no stdout"))?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = e.read_to_string(&mut text);
                text
            })
        });
        Ok(VideoFrames {
            child,
            stdout,
            stderr,
            info,
            stride,
            next: 0,
            path: p.to_path_buf(),
        })
    }

    /// The next sampled frame: (0-based frame index, seconds, image); `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<(u64, f64, RgbImage)>> {
        let (w, h) = (self.info.width, self.info.height);
        let mut buf = vec![0u8; w as usize * h as usize * 3];
        let mut got = 0;
        while got < buf.len() {
            match self.stdout.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(anyhow!("{}: reading frames: {e}", self.path.display())),
            }
        }
        if got < buf.len() {
            self.finished(got)?;
            return Ok(None);
        }
        let index = self.next * self.stride;
        self.next += 1;
        let img = RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| anyhow!("{}: frame of the wrong size", self.path.display()))?;
        Ok(Some((index, index as f64 / self.info.fps, img)))
    }
}

impl VideoFrames {
    /// At the end of ffmpeg's output: an error naming the file when ffmpeg failed, reported
    /// errors (a corrupt stream it concealed) or stopped inside a frame.
    fn finished(&mut self, partial: usize) -> Result<()> {
        let status = self.child.wait();
        let said = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let said: Vec<&str> = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let first = said.first().copied().unwrap_or("");
        let more = match said.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more line(s))", n - 1),
        };
        let p = self.path.display();
        match status {
            Err(e) => bail!("{p}: waiting for ffmpeg: {e}"),
            Ok(s) if !s.success() => bail!("{p}: ffmpeg failed ({s}): {first}{more}"),
            Ok(_) if !said.is_empty() => bail!("{p}: the video is damaged: ffmpeg: {first}{more}"),
            Ok(_) if partial > 0 => bail!("{p}: ffmpeg stopped inside a frame ({partial} bytes)"),
            Ok(_) => Ok(()),
        }
    }
}

impl Drop for VideoFrames {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
