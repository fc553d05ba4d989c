//! Video decoding through ffmpeg, the one wrapper (dataset preparation and `ausweep predict`):
//! `ffprobe` for the size and frame count, and `ffmpeg` piping raw RGB frames into memory a
//! batch at a time, its stderr gathered by a thread (a child that fills its stderr pipe while we
//! wait on its stdout would stall both) and reported by [`Frames::finish`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Errors of the ffmpeg wrapper.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// ffmpeg / ffprobe missing or failing to start.
    #[error("{0}")]
    Tool(String),
    /// A video could not be read.
    #[error("video {path}: {msg}")]
    Video {
        /// The video.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
}

/// A video's size and packet (frame) count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frames (counted packets, without decoding).
    pub frames: u64,
}

fn tool_error(tool: &str, e: std::io::Error) -> VideoError {
    VideoError::Tool(format!(
        "cannot run {tool} ({e}); install ffmpeg (make setup does)"
    ))
}

/// Size and frame count of `video`'s first video stream.
pub fn probe(video: &Path) -> Result<Probe, VideoError> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=width,height,nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(video)
        .output()
        .map_err(|e| tool_error("ffprobe", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bad = |msg: String| VideoError::Video {
        path: video.to_path_buf(),
        msg,
    };
    if !out.status.success() {
        return Err(bad(format!(
            "ffprobe failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let fields: Vec<&str> = text.trim().split(',').map(str::trim).collect();
    let num = |i: usize, what: &str| -> Result<u64, VideoError> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(format!("ffprobe gave no {what} (output {:?})", text.trim())))
    };
    let (width, height, frames) = (num(0, "width")?, num(1, "height")?, num(2, "frame count")?);
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(bad(format!("unusable frame size {width}x{height}")));
    }
    Ok(Probe {
        width: width as u32,
        height: height as u32,
        frames,
    })
}

/// Raw RGB frames (`H × W × 3` bytes each) of a video, decoded by an ffmpeg child process.
pub struct Frames {
    path: PathBuf,
    child: Child,
    out: ChildStdout,
    /// What ffmpeg writes on stderr (at `-v error`: only errors), gathered as it comes.
    stderr: Option<std::thread::JoinHandle<String>>,
    frame_bytes: usize,
    done: bool,
}

impl Frames {
    /// Starts decoding every frame of `video`, whose frames are `probe.width × probe.height`.
    pub fn open(video: &Path, probe: &Probe) -> Result<Frames, VideoError> {
        Self::open_every(video, probe.width, probe.height, 1)
    }

    /// Starts decoding every `stride`-th frame (0, stride, 2·stride, ...) of `video`, whose
    /// frames are `width × height`.
    pub fn open_every(
        video: &Path,
        width: u32,
        height: u32,
        stride: u64,
    ) -> Result<Frames, VideoError> {
        let mut c = Command::new("ffmpeg");
        c.args(["-nostdin", "-v", "error", "-i"]).arg(video);
        if stride > 1 {
            c.args(["-vf", &format!("select=not(mod(n\\,{stride}))")])
                .args(["-fps_mode", "passthrough"]);
        }
        let mut child = c
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| tool_error("ffmpeg", e))?;
        let out = child.stdout.take().ok_or_else(|| VideoError::Video {
            path: video.to_path_buf(),
            msg: "ffmpeg gave no output pipe".into(),
        })?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = e.read_to_string(&mut text);
                text
            })
        });
        Ok(Frames {
            path: video.to_path_buf(),
            child,
            out,
            stderr,
            frame_bytes: width as usize * height as usize * 3,
            done: false,
        })
    }

    /// Reads up to `max` frames into `buf` (resized to fit); returns how many (0 at the end).
    pub fn read_batch(&mut self, max: usize, buf: &mut Vec<u8>) -> Result<usize, VideoError> {
        buf.resize(max * self.frame_bytes, 0);
        let mut n = 0;
        while n < max && !self.done {
            let frame = &mut buf[n * self.frame_bytes..(n + 1) * self.frame_bytes];
            let mut got = 0;
            while got < frame.len() {
                match self.out.read(&mut frame[got..]) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(VideoError::Video {
                            path: self.path.clone(),
                            msg: format!("reading decoded frames: {e}"),
                        })
                    }
                }
            }
            if got < frame.len() {
                self.done = true;
                if got > 0 {
                    return Err(VideoError::Video {
                        path: self.path.clone(),
                        msg: format!(
                            "ffmpeg stopped inside a frame ({got} of {} bytes)",
                            frame.len()
                        ),
                    });
                }
                break;
            }
            n += 1;
        }
        buf.truncate(n * self.frame_bytes);
        Ok(n)
    }

    /// Waits for ffmpeg (after the last frame was read) and reports a failure with its first
    /// words; on success, returns what it complained of (empty for a clean stream; a damaged
    /// one that ffmpeg concealed exits 0 and says so here).
    pub fn finish(mut self) -> Result<String, VideoError> {
        let status = self.child.wait().map_err(|e| VideoError::Video {
            path: self.path.clone(),
            msg: format!("waiting for ffmpeg: {e}"),
        })?;
        let said = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let said = summary(&said);
        if !status.success() {
            return Err(VideoError::Video {
                path: self.path.clone(),
                msg: format!("ffmpeg exited with {status}: {said}"),
            });
        }
        Ok(said)
    }
}

/// ffmpeg's stderr in one line: its first non-empty line, and how many more there were.
fn summary(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more line(s))", rest.len()),
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A 3,000-frame H.264 video with most of its packets overwritten: ffmpeg conceals the
    /// damage, writes ~400 KB of complaints on stderr (six times a pipe's buffer) and exits 0.
    fn damaged_video(dir: &Path) -> PathBuf {
        let clean = dir.join("clean.mp4");
        let st = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=64x48:rate=25",
            ])
            .args([
                "-frames:v",
                "3000",
                "-pix_fmt",
                "yuv420p",
                "-c:v",
                "libx264",
                "-g",
                "1",
            ])
            .arg(&clean)
            .status()
            .expect("ffmpeg (make setup installs it)");
        assert!(st.success(), "ffmpeg encoding: {st}");
        let mut bytes = std::fs::read(&clean).unwrap();
        let n = bytes.len();
        for i in (n / 20..n * 19 / 20).step_by(97) {
            bytes[i] = 0x5A;
        }
        let bad = dir.join("damaged.mp4");
        std::fs::write(&bad, bytes).unwrap();
        bad
    }

    #[test]
    fn a_damaged_video_decodes_to_its_end_and_its_complaints_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let video = damaged_video(dir.path());
        let p = probe(&video).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let run = || -> Result<(u64, String), VideoError> {
                let mut f = Frames::open(&video, &p)?;
                let (mut frames, mut buf) = (0u64, Vec::new());
                loop {
                    let n = f.read_batch(64, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    frames += n as u64;
                }
                Ok((frames, f.finish()?))
            };
            let _ = tx.send(run());
        });
        // An undrained stderr pipe fills and stalls ffmpeg while we wait on its stdout.
        let (frames, said) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("decoding did not end within 120 s: ffmpeg stalled on a full stderr pipe")
            .unwrap();
        assert!(frames > 0, "no frame decoded");
        assert!(
            said.contains("more line(s)") && !said.contains('\n'),
            "ffmpeg's complaints, in one line: {said:?}"
        );
    }
}
