//! Results of `ausweep predict`: JSON lines (one line per frame, its faces inside) or CSV in
//! OpenFace's per-frame layout (one row per face; a frame without a face gets `success` 0). A
//! detection model writes `AUxx_c` and `AUxx_prob`; an intensity model OpenFace's `AUxx_r`
//! (0–5) and `AUxx_c` (level ≥ 2).

use ausweep_edge::aus::AuPrediction;
use ausweep_edge::emotions::EmotionCall;
use ausweep_edge::mtcnn::Face;
use serde::Serialize;
use std::io::Write;

/// One AU of one face.
#[derive(Debug, Clone, Serialize)]
pub struct AuOut {
    /// AU number.
    pub au: u32,
    /// Sigmoid probability.
    pub prob: f32,
    /// Probability ≥ threshold.
    pub present: bool,
    /// The checkpoint's tuned threshold (intensity models: 0.4, level 2).
    pub threshold: f64,
    /// Intensity 0–5, from an intensity model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intensity: Option<f32>,
}

/// One face of one frame.
#[derive(Debug, Clone, Serialize)]
pub struct FaceOut {
    /// Index of the face in its frame (largest first).
    pub face_id: usize,
    /// The detection.
    #[serde(flatten)]
    pub face: Face,
    /// Per-AU outputs.
    pub aus: Vec<AuOut>,
    /// Emotions by the AU rules.
    pub emotions: Vec<EmotionCall>,
}

/// One frame (an image is one frame).
#[derive(Debug, Clone, Serialize)]
pub struct FrameOut {
    /// The input file.
    pub input: String,
    /// 1-based frame number (OpenFace's convention; images: 1).
    pub frame: u64,
    /// Seconds into the video (images: 0).
    pub timestamp: f64,
    /// Faces found.
    pub faces: Vec<FaceOut>,
}

/// Builds a face's record from the detection, the AU outputs and the AUs/thresholds reported.
pub fn face_out(
    face_id: usize,
    face: Face,
    pred: &AuPrediction,
    aus: &[u32],
    cols: &[usize],
    thresholds: &[f64],
) -> FaceOut {
    let au_list: Vec<u32> = cols.iter().map(|&i| aus[i]).collect();
    let present: Vec<bool> = cols.iter().map(|&i| pred.present[i]).collect();
    FaceOut {
        face_id,
        face,
        aus: cols
            .iter()
            .map(|&i| AuOut {
                au: aus[i],
                prob: pred.probs[i],
                present: pred.present[i],
                threshold: thresholds[i],
                intensity: pred.intensity.as_ref().map(|v| v[i]),
            })
            .collect(),
        emotions: ausweep_edge::emotions::emotions(&au_list, &present),
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per frame.
    Jsonl,
    /// OpenFace-style CSV, one row per face.
    Csv,
}

/// Writes frames in the chosen format.
pub struct Writer<W: Write> {
    out: W,
    format: Format,
    aus: Vec<u32>,
    intensity: bool,
    header_done: bool,
}

impl<W: Write> Writer<W> {
    /// A writer for faces whose AUs are `aus` (the reported ones, in order), from an intensity
    /// model when `intensity`.
    pub fn new(out: W, format: Format, aus: Vec<u32>, intensity: bool) -> Self {
        Writer {
            out,
            format,
            aus,
            intensity,
            header_done: false,
        }
    }

    /// Writes one frame.
    pub fn frame(&mut self, f: &FrameOut) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, f)?;
                writeln!(self.out)
            }
            Format::Csv => self.csv(f),
        }
    }

    fn csv(&mut self, f: &FrameOut) -> std::io::Result<()> {
        if !self.header_done {
            let mut cols: Vec<String> = ["frame", "face_id", "timestamp", "confidence", "success"]
                .map(String::from)
                .to_vec();
            // OpenFace's order: every `_r` column, then every `_c` column.
            let (first, second) = if self.intensity {
                ("r", "c")
            } else {
                ("c", "prob")
            };
            cols.extend(self.aus.iter().map(|a| format!("AU{a:02}_{first}")));
            cols.extend(self.aus.iter().map(|a| format!("AU{a:02}_{second}")));
            cols.extend(["x1", "y1", "x2", "y2", "input"].map(String::from));
            // OpenFace separates header names with ", ".
            writeln!(self.out, "{}", cols.join(", "))?;
            self.header_done = true;
        }
        let input = csv_field(&f.input);
        if f.faces.is_empty() {
            let zeros = vec!["0"; self.aus.len() * 2 + 4].join(", ");
            return writeln!(
                self.out,
                "{}, 0, {:.3}, 0.00, 0, {zeros}, {input}",
                f.frame, f.timestamp
            );
        }
        for face in &f.faces {
            let c = face
                .aus
                .iter()
                .map(|a| if a.present { "1.00" } else { "0.00" }.to_string());
            let (first, second): (Vec<String>, Vec<String>) = if self.intensity {
                (
                    // OpenFace writes intensities with two decimals.
                    face.aus
                        .iter()
                        .map(|a| format!("{:.2}", a.intensity.unwrap_or(0.0)))
                        .collect(),
                    c.collect(),
                )
            } else {
                (
                    c.collect(),
                    face.aus.iter().map(|a| format!("{:.4}", a.prob)).collect(),
                )
            };
            let b = face.face.bbox;
            writeln!(
                self.out,
                "{}, {}, {:.3}, {:.2}, 1, {}, {}, {:.1}, {:.1}, {:.1}, {:.1}, {input}",
                f.frame,
                face.face_id,
                f.timestamp,
                face.face.confidence,
                first.join(", "),
                second.join(", "),
                b[0],
                b[1],
                b[2],
                b[3]
            )?;
        }
        Ok(())
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Quotes a CSV field when it holds a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(faces: usize) -> FrameOut {
        let face = Face {
            bbox: [1.0, 2.0, 30.0, 40.0],
            confidence: 0.99,
            landmarks: [[0.0; 2]; 5],
        };
        let pred = AuPrediction {
            probs: vec![0.9, 0.2],
            present: vec![true, false],
            intensity: None,
        };
        FrameOut {
            input: "dir/a,b.png".into(),
            frame: 3,
            timestamp: 0.12,
            faces: (0..faces)
                .map(|i| face_out(i, face.clone(), &pred, &[6, 12], &[0, 1], &[0.5, 0.5]))
                .collect(),
        }
    }

    #[test]
    fn csv_has_openface_columns_and_a_row_per_face() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Format::Csv, vec![6, 12], false);
        w.frame(&frame(2)).unwrap();
        w.frame(&frame(0)).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "frame, face_id, timestamp, confidence, success, AU06_c, AU12_c, AU06_prob, AU12_prob, x1, y1, x2, y2, input"
        );
        assert_eq!(lines[1], "3, 0, 0.120, 0.99, 1, 1.00, 0.00, 0.9000, 0.2000, 1.0, 2.0, 30.0, 40.0, \"dir/a,b.png\"");
        assert!(lines[2].starts_with("3, 1, "));
        assert_eq!(
            lines[3],
            "3, 0, 0.120, 0.00, 0, 0, 0, 0, 0, 0, 0, 0, 0, \"dir/a,b.png\""
        );
        let cols = lines[0].split(", ").count();
        assert_eq!(lines[3].split(", ").count(), cols);
    }

    #[test]
    fn jsonl_is_one_object_per_frame_with_emotions() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Format::Jsonl, vec![6, 12], false);
        w.frame(&frame(1)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["faces"][0]["bbox"][2], 30.0);
        assert_eq!(v["faces"][0]["aus"][0]["present"], true);
        assert_eq!(v["faces"][0]["emotions"][0]["name"], "happiness");
        assert_eq!(v["faces"][0]["emotions"][0]["present"], false);
    }

    #[test]
    fn an_intensity_model_writes_openface_r_and_c_columns() {
        let face = Face {
            bbox: [1.0, 2.0, 30.0, 40.0],
            confidence: 0.99,
            landmarks: [[0.0; 2]; 5],
        };
        let pred = AuPrediction {
            probs: vec![0.6, 0.1],
            present: vec![true, false],
            intensity: Some(vec![3.0, 0.5]),
        };
        let f = FrameOut {
            input: "a.png".into(),
            frame: 1,
            timestamp: 0.0,
            faces: vec![face_out(0, face, &pred, &[6, 12], &[0, 1], &[0.4, 0.4])],
        };
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Format::Csv, vec![6, 12], true);
        w.frame(&f).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "frame, face_id, timestamp, confidence, success, AU06_r, AU12_r, AU06_c, AU12_c, x1, y1, x2, y2, input"
        );
        assert_eq!(
            lines[1],
            "1, 0, 0.000, 0.99, 1, 3.00, 0.50, 1.00, 0.00, 1.0, 2.0, 30.0, 40.0, a.png"
        );
        let mut buf = Vec::new();
        Writer::new(&mut buf, Format::Jsonl, vec![6, 12], true)
            .frame(&f)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["faces"][0]["aus"][0]["intensity"], 3.0, "{v}");
    }
}
