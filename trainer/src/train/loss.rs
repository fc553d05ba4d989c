//! Losses on logits: LSEP (Li, Song, Luo 2017), BCE, weighted BCE and LSEP + weighted BCE.

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

/// The job's loss on a batch; `pos_weight` is used by the weighted variants.
pub fn compute(kind: LossKind, logits: &Tensor, targets: &Tensor, pos_weight: &Tensor) -> Tensor {
    match kind {
        LossKind::Lsep => lsep(logits, targets),
        LossKind::Bce => bce(logits, targets, None),
        LossKind::WeightedBce => bce(logits, targets, Some(pos_weight)),
        LossKind::LsepBce => lsep(logits, targets) + bce(logits, targets, Some(pos_weight)),
        LossKind::Mse => mse_intensity(logits, targets),
    }
}

/// The intensity a head's output stands for: `5·sigmoid(z)`, on DISFA's 0–5 scale.
pub const INTENSITY_SCALE: f64 = 5.0;

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
    fn inverse_frequency_weights_count_negatives_over_positives() {
        let y = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]).reshape([4, 2]);
        let w: Vec<f32> = Vec::try_from(inverse_frequency_weights(&y)).unwrap();
        assert_eq!(w, vec![1.0, 1.0]);
        let y = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).reshape([4, 2]);
        let w: Vec<f32> = Vec::try_from(inverse_frequency_weights(&y)).unwrap();
        assert_eq!(w, vec![3.0, 1.0]);
    }
}
