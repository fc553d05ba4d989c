//! List-format reader (ME-GraphAU / JAA-Net style): one relative image path per line in one file,
//! one space-separated 0/1 label row per line in another. The subject is the first path component.
//!
//! Labels are stored as intensities 0 and 5 (for 0 and 1), so [`Samples::presence`] with the
//! default threshold 2 (or any threshold 1–5) gives back the 0/1 labels.
//! A frame's number is its file stem + 1 when the stem is an integer (DISFA's `<frame-1>.png`),
//! else its 1-based position among its subject's lines.

use crate::error::{DataError, Result};
use crate::loader::{stream, FrameJob, SamplesSink};
use crate::pack::FrameSink;
use crate::skip::{SkipReason, SkipReport};
use crate::Samples;
use std::path::{Component, Path};

/// The intensity a label `1` is stored as.
pub const PRESENT_INTENSITY: u8 = 5;

/// How to read a list dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// The AUs of the label columns, in order.
    pub aus: Vec<u32>,
    /// Side of the square output frames.
    pub size: u32,
    /// Skip and report bad rows and images instead of failing (a line-count mismatch always fails).
    pub lenient: bool,
}

/// Non-empty lines of a file with their 1-based line numbers.
fn lines_of(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect())
}

/// Parses one label row of `k` 0/1 values into intensities 0/5.
fn parse_row(
    path: &Path,
    line: usize,
    row: &str,
    k: usize,
) -> std::result::Result<Vec<u8>, (SkipReason, DataError)> {
    let err = |reason, msg: String| {
        (
            reason,
            DataError::Parse {
                path: path.to_path_buf(),
                line,
                msg,
            },
        )
    };
    let vals: Vec<&str> = row.split_whitespace().collect();
    if vals.len() != k {
        return Err(err(
            SkipReason::BadLabelLine,
            format!("{} labels, expected {k} (one per AU)", vals.len()),
        ));
    }
    vals.iter()
        .map(|v| match v.parse::<f64>() {
            Ok(0.0) => Ok(0),
            Ok(1.0) => Ok(PRESENT_INTENSITY),
            _ => Err(err(
                SkipReason::LabelOutOfRange,
                format!("label {v:?} is not 0 or 1"),
            )),
        })
        .collect()
}

/// Reads a list dataset strictly (the trainer's entry point): see [`read_with`].
pub fn read(
    paths: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    images_root: impl AsRef<Path>,
    aus: &[u32],
    size: u32,
) -> Result<Samples> {
    let opts = ListOptions {
        aus: aus.to_vec(),
        size,
        lenient: false,
    };
    Ok(read_with(paths, labels, images_root, &opts)?.0)
}

/// Reads a list dataset: image paths (relative to `images_root`) and their label rows.
pub fn read_with(
    paths: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    images_root: impl AsRef<Path>,
    opts: &ListOptions,
) -> Result<(Samples, SkipReport)> {
    let mut sink = SamplesSink::new(opts.size, &opts.aus);
    let report = read_into(paths, labels, images_root, opts, &mut sink)?;
    Ok((sink.samples, report))
}

/// Streams a list dataset's frames to `sink` a chunk at a time; returns what a lenient read
/// skipped. No frame left at all is an error.
pub fn read_into(
    paths: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    images_root: impl AsRef<Path>,
    opts: &ListOptions,
    sink: &mut dyn FrameSink,
) -> Result<SkipReport> {
    let (paths, labels, root) = (paths.as_ref(), labels.as_ref(), images_root.as_ref());
    if opts.aus.is_empty() || opts.size == 0 {
        return Err(DataError::Config(
            "a list dataset needs at least one AU and a size > 0".into(),
        ));
    }
    let p_lines = lines_of(paths)?;
    let l_lines = lines_of(labels)?;
    if p_lines.len() != l_lines.len() {
        return Err(DataError::LineCountMismatch {
            paths: paths.to_path_buf(),
            n_paths: p_lines.len(),
            labels: labels.to_path_buf(),
            n_labels: l_lines.len(),
        });
    }
    let mut report = SkipReport::default();
    let mut subject_names: Vec<String> = Vec::new();
    let mut per_subject_count: Vec<u32> = Vec::new();
    let mut jobs = Vec::new();
    for ((pline, rel), (lline, row)) in p_lines.iter().zip(&l_lines) {
        let rel_path = Path::new(rel);
        let subject = rel_path.components().find_map(|c| match c {
            Component::Normal(s) => s.to_str().map(str::to_string),
            _ => None,
        });
        let subject = match subject {
            Some(s) if rel_path.components().count() > 1 => s,
            _ => {
                let e = DataError::Parse {
                    path: paths.to_path_buf(),
                    line: *pline,
                    msg: format!("{rel:?} has no subject folder as its first component"),
                };
                if opts.lenient {
                    report.add(SkipReason::BadLabelLine, e.to_string());
                    continue;
                }
                return Err(e);
            }
        };
        let values = match parse_row(labels, *lline, row, opts.aus.len()) {
            Ok(v) => v,
            Err((reason, e)) => {
                if opts.lenient {
                    report.add(reason, e.to_string());
                    continue;
                }
                return Err(e);
            }
        };
        let si = match subject_names.iter().position(|s| *s == subject) {
            Some(i) => i,
            None => {
                subject_names.push(subject.clone());
                per_subject_count.push(0);
                subject_names.len() - 1
            }
        };
        per_subject_count[si] += 1;
        let frame = rel_path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok())
            .map(|n| n.saturating_add(1))
            .unwrap_or(per_subject_count[si]);
        jobs.push(FrameJob {
            candidates: vec![root.join(rel_path)],
            subject,
            frame,
            intensities: values,
        });
    }
    if stream(&jobs, opts.size, opts.lenient, &mut report, sink)? == 0 {
        return Err(DataError::Empty(format!(
            "no readable frames listed in {}",
            paths.display()
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{write_disfa, SynthConfig};

    struct Fixture {
        _dir: tempfile::TempDir,
        paths: std::path::PathBuf,
        labels: std::path::PathBuf,
        root: std::path::PathBuf,
    }

    fn fixture(path_lines: &str, label_lines: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sum = write_disfa(
            dir.path(),
            &SynthConfig {
                subjects: 2,
                frames: 3,
                size: 32,
                seed: 1,
            },
        )
        .unwrap();
        let paths = dir.path().join("DISFA_train_img_path_fold1.txt");
        let labels = dir.path().join("DISFA_train_label_fold1.txt");
        std::fs::write(&paths, path_lines).unwrap();
        std::fs::write(&labels, label_lines).unwrap();
        Fixture {
            root: sum.frames_root,
            _dir: dir,
            paths,
            labels,
        }
    }

    const PATHS: &str = "SN001/0.png\nSN001/2.png\nSN002/1.png\n";
    const LABELS: &str = "0 1 0\n1 1 0\n0 0 1\n";

    #[test]
    fn reads_paths_labels_subjects_and_frames() {
        let f = fixture(PATHS, LABELS);
        let s = read(&f.paths, &f.labels, &f.root, &[1, 2, 4], 16).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.subject_names, ["SN001", "SN002"]);
        assert_eq!(s.subjects, [0, 0, 1]);
        assert_eq!(s.frames, [1, 3, 2]);
        assert_eq!(s.intensities, [0, 5, 0, 5, 5, 0, 0, 0, 5]);
        assert_eq!(s.presence(2), [0, 1, 0, 1, 1, 0, 0, 0, 1]);
        assert_eq!(s.pixels.len(), 3 * 3 * 16 * 16);
    }

    #[test]
    fn errors_name_file_and_line() {
        let f = fixture(PATHS, "0 1 0\n\n1 1\n0 0 1\n");
        let e = read(&f.paths, &f.labels, &f.root, &[1, 2, 4], 16).unwrap_err();
        assert!(matches!(&e, DataError::Parse { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("label_fold1.txt:3"), "{e}");

        let f = fixture(PATHS, "0 1 0\n1 2 0\n0 0 1\n");
        let e = read(&f.paths, &f.labels, &f.root, &[1, 2, 4], 16).unwrap_err();
        assert!(
            e.to_string().contains(":2: label \"2\" is not 0 or 1"),
            "{e}"
        );

        let f = fixture(PATHS, "0 1 0\n1 1 0\n");
        let e = read(&f.paths, &f.labels, &f.root, &[1, 2, 4], 16).unwrap_err();
        assert!(matches!(
            e,
            DataError::LineCountMismatch {
                n_paths: 3,
                n_labels: 2,
                ..
            }
        ));

        let f = fixture("SN001/0.png\nSN001/9.png\nSN002/1.png\n", LABELS);
        let e = read(&f.paths, &f.labels, &f.root, &[1, 2, 4], 16).unwrap_err();
        assert!(
            matches!(&e, DataError::MissingFrame { frame: 10, .. }),
            "{e}"
        );
    }

    #[test]
    fn lenient_skips_with_report() {
        let f = fixture(
            "SN001/0.png\nSN001/9.png\nSN002/1.png\nloose.png\n",
            "0 1 0\n1 1 0\n0 x 1\n1 1 1\n",
        );
        let opts = ListOptions {
            aus: vec![1, 2, 4],
            size: 16,
            lenient: true,
        };
        let (s, rep) = read_with(&f.paths, &f.labels, &f.root, &opts).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.subject_names, ["SN001"]);
        assert_eq!(rep.total(), 3, "{rep}");
        assert_eq!(rep.count(SkipReason::MissingImage), 1);
        assert_eq!(rep.count(SkipReason::LabelOutOfRange), 1);
        assert_eq!(rep.count(SkipReason::BadLabelLine), 1);
    }
}
