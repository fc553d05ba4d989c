//! MTCNN detection, step for step as facenet-pytorch's `detect_face`: an image pyramid through
//! P-net, per-scale and per-image NMS, box regression, R-net and O-net on square crops, five
//! landmarks, and "Min" NMS at the end. Images of one batch share a size (video frames).

use super::nets::{ONet, PNet, RNet};
use super::FaceError;
use ausweep_edge::mtcnn::steps::{self, Cand};
pub use ausweep_edge::mtcnn::{DetectorConfig, Face};
use ausweep_edge::nms::Overlap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

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
        Ok(self.output(&imgs, cands, b, h, w))
    }

    fn stage1(&self, imgs: &Tensor, b: usize, h: i64, w: i64) -> Vec<Cand> {
        let c = &self.config;
        let mut per_image: Vec<Vec<Cand>> = vec![Vec::new(); b];
        for scale in steps::scales(h as usize, w as usize, c.min_face_size, c.factor) {
            let (hs, ws) = steps::scaled(h as usize, w as usize, scale);
            let x = normalise(&imgs.adaptive_avg_pool2d([hs as i64, ws as i64]));
            let (reg, prob) = self.pnet.forward(&x);
            let size = prob.size();
            let dims = (size[0] as usize, size[2] as usize, size[3] as usize);
            let found = steps::boxes_from_map(
                &flat(&reg),
                &flat(&prob.select(1, 1)),
                dims,
                scale as f32,
                c.thresholds[0],
            );
            for (img, cands) in found.into_iter().enumerate() {
                let keep = steps::nms_of(&cands, 0.5, Overlap::Iou);
                per_image[img].extend(keep.into_iter().map(|i| cands[i]));
            }
        }
        per_image
            .iter()
            .flat_map(|c| steps::stage1_boxes(c))
            .collect()
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
        steps::refine(&cands, &reg, &prob, self.config.thresholds[1])
    }

    fn output(&self, imgs: &Tensor, cands: Vec<Cand>, b: usize, h: i64, w: i64) -> Vec<Vec<Face>> {
        let (cands, crops) = crops(imgs, cands, h, w, 48);
        let Some(crops) = crops else {
            return vec![Vec::new(); b];
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
        steps::output(&cands, &reg, &marks, &prob, self.config.thresholds[2], b)
    }
}

fn normalise(x: &Tensor) -> Tensor {
    (x - 127.5) * 0.0078125
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
        let Some((x, y, cw, ch)) = steps::window(&c.b, h as usize, w as usize) else {
            continue;
        };
        let tile = imgs
            .get(c.img as i64)
            .narrow(1, y as i64, ch as i64)
            .narrow(2, x as i64, cw as i64)
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
    steps::rows(&flat(t))
}
