//! Frame images: decode, center-square crop and resize to CHW uint8, and the reverse for writing.

use crate::error::{DataError, Result};
use image::imageops::FilterType;
use image::RgbImage;
use std::path::Path;

/// Decodes `path`, crops the center square, resizes it to `size` (Triangle filter) and returns CHW RGB bytes.
pub fn load_chw(path: &Path, size: u32) -> Result<Vec<u8>> {
    let img = image::open(path).map_err(|e| match e {
        image::ImageError::IoError(io) => DataError::io(path, io),
        other => DataError::Decode {
            path: path.to_path_buf(),
            msg: other.to_string(),
        },
    })?;
    Ok(rgb_to_chw(&square_resize(img.to_rgb8(), size)))
}

/// Crops the center square of `img` and resizes it to `size × size` (unchanged if already that size).
pub fn square_resize(img: RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let cropped = if w == h {
        img
    } else {
        image::imageops::crop_imm(&img, (w - side) / 2, (h - side) / 2, side, side).to_image()
    };
    if side == size {
        cropped
    } else {
        image::imageops::resize(&cropped, size, size, FilterType::Triangle)
    }
}

/// Interleaved (HWC) RGB image to planar CHW bytes.
pub fn rgb_to_chw(img: &RgbImage) -> Vec<u8> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        out[i] = px[0];
        out[plane + i] = px[1];
        out[2 * plane + i] = px[2];
    }
    out
}

/// Planar CHW bytes of a `size × size` frame to an RGB image; `None` if the length is wrong.
pub fn chw_to_rgb(chw: &[u8], size: u32) -> Option<RgbImage> {
    let plane = (size * size) as usize;
    if chw.len() != 3 * plane {
        return None;
    }
    let mut raw = Vec::with_capacity(3 * plane);
    for i in 0..plane {
        raw.extend_from_slice(&[chw[i], chw[plane + i], chw[2 * plane + i]]);
    }
    RgbImage::from_raw(size, size, raw)
}

/// Writes a CHW frame as PNG at `path`.
pub fn save_chw_png(chw: &[u8], size: u32, path: &Path) -> Result<()> {
    let img = chw_to_rgb(chw, size).ok_or_else(|| DataError::Encode {
        path: path.to_path_buf(),
        msg: format!("{} bytes is not a {size}x{size} RGB frame", chw.len()),
    })?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| DataError::Encode {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_round_trip_and_layout() {
        let img = RgbImage::from_fn(4, 4, |x, y| image::Rgb([x as u8, y as u8, 200]));
        let chw = rgb_to_chw(&img);
        // Pixel (x=1, y=2) is index 2*4+1 = 9 in each plane.
        assert_eq!(chw[9], 1);
        assert_eq!(chw[16 + 9], 2);
        assert_eq!(chw[32 + 9], 200);
        assert_eq!(chw_to_rgb(&chw, 4), Some(img));
        assert_eq!(chw_to_rgb(&chw, 5), None);
    }

    #[test]
    fn crop_is_centered_and_resized() {
        // 6x4 image: left and right columns red, the center 4x4 green.
        let img = RgbImage::from_fn(6, 4, |x, _| {
            if x == 0 || x == 5 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 255, 0])
            }
        });
        let out = square_resize(img, 2);
        assert_eq!(out.dimensions(), (2, 2));
        assert!(out.pixels().all(|p| p[0] == 0 && p[1] == 255));
    }

    #[test]
    fn decode_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let err = load_chw(&bad, 8).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("bad.png"));
        let missing = dir.path().join("missing.png");
        assert!(matches!(load_chw(&missing, 8), Err(DataError::Io { .. })));
    }
}
