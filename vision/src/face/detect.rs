//! MTCNN detection, step for step as facenet-pytorch's `detect_face`: an image pyramid through
//! P-net, per-scale and per-image NMS, box regression, R-net and O-net on square crops, five
//! landmarks, and "Min" NMS at the end. Images of one batch share a size (video frames).

use super::nets::{ONet, PNet, RNet};
use super::nms::{nms, Bbox, Overlap};
use super::FaceError;
use serde::Serialize;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Detector settings (facenet-pytorch's `MTCNN` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side searched for, in pixels.
    pub min_face_size: f64,
    /// Score thresholds of P-, R- and O-net.
    pub thresholds: [f32; 3],
    /// Scale step of the image pyramid.
    pub factor: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_face_size: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
        }
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Face {
    /// `[x1, y1, x2, y2]` in pixels.
    pub bbox: [f32; 4],
    /// O-net's face probability.
    pub confidence: f32,
    /// Left eye, right eye, nose, left and right mouth corner (as seen in the image), `(x, y)`.
    pub landmarks: [[f32; 2]; 5],
}

/// A candidate box between stages.
#[derive(Debug, Clone, Copy)]
struct Cand {
    b: Bbox,
    score: f32,
    reg: [f32; 4],
    img: usize,
}

/// The three nets on one device.
#[derive(Debug)]
pub struct Detector {
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    device: Device,
    config: DetectorConfig,
}

/// Crops processed per net call (facenet-pytorch's `fixed_batch_process`).
const NET_BATCH: usize = 512;

impl Detector {
    /// Loads `mtcnn_{pnet,rnet,onet}.safetensors` from `weights_dir` onto `device`.
    pub fn load(
        weights_dir: &Path,
        device: Device,
        config: DetectorConfig,
    ) -> Result<Self, FaceError> {
        let f = |n: &str| weights_dir.join(format!("mtcnn_{n}.safetensors"));
        Ok(Detector {
            pnet: PNet::load(&f("pnet"), device)?,
            rnet: RNet::load(&f("rnet"), device)?,
            onet: ONet::load(&f("onet"), device)?,
            device,
            config,
        })
    }

    /// The device the nets run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Faces in each image of `imgs` (`[B,3,H,W]`, 0–255, any float or u8 kind, any device),
    /// largest first.
    pub fn detect(&self, imgs: &Tensor) -> Result<Vec<Vec<Face>>, FaceError> {
        let size = imgs.size();
        if size.len() != 4 || size[1] != 3 {
            return Err(FaceError::Input(format!(
                "expected [B,3,H,W], got {size:?}"
            )));
        }
        let (b, h, w) = (size[0] as usize, size[2], size[3]);
        let imgs = imgs.to_device(self.device).to_kind(Kind::Float);
        let _guard = tch::no_grad_guard();
        let cands = self.stage1(&imgs, b, h, w);
        let cands = self.refine(&imgs, cands, h, w);
        let mut faces = self.output(&imgs, cands, b, h, w);
        for f in &mut faces {
            // MTCNN.detect(select_largest=True): largest area first.
            f.sort_by(|a, b| area(&b.bbox).total_cmp(&area(&a.bbox)));
        }
        Ok(faces)
    }

    fn stage1(&self, imgs: &Tensor, b: usize, h: i64, w: i64) -> Vec<Cand> {
        let m = 12.0 / self.config.min_face_size;
        let mut minl = h.min(w) as f64 * m;
        let mut scales = Vec::new();
        let mut s = m;
        while minl >= 12.0 {
            scales.push(s);
            s *= self.config.factor;
            minl *= self.config.factor;
        }
        let mut per_image: Vec<Vec<Cand>> = vec![Vec::new(); b];
        for &scale in &scales {
            let hs = (h as f64 * scale + 1.0) as i64;
            let ws = (w as f64 * scale + 1.0) as i64;
            let x = normalise(&imgs.adaptive_avg_pool2d([hs, ws]));
            let (reg, prob) = self.pnet.forward(&x);
            let found = boxes_from_map(&reg, &prob, scale as f32, self.config.thresholds[0]);
            for (img, cands) in found.into_iter().enumerate() {
                let keep = nms_of(&cands, 0.5, Overlap::Iou);
                per_image[img].extend(keep.into_iter().map(|i| cands[i]));
            }
        }
        let mut out = Vec::new();
        for cands in per_image {
            for i in nms_of(&cands, 0.7, Overlap::Iou) {
                let c = cands[i];
                let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b = [
                    c.b[0] + c.reg[0] * rw,
                    c.b[1] + c.reg[1] * rh,
                    c.b[2] + c.reg[2] * rw,
                    c.b[3] + c.reg[3] * rh,
                ];
                out.push(Cand {
                    b: rerec(b),
                    reg: [0.0; 4],
                    ..c
                });
            }
        }
        out
    }

    fn refine(&self, imgs: &Tensor, cands: Vec<Cand>, h: i64, w: i64) -> Vec<Cand> {
        let (cands, crops) = crops(imgs, cands, h, w, 24);
        let Some(crops) = crops else {
            return cands;
        };
        let mut regs = Vec::new();
        let mut probs = Vec::new();
        for chunk in chunks(&crops) {
            let (r, p) = self.rnet.forward(&chunk);
            regs.push(r);
            probs.push(p);
        }
        let reg = rows::<4>(&Tensor::cat(&regs, 0));
        let prob = rows::<2>(&Tensor::cat(&probs, 0));
        let mut passed: Vec<Cand> = Vec::new();
        for ((c, r), p) in cands.iter().zip(&reg).zip(&prob) {
            if p[1] > self.config.thresholds[1] {
                passed.push(Cand {
                    score: p[1],
                    reg: *r,
                    ..*c
                });
            }
        }
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

    fn output(&self, imgs: &Tensor, cands: Vec<Cand>, b: usize, h: i64, w: i64) -> Vec<Vec<Face>> {
        let mut faces: Vec<Vec<Face>> = vec![Vec::new(); b];
        let (cands, crops) = crops(imgs, cands, h, w, 48);
        let Some(crops) = crops else {
            return faces;
        };
        let (mut regs, mut marks, mut probs) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks(&crops) {
            let (r, l, p) = self.onet.forward(&chunk);
            regs.push(r);
            marks.push(l);
            probs.push(p);
        }
        let reg = rows::<4>(&Tensor::cat(&regs, 0));
        let marks = rows::<10>(&Tensor::cat(&marks, 0));
        let prob = rows::<2>(&Tensor::cat(&probs, 0));
        let mut passed: Vec<(Cand, [[f32; 2]; 5])> = Vec::new();
        for (((c, r), l), p) in cands.iter().zip(&reg).zip(&marks).zip(&prob) {
            if p[1] <= self.config.thresholds[2] {
                continue;
            }
            let (bw, bh) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
            let mut pts = [[0.0f32; 2]; 5];
            for (k, pt) in pts.iter_mut().enumerate() {
                *pt = [bw * l[k] + c.b[0] - 1.0, bh * l[k + 5] + c.b[1] - 1.0];
            }
            let b = bbreg(c.b, *r);
            passed.push((
                Cand {
                    b,
                    score: p[1],
                    ..*c
                },
                pts,
            ));
        }
        for (img, out) in faces.iter_mut().enumerate() {
            let these: Vec<&(Cand, [[f32; 2]; 5])> =
                passed.iter().filter(|(c, _)| c.img == img).collect();
            let boxes: Vec<Bbox> = these.iter().map(|(c, _)| c.b).collect();
            let scores: Vec<f32> = these.iter().map(|(c, _)| c.score).collect();
            for i in nms(&boxes, &scores, 0.7, Overlap::Min) {
                let (c, pts) = these[i];
                out.push(Face {
                    bbox: c.b,
                    confidence: c.score,
                    landmarks: *pts,
                });
            }
        }
        faces
    }
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

fn normalise(x: &Tensor) -> Tensor {
    (x - 127.5) * 0.0078125
}

fn nms_of(cands: &[Cand], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let boxes: Vec<Bbox> = cands.iter().map(|c| c.b).collect();
    let scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
    nms(&boxes, &scores, threshold, overlap)
}

fn images_of(cands: &[Cand]) -> Vec<usize> {
    let mut v: Vec<usize> = cands.iter().map(|c| c.img).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// P-net's map → candidate boxes per image (`generateBoundingBox`: stride 2, cell 12).
fn boxes_from_map(reg: &Tensor, prob: &Tensor, scale: f32, threshold: f32) -> Vec<Vec<Cand>> {
    let size = prob.size();
    let (b, mh, mw) = (size[0] as usize, size[2] as usize, size[3] as usize);
    let p: Vec<f32> = flat(&prob.select(1, 1));
    let r: Vec<f32> = flat(reg);
    let plane = mh * mw;
    let mut out = vec![Vec::new(); b];
    for (img, cands) in out.iter_mut().enumerate() {
        for y in 0..mh {
            for x in 0..mw {
                let score = p[img * plane + y * mw + x];
                if score < threshold {
                    continue;
                }
                let at = |c: usize| r[(img * 4 + c) * plane + y * mw + x];
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

/// Makes a box square around its centre (`rerec`).
fn rerec(b: Bbox) -> Bbox {
    let (h, w) = (b[3] - b[1], b[2] - b[0]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// Applies a box regression (`bbreg`, widths with +1).
fn bbreg(b: Bbox, r: [f32; 4]) -> Bbox {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [
        b[0] + r[0] * w,
        b[1] + r[1] * h,
        b[2] + r[2] * w,
        b[3] + r[3] * h,
    ]
}

/// The candidates whose clipped box is non-empty, and their crops resized to `side` (area
/// interpolation) and normalised; `None` when there are none.
fn crops(
    imgs: &Tensor,
    cands: Vec<Cand>,
    h: i64,
    w: i64,
    side: i64,
) -> (Vec<Cand>, Option<Tensor>) {
    let mut kept = Vec::new();
    let mut tiles = Vec::new();
    for c in cands {
        // `pad`: truncate, then clip to 1..=w / 1..=h (1-based, inclusive end).
        let x = (c.b[0].trunc() as i64).max(1);
        let y = (c.b[1].trunc() as i64).max(1);
        let ex = (c.b[2].trunc() as i64).min(w);
        let ey = (c.b[3].trunc() as i64).min(h);
        if ey < y || ex < x || !c.b.iter().all(|v| v.is_finite()) {
            continue;
        }
        let tile = imgs
            .get(c.img as i64)
            .narrow(1, y - 1, ey - y + 1)
            .narrow(2, x - 1, ex - x + 1)
            .unsqueeze(0)
            .adaptive_avg_pool2d([side, side]);
        tiles.push(tile);
        kept.push(c);
    }
    if tiles.is_empty() {
        return (kept, None);
    }
    (kept, Some(normalise(&Tensor::cat(&tiles, 0))))
}

fn chunks(x: &Tensor) -> Vec<Tensor> {
    x.split(NET_BATCH as i64, 0)
}

fn flat(t: &Tensor) -> Vec<f32> {
    let t = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    Vec::<f32>::try_from(&t).unwrap_or_default()
}

/// `[N,K]` → N rows of K.
fn rows<const K: usize>(t: &Tensor) -> Vec<[f32; K]> {
    flat(t)
        .chunks_exact(K)
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
        let prob = Tensor::from_slice(&[0.1f32, 0.9, 0.9, 0.1]).view([1, 2, 1, 2]);
        let reg = Tensor::zeros([1, 4, 1, 2], (Kind::Float, Device::Cpu));
        // prob channel 1 is [0.9, 0.1]: only cell x=0 passes 0.6.
        let c = boxes_from_map(&reg, &prob, 0.5, 0.6);
        assert_eq!(c[0].len(), 1);
        assert_eq!(c[0][0].b, [2.0, 2.0, 24.0, 24.0]);
        assert!((c[0][0].score - 0.9).abs() < 1e-6);
    }
}
