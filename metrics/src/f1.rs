//! Precision, recall and F1 from counts pooled over every frame of one AU.

/// `(precision, recall, f1)` from true positives, false positives and false negatives pooled
/// over frames: P = tp / (tp + fp), R = tp / (tp + fn), F1 = 2PR / (P + R). Each is 0 where its
/// denominator is 0 (no positive prediction, no positive label, or P + R = 0).
pub fn f1_from_counts(tp: u64, fp: u64, fneg: u64) -> (f64, f64, f64) {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let p = ratio(tp, tp + fp);
    let r = ratio(tp, tp + fneg);
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_f1_in_that_order() {
        // tp 2, fp 0, fn 2: P = 2/2 = 1, R = 2/4 = 1/2, F1 = 2·1·½ / (1 + ½) = 2/3. P ≠ R, so a
        // swapped tuple shows.
        let (p, r, f) = f1_from_counts(2, 0, 2);
        assert_eq!((p, r), (1.0, 0.5));
        assert!((f - 2.0 / 3.0).abs() < 1e-15, "{f}");
        // tp 1, fp 3, fn 0: P = 1/4, R = 1, F1 = 2·¼ / (5/4) = 2/5.
        let (p, r, f) = f1_from_counts(1, 3, 0);
        assert_eq!((p, r), (0.25, 1.0));
        assert!((f - 0.4).abs() < 1e-15, "{f}");
    }

    #[test]
    fn undefined_ratios_are_zero() {
        // Nothing predicted, nothing present.
        assert_eq!(f1_from_counts(0, 0, 0), (0.0, 0.0, 0.0));
        // Predicted only where absent: P = 0/3, R undefined (no positives) -> 0.
        assert_eq!(f1_from_counts(0, 3, 0), (0.0, 0.0, 0.0));
        // Present but never predicted: P undefined -> 0, R = 0/2.
        assert_eq!(f1_from_counts(0, 0, 2), (0.0, 0.0, 0.0));
    }
}
