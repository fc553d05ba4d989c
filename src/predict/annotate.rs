//! `--annotate DIR`: the frame with each face's box, landmarks and a panel of AU bars (bar
//! height = probability, green when present, grey when not, the threshold as a tick; AU
//! numbers under the bars in a built-in 3×5 digit font).

use super::output::FaceOut;
use image::{Rgb, RgbImage};

const GREEN: Rgb<u8> = Rgb([40, 200, 60]);
const GREY: Rgb<u8> = Rgb([150, 150, 150]);
const BOX: Rgb<u8> = Rgb([255, 200, 0]);
const PANEL: Rgb<u8> = Rgb([20, 20, 20]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const RED: Rgb<u8> = Rgb([230, 40, 40]);

/// 3×5 glyphs of the digits, rows top to bottom, 3 bits each (MSB left).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    for y in y0..y1 {
        for x in x0..x1 {
            put(img, x, y, c);
        }
    }
}

fn rect(img: &mut RgbImage, b: [f32; 4], t: i64, c: Rgb<u8>) {
    let [x0, y0, x1, y1] = b.map(|v| v.round() as i64);
    fill(img, x0, y0, x1, y0 + t, c);
    fill(img, x0, y1 - t, x1, y1, c);
    fill(img, x0, y0, x0 + t, y1, c);
    fill(img, x1 - t, y0, x1, y1, c);
}

fn number(img: &mut RgbImage, n: u32, x: i64, y: i64, px: i64, c: Rgb<u8>) {
    for (k, ch) in n.to_string().bytes().enumerate() {
        let g = DIGITS[usize::from(ch - b'0')];
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let gx = x + (k as i64 * 4 + col) * px;
                    let gy = y + row as i64 * px;
                    fill(img, gx, gy, gx + px, gy + px, c);
                }
            }
        }
    }
}

/// Draws `faces` onto `img`.
pub fn draw(img: &mut RgbImage, faces: &[FaceOut]) {
    let side = img.width().min(img.height()) as f32;
    let t = ((side / 300.0).round() as i64).max(1);
    for f in faces {
        rect(img, f.face.bbox, t, BOX);
        for p in f.face.landmarks {
            let (x, y) = (p[0].round() as i64, p[1].round() as i64);
            fill(img, x - t, y - t, x + t + 1, y + t + 1, RED);
        }
        // The panel: right of the box (or left when it would leave the image).
        let bw = f.face.bbox[2] - f.face.bbox[0];
        let px = ((bw / 60.0).round() as i64).max(1);
        let bar = 5 * px;
        let gap = 2 * px;
        let h = (bw * 0.6).max(20.0) as i64;
        let n = f.aus.len() as i64;
        let width = n * (bar + gap) + gap;
        let label = 7 * px;
        let mut x0 = f.face.bbox[2].round() as i64 + 2 * t;
        if x0 + width > i64::from(img.width()) {
            x0 = f.face.bbox[0].round() as i64 - 2 * t - width;
        }
        let y0 = f.face.bbox[1].round() as i64;
        fill(img, x0, y0, x0 + width, y0 + h + label + gap, PANEL);
        for (i, a) in f.aus.iter().enumerate() {
            let bx = x0 + gap + i as i64 * (bar + gap);
            let top = y0 + h - (f64::from(a.prob.clamp(0.0, 1.0)) * h as f64) as i64;
            fill(
                img,
                bx,
                top,
                bx + bar,
                y0 + h,
                if a.present { GREEN } else { GREY },
            );
            let tick = y0 + h - (a.threshold.clamp(0.0, 1.0) * h as f64) as i64;
            fill(
                img,
                bx - px / 2,
                tick,
                bx + bar + px / 2,
                tick + px.max(1),
                WHITE,
            );
            // AU numbers of up to two digits fit under a bar at half size.
            number(img, a.au, bx, y0 + h + gap, (px / 2).max(1), WHITE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ausweep_edge::mtcnn::Face;

    #[test]
    fn boxes_and_bars_are_drawn_inside_the_image_only() {
        let mut img = RgbImage::new(200, 120);
        let face = Face {
            bbox: [150.0, 10.0, 210.0, 90.0],
            confidence: 0.9,
            landmarks: [[160.0, 40.0]; 5],
        };
        let pred = ausweep_edge::aus::AuPrediction {
            probs: vec![1.0, 0.0],
            present: vec![true, false],
            intensity: None,
        };
        let f = super::super::output::face_out(0, face, &pred, &[6, 12], &[0, 1], &[0.5, 0.5]);
        draw(&mut img, &[f]);
        assert_eq!(*img.get_pixel(150, 50), BOX);
        // The panel went left of the box; the present AU's bar is green at its foot.
        let greens = img.pixels().filter(|p| **p == GREEN).count();
        assert!(greens > 20, "{greens}");
    }
}
