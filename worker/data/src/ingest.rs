//! Frame extraction from DISFA's videos with ffmpeg: `Videos_LeftCamera/LeftVideoSNxxx_comp.avi`
//! → `<frames_root>/SNxxx/<frame-1>.<ext>`, the layout the DISFA reader expects.

use crate::error::{DataError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One video found and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// Subject id, e.g. `SN001`.
    pub subject: String,
    /// The video file.
    pub video: PathBuf,
    /// Frames now in the subject's folder.
    pub frames: usize,
    /// Whether the folder already had frames and was left alone.
    pub skipped: bool,
}

/// The subject id of a DISFA video name (`LeftVideoSN001_comp.avi`, `RightVideoSN001_Comp.avi`).
pub fn subject_of(file_name: &str) -> Option<String> {
    let i = file_name.find("SN")?;
    let digits = file_name.get(i + 2..i + 5)?;
    digits
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| format!("SN{digits}"))
}

fn count_frames(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
        .unwrap_or(0)
}

/// Extracts every video in `videos_dir` into `frames_root/SNxxx/` (0-based frame names) with
/// ffmpeg; subjects whose folder already has frames are skipped unless `force`.
pub fn ingest(
    videos_dir: &Path,
    frames_root: &Path,
    ext: &str,
    force: bool,
) -> Result<Vec<Ingested>> {
    if !matches!(ext, "png" | "jpg") {
        return Err(DataError::Config(format!(
            "frame extension `{ext}`: use png or jpg"
        )));
    }
    let mut videos: Vec<(String, PathBuf)> = std::fs::read_dir(videos_dir)
        .map_err(|e| DataError::io(videos_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("avi") || x.eq_ignore_ascii_case("mp4"))
        })
        .filter_map(|p| {
            let s = subject_of(&p.file_name()?.to_string_lossy())?;
            Some((s, p))
        })
        .collect();
    videos.sort();
    if videos.is_empty() {
        return Err(DataError::Empty(format!(
            "{}: no DISFA videos (LeftVideoSNxxx_comp.avi)",
            videos_dir.display()
        )));
    }
    let mut out = Vec::new();
    for (subject, video) in videos {
        let dir = frames_root.join(&subject);
        let have = count_frames(&dir, ext);
        if have > 0 && !force {
            out.push(Ingested {
                subject,
                video,
                frames: have,
                skipped: true,
            });
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        let pattern = dir.join(format!("%d.{ext}"));
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(&video)
            .args(["-start_number", "0", "-q:v", "2"])
            .arg(&pattern)
            .status()
            .map_err(|e| {
                DataError::Config(format!(
                    "cannot run ffmpeg ({e}); install it (make setup does)"
                ))
            })?;
        if !status.success() {
            return Err(DataError::Decode {
                path: video.clone(),
                msg: format!("ffmpeg exited with {status}"),
            });
        }
        out.push(Ingested {
            subject,
            frames: count_frames(&dir, ext),
            video,
            skipped: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids_come_from_disfa_names() {
        assert_eq!(
            subject_of("LeftVideoSN001_comp.avi").as_deref(),
            Some("SN001")
        );
        assert_eq!(
            subject_of("RightVideoSN032_Comp.avi").as_deref(),
            Some("SN032")
        );
        assert_eq!(subject_of("notes.txt"), None);
        assert_eq!(subject_of("SNx12.avi"), None);
    }

    #[test]
    fn extracts_frames_from_a_real_video() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..7u8 {
            let img = image::RgbImage::from_pixel(32, 32, image::Rgb([i * 30, 100, 200]));
            img.save(src.join(format!("{i}.png"))).unwrap();
        }
        let videos = d.path().join("Videos_LeftCamera");
        std::fs::create_dir_all(&videos).unwrap();
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-framerate", "10", "-i"])
            .arg(src.join("%d.png"))
            .args(["-c:v", "mjpeg", "-q:v", "2"])
            .arg(videos.join("LeftVideoSN005_comp.avi"))
            .status()
            .expect("ffmpeg is installed by make setup");
        assert!(status.success());
        let frames = d.path().join("Frames");
        let r = ingest(&videos, &frames, "png", false).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].subject, "SN005");
        assert_eq!(r[0].frames, 7);
        assert!(frames.join("SN005/0.png").is_file() && frames.join("SN005/6.png").is_file());
        // Idempotent: a second run leaves the frames alone.
        assert!(ingest(&videos, &frames, "png", false).unwrap()[0].skipped);
        assert!(ingest(&videos, &frames, "bmp", false).is_err());
    }
}
