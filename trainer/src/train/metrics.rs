//! Per-AU precision, recall and F1 pooled over frames, and per-AU threshold tuning.

pub use ausweep_proto::trainer::result::{AuScore, Scores};

use ausweep_metrics::f1_from_counts;

/// Scores probabilities `[n × k]` against 0/1 labels `[n × k]` with per-AU thresholds.
pub fn score(probs: &[f32], labels: &[u8], aus: &[u32], thresholds: &[f64]) -> Scores {
    let k = aus.len();
    let n = labels.len().checked_div(k).unwrap_or(0);
    let per_au: Vec<AuScore> = (0..k)
        .map(|j| {
            let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
            for i in 0..n {
                let pred = f64::from(probs[i * k + j]) >= thresholds[j];
                let truth = labels[i * k + j] == 1;
                match (pred, truth) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fneg += 1,
                    _ => {}
                }
            }
            let (precision, recall, f1) = f1_from_counts(tp, fp, fneg);
            AuScore {
                au: aus[j],
                precision,
                recall,
                f1,
                support: tp + fneg,
            }
        })
        .collect();
    let avg_f1 = if k == 0 {
        0.0
    } else {
        per_au.iter().map(|s| s.f1).sum::<f64>() / k as f64
    };
    Scores { per_au, avg_f1 }
}

/// Per AU, the threshold in 0.05…0.95 that maximises F1 on these (held-out training) frames;
/// ties go to the one nearest 0.5, and an AU with no positives keeps 0.5.
pub fn tune_thresholds(probs: &[f32], labels: &[u8], k: usize) -> Vec<f64> {
    let n = labels.len().checked_div(k).unwrap_or(0);
    (0..k)
        .map(|j| {
            if (0..n).all(|i| labels[i * k + j] == 0) {
                return 0.5;
            }
            let mut best: (f64, f64) = (f64::NEG_INFINITY, 0.5);
            for step in 1..=19 {
                let t = step as f64 / 20.0;
                let (mut tp, mut fp, mut fneg) = (0, 0, 0);
                for i in 0..n {
                    let pred = f64::from(probs[i * k + j]) >= t;
                    match (pred, labels[i * k + j] == 1) {
                        (true, true) => tp += 1,
                        (true, false) => fp += 1,
                        (false, true) => fneg += 1,
                        _ => {}
                    }
                }
                let f = f1_from_counts(tp, fp, fneg).2;
                let better = f > best.0 + 1e-12
                    || ((f - best.0).abs() <= 1e-12 && (t - 0.5).abs() < (best.1 - 0.5).abs());
                if better {
                    best = (f, t);
                }
            }
            best.1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_is_pooled_per_au_and_averaged() {
        // AU a: tp=2 fp=1 fn=1 → P=R=2/3, F1=2/3. AU b: no positives predicted, one present → 0.
        let probs = [0.9, 0.1, 0.8, 0.2, 0.7, 0.0, 0.2, 0.9];
        let labels = [1, 0, 1, 0, 0, 0, 1, 1];
        let s = score(&probs, &labels, &[1, 2], &[0.5, 0.95]);
        assert!((s.per_au[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.per_au[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.per_au[1].f1, 0.0);
        assert_eq!(s.per_au[1].support, 1);
        assert!((s.avg_f1 - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn tuned_threshold_separates_classes() {
        let probs = [0.30, 0.32, 0.10, 0.12, 0.35, 0.05];
        let labels = [1, 1, 0, 0, 1, 0];
        let t = tune_thresholds(&probs, &labels, 1);
        assert!(t[0] > 0.12 && t[0] <= 0.30, "{t:?}");
        let s = score(&probs, &labels, &[1], &t);
        assert_eq!(s.avg_f1, 1.0);
        assert_eq!(tune_thresholds(&[0.9, 0.1], &[0, 0], 1), vec![0.5]);
    }
}
