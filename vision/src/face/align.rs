//! Eye-aligned face crops: rotate so the eyes are level, scale so their distance is a fixed
//! fraction of the crop, and place their midpoint where the training frames have it.

use super::detect::Face;
use super::FaceError;
use tch::{Kind, Tensor};

/// Where the eyes sit in an aligned crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignSpec {
    /// Distance between the eye centres as a fraction of the crop side.
    pub eye_distance: f64,
    /// Height of the eye midpoint as a fraction of the crop side (from the top).
    pub eye_y: f64,
}

impl Default for AlignSpec {
    /// The geometry of ausweep's synthetic DISFA frames: eyes 0.258 of the side apart (2 × 0.1075
    /// face units × scale 1.2) with their midpoint 0.385 from the top (0.46 − 0.0625 × 1.2).
    fn default() -> Self {
        AlignSpec {
            eye_distance: 0.258,
            eye_y: 0.385,
        }
    }
}

/// An aligned crop's placement in its source image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceCrop {
    /// Eye midpoint in source pixels.
    pub centre: [f64; 2],
    /// Crop side in source pixels.
    pub side: f64,
    /// Rotation of the eye line, radians.
    pub angle: f64,
}

impl AlignSpec {
    /// The crop of `face`: from its two eye landmarks.
    pub fn crop_of(&self, face: &Face) -> FaceCrop {
        let [l, r] = [face.landmarks[0], face.landmarks[1]];
        let (dx, dy) = (f64::from(r[0] - l[0]), f64::from(r[1] - l[1]));
        let dist = dx.hypot(dy).max(1.0);
        FaceCrop {
            centre: [f64::from(l[0] + r[0]) / 2.0, f64::from(l[1] + r[1]) / 2.0],
            side: dist / self.eye_distance,
            angle: dy.atan2(dx),
        }
    }

    /// Aligned crops `[N,3,size,size]` (float, the source's 0–255 range) of `crops[i]` in image
    /// `image_of[i]` of `imgs` (`[B,3,H,W]`); bilinear sampling at up to 4× and area averaging
    /// down, so large faces are not aliased.
    pub fn extract(
        &self,
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
        let mut largest = 1.0f64;
        for c in crops {
            let (sin, cos) = c.angle.sin_cos();
            let l = c.side;
            let down = (0.5 - self.eye_y) * l;
            theta.extend_from_slice(&[
                (l / w * cos) as f32,
                (-l / w * sin) as f32,
                ((2.0 / w) * (c.centre[0] - sin * down) + 1.0 / w - 1.0) as f32,
                (l / h * sin) as f32,
                (l / h * cos) as f32,
                ((2.0 / h) * (c.centre[1] + cos * down) + 1.0 / h - 1.0) as f32,
            ]);
            largest = largest.max(l / size as f64);
        }
        Ok(sample_affine(imgs, &theta, image_of, size, largest))
    }
}

/// Samples `[N,3,size,size]` crops (float) from `imgs` (`[B,3,H,W]`): crop `i` from image
/// `image_of[i]` through the normalised affine map `theta[6i..6i+6]` (output → input,
/// `align_corners = false`), bilinear with border padding at `ceil(largest)` (1–4) times the
/// crop's resolution and area-averaged down, `largest` being the most source pixels per crop
/// pixel, so large faces are not aliased.
pub fn sample_affine(
    imgs: &Tensor,
    theta: &[f32],
    image_of: &[usize],
    size: i64,
    largest: f64,
) -> Tensor {
    let n = image_of.len() as i64;
    let k = largest.ceil().clamp(1.0, 4.0) as i64;
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
        let out = spec.extract(&ramps(240, 200), &[c], &[0], size).unwrap();
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
        let out = spec.extract(&ramps(240, 200), &[c], &[0], 32).unwrap();
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
        assert!(spec.extract(&ramps(8, 8), &[c], &[], 16).is_err());
    }
}
