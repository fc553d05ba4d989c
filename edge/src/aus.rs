//! One face's AU outputs and how a model's sigmoid outputs become decisions: the checkpoint's
//! tuned thresholds, or an intensity model's level 2. Shared by the libtorch and ONNX predictors,
//! so both decide alike.

use serde::Serialize;

/// One face's AU outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuPrediction {
    /// Sigmoid output per AU (the checkpoint's AU order): a probability, or intensity / 5.
    pub probs: Vec<f32>,
    /// Output ≥ the AU's threshold (for intensity: level ≥ 2, DISFA's presence).
    pub present: Vec<bool>,
    /// Intensity 0–5 per AU, from an intensity model.
    pub intensity: Option<Vec<f32>>,
}

/// The intensity from which an intensity model calls an AU present: DISFA's B (2), as the
/// paper binarises the labels and as the emotion rules' `5B` reads.
pub const PRESENT_LEVEL: f64 = 2.0;

/// An intensity head's output scale: 5·sigmoid gives DISFA's 0–5 levels.
pub const INTENSITY_SCALE: f64 = 5.0;

/// Per-AU decision thresholds on the sigmoid output: `tuned` for an occurrence model, level 2
/// (0.4) for each of `aus` AUs of an intensity model.
pub fn thresholds(intensity: bool, tuned: &[f64], aus: usize) -> Vec<f64> {
    if intensity {
        vec![PRESENT_LEVEL / INTENSITY_SCALE; aus]
    } else {
        tuned.to_vec()
    }
}

/// Rows of `thresholds.len()` sigmoid outputs (`flat`, row-major) → one prediction per row.
pub fn decide(flat: &[f32], thresholds: &[f64], intensity: bool) -> Vec<AuPrediction> {
    flat.chunks_exact(thresholds.len().max(1))
        .map(|row| AuPrediction {
            probs: row.to_vec(),
            present: row
                .iter()
                .zip(thresholds)
                .map(|(&p, &t)| f64::from(p) >= t)
                .collect(),
            intensity: intensity.then(|| row.iter().map(|&p| p * INTENSITY_SCALE as f32).collect()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_at_its_threshold_is_present_and_intensity_is_five_times_it() {
        let t = thresholds(false, &[0.5, 0.2], 2);
        let p = decide(&[0.5, 0.1, 0.49, 0.2], &t, false);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].present, vec![true, false]);
        assert_eq!(p[1].present, vec![false, true]);
        assert!(p[0].intensity.is_none());
        let t = thresholds(true, &[], 2);
        assert_eq!(t, vec![0.4, 0.4]);
        let p = decide(&[0.4, 0.39], &t, true);
        assert_eq!(p[0].present, vec![true, false]);
        let levels = p[0].intensity.clone().unwrap();
        assert!(
            (levels[0] - 2.0).abs() < 1e-6 && (levels[1] - 1.95).abs() < 1e-6,
            "{levels:?}"
        );
    }
}
