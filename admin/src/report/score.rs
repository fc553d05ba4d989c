//! `ausweep score`: the paper's F1 protocol on any prediction file. Per AU, true/false
//! positives and false negatives are pooled over all frames, F1 = 2PR/(P+R) (0 when P+R = 0),
//! and the figure is the mean over the AUs.
//!
//! Files are CSV with a header row. Columns named `AU<n>`, `au<n>` or `<n>` are AU columns, and
//! so are OpenFace's decision columns `AU<nn>_c` (as `ausweep predict --format csv` writes
//! them); others (frame, path, OpenFace's `_r` intensities, ausweep's `_prob`) are ignored.
//! Rows pair up by order. Predictions are probabilities (positive at >= 0.5) or 0/1; labels are
//! 0/1. Cells may be quoted (`"a,b"`).
//!
//! Intensity mode ([`score_intensity`], `ausweep score --intensity`) reads [`Columns::Intensity`]
//! instead: `AU<n>`, `au<n>`, `<n>` and OpenFace's intensity columns `AU<nn>_r`, with `_c`
//! decisions ignored. Predictions and labels are intensities on the 0–5 scale; per AU it
//! reports ICC(3,1), MAE and Pearson's r from `ausweep_metrics::intensity`, and their means.

use ausweep_metrics::{f1_from_counts, AuIntensity, IntensityScores};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;

/// Decision threshold on predicted probabilities.
pub const THRESHOLD: f64 = 0.5;

/// A file that cannot be scored: which file, line and column, and why.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// File.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A bad cell or row.
    #[error("{file}:{line}: {message}")]
    Bad {
        /// File.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong (names the column).
        message: String,
    },
    /// The two files do not line up.
    #[error("{0}")]
    Mismatch(String),
}

/// Which columns of a header are AU columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Occurrence (the F1 protocol): `AU<n>`, `au<n>`, `<n>` and OpenFace's decisions
    /// `AU<nn>_c`.
    Occurrence,
    /// Intensity: `AU<n>`, `au<n>`, `<n>` and OpenFace's intensities `AU<nn>_r`.
    Intensity,
}

impl Columns {
    /// The OpenFace suffix this kind reads.
    fn suffix(self) -> &'static str {
        match self {
            Columns::Occurrence => "_c",
            Columns::Intensity => "_r",
        }
    }
}

/// The AU columns of a CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct AuTable {
    /// File name for messages.
    pub file: String,
    /// AU numbers in column order.
    pub aus: Vec<u32>,
    /// Each AU's column: 1-based number and header name, for messages.
    pub columns: Vec<(usize, String)>,
    /// The header's line.
    pub header_line: usize,
    /// Values, one row per frame, one entry per AU.
    pub rows: Vec<Vec<f64>>,
    /// The line each row came from.
    pub lines: Vec<usize>,
}

fn au_of(name: &str, kind: Columns) -> Option<u32> {
    let n = name.trim().trim_matches('"');
    let digits = n
        .strip_prefix("AU")
        .or_else(|| n.strip_prefix("au"))
        .or_else(|| n.strip_prefix("Au"))
        .unwrap_or(n);
    digits
        .strip_suffix(kind.suffix())
        .unwrap_or(digits)
        .parse::<u32>()
        .ok()
}

/// The cells of a CSV line, trimmed; a cell in double quotes may hold commas and `""`.
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' if quoted || cell.trim().is_empty() => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

impl AuTable {
    /// Parses CSV text with occurrence columns; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ScoreError> {
        Self::parse_as(text, file, Columns::Occurrence)
    }

    /// Parses CSV text, taking the AU columns `kind` names; `file` names it in errors.
    pub fn parse_as(text: &str, file: &str, kind: Columns) -> Result<Self, ScoreError> {
        let bad = |line: usize, message: String| ScoreError::Bad {
            file: file.to_string(),
            line,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty());
        let (hline, header) = lines
            .next()
            .ok_or_else(|| bad(1, "empty file; expected a header row of AU columns".into()))?;
        let names = cells(header);
        let mut cols = Vec::new();
        let mut aus = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if let Some(au) = au_of(n, kind) {
                if aus.contains(&au) {
                    return Err(bad(
                        hline,
                        format!("column {}: AU{au} appears twice", i + 1),
                    ));
                }
                cols.push(i);
                aus.push(au);
            }
        }
        if aus.is_empty() {
            return Err(bad(
                hline,
                match kind {
                    Columns::Occurrence => {
                        format!("no AU columns in the header `{header}` (name them AU1, AU2, ...)")
                    }
                    Columns::Intensity => format!(
                        "no AU intensity columns in the header `{header}` (OpenFace's AU01_r, \
                         AU02_r, ..., or AU1, AU2, ...; `_c` decisions and `_prob` \
                         probabilities are not intensities)"
                    ),
                },
            ));
        }
        let mut rows = Vec::new();
        let mut at = Vec::new();
        for (ln, l) in lines {
            let cells = cells(l);
            if cells.len() != names.len() {
                return Err(bad(
                    ln,
                    format!("{} cells, the header has {}", cells.len(), names.len()),
                ));
            }
            let mut row = Vec::with_capacity(cols.len());
            for (&c, au) in cols.iter().zip(&aus) {
                let v: f64 = cells[c]
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| {
                        bad(
                            ln,
                            format!("column {} (AU{au}): `{}` is not a number", c + 1, cells[c]),
                        )
                    })?;
                row.push(v);
            }
            rows.push(row);
            at.push(ln);
        }
        Ok(Self {
            file: file.to_string(),
            aus,
            columns: cols
                .iter()
                .map(|&c| (c + 1, names[c].trim_matches('"').to_string()))
                .collect(),
            header_line: hline,
            rows,
            lines: at,
        })
    }

    /// Reads a CSV file with occurrence columns.
    pub fn load(path: &Path) -> Result<Self, ScoreError> {
        Self::load_as(path, Columns::Occurrence)
    }

    /// Reads a CSV file, taking the AU columns `kind` names.
    pub fn load_as(path: &Path, kind: Columns) -> Result<Self, ScoreError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScoreError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse_as(&text, &file, kind)
    }

    /// The index of AU `au`'s intensity column, or an error naming the header line and the
    /// columns the file has.
    fn intensity_column(&self, au: u32) -> Result<usize, ScoreError> {
        self.aus
            .iter()
            .position(|a| *a == au)
            .ok_or_else(|| ScoreError::Bad {
                file: self.file.clone(),
                line: self.header_line,
                message: format!(
                    "no intensity column for AU{au} (AU{au:02}_r or AU{au}); it has {}",
                    self.columns
                        .iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    fn column(&self, au: u32) -> Result<usize, ScoreError> {
        self.aus.iter().position(|a| *a == au).ok_or_else(|| {
            ScoreError::Mismatch(format!(
                "{}: no column for AU{au} (it has {})",
                self.file,
                self.aus
                    .iter()
                    .map(|a| format!("AU{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// Counts and scores of one AU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuCounts {
    /// AU number.
    pub au: u32,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives (`fn` in JSON).
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// The scores of a prediction file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    /// Frames scored.
    pub frames: usize,
    /// Per AU, in the order scored.
    pub aus: Vec<AuCounts>,
    /// Mean F1 over the AUs (0..1).
    pub avg_f1: f64,
}

/// The AUs to score (all label AUs when `aus` is empty), once the files are found to pair up:
/// the same number of frames, no AU asked for twice.
fn aus_to_score(pred: &AuTable, labels: &AuTable, aus: &[u32]) -> Result<Vec<u32>, ScoreError> {
    if pred.rows.len() != labels.rows.len() {
        return Err(ScoreError::Mismatch(format!(
            "{} has {} frames, {} has {}; rows pair up by order",
            pred.file,
            pred.rows.len(),
            labels.file,
            labels.rows.len()
        )));
    }
    let mut seen = HashSet::new();
    if let Some(au) = aus.iter().find(|&&au| !seen.insert(au)) {
        return Err(ScoreError::Mismatch(format!("AU{au} is listed twice")));
    }
    Ok(if aus.is_empty() {
        labels.aus.clone()
    } else {
        aus.to_vec()
    })
}

/// Scores predictions against labels on the given AUs (all label AUs when empty).
pub fn score(pred: &AuTable, labels: &AuTable, aus: &[u32]) -> Result<ScoreReport, ScoreError> {
    let aus = aus_to_score(pred, labels, aus)?;
    let mut out = Vec::with_capacity(aus.len());
    for &au in &aus {
        let (pc, lc) = (pred.column(au)?, labels.column(au)?);
        let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
        for i in 0..labels.rows.len() {
            let p = pred.rows[i][pc];
            let l = labels.rows[i][lc];
            if !(0.0..=1.0).contains(&p) {
                return Err(ScoreError::Bad {
                    file: pred.file.clone(),
                    line: pred.lines[i],
                    message: format!("column AU{au}: {p} is neither a probability nor 0/1"),
                });
            }
            let truth = if l == 1.0 {
                true
            } else if l == 0.0 {
                false
            } else {
                return Err(ScoreError::Bad {
                    file: labels.file.clone(),
                    line: labels.lines[i],
                    message: format!("column AU{au}: label {l} is not 0 or 1"),
                });
            };
            match (p >= THRESHOLD, truth) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                (false, false) => {}
            }
        }
        let (precision, recall, f1) = f1_from_counts(tp, fp, fneg);
        out.push(AuCounts {
            au,
            tp,
            fp,
            fn_: fneg,
            precision,
            recall,
            f1,
        });
    }
    let avg_f1 = if out.is_empty() {
        0.0
    } else {
        out.iter().map(|a| a.f1).sum::<f64>() / out.len() as f64
    };
    Ok(ScoreReport {
        frames: labels.rows.len(),
        aus: out,
        avg_f1,
    })
}

impl ScoreReport {
    /// A plain-text table (F1 etc. in %).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:<6} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7}\n",
            "AU", "F1 %", "PREC %", "REC %", "TP", "FP", "FN"
        );
        for a in &self.aus {
            s += &format!(
                "{:<6} {:>7.1} {:>9.1} {:>7.1} {:>7} {:>7} {:>7}\n",
                format!("AU{}", a.au),
                100.0 * a.f1,
                100.0 * a.precision,
                100.0 * a.recall,
                a.tp,
                a.fp,
                a.fn_
            );
        }
        s += &format!(
            "avg F1 {:.1} % over {} AUs, {} frames\n",
            100.0 * self.avg_f1,
            self.aus.len(),
            self.frames
        );
        s
    }
}

/// The highest intensity on the FACS scale (A–E as 1–5; 0 is absent).
pub const MAX_INTENSITY: f64 = 5.0;

/// The intensity scores of a prediction file: frames scored, and per AU and averaged ICC(3,1),
/// MAE and Pearson's r (JSON: `{frames, per_au: [{au, icc, mae, pcc, support, n}], avg_icc,
/// avg_mae, avg_pcc}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntensityReport {
    /// Frames scored.
    pub frames: usize,
    /// Per AU and the means.
    #[serde(flatten)]
    pub scores: IntensityScores,
}

/// Scores intensity predictions against intensity labels (both 0–5, read with
/// [`Columns::Intensity`]) on the given AUs (all label AUs when empty).
pub fn score_intensity(
    pred: &AuTable,
    labels: &AuTable,
    aus: &[u32],
) -> Result<IntensityReport, ScoreError> {
    let aus = aus_to_score(pred, labels, aus)?;
    let mut per_au = Vec::with_capacity(aus.len());
    for &au in &aus {
        let (pc, lc) = (pred.intensity_column(au)?, labels.intensity_column(au)?);
        let (mut p, mut y) = (Vec::new(), Vec::new());
        for i in 0..labels.rows.len() {
            for (t, c, v, what) in [
                (pred, pc, pred.rows[i][pc], "prediction"),
                (labels, lc, labels.rows[i][lc], "intensity"),
            ] {
                if !(0.0..=MAX_INTENSITY).contains(&v) {
                    let (num, name) = &t.columns[c];
                    return Err(ScoreError::Bad {
                        file: t.file.clone(),
                        line: t.lines[i],
                        message: format!(
                            "column {num} ({name}): {what} {v} is outside the intensity scale 0–5"
                        ),
                    });
                }
            }
            p.push(pred.rows[i][pc]);
            y.push(labels.rows[i][lc]);
        }
        per_au.push(AuIntensity::compute(au, &p, &y));
    }
    Ok(IntensityReport {
        frames: labels.rows.len(),
        scores: IntensityScores::new(per_au),
    })
}

impl IntensityReport {
    /// A plain-text table, with a note for each AU that never occurs in the labels (its ICC
    /// and r are 0 by convention and count in the means).
    pub fn to_text(&self) -> String {
        let s = &self.scores;
        let mut t = format!(
            "{:<6} {:>7} {:>7} {:>7} {:>8}\n",
            "AU", "ICC", "MAE", "PCC", "SUPPORT"
        );
        for a in &s.per_au {
            t += &format!(
                "{:<6} {:>7.3} {:>7.3} {:>7.3} {:>8}\n",
                format!("AU{}", a.au),
                a.icc,
                a.mae,
                a.pcc,
                a.support
            );
        }
        t += &format!(
            "avg ICC(3,1) {:.3}, MAE {:.3}, PCC {:.3} over {} AUs, {} frames\n",
            s.avg_icc,
            s.avg_mae,
            s.avg_pcc,
            s.per_au.len(),
            self.frames
        );
        for a in s.per_au.iter().filter(|a| a.support == 0) {
            t += &format!(
                "note: AU{} has no frame with intensity above 0 in the labels, which do not \
                 vary: its ICC and PCC are 0 and count as 0 in the averages\n",
                a.au
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: &str = "frame,AU1,AU2,AU4\n1,1,0,0\n2,1,1,0\n3,0,1,0\n4,0,0,0\n5,1,0,1\n";
    // AU1: pred+ on frames 1,3,5 -> tp 2 (1,5), fp 1 (3), fn 1 (2): P=2/3 R=2/3 F1=2/3.
    // AU2: pred+ on 2 only -> tp 1, fp 0, fn 1 (3): P=1 R=1/2 F1=2/3.
    // AU4: no positive prediction -> tp 0, fn 1: F1 = 0.
    const PRED: &str =
        "frame,AU1,AU2,AU4\n1,0.9,0.1,0\n2,0.49,0.5,0.2\n3,0.7,0.3,0\n4,0,0,0\n5,1,0,0.4999\n";

    fn t(text: &str, f: &str) -> AuTable {
        AuTable::parse(text, f).unwrap()
    }

    #[test]
    fn hand_computed_scores() {
        let r = score(&t(PRED, "p.csv"), &t(LABELS, "l.csv"), &[]).unwrap();
        assert_eq!(r.frames, 5);
        let a1 = &r.aus[0];
        assert_eq!((a1.au, a1.tp, a1.fp, a1.fn_), (1, 2, 1, 1));
        assert!((a1.f1 - 2.0 / 3.0).abs() < 1e-12);
        let a2 = &r.aus[1];
        assert_eq!((a2.tp, a2.fp, a2.fn_), (1, 0, 1));
        assert!((a2.precision - 1.0).abs() < 1e-12 && (a2.recall - 0.5).abs() < 1e-12);
        assert!((a2.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.aus[2].f1, 0.0);
        assert!((r.avg_f1 - 4.0 / 9.0).abs() < 1e-12);
        assert!(r.to_text().contains("avg F1 44.4 %"));
        // A subset, in the order asked, with a column-order-independent lookup.
        let pred_swapped = "AU4,AU2,AU1\n0,0.1,0.9\n0.2,0.5,0.49\n0,0.3,0.7\n0,0,0\n0.4999,0,1\n";
        let r = score(&t(pred_swapped, "p.csv"), &t(LABELS, "l.csv"), &[2, 1]).unwrap();
        assert_eq!(r.aus.iter().map(|a| a.au).collect::<Vec<_>>(), [2, 1]);
        assert!((r.avg_f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn reads_openface_layout_with_quoted_cells() {
        // `ausweep predict --format csv`: decisions in AUxx_c, probabilities and intensities
        // ignored, a quoted input path with a comma.
        let text = "frame, face_id, AU01_c, AU04_c, AU01_prob, AU04_r, input\n\
                    1, 0, 1.00, 0.00, 0.9100, 2.5, \"a,b.png\"\n\
                    2, 0, 0.00, 1.00, 0.2000, 0.1, \"say \"\"hi\"\".png\"\n";
        let p = t(text, "p.csv");
        assert_eq!(p.aus, [1, 4]);
        assert_eq!(p.rows, [[1.0, 0.0], [0.0, 1.0]]);
        assert_eq!(cells("x, \"say \"\"hi\"\"\", y"), ["x", "say \"hi\"", "y"]);
        let labels = t("AU1,AU4\n1,0\n1,1\n", "l.csv");
        let r = score(&p, &labels, &[]).unwrap();
        assert_eq!((r.aus[0].tp, r.aus[0].fn_, r.aus[1].tp), (1, 1, 1));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = AuTable::parse("AU1,AU2\n1,0\n0,x\n", "p.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "p.csv:3: column 2 (AU2): `x` is not a number");
        let e = AuTable::parse("AU1,AU2\n1\n", "p.csv")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.csv:2: 1 cells"), "{e}");
        let e = AuTable::parse("frame,path\n", "p.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.csv:1: no AU columns"), "{e}");
        let bad_label = LABELS.replace("5,1,0,1", "5,2,0,1");
        let e = score(&t(PRED, "p.csv"), &t(&bad_label, "l.csv"), &[])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "l.csv:6: column AU1: label 2 is not 0 or 1");
        let bad_prob = PRED.replace("4,0,0,0", "4,0,1.5,0");
        let e = score(&t(&bad_prob, "p.csv"), &t(LABELS, "l.csv"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.csv:5: column AU2"), "{e}");
        let e = score(&t(PRED, "p.csv"), &t(LABELS, "l.csv"), &[26])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.csv: no column for AU26"), "{e}");
        let e = score(&t(PRED, "p.csv"), &t(LABELS, "l.csv"), &[1, 2, 1])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "AU1 is listed twice");
        let short = "AU1,AU2,AU4\n1,1,1\n";
        let e = score(&t(short, "p.csv"), &t(LABELS, "l.csv"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 frames") && e.contains("has 5"), "{e}");
    }

    // Intensity, in OpenFace's layout. AU1 is the metrics crate's hand case, p = [1, 3, 5]
    // against y = [0, 3, 3]: ICC(3,1) 6/7, MAE 1, r √3/2, support 2. AU2 is predicted half a
    // level high, p = y + 0.5: ICC 1, MAE 0.5, r 1. AU4 never occurs and is predicted 0
    // throughout: ICC and r 0 (undefined), MAE 0, support 0. Means: ICC 13/21 = 0.619,
    // MAE 0.5, r (√3/2 + 1)/3 = 0.622. The `_c` decisions (AU01_c = 1, 0, 1) are not read.
    const PRED_R: &str = "frame, AU01_c, AU01_r, AU02_r, AU04_r, AU02_c\n\
                          1, 1, 1.0, 0.5, 0, 0\n\
                          2, 0, 3.0, 1.5, 0, 1\n\
                          3, 1, 5.0, 2.5, 0, 1\n";
    const LABELS_R: &str = "frame,AU1,AU2,AU4\n1,0,0,0\n2,3,1,0\n3,3,2,0\n";

    fn ti(text: &str, f: &str) -> AuTable {
        AuTable::parse_as(text, f, Columns::Intensity).unwrap()
    }

    #[test]
    fn hand_computed_intensity_scores() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let r = score_intensity(&ti(PRED_R, "p.csv"), &ti(LABELS_R, "l.csv"), &[]).unwrap();
        assert_eq!(r.frames, 3);
        let s = &r.scores;
        assert_eq!(s.per_au.iter().map(|a| a.au).collect::<Vec<_>>(), [1, 2, 4]);
        let a1 = &s.per_au[0];
        assert!(close(a1.icc, 6.0 / 7.0) && close(a1.mae, 1.0), "{a1:?}");
        assert!(close(a1.pcc, 3f64.sqrt() / 2.0), "{a1:?}");
        assert_eq!((a1.support, a1.n), (2, 3));
        let a2 = &s.per_au[1];
        assert!(
            close(a2.icc, 1.0) && close(a2.mae, 0.5) && close(a2.pcc, 1.0),
            "{a2:?}"
        );
        let a4 = &s.per_au[2];
        assert_eq!((a4.icc, a4.mae, a4.pcc, a4.support), (0.0, 0.0, 0.0, 0));
        assert!(close(s.avg_icc, 13.0 / 21.0), "{}", s.avg_icc);
        assert!(close(s.avg_mae, 0.5));
        assert!(close(s.avg_pcc, (3f64.sqrt() / 2.0 + 1.0) / 3.0));
        let text = r.to_text();
        assert!(
            text.contains("AU1      0.857   1.000   0.866        2\n"),
            "{text}"
        );
        assert!(
            text.contains("avg ICC(3,1) 0.619, MAE 0.500, PCC 0.622 over 3 AUs, 3 frames"),
            "{text}"
        );
        assert!(
            text.contains("note: AU4 has no frame with intensity above 0"),
            "{text}"
        );
        assert!(!text.contains("note: AU1"), "{text}");
        // A subset, in the order asked.
        let r = score_intensity(&ti(PRED_R, "p.csv"), &ti(LABELS_R, "l.csv"), &[2]).unwrap();
        assert_eq!(r.scores.per_au.len(), 1);
        assert!(close(r.scores.avg_icc, 1.0));
    }

    #[test]
    fn intensity_mode_reads_r_columns_and_occurrence_mode_c_columns() {
        let i = ti(PRED_R, "p.csv");
        assert_eq!(i.aus, [1, 2, 4]);
        assert_eq!(i.rows[1], [3.0, 1.5, 0.0]);
        assert_eq!(
            i.columns,
            [
                (3, "AU01_r".into()),
                (4, "AU02_r".into()),
                (5, "AU04_r".into())
            ]
        );
        let o = t(PRED_R, "p.csv");
        assert_eq!(o.aus, [1, 2]);
        assert_eq!(o.rows[1], [0.0, 1.0]);
        // Plain AU columns are intensities in intensity mode; one AU twice is refused.
        assert_eq!(ti("AU1,AU12\n0,5\n", "l.csv").aus, [1, 12]);
        let e = AuTable::parse_as("AU1,AU01_r\n0,0\n", "p.csv", Columns::Intensity)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "p.csv:1: column 2: AU1 appears twice");
    }

    #[test]
    fn intensity_errors_name_file_line_and_column() {
        let score = |p: &str, l: &str| {
            score_intensity(&ti(p, "p.csv"), &ti(l, "l.csv"), &[])
                .unwrap_err()
                .to_string()
        };
        let e = score(PRED_R, &LABELS_R.replace("2,3,1,0", "2,6,1,0"));
        assert_eq!(
            e,
            "l.csv:3: column 2 (AU1): intensity 6 is outside the intensity scale 0–5"
        );
        let e = score(PRED_R, &LABELS_R.replace("3,3,2,0", "3,3,2,-1"));
        assert_eq!(
            e,
            "l.csv:4: column 4 (AU4): intensity -1 is outside the intensity scale 0–5"
        );
        let e = score(&PRED_R.replace("3.0, 1.5", "3.0, 5.5"), LABELS_R);
        assert_eq!(
            e,
            "p.csv:3: column 4 (AU02_r): prediction 5.5 is outside the intensity scale 0–5"
        );
        // An AU the labels have and the predictions lack.
        let e = score("frame,AU01_r,AU02_r\n1,0,0\n2,0,0\n3,0,0\n", LABELS_R);
        assert_eq!(
            e,
            "p.csv:1: no intensity column for AU4 (AU04_r or AU4); it has AU01_r, AU02_r"
        );
        // ausweep predict's CSV holds decisions and probabilities, no intensities.
        let e = AuTable::parse_as(
            "frame,AU01_c,AU01_prob\n1,1,0.9\n",
            "p.csv",
            Columns::Intensity,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.csv:1: no AU intensity columns"), "{e}");
        let e = AuTable::parse_as("AU01_r\n1\nx\n", "p.csv", Columns::Intensity)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "p.csv:3: column 1 (AU1): `x` is not a number");
        let e = score(PRED_R, "AU1,AU2,AU4\n0,0,0\n");
        assert!(e.contains("p.csv has 3 frames, l.csv has 1"), "{e}");
        let e = score_intensity(&ti(PRED_R, "p.csv"), &ti(LABELS_R, "l.csv"), &[2, 1, 2])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "AU2 is listed twice");
    }
}
