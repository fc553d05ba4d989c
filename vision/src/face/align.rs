//! Eye-aligned face crops: rotate so the eyes are level, scale so their distance is a fixed
//! fraction of the crop, and place their midpoint where the training frames have it.

use super::FaceError;
pub use ausweep_edge::crop::{AlignSpec, FaceCrop};
use tch::{Kind, Tensor};

/// Aligned crops `[N,3,size,size]` (float, the source's 0–255 range) of `crops[i]` in image
/// `image_of[i]` of `imgs` (`[B,3,H,W]`) on `spec`; bilinear sampling at up to 4× and area
/// averaging down, so large faces are not aliased.
pub fn extract(
    spec: &AlignSpec,
    imgs: &Tensor,
    crops: &[FaceCrop],
    image_of: &[usize],
    size: i64,
) -> Result<Tensor, FaceError> {
    let s = imgs.size();
    if s.len() != 4 || crops.len() != image_of.len() || size < 1 {
        return Err(FaceError::Input(format!(
            "align: images {s:?}, {} crops, {} image indices, size {size}",
            crops.len(),
            image_of.len()
        )));
    }
    let (h, w) = (s[2] as f64, s[3] as f64);
    if crops.is_empty() {
        return Ok(Tensor::zeros(
            [0, 3, size, size],
            (Kind::Float, imgs.device()),
        ));
    }
    let mut theta = Vec::with_capacity(crops.len() * 6);
    let mut scales = Vec::with_capacity(crops.len());
    for c in crops {
        let (th, scale) = spec.affine(c, w, h, size as u32);
        theta.extend_from_slice(&th);
        scales.push(scale);
    }
    Ok(sample_affine(imgs, &theta, image_of, size, &scales))
}

/// Samples `[N,3,size,size]` crops (float) from `imgs` (`[B,3,H,W]`): crop `i` from image
/// `image_of[i]` through the normalised affine map `theta[6i..6i+6]` (output → input,
/// `align_corners = false`), bilinear with border padding at `ceil(scales[i])` (1–4) times the
/// crop's resolution and area-averaged down, `scales[i]` being its source pixels per crop pixel,
/// so large faces are not aliased. Each crop is sampled at its own rate: a crop never depends on
/// the other faces of its batch (and equals the ONNX predictor's, `ausweep_edge::pixels`).
pub fn sample_affine(
    imgs: &Tensor,
    theta: &[f32],
    image_of: &[usize],
    size: i64,
    scales: &[f64],
) -> Tensor {
    let n = image_of.len();
    let rate = |i: usize| scales.get(i).map_or(1.0, |l| l.ceil().clamp(1.0, 4.0)) as i64;
    let mut out: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
    for k in 1..=4 {
        let these: Vec<usize> = (0..n).filter(|&i| rate(i) == k).collect();
        if these.is_empty() {
            continue;
        }
        let th: Vec<f32> = these
            .iter()
            .flat_map(|&i| theta[6 * i..6 * i + 6].iter().copied())
            .collect();
        let from: Vec<usize> = these.iter().map(|&i| image_of[i]).collect();
        let t = sample_at(imgs, &th, &from, size, k);
        for (j, &i) in these.iter().enumerate() {
            out[i] = Some(t.get(j as i64));
        }
    }
    let out: Vec<Tensor> = out.into_iter().flatten().collect();
    Tensor::stack(&out, 0)
}

/// [`sample_affine`] of crops that share the supersampling rate `k`.
fn sample_at(imgs: &Tensor, theta: &[f32], image_of: &[usize], size: i64, k: i64) -> Tensor {
    let n = image_of.len() as i64;
    let theta = Tensor::from_slice(theta)
        .view([n, 2, 3])
        .to_device(imgs.device());
    let idx: Vec<i64> = image_of.iter().map(|&i| i as i64).collect();
    let src = imgs
        .index_select(0, &Tensor::from_slice(&idx).to_device(imgs.device()))
        .to_kind(Kind::Float);
    let grid = Tensor::affine_grid_generator(&theta, [n, 3, size * k, size * k], false);
    // interpolation 0 = bilinear, padding 1 = border.
    let out = src.grid_sampler(&grid, 0, 1, false);
    if k > 1 {
        out.adaptive_avg_pool2d([size, size])
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::Face;
    use tch::Device;

    fn face(l: [f32; 2], r: [f32; 2]) -> Face {
        Face {
            bbox: [0.0; 4],
            confidence: 1.0,
            landmarks: [l, r, [0.0; 2], [0.0; 2], [0.0; 2]],
        }
    }

    /// A 3×H×W image whose red channel is the column index and green the row index.
    fn ramps(h: i64, w: i64) -> Tensor {
        let x = Tensor::arange(w, (Kind::Float, Device::Cpu))
            .view([1, w])
            .expand([h, w], false);
        let y = Tensor::arange(h, (Kind::Float, Device::Cpu))
            .view([h, 1])
            .expand([h, w], false);
        Tensor::stack(
            &[x, y, Tensor::zeros([h, w], (Kind::Float, Device::Cpu))],
            0,
        )
        .unsqueeze(0)
    }

    #[test]
    fn level_eyes_land_at_the_spec_position_and_spacing() {
        let spec = AlignSpec::default();
        let f = face([80.0, 60.0], [120.0, 60.0]);
        let c = spec.crop_of(&f);
        assert!((c.side - 40.0 / 0.258).abs() < 1e-6 && c.angle.abs() < 1e-12);
        let size = 64;
        let out = extract(&spec, &ramps(240, 200), &[c], &[0], size).unwrap();
        assert_eq!(out.size(), vec![1, 3, size, size]);
        // Column u of the crop shows source column centre.x + ((u + 0.5) / size − 0.5) · side.
        for u in [8i64, 32, 50] {
            let want = 100.0 + ((u as f64 + 0.5) / size as f64 - 0.5) * c.side;
            let got = out.double_value(&[0, 0, 20, u]);
            assert!((got - want).abs() < 0.6, "column {u}: {got} vs {want}");
        }
        // The eye row (0.385 of the side) shows source row 60.
        let v = (0.385 * size as f64 - 0.5).round() as i64;
        let got = out.double_value(&[0, 1, v, 32]);
        assert!((got - 60.0).abs() < c.side / size as f64, "{got}");
    }

    #[test]
    fn a_tilted_face_is_rotated_upright() {
        let spec = AlignSpec::default();
        // Eyes on a vertical line (head turned 90°): the crop's x axis runs down the image.
        let c = spec.crop_of(&face([100.0, 80.0], [100.0, 120.0]));
        assert!((c.angle - std::f64::consts::FRAC_PI_2).abs() < 1e-9);
        let out = extract(&spec, &ramps(240, 200), &[c], &[0], 32).unwrap();
        let left = out.double_value(&[0, 1, 12, 4]);
        let right = out.double_value(&[0, 1, 12, 28]);
        assert!(right - left > 100.0, "rows {left} → {right}");
        let column_drift =
            (out.double_value(&[0, 0, 12, 28]) - out.double_value(&[0, 0, 12, 4])).abs();
        assert!(column_drift < 1.0, "{column_drift}");
    }

    #[test]
    fn mismatched_indices_are_an_error_not_a_panic() {
        let spec = AlignSpec::default();
        let c = spec.crop_of(&face([1.0, 1.0], [5.0, 1.0]));
        let e = extract(&spec, &ramps(8, 8), &[c], &[], 16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 crops, 0 image indices"), "{e}");
    }
}
