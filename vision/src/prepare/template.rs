//! Crop templates and the similarity transform that puts a face's landmarks on them.

use crate::face::FaceError;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Where landmarks go in an aligned crop (fractions of its side, `(0, 0)` the top-left corner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// The two eye centres, 0.258 of the side apart, their midpoint at (0.5, 0.385): the geometry
    /// of ausweep's synthetic frames and `ausweep predict`'s default crop.
    #[default]
    Eyes,
    /// All five landmarks, least squares: ArcFace's 112-px template scaled by 0.825 about the
    /// centre and raised by 0.09, so the eyes land near the `eyes` template's and the forehead and
    /// chin stay in the crop.
    Five,
}

/// ArcFace's five-point template on a 112-px crop.
const ARCFACE_112: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

impl Template {
    /// The template's name in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Template::Eyes => "eyes",
            Template::Five => "five",
        }
    }

    /// The landmarks used (indices into MTCNN's five) and their positions as side fractions.
    pub fn points(self) -> Vec<(usize, [f64; 2])> {
        match self {
            Template::Eyes => vec![(0, [0.5 - 0.129, 0.385]), (1, [0.5 + 0.129, 0.385])],
            Template::Five => ARCFACE_112
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let f = |v: f64| 0.5 + (v / 112.0 - 0.5) * 0.825;
                    (i, [f(p[0]), f(p[1]) - 0.09])
                })
                .collect(),
        }
    }

    /// The similarity from source pixels to `size`-pixel crop pixels for `landmarks`
    /// (pixel-index coordinates both sides: a pixel's centre is at its integer index).
    pub fn fit(self, landmarks: &[[f32; 2]; 5], size: u32) -> Similarity {
        let s = f64::from(size);
        let (src, dst): (Vec<[f64; 2]>, Vec<[f64; 2]>) = self
            .points()
            .into_iter()
            .map(|(i, p)| {
                (
                    [f64::from(landmarks[i][0]), f64::from(landmarks[i][1])],
                    [p[0] * s - 0.5, p[1] * s - 0.5],
                )
            })
            .unzip();
        Similarity::fit(&src, &dst)
    }
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "eyes" => Ok(Template::Eyes),
            "five" => Ok(Template::Five),
            other => Err(format!("crop template `{other}`: use eyes or five")),
        }
    }
}

/// `q = [a −b; b a] · p + t`: rotation, uniform scale and translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Scale × cos(angle).
    pub a: f64,
    /// Scale × sin(angle).
    pub b: f64,
    /// Translation.
    pub t: [f64; 2],
}

impl Similarity {
    /// The least-squares similarity taking `src[i]` to `dst[i]` (exact for two distinct points).
    pub fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Similarity {
        let n = src.len().min(dst.len()).max(1) as f64;
        let mean = |v: &[[f64; 2]]| {
            let (x, y) = v.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
            [x / n, y / n]
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
        for (p, q) in src.iter().zip(dst) {
            let (sx, sy) = (p[0] - ms[0], p[1] - ms[1]);
            let (dx, dy) = (q[0] - md[0], q[1] - md[1]);
            num_a += sx * dx + sy * dy;
            num_b += sx * dy - sy * dx;
            den += sx * sx + sy * sy;
        }
        let den = den.max(1e-12);
        let (a, b) = (num_a / den, num_b / den);
        Similarity {
            a,
            b,
            t: [
                md[0] - (a * ms[0] - b * ms[1]),
                md[1] - (b * ms[0] + a * ms[1]),
            ],
        }
    }

    /// Where `p` goes.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.t[0],
            self.b * p[0] + self.a * p[1] + self.t[1],
        ]
    }

    /// The inverse transform.
    pub fn inverse(&self) -> Similarity {
        let d = (self.a * self.a + self.b * self.b).max(1e-24);
        let (a, b) = (self.a / d, -self.b / d);
        Similarity {
            a,
            b,
            t: [
                -(a * self.t[0] - b * self.t[1]),
                -(b * self.t[0] + a * self.t[1]),
            ],
        }
    }

    /// Scale factor (crop pixels per source pixel).
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }
}

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
    let (h, w, sz) = (s[2] as f64, s[3] as f64, size as f64);
    if to_crop.is_empty() {
        return Ok(Tensor::zeros(
            [0, 3, size, size],
            (Kind::Float, imgs.device()),
        ));
    }
    // Output normalised x_o ↔ crop pixel u = (S·x_o + S − 1) / 2; source pixel x = M·u + t;
    // source normalised x_n = (2x + 1) / W − 1 (align_corners = false).
    let mut theta = Vec::with_capacity(to_crop.len() * 6);
    let mut largest = 1.0f64;
    for m in to_crop {
        let inv = m.inverse();
        let (p, q) = (inv.a, -inv.b);
        let (r, u) = (inv.b, inv.a);
        let half = (sz - 1.0) / 2.0;
        theta.extend_from_slice(&[
            (p * sz / w) as f32,
            (q * sz / w) as f32,
            ((2.0 * (p * half + q * half + inv.t[0]) + 1.0) / w - 1.0) as f32,
            (r * sz / h) as f32,
            (u * sz / h) as f32,
            ((2.0 * (r * half + u * half + inv.t[1]) + 1.0) / h - 1.0) as f32,
        ]);
        largest = largest.max(inv.scale());
    }
    Ok(crate::face::align::sample_affine(
        imgs, &theta, image_of, size, largest,
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
