//! Crop templates and the similarity transform that puts a face's landmarks on them.

use crate::face::FaceError;
pub use ausweep_edge::crop::{Similarity, Template};
use tch::{Kind, Tensor};

/// Warps crops `[N,3,size,size]` (float, the source's range) out of `imgs` (`[B,3,H,W]`):
/// crop `i` from image `image_of[i]` through `to_crop[i]` (source → crop pixels), bilinear at up
/// to 4× the crop's resolution and area-averaged down, so large faces are not aliased.
pub fn warp(
    imgs: &Tensor,
    to_crop: &[Similarity],
    image_of: &[usize],
    size: i64,
) -> Result<Tensor, FaceError> {
    let s = imgs.size();
    if s.len() != 4 || to_crop.len() != image_of.len() || size < 1 {
        return Err(FaceError::Input(format!(
            "warp: images {s:?}, {} transforms, {} image indices, size {size}",
            to_crop.len(),
            image_of.len()
        )));
    }
    if let Some(&i) = image_of.iter().find(|&&i| i as i64 >= s[0]) {
        return Err(FaceError::Input(format!(
            "warp: image index {i} of a batch of {}",
            s[0]
        )));
    }
    let (h, w) = (s[2] as f64, s[3] as f64);
    if to_crop.is_empty() {
        return Ok(Tensor::zeros(
            [0, 3, size, size],
            (Kind::Float, imgs.device()),
        ));
    }
    let mut theta = Vec::with_capacity(to_crop.len() * 6);
    let mut scales = Vec::with_capacity(to_crop.len());
    for m in to_crop {
        let (th, scale) = m.affine(w, h, size as u32);
        theta.extend_from_slice(&th);
        scales.push(scale);
    }
    Ok(crate::face::align::sample_affine(
        imgs, &theta, image_of, size, &scales,
    ))
}

/// One crop `[1,3,size,size]` (float) out of `img` (`[3,H,W]`, any kind) through `to_crop`,
/// reading only the region the crop covers (converted to float alone), so a large frame is never
/// copied whole.
pub fn warp_region(img: &Tensor, to_crop: &Similarity, size: i64) -> Result<Tensor, FaceError> {
    let s = img.size();
    if s.len() != 3 || size < 1 {
        return Err(FaceError::Input(format!(
            "warp_region: image {s:?}, size {size}"
        )));
    }
    let (h, w) = (s[1], s[2]);
    let inv = to_crop.inverse();
    let edge = size as f64 - 0.5;
    let corners = [[-0.5, -0.5], [edge, -0.5], [-0.5, edge], [edge, edge]].map(|c| inv.apply(c));
    let lo = |k: usize| corners.iter().map(|c| c[k]).fold(f64::MAX, f64::min);
    let hi = |k: usize| corners.iter().map(|c| c[k]).fold(f64::MIN, f64::max);
    let clamp = |v: f64, n: i64| (v as i64).clamp(0, n - 1);
    let (x0, y0) = (clamp(lo(0).floor() - 2.0, w), clamp(lo(1).floor() - 2.0, h));
    let (x1, y1) = (clamp(hi(0).ceil() + 2.0, w), clamp(hi(1).ceil() + 2.0, h));
    let roi = img
        .narrow(1, y0, y1 - y0 + 1)
        .narrow(2, x0, x1 - x0 + 1)
        .to_kind(Kind::Float)
        .unsqueeze(0);
    // Source pixels are now relative to (x0, y0): to_crop'(p) = to_crop(p + (x0, y0)).
    let shifted = Similarity {
        t: [
            to_crop.t[0] + to_crop.a * x0 as f64 - to_crop.b * y0 as f64,
            to_crop.t[1] + to_crop.b * x0 as f64 + to_crop.a * y0 as f64,
        ],
        ..*to_crop
    };
    warp(&roi, &[shifted], &[0], size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn fit_is_exact_for_a_similarity_and_inverts() {
        let truth = Similarity {
            a: 0.4 * 0.3f64.cos(),
            b: 0.4 * 0.3f64.sin(),
            t: [12.0, -7.0],
        };
        let src = [[10.0, 20.0], [50.0, 25.0], [30.0, 60.0], [5.0, 5.0]];
        let dst: Vec<[f64; 2]> = src.iter().map(|&p| truth.apply(p)).collect();
        let m = Similarity::fit(&src, &dst);
        for (x, y) in [
            (m.a, truth.a),
            (m.b, truth.b),
            (m.t[0], truth.t[0]),
            (m.t[1], truth.t[1]),
        ] {
            assert!((x - y).abs() < 1e-9, "{m:?} vs {truth:?}");
        }
        let back = m.inverse().apply(m.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-9 && (back[1] - 4.0).abs() < 1e-9);
    }

    #[test]
    fn templates_put_the_eyes_where_they_say() {
        let marks = [
            [300.0, 200.0],
            [370.0, 210.0],
            [335.0, 250.0],
            [310.0, 280.0],
            [360.0, 285.0],
        ];
        let m = Template::Eyes.fit(&marks, 112);
        let l = m.apply([300.0, 200.0]);
        let r = m.apply([370.0, 210.0]);
        assert!((l[0] - (0.371 * 112.0 - 0.5)).abs() < 1e-9, "{l:?}");
        assert!((r[1] - (0.385 * 112.0 - 0.5)).abs() < 1e-9, "{r:?}");
        let five = Template::Five.points();
        assert_eq!(five.len(), 5);
        let eye_mid_y = (five[0].1[1] + five[1].1[1]) / 2.0;
        assert!((eye_mid_y - 0.385).abs() < 0.02, "{eye_mid_y}");
        assert_eq!("five".parse::<Template>(), Ok(Template::Five));
        assert!("arc".parse::<Template>().is_err());
    }

    /// An image whose red channel is the column index and green the row index.
    fn ramps(h: i64, w: i64) -> Tensor {
        let o = (Kind::Float, Device::Cpu);
        let x = Tensor::arange(w, o).view([1, w]).expand([h, w], false);
        let y = Tensor::arange(h, o).view([h, 1]).expand([h, w], false);
        Tensor::stack(&[x, y, Tensor::zeros([h, w], o)], 0).unsqueeze(0)
    }

    #[test]
    fn warp_samples_the_source_pixel_each_crop_pixel_maps_to() {
        // Crop → source: rotated, 3× larger (so supersampled), shifted; all inside the image.
        let to_source = Similarity {
            a: 3.0 * 0.2f64.cos(),
            b: 3.0 * 0.2f64.sin(),
            t: [60.0, 40.0],
        };
        let m = to_source.inverse();
        let out = warp(&ramps(300, 400), &[m], &[0], 48).unwrap();
        assert_eq!(out.size(), vec![1, 3, 48, 48]);
        let inv = m.inverse();
        for (u, v) in [(5i64, 7i64), (24, 24), (40, 30)] {
            let want = inv.apply([u as f64, v as f64]);
            let got = [
                out.double_value(&[0, 0, v, u]),
                out.double_value(&[0, 1, v, u]),
            ];
            assert!(
                (got[0] - want[0]).abs() < 0.05 && (got[1] - want[1]).abs() < 0.05,
                "crop ({u},{v}): got {got:?}, want {want:?}"
            );
        }
        assert!(warp(&ramps(10, 10), &[m], &[1], 8).is_err());
        // From the region alone: the same crop.
        let region = warp_region(&ramps(300, 400).get(0), &m, 48).unwrap();
        let diff = (region - &out).abs().max().double_value(&[]);
        assert!(diff < 1e-3, "region crop differs by {diff}");
    }
}
