//! MTCNN's steps between the nets, as facenet-pytorch's `detect_face` takes them: the pyramid's
//! scales, P-net's map to boxes, box regression, squaring, the crop window of a box, and NMS per
//! image. Shared by the libtorch detector and the ONNX one, so both find the same faces.

use crate::nms::{nms, Bbox, Overlap};

/// A candidate box between stages.
#[derive(Debug, Clone, Copy)]
pub struct Cand {
    /// The box.
    pub b: Bbox,
    /// The last net's face probability.
    pub score: f32,
    /// The last net's box regression.
    pub reg: [f32; 4],
    /// Index of its image in the batch.
    pub img: usize,
}

/// The pyramid's scales for an `h`×`w` image: from 12 / `min_face` down by `factor` while the
/// short side stays at least 12 pixels.
pub fn scales(h: usize, w: usize, min_face: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_face;
    let mut minl = h.min(w) as f64 * m;
    let mut out = Vec::new();
    let mut s = m;
    while minl >= 12.0 {
        out.push(s);
        s *= factor;
        minl *= factor;
    }
    out
}

/// The pyramid level's size at `scale`: `(h·scale + 1, w·scale + 1)`, truncated.
pub fn scaled(h: usize, w: usize, scale: f64) -> (usize, usize) {
    (
        (h as f64 * scale + 1.0) as usize,
        (w as f64 * scale + 1.0) as usize,
    )
}

/// P-net's map → candidate boxes per image (`generateBoundingBox`: stride 2, cell 12). `prob`
/// is the face channel `[B,mh,mw]`, `reg` the regression `[B,4,mh,mw]`, both row-major.
pub fn boxes_from_map(
    reg: &[f32],
    prob: &[f32],
    (b, mh, mw): (usize, usize, usize),
    scale: f32,
    threshold: f32,
) -> Vec<Vec<Cand>> {
    let plane = mh * mw;
    let mut out = vec![Vec::new(); b];
    for (img, cands) in out.iter_mut().enumerate() {
        for y in 0..mh {
            for x in 0..mw {
                let Some(&score) = prob.get(img * plane + y * mw + x) else {
                    continue;
                };
                if score < threshold {
                    continue;
                }
                let at = |c: usize| {
                    reg.get((img * 4 + c) * plane + y * mw + x)
                        .copied()
                        .unwrap_or(0.0)
                };
                let (fx, fy) = (x as f32, y as f32);
                cands.push(Cand {
                    b: [
                        ((2.0 * fx + 1.0) / scale).floor(),
                        ((2.0 * fy + 1.0) / scale).floor(),
                        ((2.0 * fx + 12.0) / scale).floor(),
                        ((2.0 * fy + 12.0) / scale).floor(),
                    ],
                    score,
                    reg: [at(0), at(1), at(2), at(3)],
                    img,
                });
            }
        }
    }
    out
}

/// Stage 1's end for one image's candidates: NMS at 0.7, the regression (widths without +1),
/// squared.
pub fn stage1_boxes(cands: &[Cand]) -> Vec<Cand> {
    nms_of(cands, 0.7, Overlap::Iou)
        .into_iter()
        .map(|i| {
            let c = cands[i];
            let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
            let b = [
                c.b[0] + c.reg[0] * rw,
                c.b[1] + c.reg[1] * rh,
                c.b[2] + c.reg[2] * rw,
                c.b[3] + c.reg[3] * rh,
            ];
            Cand {
                b: rerec(b),
                reg: [0.0; 4],
                ..c
            }
        })
        .collect()
}

/// Makes a box square around its centre (`rerec`).
pub fn rerec(b: Bbox) -> Bbox {
    let (h, w) = (b[3] - b[1], b[2] - b[0]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// Applies a box regression (`bbreg`, widths with +1).
pub fn bbreg(b: Bbox, r: [f32; 4]) -> Bbox {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [
        b[0] + r[0] * w,
        b[1] + r[1] * h,
        b[2] + r[2] * w,
        b[3] + r[3] * h,
    ]
}

/// The pixel window `(x, y, width, height)` (0-based) a candidate's crop reads in a `w`×`h`
/// image (`pad`: truncate, then clip to 1..=w / 1..=h, 1-based inclusive); `None` when empty.
pub fn window(b: &Bbox, h: usize, w: usize) -> Option<(usize, usize, usize, usize)> {
    if !b.iter().all(|v| v.is_finite()) {
        return None;
    }
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(w as i64);
    let ey = (b[3].trunc() as i64).min(h as i64);
    if ey < y || ex < x {
        return None;
    }
    Some((
        (x - 1) as usize,
        (y - 1) as usize,
        (ex - x + 1) as usize,
        (ey - y + 1) as usize,
    ))
}

/// NMS over candidates' boxes and scores.
pub fn nms_of(cands: &[Cand], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let boxes: Vec<Bbox> = cands.iter().map(|c| c.b).collect();
    let scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
    nms(&boxes, &scores, threshold, overlap)
}

/// The images that have candidates, ascending.
pub fn images_of(cands: &[Cand]) -> Vec<usize> {
    let mut v: Vec<usize> = cands.iter().map(|c| c.img).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// R-net's verdicts on `cands` (rows of `reg` [4] and `prob` [2]): those above `threshold`,
/// NMS 0.7 per image, regressed and squared.
pub fn refine(cands: &[Cand], reg: &[[f32; 4]], prob: &[[f32; 2]], threshold: f32) -> Vec<Cand> {
    let passed: Vec<Cand> = cands
        .iter()
        .zip(reg)
        .zip(prob)
        .filter(|(_, p)| p[1] > threshold)
        .map(|((c, r), p)| Cand {
            score: p[1],
            reg: *r,
            ..*c
        })
        .collect();
    let mut out = Vec::new();
    for img in images_of(&passed) {
        let these: Vec<Cand> = passed.iter().copied().filter(|c| c.img == img).collect();
        for i in nms_of(&these, 0.7, Overlap::Iou) {
            let c = these[i];
            out.push(Cand {
                b: rerec(bbreg(c.b, c.reg)),
                ..c
            });
        }
    }
    out
}

/// O-net's verdicts → faces per image (`b` images): above `threshold`, landmarks placed in the
/// box, regressed, "Min" NMS 0.7, largest first.
pub fn output(
    cands: &[Cand],
    reg: &[[f32; 4]],
    marks: &[[f32; 10]],
    prob: &[[f32; 2]],
    threshold: f32,
    b: usize,
) -> Vec<Vec<super::Face>> {
    let mut passed: Vec<(Cand, [[f32; 2]; 5])> = Vec::new();
    for (((c, r), l), p) in cands.iter().zip(reg).zip(marks).zip(prob) {
        if p[1] <= threshold {
            continue;
        }
        let (bw, bh) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
        let mut pts = [[0.0f32; 2]; 5];
        for (k, pt) in pts.iter_mut().enumerate() {
            *pt = [bw * l[k] + c.b[0] - 1.0, bh * l[k + 5] + c.b[1] - 1.0];
        }
        passed.push((
            Cand {
                b: bbreg(c.b, *r),
                score: p[1],
                ..*c
            },
            pts,
        ));
    }
    let mut faces: Vec<Vec<super::Face>> = vec![Vec::new(); b];
    for (img, out) in faces.iter_mut().enumerate() {
        let these: Vec<&(Cand, [[f32; 2]; 5])> =
            passed.iter().filter(|(c, _)| c.img == img).collect();
        let boxes: Vec<Bbox> = these.iter().map(|(c, _)| c.b).collect();
        let scores: Vec<f32> = these.iter().map(|(c, _)| c.score).collect();
        for i in nms(&boxes, &scores, 0.7, Overlap::Min) {
            let (c, pts) = these[i];
            out.push(super::Face {
                bbox: c.b,
                confidence: c.score,
                landmarks: *pts,
            });
        }
        // MTCNN.detect(select_largest=True): largest area first.
        out.sort_by(|a, b| area(&b.bbox).total_cmp(&area(&a.bbox)));
    }
    faces
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// Rows of `K` out of a flat buffer.
pub fn rows<const K: usize>(flat: &[f32]) -> Vec<[f32; K]> {
    flat.chunks_exact(K)
        .map(|c| {
            let mut a = [0.0; K];
            a.copy_from_slice(c);
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerec_squares_around_the_centre() {
        assert_eq!(rerec([10.0, 0.0, 20.0, 40.0]), [-5.0, 0.0, 35.0, 40.0]);
    }

    #[test]
    fn map_cells_become_12_pixel_boxes_scaled_back() {
        // Face channel [0.9, 0.1]: only cell x=0 passes 0.6.
        let c = boxes_from_map(&[0.0; 8], &[0.9, 0.1], (1, 1, 2), 0.5, 0.6);
        assert_eq!(c[0].len(), 1);
        assert_eq!(c[0][0].b, [2.0, 2.0, 24.0, 24.0]);
        assert!((c[0][0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn a_window_is_clipped_to_the_image_and_an_outside_box_has_none() {
        assert_eq!(window(&[-5.0, 2.7, 30.0, 9.0], 8, 20), Some((0, 1, 20, 7)));
        assert_eq!(window(&[30.0, 2.0, 40.0, 9.0], 8, 20), None);
        assert_eq!(window(&[f32::NAN, 2.0, 4.0, 9.0], 8, 20), None);
    }

    #[test]
    fn the_pyramid_stops_before_the_short_side_falls_under_12() {
        let s = scales(100, 200, 20.0, 0.709);
        assert!((s[0] - 0.6).abs() < 1e-12);
        assert!(s.iter().all(|&k| 100.0 * k >= 12.0 - 1e-9));
        assert!(100.0 * s[s.len() - 1] * 0.709 < 12.0);
    }
}
