//! Weight-only int8: each output channel of a convolution or dense kernel stored as int8 values
//! and one f32 scale (symmetric, zero point 0), turned back into f32 by `DequantizeLinear` inside
//! the graph. Activations stay f32, so the file is about 4× smaller and computes with exactly the
//! weights [`round_trip`] gives, which is how a trainer scores the int8 file without a runtime.

/// A kernel's int8 values (row-major, as the f32 kernel) and one scale per output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Weight {
    /// The values, `round(w / scale)` in [-127, 127].
    pub values: Vec<i8>,
    /// One scale per output channel (the first dimension): `max |w| / 127`, 1 for a zero channel.
    pub scales: Vec<f32>,
}

/// Quantizes a kernel of `channels` output channels (its first dimension) stored row-major.
pub fn quantize(data: &[f32], channels: usize) -> Int8Weight {
    let per = data.len() / channels.max(1);
    let mut values = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(channels);
    for row in data.chunks(per.max(1)) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        // `as i8` saturates and maps NaN to 0: no value leaves [-127, 127].
        values.extend(
            row.iter()
                .map(|v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    Int8Weight { values, scales }
}

/// The f32 values `DequantizeLinear` computes from `q`: `value · scale` of its channel.
pub fn dequantize(q: &Int8Weight) -> Vec<f32> {
    let per = q.values.len() / q.scales.len().max(1);
    q.values
        .chunks(per.max(1))
        .zip(&q.scales)
        .flat_map(|(row, s)| row.iter().map(move |v| f32::from(*v) * s))
        .collect()
}

/// The weights an int8 file computes with: [`dequantize`] of [`quantize`].
pub fn round_trip(data: &[f32], channels: usize) -> Vec<f32> {
    dequantize(&quantize(data, channels))
}

/// Whether the graph stores a weight of this shape as int8: convolution kernels (4-d) and dense
/// matrices (2-d); biases, normalisations and slopes stay f32.
pub fn is_kernel(dims: &[i64]) -> bool {
    matches!(dims.len(), 2 | 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_keeps_its_own_scale_and_loses_at_most_half_a_step() {
        let w = [0.5f32, -1.0, 0.25, 0.001, 0.002, -0.003, 0.0, 0.0, 0.0];
        let q = quantize(&w, 3);
        assert_eq!(q.scales, [1.0 / 127.0, 0.003 / 127.0, 1.0]);
        assert_eq!(q.values[..3], [64, -127, 32]);
        assert_eq!(q.values[6..], [0, 0, 0]);
        let back = dequantize(&q);
        for (c, (a, b)) in w.iter().zip(&back).enumerate() {
            let step = q.scales[c / 3];
            assert!(
                (a - b).abs() <= step / 2.0 + 1e-9,
                "{a} → {b} (step {step})"
            );
        }
        // The small channel is not crushed to zero by the large one.
        assert!(back[3] != 0.0 && back[5] < 0.0, "{back:?}");
        assert_eq!(round_trip(&w, 3), back);
    }

    #[test]
    fn non_finite_weights_do_not_panic_or_escape_the_int8_range() {
        let q = quantize(&[f32::NAN, f32::INFINITY, -1.0, 2.0], 2);
        assert_eq!(q.scales[0], 1.0);
        assert_eq!(q.values, [0, 127, -64, 127]);
    }

    #[test]
    fn kernels_are_the_two_and_four_dimensional_weights() {
        assert!(is_kernel(&[8, 3, 3, 3]) && is_kernel(&[8, 1024]));
        assert!(!is_kernel(&[8]) && !is_kernel(&[8, 1, 1]));
    }
}
