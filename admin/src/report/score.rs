//! `ausweep score`: the paper's F1 protocol on any prediction file. Per AU, true/false
//! positives and false negatives are pooled over all frames, F1 = 2PR/(P+R) (0 when P+R = 0),
//! and the figure is the mean over the AUs.
//!
//! Files are CSV with a header row. Columns named `AU<n>`, `au<n>` or `<n>` are AU columns, and
//! so are OpenFace's decision columns `AU<nn>_c` (as `ausweep predict --format csv` writes
//! them); others (frame, path, OpenFace's `_r` intensities, ausweep's `_prob`) are ignored.
//! Rows pair up by order. Predictions are probabilities (positive at >= 0.5) or 0/1; labels are
//! 0/1. Cells may be quoted (`"a,b"`).

use serde::Serialize;
use std::collections::HashMap;
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

/// One AU column of a CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct AuTable {
    /// File name for messages.
    pub file: String,
    /// AU numbers in column order.
    pub aus: Vec<u32>,
    /// Values, one row per frame, one entry per AU.
    pub rows: Vec<Vec<f64>>,
    /// The line each row came from.
    pub lines: Vec<usize>,
}

fn au_of(name: &str) -> Option<u32> {
    let n = name.trim().trim_matches('"');
    let digits = n
        .strip_prefix("AU")
        .or_else(|| n.strip_prefix("au"))
        .or_else(|| n.strip_prefix("Au"))
        .unwrap_or(n);
    digits
        .strip_suffix("_c")
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
    /// Parses CSV text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ScoreError> {
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
            if let Some(au) = au_of(n) {
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
                format!("no AU columns in the header `{header}` (name them AU1, AU2, ...)"),
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
            rows,
            lines: at,
        })
    }

    /// Reads a CSV file.
    pub fn load(path: &Path) -> Result<Self, ScoreError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScoreError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
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

/// F1, precision and recall from pooled counts (0 where undefined).
pub fn f1_from_counts(tp: u64, fp: u64, fneg: u64) -> (f64, f64, f64) {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let p = ratio(tp, tp + fp);
    let r = ratio(tp, tp + fneg);
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (f, p, r)
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

/// Scores predictions against labels on the given AUs (all label AUs when empty).
pub fn score(pred: &AuTable, labels: &AuTable, aus: &[u32]) -> Result<ScoreReport, ScoreError> {
    if pred.rows.len() != labels.rows.len() {
        return Err(ScoreError::Mismatch(format!(
            "{} has {} frames, {} has {}; rows pair up by order",
            pred.file,
            pred.rows.len(),
            labels.file,
            labels.rows.len()
        )));
    }
    let aus: Vec<u32> = if aus.is_empty() {
        labels.aus.clone()
    } else {
        aus.to_vec()
    };
    let mut out = Vec::with_capacity(aus.len());
    let mut seen: HashMap<u32, ()> = HashMap::new();
    for &au in &aus {
        if seen.insert(au, ()).is_some() {
            return Err(ScoreError::Mismatch(format!("AU{au} is listed twice")));
        }
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
        let (f1, precision, recall) = f1_from_counts(tp, fp, fneg);
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
        let short = "AU1,AU2,AU4\n1,1,1\n";
        let e = score(&t(short, "p.csv"), &t(LABELS, "l.csv"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 frames") && e.contains("has 5"), "{e}");
    }
}
