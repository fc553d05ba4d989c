//! Parallel frame loading shared by the readers: decode listed images chunk by chunk and hand
//! them, in order, to a [`FrameSink`], failing on the first bad frame (strict) or skipping and
//! reporting bad ones (lenient). Only one chunk of decoded frames is ever in memory.

use crate::error::{DataError, Result};
use crate::frame::load_chw;
use crate::pack::FrameSink;
use crate::skip::{SkipReason, SkipReport};
use crate::Samples;
use rayon::prelude::*;
use std::path::PathBuf;

/// Frames decoded per parallel chunk.
const CHUNK: usize = 256;

/// One frame to load.
#[derive(Debug, Clone)]
pub(crate) struct FrameJob {
    /// Candidate files, in order of preference; the first that exists is decoded.
    pub candidates: Vec<PathBuf>,
    /// Subject name.
    pub subject: String,
    /// 1-based frame number.
    pub frame: u32,
    /// AU intensities of the frame.
    pub intensities: Vec<u8>,
}

fn load_one(job: &FrameJob, size: u32) -> Result<Vec<u8>> {
    let path =
        job.candidates
            .iter()
            .find(|p| p.is_file())
            .ok_or_else(|| DataError::MissingFrame {
                path: job.candidates.first().cloned().unwrap_or_default(),
                subject: job.subject.clone(),
                frame: job.frame,
            })?;
    load_chw(path, size)
}

/// Decodes `jobs` at `size` on the rayon pool, a chunk at a time, and pushes the frames that
/// loaded to `sink` in job order. Strict: the first failure (in job order) is the error.
/// Lenient: failures go to `report`. Returns how many frames were pushed.
pub(crate) fn stream(
    jobs: &[FrameJob],
    size: u32,
    lenient: bool,
    report: &mut SkipReport,
    sink: &mut dyn FrameSink,
) -> Result<usize> {
    let mut pushed = 0;
    for chunk in jobs.chunks(CHUNK) {
        let decoded: Vec<Result<Vec<u8>>> = chunk.par_iter().map(|j| load_one(j, size)).collect();
        for (job, r) in chunk.iter().zip(decoded) {
            match r {
                Ok(px) => {
                    sink.push(&job.subject, job.frame, &job.intensities, &px)?;
                    pushed += 1;
                }
                Err(e) if !lenient => return Err(e),
                Err(e) => {
                    let reason = match e {
                        DataError::MissingFrame { .. } => SkipReason::MissingImage,
                        _ => SkipReason::BadImage,
                    };
                    report.add(reason, e.to_string());
                }
            }
        }
    }
    Ok(pushed)
}

/// Collects pushed frames into in-memory [`Samples`] (subjects numbered by first appearance).
pub(crate) struct SamplesSink {
    /// What was collected.
    pub samples: Samples,
}

impl SamplesSink {
    /// An empty collection of `size`-pixel frames labelled with `aus`.
    pub fn new(size: u32, aus: &[u32]) -> Self {
        SamplesSink {
            samples: Samples {
                size,
                aus: aus.to_vec(),
                pixels: Vec::new(),
                intensities: Vec::new(),
                subjects: Vec::new(),
                subject_names: Vec::new(),
                frames: Vec::new(),
            },
        }
    }
}

impl FrameSink for SamplesSink {
    fn push(&mut self, subject: &str, frame: u32, intensities: &[u8], pixels: &[u8]) -> Result<()> {
        let s = &mut self.samples;
        let si = match s.subject_names.iter().rposition(|n| n == subject) {
            Some(i) => i,
            None => {
                s.subject_names.push(subject.to_string());
                s.subject_names.len() - 1
            }
        };
        s.subjects.push(si as u32);
        s.frames.push(frame);
        s.intensities.extend_from_slice(intensities);
        s.pixels.extend_from_slice(pixels);
        Ok(())
    }
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
    fn strict_fails_on_first_bad_and_lenient_skips() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("a.png"), 10);
        png(&d.join("c.jpg"), 30);
        std::fs::write(d.join("b.png"), b"junk").unwrap();
        let job = |names: &[&str], f| FrameJob {
            candidates: names.iter().map(|n| d.join(n)).collect(),
            subject: format!("S{}", f % 2),
            frame: f,
            intensities: vec![f as u8],
        };
        let jobs = vec![
            job(&["a.png"], 1),
            job(&["missing.jpg", "missing.png"], 2),
            job(&["b.png"], 3),
            job(&["c.png", "c.jpg"], 4),
        ];
        let mut rep = SkipReport::default();
        let mut sink = SamplesSink::new(4, &[1]);
        let err = stream(&jobs, 4, false, &mut rep, &mut sink).unwrap_err();
        assert!(
            matches!(&err, DataError::MissingFrame { frame: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("missing.jpg"));
        let mut sink = SamplesSink::new(4, &[1]);
        assert_eq!(stream(&jobs, 4, true, &mut rep, &mut sink).unwrap(), 2);
        let s = sink.samples;
        assert_eq!(s.pixels.len(), 2 * 48);
        assert_eq!(s.pixels[0], 10);
        assert!(
            s.pixels[48].abs_diff(30) <= 2,
            "jpeg frame: {}",
            s.pixels[48]
        );
        assert_eq!((s.frames, s.intensities), (vec![1, 4], vec![1, 4]));
        assert_eq!(s.subject_names, ["S1", "S0"]);
        assert_eq!(s.subjects, [0, 1]);
        assert_eq!(rep.count(SkipReason::MissingImage), 1);
        assert_eq!(rep.count(SkipReason::BadImage), 1);
    }
}
