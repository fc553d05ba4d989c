//! Video decoding through ffmpeg: `ffprobe` for the size and frame count, and `ffmpeg` piping
//! raw RGB frames into memory a batch at a time.

use super::PrepareError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

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

fn tool_error(tool: &str, e: std::io::Error) -> PrepareError {
    PrepareError::Tool(format!(
        "cannot run {tool} ({e}); install ffmpeg (make setup does)"
    ))
}

/// Size and frame count of `video`'s first video stream.
pub fn probe(video: &Path) -> Result<Probe, PrepareError> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=width,height,nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(video)
        .output()
        .map_err(|e| tool_error("ffprobe", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bad = |msg: String| PrepareError::Video {
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
    let num = |i: usize, what: &str| -> Result<u64, PrepareError> {
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
    frame_bytes: usize,
    done: bool,
}

impl Frames {
    /// Starts decoding `video`, whose frames are `probe.width × probe.height`.
    pub fn open(video: &Path, probe: &Probe) -> Result<Frames, PrepareError> {
        let mut child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(video)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| tool_error("ffmpeg", e))?;
        let out = child.stdout.take().ok_or_else(|| PrepareError::Video {
            path: video.to_path_buf(),
            msg: "ffmpeg gave no output pipe".into(),
        })?;
        Ok(Frames {
            path: video.to_path_buf(),
            child,
            out,
            frame_bytes: probe.width as usize * probe.height as usize * 3,
            done: false,
        })
    }

    /// Reads up to `max` frames into `buf` (resized to fit); returns how many (0 at the end).
    pub fn read_batch(&mut self, max: usize, buf: &mut Vec<u8>) -> Result<usize, PrepareError> {
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
                        return Err(PrepareError::Video {
                            path: self.path.clone(),
                            msg: format!("reading decoded frames: {e}"),
                        })
                    }
                }
            }
            if got < frame.len() {
                self.done = true;
                if got > 0 {
                    return Err(PrepareError::Video {
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

    /// Waits for ffmpeg and reports a decoding failure with its message.
    pub fn finish(mut self) -> Result<(), PrepareError> {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().map_err(|e| PrepareError::Video {
            path: self.path.clone(),
            msg: format!("waiting for ffmpeg: {e}"),
        })?;
        if !status.success() {
            return Err(PrepareError::Video {
                path: self.path.clone(),
                msg: format!("ffmpeg exited with {status}: {}", err.trim()),
            });
        }
        Ok(())
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
