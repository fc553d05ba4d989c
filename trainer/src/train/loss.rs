//! Losses on logits: LSEP (Li, Song, Luo 2017), BCE, weighted BCE and LSEP + weighted BCE for
//! occurrence; MSE and weighted MSE of `5·sigmoid` for intensity.

use ausweep_proto::job::LossKind;
use tch::{Kind, Reduction, Tensor};

/// LSEP: `mean_b log(1 + Σ_{v∉Y} Σ_{u∈Y} exp(f_v − f_u))`, vectorised as a masked B×K×K
/// difference and computed as a log-sum-exp with a constant 0 term, so a row with no
/// (negative, positive) pair gives exactly 0 with a zero (never NaN) gradient.
pub fn lsep(logits: &Tensor, targets: &Tensor) -> Tensor {
    let (b, k) = (logits.size()[0], logits.size()[1]);
    let y = targets.to_kind(logits.kind());
    // diff[b, v, u] = f_v - f_u
    let diff = logits.unsqueeze(2) - logits.unsqueeze(1);
    // pair[b, v, u] = (v negative) and (u positive)
    let pair = (y.ones_like() - &y).unsqueeze(2) * y.unsqueeze(1);
    let masked = diff
        .masked_fill(&pair.eq(0.0), f64::NEG_INFINITY)
        .reshape([b, k * k]);
    let zero = Tensor::zeros([b, 1], (logits.kind(), logits.device()));
    Tensor::cat(&[zero, masked], 1)
        .logsumexp([1], false)
        .mean(logits.kind())
}

/// Binary cross-entropy on logits, optionally with per-AU positive weights.
pub fn bce(logits: &Tensor, targets: &Tensor, pos_weight: Option<&Tensor>) -> Tensor {
    logits.binary_cross_entropy_with_logits::<&Tensor>(
        &targets.to_kind(logits.kind()),
        None,
        pos_weight,
        Reduction::Mean,
    )
}

/// Per-AU positive weights `#neg / #pos` (1 where an AU has no positives), from 0/1 labels `[N, K]`.
pub fn inverse_frequency_weights(labels: &Tensor) -> Tensor {
    let n = labels.size()[0] as f64;
    let pos = labels
        .to_kind(Kind::Float)
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
    let neg = pos.neg() + n;
    let w = &neg / pos.clamp_min(1.0);
    w.where_self(&pos.gt(0.0), &w.ones_like()).clamp(1.0, 100.0)
}

/// The job's loss on a batch; `pos_weight` is used by the weighted variants (for intensity:
/// [`intensity_weights`]).
pub fn compute(kind: LossKind, logits: &Tensor, targets: &Tensor, pos_weight: &Tensor) -> Tensor {
    match kind {
        LossKind::Lsep => lsep(logits, targets),
        LossKind::Bce => bce(logits, targets, None),
        LossKind::WeightedBce => bce(logits, targets, Some(pos_weight)),
        LossKind::LsepBce => lsep(logits, targets) + bce(logits, targets, Some(pos_weight)),
        LossKind::Mse => mse_intensity(logits, targets),
        LossKind::WeightedMse => weighted_mse_intensity(logits, targets, pos_weight),
    }
}

/// Per-AU weights of non-zero intensity labels for `weighted_mse`: `sqrt(#zero / #non-zero)`
/// over the training frames' intensities `[N, K]` (1 for an AU never or always active, at most
/// 10). The square root tempers full inverse frequency, which would push neutral frames up.
pub fn intensity_weights(intensities: &Tensor) -> Tensor {
    inverse_frequency_weights(&intensities.ge(1.0)).sqrt()
}

/// `Σ w·(5·sigmoid(z) − y)² / Σ w`, with `w = weights[k]` where the label `y ≥ 1` and 1 where it
/// is 0: the rare active frames of each AU count as much as [`intensity_weights`] says.
pub fn weighted_mse_intensity(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Tensor {
    let y = targets.to_kind(Kind::Float);
    let active = y.ge(1.0).to_kind(Kind::Float);
    let w = (weights.to_kind(Kind::Float).unsqueeze(0) - 1.0) * &active + 1.0;
    let sq = (logits.sigmoid() * INTENSITY_SCALE - &y).square();
    (&w * sq).sum(Kind::Float) / w.sum(Kind::Float)
}

/// The intensity a head's output stands for: `5·sigmoid(z)`, on DISFA's 0–5 scale.
pub use ausweep_edge::aus::INTENSITY_SCALE;

/// Mean squared error of `5·sigmoid(logits)` against intensities 0–5 `[N, K]`.
pub fn mse_intensity(logits: &Tensor, targets: &Tensor) -> Tensor {
    (logits.sigmoid() * INTENSITY_SCALE - targets.to_kind(Kind::Float))
        .square()
        .mean(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn naive(logits: &[f64], y: &[f64], b: usize, k: usize) -> f64 {
        let mut total = 0.0;
        for r in 0..b {
            let mut s = 0.0;
            for v in 0..k {
                for u in 0..k {
                    if y[r * k + v] == 0.0 && y[r * k + u] == 1.0 {
                        s += (logits[r * k + v] - logits[r * k + u]).exp();
                    }
                }
            }
            total += (1.0 + s).ln();
        }
        total / b as f64
    }

    fn random(b: i64, k: i64, seed: i64) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let logits = Tensor::randn([b, k], (Kind::Double, Device::Cpu)) * 3.0;
        let y = Tensor::rand([b, k], (Kind::Double, Device::Cpu))
            .lt(0.4)
            .to_kind(Kind::Double);
        (logits, y)
    }

    #[test]
    fn lsep_equals_naive_double_loop() {
        for seed in 0..5 {
            let (logits, y) = random(7, 8, seed);
            let got = lsep(&logits, &y).double_value(&[]);
            let l: Vec<f64> = Vec::try_from(logits.flatten(0, -1)).unwrap();
            let t: Vec<f64> = Vec::try_from(y.flatten(0, -1)).unwrap();
            let want = naive(&l, &t, 7, 8);
            assert!((got - want).abs() < 1e-9, "seed {seed}: {got} vs {want}");
        }
    }

    #[test]
    fn lsep_gradient_matches_finite_differences() {
        let (logits, y) = random(4, 5, 11);
        let x = logits.set_requires_grad(true);
        let loss = lsep(&x, &y);
        loss.backward();
        let grad: Vec<f64> = Vec::try_from(x.grad().flatten(0, -1)).unwrap();
        let base: Vec<f64> = Vec::try_from(logits.flatten(0, -1)).unwrap();
        let t: Vec<f64> = Vec::try_from(y.flatten(0, -1)).unwrap();
        let h = 1e-6;
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] += h;
            let mut m = base.clone();
            m[i] -= h;
            let fd = (naive(&p, &t, 4, 5) - naive(&m, &t, 4, 5)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-6,
                "param {i}: fd {fd} vs autograd {}",
                grad[i]
            );
        }
    }

    #[test]
    fn all_negative_and_all_positive_rows_are_finite_with_zero_grad() {
        let logits = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5, 100.0, -100.0]).reshape([2, 3]);
        let y = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).reshape([2, 3]);
        let x = logits.set_requires_grad(true);
        let loss = lsep(&x, &y);
        loss.backward();
        assert_eq!(loss.double_value(&[]), 0.0);
        let g: Vec<f32> = Vec::try_from(x.grad().flatten(0, -1)).unwrap();
        assert!(g.iter().all(|v| *v == 0.0), "{g:?}");
    }

    #[test]
    fn lsep_is_stable_for_huge_margins() {
        let logits = Tensor::from_slice(&[500.0f32, -500.0]).reshape([1, 2]);
        let y = Tensor::from_slice(&[0.0f32, 1.0]).reshape([1, 2]);
        let x = logits.set_requires_grad(true);
        let loss = lsep(&x, &y);
        loss.backward();
        let v = loss.double_value(&[]);
        assert!((v - 1000.0).abs() < 1e-3, "{v}");
        let g: Vec<f32> = Vec::try_from(x.grad().flatten(0, -1)).unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    }

    #[test]
    fn weighted_mse_weighs_active_labels_by_the_square_root_of_their_rarity() {
        // AU a: one frame of four active (ratio 3 → weight √3); AU b: two of four (weight 1).
        let y = Tensor::from_slice(&[3.0f32, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0]).reshape([4, 2]);
        let w: Vec<f32> = Vec::try_from(intensity_weights(&y)).unwrap();
        assert!((w[0] - 3f32.sqrt()).abs() < 1e-6 && w[1] == 1.0, "{w:?}");
        // Logits 0: every prediction is 2.5.
        let z = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
        let got = weighted_mse_intensity(&z, &y, &intensity_weights(&y)).double_value(&[]);
        let r3 = 3f64.sqrt();
        // Squared errors: a: 0.25 (active, w √3), 6.25 ×3; b: 6.25, 0.25 (active), 2.25 (active), 6.25.
        let num = r3 * 0.25 + 3.0 * 6.25 + 6.25 + 0.25 + 2.25 + 6.25;
        let want = num / (r3 + 3.0 + 4.0);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // With unit weights it is the plain MSE.
        let ones = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let plain = mse_intensity(&z, &y).double_value(&[]);
        let unit = weighted_mse_intensity(&z, &y, &ones).double_value(&[]);
        assert!((plain - unit).abs() < 1e-9, "{plain} vs {unit}");
    }

    #[test]
    fn inverse_frequency_weights_count_negatives_over_positives() {
        let y = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]).reshape([4, 2]);
        let w: Vec<f32> = Vec::try_from(inverse_frequency_weights(&y)).unwrap();
        assert_eq!(w, vec![1.0, 1.0]);
        let y = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).reshape([4, 2]);
        let w: Vec<f32> = Vec::try_from(inverse_frequency_weights(&y)).unwrap();
        assert_eq!(w, vec![3.0, 1.0]);
    }
}
