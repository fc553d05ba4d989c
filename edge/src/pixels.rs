//! Images as float planes and the two resamplings the predictor needs, as libtorch computes
//! them: `adaptive_avg_pool2d` (the MTCNN pyramid and box crops) and `grid_sample` through an
//! affine map (bilinear, border padding, `align_corners = false`; the aligned face crop).

use crate::EdgeError;

/// A `[3,H,W]` float image (RGB planes, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Planes {
    /// Height, pixels.
    pub h: usize,
    /// Width, pixels.
    pub w: usize,
    /// `3·h·w` values.
    pub data: Vec<f32>,
}

impl Planes {
    /// An interleaved RGB buffer (`h·w·3` bytes) as planes.
    pub fn from_rgb(rgb: &[u8], w: usize, h: usize) -> Result<Planes, EdgeError> {
        if rgb.len() != w * h * 3 || w == 0 || h == 0 {
            return Err(EdgeError::Input(format!(
                "an RGB image of {w}×{h} needs {} bytes, got {}",
                w * h * 3,
                rgb.len()
            )));
        }
        let plane = w * h;
        let mut data = vec![0.0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            data[i] = f32::from(px[0]);
            data[plane + i] = f32::from(px[1]);
            data[2 * plane + i] = f32::from(px[2]);
        }
        Ok(Planes { h, w, data })
    }

    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.h + y) * self.w + x]
    }
}

/// libtorch's adaptive window of output cell `i` of `out` over `len` inputs: `[start, end)`.
fn window(i: usize, out: usize, len: usize) -> (usize, usize) {
    (i * len / out, ((i + 1) * len).div_ceil(out))
}

/// `adaptive_avg_pool2d` of the window `(x, y, w, h)` of `img` to `oh`×`ow`, appended to `out`
/// (`[3,oh,ow]`). Separable: columns first, then rows (each output is the mean of its
/// rectangle, as libtorch's).
pub fn pool_into(
    img: &Planes,
    (x0, y0, cw, ch): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    out: &mut Vec<f32>,
) {
    let cols: Vec<(usize, usize)> = (0..ow).map(|j| window(j, ow, cw)).collect();
    let rows: Vec<(usize, usize)> = (0..oh).map(|i| window(i, oh, ch)).collect();
    let mut tmp = vec![0.0f32; ch * ow];
    for c in 0..3 {
        for y in 0..ch {
            let row = &img.data[(c * img.h + y0 + y) * img.w + x0..][..cw];
            for (j, &(a, b)) in cols.iter().enumerate() {
                let s: f32 = row[a..b].iter().sum();
                tmp[y * ow + j] = s / (b - a) as f32;
            }
        }
        for &(a, b) in &rows {
            for j in 0..ow {
                let s: f32 = (a..b).map(|y| tmp[y * ow + j]).sum();
                out.push(s / (b - a) as f32);
            }
        }
    }
}

/// The face crop `[3,size,size]` of `img` through the normalised affine map `theta` (output →
/// input), bilinear with border padding at `ceil(largest)` (1–4) times the crop's resolution and
/// area-averaged down, appended to `out`: libtorch's `affine_grid` + `grid_sample` +
/// `adaptive_avg_pool2d`, as the libtorch predictor crops.
pub fn sample_affine_into(
    img: &Planes,
    theta: &[f32; 6],
    size: usize,
    largest: f64,
    out: &mut Vec<f32>,
) {
    let k = largest.ceil().clamp(1.0, 4.0) as usize;
    let s = size * k;
    let (w, h) = (img.w as f32, img.h as f32);
    let mut big = vec![0.0f32; 3 * s * s];
    for i in 0..s {
        let yo = (2 * i + 1) as f32 / s as f32 - 1.0;
        for j in 0..s {
            let xo = (2 * j + 1) as f32 / s as f32 - 1.0;
            let gx = theta[0] * xo + theta[1] * yo + theta[2];
            let gy = theta[3] * xo + theta[4] * yo + theta[5];
            // Unnormalise (align_corners = false), then clip to the border.
            let ix = (((gx + 1.0) * w - 1.0) / 2.0).clamp(0.0, w - 1.0);
            let iy = (((gy + 1.0) * h - 1.0) / 2.0).clamp(0.0, h - 1.0);
            let (x0, y0) = (ix.floor(), iy.floor());
            let (fx, fy) = (ix - x0, iy - y0);
            let (x0, y0) = (x0 as usize, y0 as usize);
            let x1 = (x0 + 1).min(img.w - 1);
            let y1 = (y0 + 1).min(img.h - 1);
            for c in 0..3 {
                let v = img.at(c, y0, x0) * (1.0 - fx) * (1.0 - fy)
                    + img.at(c, y0, x1) * fx * (1.0 - fy)
                    + img.at(c, y1, x0) * (1.0 - fx) * fy
                    + img.at(c, y1, x1) * fx * fy;
                big[(c * s + i) * s + j] = v;
            }
        }
    }
    if k == 1 {
        out.extend_from_slice(&big);
        return;
    }
    let planes = Planes {
        h: s,
        w: s,
        data: big,
    };
    pool_into(&planes, (0, 0, s, s), (size, size), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Planes {
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&[x as u8, y as u8, 7]);
            }
        }
        Planes::from_rgb(&rgb, w, h).unwrap()
    }

    #[test]
    fn pooling_averages_libtorchs_overlapping_windows() {
        // 5 columns to 2: windows [0,3) and [2,5) overlap at column 2, as in libtorch.
        let img = ramp(5, 1);
        let mut out = Vec::new();
        pool_into(&img, (0, 0, 5, 1), (1, 2), &mut out);
        assert_eq!(&out[..2], &[1.0, 3.0]);
        assert_eq!(&out[4..], &[7.0, 7.0]);
    }

    #[test]
    fn the_identity_map_samples_every_pixel_back() {
        let img = ramp(6, 6);
        let mut out = Vec::new();
        sample_affine_into(&img, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 6, 1.0, &mut out);
        assert_eq!(out.len(), img.data.len());
        let worst = out
            .iter()
            .zip(&img.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn a_short_buffer_is_refused_by_size() {
        let e = Planes::from_rgb(&[0; 10], 2, 2).unwrap_err().to_string();
        assert!(e.contains("needs 12 bytes, got 10"), "{e}");
    }
}
