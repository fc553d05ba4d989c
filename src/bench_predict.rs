//! `ausweep bench predict`: faces/s of detection + alignment + AU model, next to
//! facenet-pytorch's MTCNN + the same backbone and head in PyTorch eager on the same photos.

use anyhow::{Context, Result};
use ausweep_proto::job::Backbone;
use ausweep_trainer::predict::AuModel;
use ausweep_trainer::train::checkpoint::{self, CheckpointMeta};
use ausweep_trainer::train::weights::{self, weights_dir};
use ausweep_trainer::train::Model;
use ausweep_vision::face::{image_tensor, AlignSpec, Detector, DetectorConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tch::{Device, Tensor};

const AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mtcnn_reference.py")
}

/// The photos: scikit-image's astronaut (one face) and the astronaut beside a half-size mirror
/// of herself (two faces).
fn photos(dir: &Path) -> Result<Vec<PathBuf>> {
    let a = dir.join("astronaut.png");
    let st = Command::new(crate::python())
        .arg(script())
        .args(["sample"])
        .arg(&a)
        .arg("astronaut")
        .status()
        .context("running the venv's Python (make setup)")?;
    anyhow::ensure!(st.success(), "writing the sample photo failed");
    let img = image::open(&a)?.to_rgb8();
    let small = image::imageops::resize(
        &image::imageops::flip_horizontal(&img),
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    let mut pair = image::RgbImage::new(img.width() + small.width(), img.height());
    image::imageops::replace(&mut pair, &img, 0, 0);
    image::imageops::replace(&mut pair, &small, i64::from(img.width()), 100);
    let p = dir.join("pair.png");
    pair.save(&p)?;
    Ok(vec![a, p])
}

/// Runs the benchmark.
pub fn run(size: u32, reps: usize, device: &str, no_reference: bool) -> Result<()> {
    let dev = ausweep_trainer::train::parse_device(device).map_err(anyhow::Error::msg)?;
    let tmp = tempfile::tempdir()?;
    let wdir = weights_dir();
    let backbone_file = weights::imagenet_file(&wdir, "mobilenet_v2")?;
    // An ImageNet MobileNet-v2 with a fresh 8-AU head, saved as `ausweep train` saves one.
    let model = Model::new(Backbone::MobilenetV2, AUS.len(), Device::Cpu);
    weights::load_file(&model.backbone_vs, &backbone_file, Some("classifier"))?;
    let meta = CheckpointMeta::untrained("mobilenet_v2", &AUS, size);
    let (ckpt, _) = checkpoint::write(tmp.path(), "final", &model.named_tensors(), meta)?;
    let au = AuModel::load(&ckpt, dev)?;
    let det = Detector::load(&wdir, dev, DetectorConfig::default())?;
    let spec = AlignSpec::default();
    let files = photos(tmp.path())?;
    let imgs: Vec<Tensor> = files
        .iter()
        .map(|f| Ok(image_tensor(&image::open(f)?.to_rgb8()).unsqueeze(0)))
        .collect::<Result<_>>()?;
    // Seconds spent in detection, alignment and the AU model.
    let once = |faces: &mut usize, split: &mut [f64; 3]| -> Result<()> {
        for img in &imgs {
            let img = img.to_device(dev);
            let t = Instant::now();
            let found = det.detect(&img)?;
            split[0] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let crops: Vec<_> = found[0].iter().map(|f| spec.crop_of(f)).collect();
            let x = ausweep_vision::face::align::extract(
                &spec,
                &img,
                &crops,
                &vec![0; crops.len()],
                i64::from(size),
            )?;
            split[1] += t.elapsed().as_secs_f64();
            if !crops.is_empty() {
                let t = Instant::now();
                *faces += au.predict(&x).len();
                split[2] += t.elapsed().as_secs_f64();
            }
        }
        Ok(())
    };
    once(&mut 0, &mut [0.0; 3])?;
    let mut faces = 0;
    let mut split = [0.0; 3];
    let t0 = Instant::now();
    for _ in 0..reps {
        once(&mut faces, &mut split)?;
    }
    let total = t0.elapsed().as_secs_f64();
    let ours = faces as f64 / total;
    println!(
        "predict: MTCNN + eye alignment + mobilenet_v2 {size} px, {} photos x {reps} ({faces} faces), {device}, {} CPU threads",
        files.len(),
        tch::get_num_threads()
    );
    println!("  ausweep                              {ours:8.1} faces/s");
    println!(
        "    detection {:.0}%, alignment {:.0}%, AU model {:.0}% of the time",
        100.0 * split[0] / total,
        100.0 * split[1] / total,
        100.0 * split[2] / total
    );
    if no_reference || dev.is_cuda() {
        return Ok(());
    }
    let v = crate::bench::reference_json(
        Command::new(crate::python())
            .arg(script())
            .arg("bench")
            .arg(&backbone_file)
            .arg(size.to_string())
            .arg(AUS.len().to_string())
            .args(&files)
            .args(["--reps", &reps.to_string()]),
    )?;
    let theirs = v["faces_per_sec"]
        .as_f64()
        .context("reference printed no faces_per_sec")?;
    println!(
        "  facenet-pytorch + PyTorch eager      {theirs:8.1} faces/s ({} faces)",
        v["faces"]
    );
    println!(
        "  ratio ausweep / reference            {:8.2}x",
        ours / theirs
    );
    Ok(())
}
