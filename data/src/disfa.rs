//! DISFA reader: `ActionUnit_Labels/SNxxx/SNxxx_auN.txt` label files joined with pre-extracted
//! frames `<frames>/SNxxx/<frame-1>.jpg|png`, decoded and resized into [`Samples`].
//! Presence (intensity ≥ 2 by default) is applied later by [`Samples::presence`].

use crate::error::{DataError, Result};
use crate::loader::{stream, FrameJob, SamplesSink};
use crate::pack::FrameSink;
use crate::skip::{SkipReason, SkipReport};
use crate::{Samples, DISFA_AUS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default presence threshold: an AU is present iff its intensity is at least this.
pub const DEFAULT_PRESENCE_THRESHOLD: u8 = 2;

/// Which image files hold the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameExt {
    /// `<frame-1>.jpg`.
    Jpg,
    /// `<frame-1>.png`.
    Png,
    /// Whichever exists, trying `.jpg`, `.png`, then `.jpeg`.
    #[default]
    Auto,
}

impl FrameExt {
    fn candidates(self) -> &'static [&'static str] {
        match self {
            FrameExt::Jpg => &["jpg"],
            FrameExt::Png => &["png"],
            FrameExt::Auto => &["jpg", "png", "jpeg"],
        }
    }
}

/// Where a DISFA tree lives on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DisfaLayout {
    /// The `ActionUnit_Labels` folder, or a folder holding it.
    pub labels_root: PathBuf,
    /// The folder of `SNxxx/` frame folders, or a folder holding it as `Frames/`.
    pub frames_root: PathBuf,
    /// Frame image extension.
    pub frame_ext: FrameExt,
    /// Subjects to read (default: every folder under the labels folder, sorted).
    pub subjects: Option<Vec<String>>,
}

impl DisfaLayout {
    /// A layout with automatic frame extension and all subjects.
    pub fn new(labels_root: impl AsRef<Path>, frames_root: impl AsRef<Path>) -> Self {
        DisfaLayout {
            labels_root: labels_root.as_ref().to_path_buf(),
            frames_root: frames_root.as_ref().to_path_buf(),
            frame_ext: FrameExt::Auto,
            subjects: None,
        }
    }

    /// The folder of per-subject label folders (`labels_root/ActionUnit_Labels` if that exists).
    pub fn labels_dir(&self) -> PathBuf {
        let inner = self.labels_root.join("ActionUnit_Labels");
        if inner.is_dir() {
            inner
        } else {
            self.labels_root.clone()
        }
    }

    /// The folder of per-subject frame folders (`frames_root/Frames` if that exists).
    pub fn frames_dir(&self) -> PathBuf {
        let inner = self.frames_root.join("Frames");
        if inner.is_dir() {
            inner
        } else {
            self.frames_root.clone()
        }
    }

    /// The label file of `subject` for `au`.
    pub fn label_file(&self, subject: &str, au: u32) -> PathBuf {
        self.labels_dir()
            .join(subject)
            .join(format!("{subject}_au{au}.txt"))
    }

    /// The subjects to read: the configured list, else the folders under [`Self::labels_dir`], sorted.
    pub fn subject_list(&self) -> Result<Vec<String>> {
        if let Some(s) = &self.subjects {
            return Ok(s.clone());
        }
        let dir = self.labels_dir();
        let rd = std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            if entry.path().is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        if out.is_empty() {
            return Err(DataError::Empty(format!(
                "no subject folders under {}",
                dir.display()
            )));
        }
        Ok(out)
    }
}

/// How to read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadOptions {
    /// AUs to read, in output column order (default DISFA's 8).
    pub aus: Vec<u32>,
    /// Side of the square output frames (center square crop, then Triangle resize).
    pub size: u32,
    /// Skip bad frames and report them instead of failing on the first.
    /// A missing label file is an error either way.
    pub lenient: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            aus: DISFA_AUS.to_vec(),
            size: 64,
            lenient: false,
        }
    }
}

/// One parsed label line: frame number (if readable) and intensity or why not.
type LabelLine = (
    usize,
    Option<u32>,
    std::result::Result<u8, (SkipReason, DataError)>,
);

/// A frame's values per AU column so far, and the first reason it is bad (lenient reads).
type LenientRow = (Vec<Option<u8>>, Option<(SkipReason, String)>);

/// Parses one label file into its lines (strict: the first problem is an error).
fn parse_label_file(path: &Path, lenient: bool) -> Result<Vec<LabelLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DataError::MissingLabelFile(path.to_path_buf()))
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let parse_err = |msg: String| DataError::Parse {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let mut parts = l.split(',').map(str::trim);
        let (f, v) = match (parts.next(), parts.next(), parts.next()) {
            (Some(f), Some(v), None) => (f, v),
            _ => {
                let e = parse_err(format!("expected `frame,intensity`, got {l:?}"));
                if lenient {
                    out.push((line, None, Err((SkipReason::BadLabelLine, e))));
                    continue;
                }
                return Err(e);
            }
        };
        let frame = match f.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                let e = parse_err(format!("frame number {f:?} is not a positive integer"));
                if lenient {
                    out.push((line, None, Err((SkipReason::BadLabelLine, e))));
                    continue;
                }
                return Err(e);
            }
        };
        let value = match v.parse::<i64>() {
            Ok(x) if (0..=5).contains(&x) => Ok(x as u8),
            Ok(x) => Err((
                SkipReason::LabelOutOfRange,
                DataError::IntensityRange {
                    path: path.to_path_buf(),
                    line,
                    value: x,
                },
            )),
            Err(_) => Err((
                SkipReason::BadLabelLine,
                parse_err(format!("intensity {v:?} is not an integer")),
            )),
        };
        if let (false, Err((_, e))) = (lenient, &value) {
            return Err(match e {
                DataError::IntensityRange { path, line, value } => DataError::IntensityRange {
                    path: path.clone(),
                    line: *line,
                    value: *value,
                },
                other => parse_err(other.to_string()),
            });
        }
        out.push((line, Some(frame), value));
    }
    Ok(out)
}

/// The labelled frames of one subject: (frame number, intensities in `aus` order).
pub fn subject_labels(
    layout: &DisfaLayout,
    subject: &str,
    aus: &[u32],
    lenient: bool,
    report: &mut SkipReport,
) -> Result<Vec<(u32, Vec<u8>)>> {
    let files: Vec<PathBuf> = aus.iter().map(|&a| layout.label_file(subject, a)).collect();
    let parsed: Vec<Vec<LabelLine>> = files
        .iter()
        .map(|p| parse_label_file(p, lenient))
        .collect::<Result<_>>()?;
    if !lenient {
        // Same frame count and same frame on each line, in every AU file.
        let (ref_path, ref_lines) = (&files[0], &parsed[0]);
        for (path, lines) in files.iter().zip(&parsed).skip(1) {
            if lines.len() != ref_lines.len() {
                return Err(DataError::FrameCountMismatch {
                    path: path.clone(),
                    got: lines.len(),
                    reference: ref_path.clone(),
                    expected: ref_lines.len(),
                });
            }
            for (a, b) in lines.iter().zip(ref_lines) {
                if a.1 != b.1 {
                    return Err(DataError::Parse {
                        path: path.clone(),
                        line: a.0,
                        msg: format!(
                            "frame {:?}, but {} line {} has frame {:?}",
                            a.1.unwrap_or(0),
                            ref_path.display(),
                            b.0,
                            b.1.unwrap_or(0)
                        ),
                    });
                }
            }
        }
        return Ok((0..ref_lines.len())
            .filter_map(|i| {
                let frame = ref_lines[i].1?;
                let row = parsed
                    .iter()
                    .map(|l| l[i].2.as_ref().ok().copied())
                    .collect::<Option<Vec<u8>>>()?;
                Some((frame, row))
            })
            .collect());
    }
    // Lenient: key by frame number; a frame is kept only if every AU has a good value.
    let k = aus.len();
    let mut rows: BTreeMap<u32, LenientRow> = BTreeMap::new();
    for (col, lines) in parsed.into_iter().enumerate() {
        for (_, frame, value) in lines {
            let Some(frame) = frame else {
                if let Err((reason, e)) = value {
                    report.add(reason, e.to_string());
                }
                continue;
            };
            let entry = rows.entry(frame).or_insert_with(|| (vec![None; k], None));
            match value {
                Ok(v) => entry.0[col] = Some(v),
                Err((reason, e)) => {
                    entry.1.get_or_insert((reason, e.to_string()));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (frame, (vals, bad)) in rows {
        if let Some((reason, msg)) = bad {
            report.add(reason, msg);
            continue;
        }
        match vals.into_iter().collect::<Option<Vec<u8>>>() {
            Some(row) => out.push((frame, row)),
            None => report.add(
                SkipReason::MissingLabel,
                format!("{subject} frame {frame}: absent from some AU label file"),
            ),
        }
    }
    Ok(out)
}

/// Reads a DISFA tree into [`Samples`] (subjects with no frame left are dropped) plus what a
/// lenient read skipped (always empty when strict).
pub fn read(layout: &DisfaLayout, opts: &ReadOptions) -> Result<(Samples, SkipReport)> {
    let mut sink = SamplesSink::new(opts.size, &opts.aus);
    let report = read_into(layout, opts, &mut sink)?;
    Ok((sink.samples, report))
}

/// Streams a DISFA tree's frames to `sink` (e.g. a [`crate::pack::PackWriter`]) a chunk at a
/// time; returns what a lenient read skipped. No frame left at all is an error.
pub fn read_into(
    layout: &DisfaLayout,
    opts: &ReadOptions,
    sink: &mut dyn FrameSink,
) -> Result<SkipReport> {
    if opts.aus.is_empty() || opts.size == 0 {
        return Err(DataError::Config(
            "reading DISFA needs at least one AU and a frame size > 0".into(),
        ));
    }
    let subjects = layout.subject_list()?;
    let frames_dir = layout.frames_dir();
    let mut report = SkipReport::default();
    let mut jobs = Vec::new();
    for subject in &subjects {
        for (frame, row) in subject_labels(layout, subject, &opts.aus, opts.lenient, &mut report)? {
            let stem = frames_dir.join(subject).join((frame - 1).to_string());
            jobs.push(FrameJob {
                candidates: layout
                    .frame_ext
                    .candidates()
                    .iter()
                    .map(|e| stem.with_extension(e))
                    .collect(),
                subject: subject.clone(),
                frame,
                intensities: row,
            });
        }
    }
    if stream(&jobs, opts.size, opts.lenient, &mut report, sink)? == 0 {
        return Err(DataError::Empty(format!(
            "no readable frames under {} / {}",
            layout.labels_dir().display(),
            frames_dir.display()
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{render_samples, write_disfa, SynthConfig};

    const CFG: SynthConfig = SynthConfig {
        subjects: 2,
        frames: 12,
        size: 32,
        seed: 5,
    };

    fn written() -> (tempfile::TempDir, DisfaLayout) {
        let dir = tempfile::tempdir().unwrap();
        let sum = write_disfa(dir.path(), &CFG).unwrap();
        let layout = DisfaLayout::new(&sum.labels_root, &sum.frames_root);
        (dir, layout)
    }

    fn opts(size: u32, lenient: bool) -> ReadOptions {
        ReadOptions {
            size,
            lenient,
            ..Default::default()
        }
    }

    #[test]
    fn reads_back_exactly_what_synth_wrote() {
        let (_dir, layout) = written();
        let (s, rep) = read(&layout, &opts(32, false)).unwrap();
        assert!(rep.is_empty());
        assert_eq!(s, render_samples(&CFG));
        // Parent folder as both roots works too, and resizing gives the asked size.
        let parent = DisfaLayout::new(_dir.path(), _dir.path());
        let (small, _) = read(&parent, &opts(16, false)).unwrap();
        assert_eq!(small.size, 16);
        assert_eq!(small.intensities, s.intensities);
        assert_eq!(small.pixels.len(), 24 * 3 * 16 * 16);
    }

    #[test]
    fn subject_and_au_selection() {
        let (_dir, mut layout) = written();
        layout.subjects = Some(vec!["SN002".into()]);
        layout.frame_ext = FrameExt::Png;
        let o = ReadOptions {
            aus: vec![26, 1],
            ..opts(32, false)
        };
        let (s, _) = read(&layout, &o).unwrap();
        let full = render_samples(&CFG);
        assert_eq!(s.subject_names, ["SN002"]);
        assert_eq!(s.len(), 12);
        for i in 0..12 {
            assert_eq!(s.intensities[2 * i], full.intensities[(12 + i) * 8 + 7]);
            assert_eq!(s.intensities[2 * i + 1], full.intensities[(12 + i) * 8]);
        }
        layout.frame_ext = FrameExt::Jpg;
        assert!(matches!(
            read(&layout, &o),
            Err(DataError::MissingFrame { .. })
        ));
    }

    fn edit(path: &Path, f: impl Fn(String) -> String) {
        let t = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, f(t)).unwrap();
    }

    #[test]
    fn strict_errors_name_file_and_line() {
        let (_dir, layout) = written();
        let f4 = layout.label_file("SN001", 4);

        edit(&f4, |t| t.replacen("3,", "3,x", 1));
        let e = read(&layout, &opts(32, false)).unwrap_err();
        assert!(matches!(&e, DataError::Parse { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("SN001_au4.txt:3"), "{e}");

        // "3,x<v>" becomes "3,9<v>": out of range.
        edit(&f4, |t| t.replacen("3,x", "3,9", 1));
        let e = read(&layout, &opts(32, false)).unwrap_err();
        assert!(
            matches!(
                &e,
                DataError::IntensityRange {
                    line: 3,
                    value: 90..=95,
                    ..
                }
            ),
            "{e}"
        );

        edit(&f4, |t| {
            let mut lines: Vec<&str> = t.lines().collect();
            lines.pop();
            lines.retain(|l| !l.starts_with("3,"));
            lines.join("\n")
        });
        let e = read(&layout, &opts(32, false)).unwrap_err();
        assert!(
            matches!(
                &e,
                DataError::FrameCountMismatch {
                    got: 10,
                    expected: 12,
                    ..
                }
            ),
            "{e}"
        );

        std::fs::remove_file(&f4).unwrap();
        let e = read(&layout, &opts(32, false)).unwrap_err();
        assert!(
            matches!(&e, DataError::MissingLabelFile(p) if p == &f4),
            "{e}"
        );
        assert!(matches!(
            read(&layout, &opts(32, true)),
            Err(DataError::MissingLabelFile(_))
        ));
    }

    #[test]
    fn strict_missing_frame_names_it() {
        let (_dir, layout) = written();
        std::fs::remove_file(layout.frames_dir().join("SN002/4.png")).unwrap();
        let e = read(&layout, &opts(32, false)).unwrap_err();
        assert!(
            matches!(&e, DataError::MissingFrame { frame: 5, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("SN002"), "{e}");
    }

    #[test]
    fn lenient_skips_and_reports_every_bad_frame() {
        let (_dir, layout) = written();
        let full = render_samples(&CFG);
        edit(&layout.label_file("SN001", 4), |t| {
            t.replacen("3,", "3,x", 1)
        });
        edit(&layout.label_file("SN001", 9), |t| {
            t.replacen("5,", "5,8", 1)
        });
        edit(&layout.label_file("SN001", 12), |t| {
            t.lines()
                .filter(|l| !l.starts_with("7,"))
                .collect::<Vec<_>>()
                .join("\n")
        });
        edit(&layout.label_file("SN001", 1), |t| format!("{t}garbage\n"));
        std::fs::remove_file(layout.frames_dir().join("SN002/0.png")).unwrap();
        std::fs::write(layout.frames_dir().join("SN002/1.png"), b"junk").unwrap();

        assert!(read(&layout, &opts(32, false)).is_err());
        let (s, rep) = read(&layout, &opts(32, true)).unwrap();
        assert_eq!(rep.count(SkipReason::BadLabelLine), 2, "{rep}");
        assert_eq!(rep.count(SkipReason::LabelOutOfRange), 1, "{rep}");
        assert_eq!(rep.count(SkipReason::MissingLabel), 1, "{rep}");
        assert_eq!(rep.count(SkipReason::MissingImage), 1, "{rep}");
        assert_eq!(rep.count(SkipReason::BadImage), 1, "{rep}");
        assert!(rep.to_string().contains("SN001_au4.txt:3"), "{rep}");
        // 24 frames - 3 bad label frames of SN001 - 2 bad images of SN002.
        assert_eq!(s.len(), 19);
        let sn1: Vec<u32> = (0..s.len())
            .filter(|&i| s.subjects[i] == 0)
            .map(|i| s.frames[i])
            .collect();
        assert_eq!(sn1, [1, 2, 4, 6, 8, 9, 10, 11, 12]);
        // Kept frames keep their own labels and pixels.
        let fb = s.frame_bytes();
        let last = s.len() - 1;
        assert_eq!(s.frames[last], 12);
        assert_eq!(&s.pixels[last * fb..], &full.pixels[23 * fb..]);
        assert_eq!(&s.intensities[last * 8..], &full.intensities[23 * 8..]);
    }

    #[test]
    fn empty_and_bad_config() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DisfaLayout::new(dir.path(), dir.path());
        assert!(matches!(
            read(&layout, &opts(32, false)),
            Err(DataError::Empty(_))
        ));
        let o = ReadOptions {
            aus: vec![],
            ..Default::default()
        };
        assert!(matches!(read(&layout, &o), Err(DataError::Config(_))));
    }
}
