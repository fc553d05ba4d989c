//! MTCNN face detection on its three exported ONNX nets (`ausweep export --detector`), step for
//! step as the libtorch detector: the same pyramid, pooling, crops, thresholds and NMS
//! ([`steps`]), so both find the same faces.

pub mod steps;

use crate::pixels::{pool_into, Planes};
use crate::runtime::Net;
use crate::EdgeError;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use steps::Cand;

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

/// Crops per net call (facenet-pytorch's `fixed_batch_process`).
const NET_BATCH: usize = 512;

/// The three nets in ONNX Runtime.
#[derive(Debug)]
pub struct Detector {
    pnet: Net,
    rnet: Net,
    onet: Net,
    config: DetectorConfig,
}

impl Detector {
    /// Opens `mtcnn_{pnet,rnet,onet}.onnx` in `dir` with `threads` threads each.
    pub fn open(dir: &Path, config: DetectorConfig, threads: usize) -> Result<Self, EdgeError> {
        let open = |n: &str| {
            let f = dir.join(format!("mtcnn_{n}.onnx"));
            if !f.is_file() {
                return Err(EdgeError::Model {
                    path: f,
                    message: "missing: write the detector with `ausweep export --detector` (the full build), or keep the one `ausweep demo` writes into <out>/models".into(),
                });
            }
            Net::open(&f, threads)
        };
        Ok(Detector {
            pnet: open("pnet")?,
            rnet: open("rnet")?,
            onet: open("onet")?,
            config,
        })
    }

    /// Faces in each of `imgs` (one size for all, 0–255), largest first.
    pub fn detect(&mut self, imgs: &[Planes]) -> Result<Vec<Vec<Face>>, EdgeError> {
        let Some(first) = imgs.first() else {
            return Ok(Vec::new());
        };
        let (h, w) = (first.h, first.w);
        if imgs.iter().any(|i| (i.h, i.w) != (h, w)) {
            return Err(EdgeError::Input(
                "the images of one detector batch must share a size".into(),
            ));
        }
        let cands = self.stage1(imgs)?;
        let (cands, crops) = tiles(imgs, cands, 24);
        let (reg, prob) = if cands.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let out = run_chunks(&mut self.rnet, crops, 24, &["regression", "probs"])?;
            (steps::rows::<4>(&out[0]), steps::rows::<2>(&out[1]))
        };
        let cands = steps::refine(&cands, &reg, &prob, self.config.thresholds[1]);
        let (cands, crops) = tiles(imgs, cands, 48);
        if cands.is_empty() {
            return Ok(vec![Vec::new(); imgs.len()]);
        }
        let out = run_chunks(
            &mut self.onet,
            crops,
            48,
            &["regression", "landmarks", "probs"],
        )?;
        Ok(steps::output(
            &cands,
            &steps::rows::<4>(&out[0]),
            &steps::rows::<10>(&out[1]),
            &steps::rows::<2>(&out[2]),
            self.config.thresholds[2],
            imgs.len(),
        ))
    }

    fn stage1(&mut self, imgs: &[Planes]) -> Result<Vec<Cand>, EdgeError> {
        let (b, h, w) = (imgs.len(), imgs[0].h, imgs[0].w);
        let c = self.config;
        let mut per_image: Vec<Vec<Cand>> = vec![Vec::new(); b];
        // The pyramid's levels are pooled on every core at once (libtorch's own pooling is
        // parallel too); P-net then runs on them in order.
        let levels: Vec<(f64, usize, usize, Vec<f32>)> =
            steps::scales(h, w, c.min_face_size, c.factor)
                .into_par_iter()
                .map(|scale| {
                    let (hs, ws) = steps::scaled(h, w, scale);
                    let mut x = Vec::with_capacity(b * 3 * hs * ws);
                    for img in imgs {
                        pool_into(img, (0, 0, w, h), (hs, ws), &mut x);
                    }
                    (scale, hs, ws, x)
                })
                .collect();
        for (scale, hs, ws, x) in levels {
            let out = self
                .pnet
                .run("images", [b, 3, hs, ws], &x, &["regression", "probs"])?;
            let (shape, probs) = &out[1];
            let plane = match shape[..] {
                [n, 2, mh, mw] if n == b && probs.len() == b * 2 * mh * mw => mh * mw,
                _ => {
                    return Err(EdgeError::Runtime {
                        path: self.pnet.path().to_path_buf(),
                        message: format!(
                            "P-net gave probs of shape {shape:?} for {b} image(s); expected [{b}, 2, h, w]"
                        ),
                    })
                }
            };
            let (mh, mw) = (shape[2], shape[3]);
            let face: Vec<f32> = (0..b)
                .flat_map(|i| {
                    probs[(2 * i + 1) * plane..(2 * i + 2) * plane]
                        .iter()
                        .copied()
                })
                .collect();
            let found =
                steps::boxes_from_map(&out[0].1, &face, (b, mh, mw), scale as f32, c.thresholds[0]);
            for (img, cands) in found.into_iter().enumerate() {
                let keep = steps::nms_of(&cands, 0.5, crate::nms::Overlap::Iou);
                per_image[img].extend(keep.into_iter().map(|i| cands[i]));
            }
        }
        Ok(per_image
            .iter()
            .flat_map(|c| steps::stage1_boxes(c))
            .collect())
    }
}

/// The candidates whose clipped box is non-empty, and their crops pooled to `side` (`[N,3,s,s]`),
/// pooled on every core in candidate order.
fn tiles(imgs: &[Planes], cands: Vec<Cand>, side: usize) -> (Vec<Cand>, Vec<f32>) {
    let pooled: Vec<(Cand, Vec<f32>)> = cands
        .into_par_iter()
        .filter_map(|c| {
            let img = &imgs[c.img];
            let win = steps::window(&c.b, img.h, img.w)?;
            let mut data = Vec::with_capacity(3 * side * side);
            pool_into(img, win, (side, side), &mut data);
            Some((c, data))
        })
        .collect();
    let mut kept = Vec::with_capacity(pooled.len());
    let mut data = Vec::with_capacity(pooled.len() * 3 * side * side);
    for (c, d) in pooled {
        kept.push(c);
        data.extend(d);
    }
    (kept, data)
}

/// Runs `net` on `[N,3,side,side]` tiles in chunks of [`NET_BATCH`]; each output concatenated.
fn run_chunks(
    net: &mut Net,
    tiles: Vec<f32>,
    side: usize,
    outputs: &[&str],
) -> Result<Vec<Vec<f32>>, EdgeError> {
    let per = 3 * side * side;
    let mut all = vec![Vec::new(); outputs.len()];
    for chunk in tiles.chunks(NET_BATCH * per) {
        let out = net.run("images", [chunk.len() / per, 3, side, side], chunk, outputs)?;
        for (a, (_, d)) in all.iter_mut().zip(out) {
            a.extend(d);
        }
    }
    Ok(all)
}
