//! ImageNet top-5 of a backbone on a photo, to show that real weights loaded right.

use super::backbone::BackboneNet;
use super::error::TrainError;
use super::weights;
use ausweep_proto::job::Backbone;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// ImageNet's per-channel RGB mean, on 0–1 pixels: every backbone's weights expect it.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel RGB standard deviation, on 0–1 pixels.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `(mean, std)` as `[1, 3, 1, 1]` tensors on `device`, to normalise an NCHW batch.
pub fn norm(device: Device) -> (Tensor, Tensor) {
    let t = |v: &[f32; 3]| Tensor::from_slice(v).view([1, 3, 1, 1]).to_device(device);
    (t(&MEAN), t(&STD))
}

/// The image as torchvision's eval transform sees it: centre square crop, 224 px, normalised.
pub fn load_image(path: &Path, size: u32) -> Result<Tensor, TrainError> {
    let img = image::open(path)
        .map_err(|e| TrainError::Config(format!("{}: cannot read image: {e}", path.display())))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let crop =
        image::imageops::crop_imm(&img, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let rgb = image::imageops::resize(&crop, size, size, image::imageops::FilterType::Triangle);
    let s = size as i64;
    let t = Tensor::from_slice(rgb.as_raw())
        .view([s, s, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0;
    let (mean, std) = norm(Device::Cpu);
    Ok((t.unsqueeze(0) - mean) / std)
}

/// The five most likely ImageNet classes (name, probability) for `image` under `backbone`'s
/// weights from `dir` (classes from `dir/imagenet_classes.txt`).
pub fn top5(
    backbone: Backbone,
    image: &Path,
    dir: &Path,
) -> Result<Vec<(String, f64)>, TrainError> {
    let file = weights::imagenet_file(dir, backbone.name())?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = BackboneNet::new(&vs.root(), backbone, true);
    weights::load_file(&vs, &file, None)?;
    let classes_path = dir.join("imagenet_classes.txt");
    let classes: Vec<String> = std::fs::read_to_string(&classes_path)
        .map_err(TrainError::io(&classes_path))?
        .lines()
        .map(str::to_string)
        .collect();
    let x = load_image(image, 224)?;
    let logits = tch::no_grad(|| net.imagenet_logits(&x))
        .ok_or_else(|| TrainError::Config("backbone built without its classifier".into()))?;
    let probs = logits.softmax(-1, Kind::Float).squeeze_dim(0);
    let (vals, idx) = probs.topk(5, -1, true, true);
    let vals: Vec<f64> = Vec::try_from(vals.to_kind(Kind::Double))?;
    let idx: Vec<i64> = Vec::try_from(idx)?;
    Ok(idx
        .into_iter()
        .zip(vals)
        .map(|(i, p)| {
            (
                classes
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("class {i}")),
                p,
            )
        })
        .collect())
}
