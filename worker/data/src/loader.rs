//! Parallel frame loading shared by the readers: decode every listed image into one pixel buffer,
//! failing on the first bad frame (strict) or skipping and reporting bad ones (lenient).

use crate::error::{DataError, Result};
use crate::frame::load_chw;
use crate::skip::{SkipReason, SkipReport};
use rayon::prelude::*;
use std::path::PathBuf;

/// One frame to load.
#[derive(Debug, Clone)]
pub(crate) struct FrameJob {
    /// Candidate files, in order of preference; the first that exists is decoded.
    pub candidates: Vec<PathBuf>,
    /// Subject name (for messages).
    pub subject: String,
    /// 1-based frame number (for messages).
    pub frame: u32,
}

/// Decodes all `jobs` at `size` on the rayon pool. Returns the pixels of the frames that loaded
/// (in job order) and, per job, whether it loaded. Strict: the first failure (in job order) is
/// the error. Lenient: failures go to `report`.
pub(crate) fn load_all(
    jobs: &[FrameJob],
    size: u32,
    lenient: bool,
    report: &mut SkipReport,
) -> Result<(Vec<u8>, Vec<bool>)> {
    let fb = 3 * size as usize * size as usize;
    let mut pixels = vec![0u8; jobs.len() * fb];
    let results: Vec<Result<()>> = pixels
        .par_chunks_mut(fb.max(1))
        .zip(jobs.par_iter())
        .map(|(out, job)| {
            let path = job.candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                DataError::MissingFrame {
                    path: job.candidates.first().cloned().unwrap_or_default(),
                    subject: job.subject.clone(),
                    frame: job.frame,
                }
            })?;
            out.copy_from_slice(&load_chw(path, size)?);
            Ok(())
        })
        .collect();
    let mut ok = Vec::with_capacity(jobs.len());
    for r in results {
        match r {
            Ok(()) => ok.push(true),
            Err(e) if !lenient => return Err(e),
            Err(e) => {
                let reason = match e {
                    DataError::MissingFrame { .. } => SkipReason::MissingImage,
                    _ => SkipReason::BadImage,
                };
                report.add(reason, e.to_string());
                ok.push(false);
            }
        }
    }
    // Compact: move the loaded frames down over the failed ones.
    let mut w = 0;
    for (i, &good) in ok.iter().enumerate() {
        if good {
            if w != i {
                pixels.copy_within(i * fb..(i + 1) * fb, w * fb);
            }
            w += 1;
        }
    }
    pixels.truncate(w * fb);
    Ok((pixels, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &std::path::Path, v: u8) {
        image::RgbImage::from_pixel(6, 6, image::Rgb([v, v, v]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn strict_fails_on_first_bad_and_lenient_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("a.png"), 10);
        png(&d.join("c.jpg"), 30);
        std::fs::write(d.join("b.png"), b"junk").unwrap();
        let job = |names: &[&str], f| FrameJob {
            candidates: names.iter().map(|n| d.join(n)).collect(),
            subject: "S".into(),
            frame: f,
        };
        let jobs = vec![
            job(&["a.png"], 1),
            job(&["missing.jpg", "missing.png"], 2),
            job(&["b.png"], 3),
            job(&["c.png", "c.jpg"], 4),
        ];
        let mut rep = SkipReport::default();
        let err = load_all(&jobs, 4, false, &mut rep).unwrap_err();
        assert!(
            matches!(&err, DataError::MissingFrame { frame: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("missing.jpg"));
        let (px, ok) = load_all(&jobs, 4, true, &mut rep).unwrap();
        assert_eq!(ok, [true, false, false, true]);
        assert_eq!(px.len(), 2 * 48);
        assert_eq!(px[0], 10);
        assert!(
            px[48].abs_diff(30) <= 2,
            "jpeg frame moved down: {}",
            px[48]
        );
        assert_eq!(rep.count(SkipReason::MissingImage), 1);
        assert_eq!(rep.count(SkipReason::BadImage), 1);
    }
}
