//! AU intensity agreement for one AU over n frames: predictions `p` against labels `y` on the
//! 0–5 FACS scale (DISFA, BP4D). ICC(3,1) is the field's headline figure; MAE and Pearson's r
//! are reported beside it.
//!
//! **ICC(3,1)** (Shrout & Fleiss 1979, case 3, single measure: two-way mixed, consistency) of an
//! n × k table with n targets (frames) and k raters (for AU intensity k = 2: the prediction and
//! the label), from the two-way ANOVA without replication:
//!
//! ```text
//! BMS  = k · Σ_i (ȳ_i. − ȳ)² / (n − 1)                       between targets (frames)
//! EMS  = Σ_i Σ_j (y_ij − ȳ_i. − ȳ_.j + ȳ)² / ((n − 1)(k − 1))   residual
//! ICC(3,1) = (BMS − EMS) / (BMS + (k − 1) · EMS)   = (BMS − EMS) / (BMS + EMS) for k = 2
//! ```
//!
//! For k = 2 this equals 2·cov(p, y) / (var p + var y): a constant offset between prediction
//! and label does not lower it (consistency, not absolute agreement), a scale difference does,
//! and it lies in [−1, 1].
//!
//! **Degenerate cases.** ICC and r are 0.0, never NaN, where they are undefined:
//! - n < 2 frames (no variance can be estimated);
//! - ICC: a zero denominator, i.e. neither prediction nor label varies over the frames (a
//!   constant prediction on an AU whose labels are all 0, the common case on a fold where the
//!   AU never occurs; even a perfect all-zero prediction there scores 0);
//! - r: either side does not vary (a constant prediction, or an AU whose labels are all one
//!   level).
//!
//! Where only one side is constant the ICC is defined and is 0 (cov = 0). This follows the
//! AU-intensity code that sets an undefined ICC to 0 (Walecki's `metrics.py`), so an AU that
//! never occurs in a fold pulls the mean over AUs down rather than vanishing from it. MAE is
//! defined for any n ≥ 1 and is 0.0 for n = 0. Inputs must be finite: a NaN prediction (a
//! diverged model) gives NaN, which is not hidden.

use serde::{Deserialize, Serialize};

/// The mean of `xs`, exact for a constant column: the first value plus the mean offset from it,
/// so the deviations of a constant column are exactly 0 and "does not vary" is decided without
/// a tolerance.
fn mean(xs: &[f64]) -> f64 {
    match xs.first() {
        None => 0.0,
        Some(&x0) => x0 + xs.iter().map(|x| x - x0).sum::<f64>() / xs.len() as f64,
    }
}

/// ICC(3,1) of k raters over n targets: `raters[j][i]` is rater j's score of target i (every
/// rater scores the same n targets). 0.0 where undefined: fewer than 2 raters or 2 targets, or
/// BMS + (k − 1)·EMS = 0 (nothing varies). See the module documentation for the formula.
///
/// # Panics
/// When the raters' slices differ in length.
pub fn icc31_raters(raters: &[&[f64]]) -> f64 {
    let k = raters.len();
    let n = raters.first().map_or(0, |r| r.len());
    assert!(
        raters.iter().all(|r| r.len() == n),
        "icc31_raters: every rater must score the same {n} targets"
    );
    if k < 2 || n < 2 {
        return 0.0;
    }
    // Centre each rater on its own mean: removes the rater (column) effect exactly as the
    // ANOVA does, and a constant rater becomes exact zeros.
    let centred: Vec<Vec<f64>> = raters
        .iter()
        .map(|r| {
            let m = mean(r);
            r.iter().map(|x| x - m).collect()
        })
        .collect();
    let row_mean = |i: usize| centred.iter().map(|c| c[i]).sum::<f64>() / k as f64;
    let rows: Vec<f64> = (0..n).map(row_mean).collect();
    let grand = rows.iter().sum::<f64>() / n as f64;
    let bss: f64 = rows.iter().map(|r| (r - grand).powi(2)).sum::<f64>() * k as f64;
    // Residual: y_ij − ȳ_i. − ȳ_.j + ȳ, with the column mean ȳ_.j already subtracted (the
    // centred column's own mean is 0 up to rounding, so it is taken again).
    let ess: f64 = centred
        .iter()
        .map(|c| {
            let cm = c.iter().sum::<f64>() / n as f64;
            c.iter()
                .zip(&rows)
                .map(|(x, r)| (x - r - cm + grand).powi(2))
                .sum::<f64>()
        })
        .sum();
    let bms = bss / (n - 1) as f64;
    let ems = ess / ((n - 1) * (k - 1)) as f64;
    let denom = bms + (k - 1) as f64 * ems;
    if denom == 0.0 {
        return 0.0;
    }
    (bms - ems) / denom
}

/// ICC(3,1) of predictions `p` against labels `y` over the same frames: k = 2 raters,
/// (BMS − EMS) / (BMS + EMS). In [−1, 1]; 0.0 where undefined (n < 2, or neither side varies).
///
/// # Panics
/// When `p` and `y` differ in length.
pub fn icc31(p: &[f64], y: &[f64]) -> f64 {
    assert_eq!(
        p.len(),
        y.len(),
        "icc31: predictions and labels differ in length"
    );
    icc31_raters(&[p, y])
}

/// Mean absolute error, Σ|p − y| / n; 0.0 for n = 0.
///
/// # Panics
/// When `p` and `y` differ in length.
pub fn mae(p: &[f64], y: &[f64]) -> f64 {
    assert_eq!(
        p.len(),
        y.len(),
        "mae: predictions and labels differ in length"
    );
    if p.is_empty() {
        return 0.0;
    }
    p.iter().zip(y).map(|(a, b)| (a - b).abs()).sum::<f64>() / p.len() as f64
}

/// Pearson's correlation coefficient, cov(p, y) / (σ_p σ_y), in [−1, 1]; 0.0 where undefined
/// (n < 2, or either side constant).
///
/// # Panics
/// When `p` and `y` differ in length.
pub fn pcc(p: &[f64], y: &[f64]) -> f64 {
    assert_eq!(
        p.len(),
        y.len(),
        "pcc: predictions and labels differ in length"
    );
    // n < 2 needs no case of its own: one frame has zero deviation, so sxx = 0 below.
    let (mp, my) = (mean(p), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in p.iter().zip(y) {
        let (dx, dy) = (a - mp, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// The intensity scores of one AU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuIntensity {
    /// AU number.
    pub au: u32,
    /// ICC(3,1) (0 where undefined).
    pub icc: f64,
    /// Mean absolute error, in intensity levels.
    pub mae: f64,
    /// Pearson's r (0 where undefined).
    pub pcc: f64,
    /// Frames whose label intensity is above 0 (the AU is present).
    pub support: u64,
    /// Frames scored.
    pub n: u64,
}

impl AuIntensity {
    /// Scores predictions `p` against labels `y` (the same frames, in order) for AU `au`.
    ///
    /// # Panics
    /// When `p` and `y` differ in length.
    pub fn compute(au: u32, p: &[f64], y: &[f64]) -> Self {
        Self {
            au,
            icc: icc31(p, y),
            mae: mae(p, y),
            pcc: pcc(p, y),
            support: y.iter().filter(|&&v| v > 0.0).count() as u64,
            n: y.len() as u64,
        }
    }
}

/// Intensity scores per AU and their plain means over the AUs (an AU whose ICC or r is
/// undefined counts as 0 in the mean; every mean is 0 when there is no AU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntensityScores {
    /// Per AU, in the order scored.
    pub per_au: Vec<AuIntensity>,
    /// Mean ICC(3,1).
    pub avg_icc: f64,
    /// Mean MAE.
    pub avg_mae: f64,
    /// Mean Pearson's r.
    pub avg_pcc: f64,
}

impl IntensityScores {
    /// The means of `per_au`.
    pub fn new(per_au: Vec<AuIntensity>) -> Self {
        let avg = |f: fn(&AuIntensity) -> f64| {
            if per_au.is_empty() {
                0.0
            } else {
                per_au.iter().map(f).sum::<f64>() / per_au.len() as f64
            }
        };
        Self {
            avg_icc: avg(|a| a.icc),
            avg_mae: avg(|a| a.mae),
            avg_pcc: avg(|a| a.pcc),
            per_au,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_two_rater_case() {
        // p = [1, 3, 5], y = [0, 3, 3]; n = 3, k = 2.
        // Row (frame) means 0.5, 3, 4; grand mean 15/6 = 2.5; column means p̄ = 3, ȳ = 2.
        // BMS = 2 · ((−2)² + 0.5² + 1.5²) / 2 = 2 · 6.5 / 2 = 6.5.
        // Residuals y_ij − ȳ_i. − ȳ_.j + ȳ: p: 0, −0.5, 0.5; y: 0, 0.5, −0.5; ESS = 1,
        // EMS = 1 / ((3 − 1)(2 − 1)) = 0.5. ICC = (6.5 − 0.5) / (6.5 + 0.5) = 6/7.
        // Closed form: var p = 4, var y = 3, cov = 3: 2·3 / (4 + 3) = 6/7.
        // MAE = (1 + 0 + 2) / 3 = 1. r = 3 / √(4·3) = √3/2. Support: 2 frames with y > 0.
        let (p, y) = ([1.0, 3.0, 5.0], [0.0, 3.0, 3.0]);
        assert!(close(icc31(&p, &y), 6.0 / 7.0), "{}", icc31(&p, &y));
        assert!(close(mae(&p, &y), 1.0));
        assert!(close(pcc(&p, &y), 3f64.sqrt() / 2.0), "{}", pcc(&p, &y));
        let a = AuIntensity::compute(12, &p, &y);
        assert_eq!((a.au, a.support, a.n), (12, 2, 3));
        assert!(close(a.icc, 6.0 / 7.0) && close(a.mae, 1.0));
    }

    #[test]
    fn shrout_fleiss_worked_example() {
        // Shrout & Fleiss (1979), Table 2: 6 targets × 4 judges. BMS = 1349/120 (11.2417),
        // EMS = 367/360 (1.01944): ICC(3,1) = (BMS − EMS)/(BMS + 3·EMS) = 920/1287 = 0.71484,
        // published as .71.
        let table = [
            [9.0, 2.0, 5.0, 8.0],
            [6.0, 1.0, 3.0, 2.0],
            [8.0, 4.0, 6.0, 8.0],
            [7.0, 1.0, 2.0, 6.0],
            [10.0, 5.0, 6.0, 9.0],
            [6.0, 2.0, 4.0, 7.0],
        ];
        let judges: Vec<Vec<f64>> = (0..4)
            .map(|j| table.iter().map(|r| r[j]).collect())
            .collect();
        let judges: Vec<&[f64]> = judges.iter().map(Vec::as_slice).collect();
        let icc = icc31_raters(&judges);
        assert!(close(icc, 920.0 / 1287.0), "{icc}");
        assert!((icc - 0.71484).abs() < 5e-6, "{icc}");
        // The k = 2 entry point is the same computation on two columns.
        assert!(close(
            icc31(judges[0], judges[1]),
            icc31_raters(&judges[..2])
        ));
    }

    #[test]
    fn agrees_with_the_closed_form_on_a_realistic_au() {
        // The research note's check vector; for k = 2, ICC(3,1) = 2 cov / (var p + var y),
        // computed here independently of the ANOVA. Reference (Python, ANOVA form):
        // ICC 0.9324541080, MAE 0.4375, r 0.9642494315.
        let p = [0.2, 0.8, 2.5, 2.0, 0.1, 0.3, 1.2, 4.0];
        let y = [0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 1.0, 5.0];
        let n = p.len() as f64;
        let (mp, my) = (p.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let cov: f64 = p.iter().zip(&y).map(|(a, b)| (a - mp) * (b - my)).sum();
        let vp: f64 = p.iter().map(|a| (a - mp).powi(2)).sum();
        let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        let icc = icc31(&p, &y);
        assert!(close(icc, 2.0 * cov / (vp + vy)), "{icc}");
        assert!((icc - 0.932_454_108_0).abs() < 1e-9, "{icc}");
        assert!(close(mae(&p, &y), 0.4375));
        assert!((pcc(&p, &y) - 0.964_249_431_5).abs() < 1e-9);
        // ICC(3,1) ≤ |r| when the variances differ.
        assert!(icc < pcc(&p, &y));
    }

    #[test]
    fn perfect_agreement_is_one() {
        let y = [0.0, 1.0, 2.0, 3.0, 5.0, 0.0];
        assert!(close(icc31(&y, &y), 1.0));
        assert!(close(pcc(&y, &y), 1.0));
        assert_eq!(mae(&y, &y), 0.0);
    }

    #[test]
    fn a_constant_offset_keeps_icc_at_one_and_is_the_mae() {
        // ICC(3,1) is consistency: p = y + 0.5 agrees perfectly up to the offset.
        let y = [0.0, 1.0, 2.0, 3.0, 4.0];
        let p: Vec<f64> = y.iter().map(|v| v + 0.5).collect();
        assert!(close(icc31(&p, &y), 1.0), "{}", icc31(&p, &y));
        assert!(close(pcc(&p, &y), 1.0));
        assert!(close(mae(&p, &y), 0.5));
    }

    #[test]
    fn a_scale_difference_lowers_icc_but_not_r() {
        // p = 2y: cov = 2 var y, var p = 4 var y: ICC = 4/5, r = 1.
        let y = [0.0, 1.0, 2.0];
        let p = [0.0, 2.0, 4.0];
        assert!(close(icc31(&p, &y), 0.8), "{}", icc31(&p, &y));
        assert!(close(pcc(&p, &y), 1.0));
    }

    #[test]
    fn reversed_predictions_give_minus_one() {
        // ICC is not clipped at 0: p = 2 − y has cov = −1, var p = var y = 1.
        let (p, y) = ([2.0, 1.0, 0.0], [0.0, 1.0, 2.0]);
        assert!(close(icc31(&p, &y), -1.0), "{}", icc31(&p, &y));
        assert!(close(pcc(&p, &y), -1.0));
    }

    #[test]
    fn constant_predictions_score_zero() {
        // Labels vary, the prediction does not: cov = 0, so ICC = 0 (defined) and r = 0
        // (undefined). MAE = (1 + 1 + 2 + 0) / 4 = 1. 0.1 is not exact in binary: its mean
        // must still count as constant.
        let y = [0.0, 2.0, 3.0, 1.0];
        assert_eq!(icc31(&[1.0; 4], &y), 0.0);
        assert_eq!(pcc(&[1.0; 4], &y), 0.0);
        assert!(close(mae(&[1.0; 4], &y), 1.0));
        assert_eq!(icc31(&[0.1; 7], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0]), 0.0);
        assert_eq!(pcc(&[0.1; 7], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0]), 0.0);
    }

    #[test]
    fn a_single_level_au_is_zero_not_nan() {
        // Labels all 0 (the AU never occurs). A varying prediction: ICC defined and 0, r
        // undefined (labels constant) and 0, MAE the mean prediction.
        let y = [0.0; 4];
        let p = [0.0, 0.5, 1.0, 0.5];
        assert_eq!(icc31(&p, &y), 0.0);
        assert_eq!(pcc(&p, &y), 0.0);
        assert!(close(mae(&p, &y), 0.5));
        // A constant prediction there: BMS = EMS = 0, 0/0, and ICC is 0 by convention, even
        // for the perfect all-zero prediction; with an inexact constant (0.3) as well.
        for c in [0.0, 0.3, 2.0] {
            let p = [c; 4];
            assert_eq!(icc31(&p, &y), 0.0, "{c}");
            assert_eq!(pcc(&p, &y), 0.0, "{c}");
            let a = AuIntensity::compute(4, &p, &y);
            assert_eq!((a.support, a.n), (0, 4));
            assert!(!a.icc.is_nan() && !a.pcc.is_nan());
        }
        // Labels all at one level above 0 as well. Ten 0.3s sum to 2.9999999999999996: a plain
        // mean leaves rounding residue in both mean squares (about 1e-32) and their ratio is
        // noise (−0.43 here); centring on an exact mean keeps them 0.
        assert_eq!(icc31(&[0.3; 10], &[1.0; 10]), 0.0);
        assert_eq!(pcc(&[0.3; 10], &[1.0; 10]), 0.0);
    }

    #[test]
    fn one_frame_or_none() {
        // n = 1: no variance, ICC and r undefined (0); MAE defined.
        assert_eq!(icc31(&[2.0], &[3.0]), 0.0);
        assert_eq!(pcc(&[2.0], &[3.0]), 0.0);
        assert_eq!(mae(&[2.0], &[3.5]), 1.5);
        let a = AuIntensity::compute(1, &[], &[]);
        assert_eq!((a.icc, a.mae, a.pcc, a.support, a.n), (0.0, 0.0, 0.0, 0, 0));
        // Fewer than two raters.
        assert_eq!(icc31_raters(&[&[1.0, 2.0, 3.0]]), 0.0);
        assert_eq!(icc31_raters(&[]), 0.0);
    }

    #[test]
    #[should_panic(expected = "differ in length")]
    fn mismatched_lengths_panic() {
        icc31(&[1.0, 2.0], &[1.0]);
    }

    #[test]
    fn means_over_aus() {
        // AU1 the hand case (ICC 6/7, MAE 1, r √3/2), AU4 a single-level AU with a constant
        // prediction (ICC 0, r 0, MAE 0.5).
        let a1 = AuIntensity::compute(1, &[1.0, 3.0, 5.0], &[0.0, 3.0, 3.0]);
        let a4 = AuIntensity::compute(4, &[0.5; 3], &[0.0; 3]);
        let s = IntensityScores::new(vec![a1, a4]);
        assert_eq!(s.per_au.iter().map(|a| a.au).collect::<Vec<_>>(), [1, 4]);
        assert!(close(s.avg_icc, 3.0 / 7.0), "{}", s.avg_icc);
        assert!(close(s.avg_mae, 0.75));
        assert!(close(s.avg_pcc, 3f64.sqrt() / 4.0));
        let none = IntensityScores::new(vec![]);
        assert_eq!((none.avg_icc, none.avg_mae, none.avg_pcc), (0.0, 0.0, 0.0));
    }
}
