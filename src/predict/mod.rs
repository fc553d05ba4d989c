//! `ausweep predict`: a trained model on photos, folders and videos. MTCNN finds the faces,
//! each is aligned like the training frames, the AU model gives per-AU probabilities and
//! decisions (the checkpoint's tuned thresholds), and the AU rules give the emotions they can
//! decide. A checkpoint runs in libtorch (the full build); an exported `X.onnx` runs in ONNX
//! Runtime (both builds, the light one included).

mod annotate;
mod engine;
#[cfg(feature = "train")]
mod geometry;
mod inputs;
#[cfg(feature = "train")]
pub(crate) mod model_ref;
mod onnx_engine;
mod output;
#[cfg(feature = "train")]
mod torch_engine;

use anyhow::{anyhow, bail, Context, Result};
use ausweep_edge::mtcnn::DetectorConfig;
use clap::Args;
use engine::Engine;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use inputs::{Input, VideoFrames};
use output::{Format, FrameOut, Writer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `ausweep predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// Images, folders (searched recursively) and videos.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// An exported model `X.onnx` (ONNX Runtime, no libtorch; the MTCNN nets' ONNX files beside
    /// it or in --detector), or, in the full build, a checkpoint (`X.safetensors` beside its
    /// `X.json`), an `ausweep train` output folder, or SWEEP:BACKBONE for the best fold's final
    /// checkpoint from the coordinator.
    #[arg(long)]
    model: String,
    /// Output file (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// jsonl (a line per frame) or csv (OpenFace's layout, a row per face); default: csv when
    /// --out ends in .csv, else jsonl.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Also write each frame with boxes and AU bars drawn into this folder.
    #[arg(long)]
    annotate: Option<PathBuf>,
    /// Videos: use every Nth frame.
    #[arg(long, default_value_t = 1)]
    stride: u64,
    /// Video frames per detector and model batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Report only these AUs (comma-separated numbers, e.g. 6,12); default: all the model knows.
    #[arg(long, value_delimiter = ',')]
    aus: Option<Vec<u32>>,
    /// Smallest face side searched for, in pixels.
    #[arg(long, default_value_t = 20.0)]
    min_face: f64,
    /// Aligned crops: eye distance as a fraction of the crop side (default: the checkpoint's
    /// training crops').
    #[arg(long)]
    eye_distance: Option<f64>,
    /// Aligned crops: height of the eye midpoint as a fraction of the side (default: the
    /// checkpoint's).
    #[arg(long)]
    eye_y: Option<f64>,
    /// cpu, cuda, cuda:N or auto (an ONNX model runs on the CPU).
    #[arg(long, default_value = "auto")]
    device: String,
    /// ONNX models: the folder with `mtcnn_{pnet,rnet,onet}.onnx` (default: the model's).
    #[arg(long)]
    detector: Option<PathBuf>,
    /// ONNX models: ONNX Runtime's library, `libonnxruntime.so*` (default $ORT_DYLIB_PATH, then
    /// beside the binary, then the system's).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// ONNX models: threads per net (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Weights directory with the MTCNN weights (default $AUSWEEP_WEIGHTS or ~/.cache/ausweep/weights).
    #[cfg(feature = "train")]
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// Where downloaded sweep checkpoints are kept (default ~/.cache/ausweep/checkpoints).
    #[cfg(feature = "train")]
    #[arg(long)]
    checkpoint_cache: Option<PathBuf>,
    #[cfg(feature = "train")]
    #[command(flatten)]
    remote: crate::cluster_cmd::ConnArgs,
}

/// What a run did (printed at the end).
#[derive(Debug, Default)]
struct Tally {
    inputs: usize,
    frames: u64,
    faces: u64,
    faceless: Vec<String>,
    faceless_frames: u64,
    unreadable: Vec<String>,
}

struct Pipeline {
    engine: Box<dyn Engine>,
    cols: Vec<usize>,
    annotate: Option<PathBuf>,
    faces_seconds: f64,
}

/// Runs `ausweep predict`.
// Long function: the predict command's script: inputs, model, detection, outputs, summary.
pub fn run(a: PredictArgs) -> Result<()> {
    anyhow::ensure!(
        a.min_face >= 12.0,
        "--min-face {}: must be at least 12 pixels",
        a.min_face
    );
    let detector = DetectorConfig {
        min_face_size: a.min_face,
        ..Default::default()
    };
    let (engine, how, note) = open_engine(&a, detector)?;
    let meta = engine.info().clone();
    let cols = select_aus(&meta.aus, a.aus.as_deref())?;
    let reported: Vec<u32> = cols.iter().map(|&i| meta.aus[i]).collect();
    if let Some(n) = note {
        eprintln!("ausweep predict: warning: {n}");
    }
    eprintln!(
        "ausweep predict: model {how}\n  {} stage {}{}, {} px, AUs {}, on {}",
        meta.backbone,
        meta.stage,
        if meta.int8 { " (int8 kernels)" } else { "" },
        meta.input_size,
        reported
            .iter()
            .map(|a| format!("AU{a}"))
            .collect::<Vec<_>>()
            .join(" "),
        engine.device()
    );
    let inputs = inputs::expand(&a.inputs)?;
    if let Some(dir) = &a.annotate {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let format = a.format.unwrap_or(
        if a.out
            .as_ref()
            .is_some_and(|p| p.extension().is_some_and(|e| e == "csv"))
        {
            Format::Csv
        } else {
            Format::Jsonl
        },
    );
    let sink: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let intensity = meta.intensity;
    let mut writer = Writer::new(sink, format, reported, intensity);
    let mut pipe = Pipeline {
        engine,
        cols,
        annotate: a.annotate.clone(),
        faces_seconds: 0.0,
    };
    let bar = progress(&inputs, a.stride);
    let mut tally = Tally::default();
    let t0 = Instant::now();
    for input in &inputs {
        tally.inputs += 1;
        let name = input.path().display().to_string();
        bar.set_message(short(input.path()));
        let before = (tally.faces, tally.frames);
        let r = match input {
            Input::Image(p) => inputs::read_image(p).and_then(|img| {
                pipe.run_batch(&name, vec![(0, 0.0, img)], &mut writer, &mut tally)
            }),
            Input::Video(p) => pipe.video(
                p,
                &name,
                a.stride,
                a.batch.max(1),
                &mut writer,
                &mut tally,
                &bar,
            ),
        };
        if matches!(input, Input::Image(_)) {
            bar.inc(1);
        }
        match r {
            Err(e) => {
                bar.suspend(|| eprintln!("ausweep predict: {e:#}"));
                tally.unreadable.push(format!("{e:#}"));
            }
            Ok(()) if tally.faces == before.0 && tally.frames > before.1 => {
                tally.faceless.push(name);
            }
            Ok(()) => {}
        }
    }
    bar.finish_and_clear();
    writer.flush().context("writing the output")?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "ausweep predict: {} input(s), {} frame(s), {} face(s) in {secs:.1} s ({:.1} faces/s; \
         {} frame(s) without a face)",
        tally.inputs,
        tally.frames,
        tally.faces,
        tally.faces as f64 / pipe.faces_seconds.max(1e-9),
        tally.faceless_frames
    );
    for f in &tally.faceless {
        eprintln!("ausweep predict: no face found in {f}");
    }
    if !tally.unreadable.is_empty() {
        bail!(
            "{} of {} input(s) could not be read (the others were written): {}",
            tally.unreadable.len(),
            tally.inputs,
            tally.unreadable.join("; ")
        );
    }
    if tally.faces == 0 {
        bail!(
            "no face found in any input ({} frame(s) searched)",
            tally.frames
        );
    }
    Ok(())
}

/// The engine `--model` asks for, how the model was found, and a crop note.
fn open_engine(
    a: &PredictArgs,
    detector: DetectorConfig,
) -> Result<(Box<dyn Engine>, String, Option<String>)> {
    let onnx = Path::new(&a.model);
    if onnx.extension().is_some_and(|e| e == "onnx") {
        anyhow::ensure!(
            matches!(a.device.as_str(), "auto" | "cpu"),
            "--device {}: an ONNX model runs on the CPU (use auto or cpu)",
            a.device
        );
        let dir = a.detector.clone().unwrap_or_else(|| {
            onnx.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        });
        let settings = onnx_engine::OnnxSettings {
            detector_dir: &dir,
            library: a.onnxruntime.as_deref(),
            threads: a.threads,
            detector,
            eye_distance: a.eye_distance,
            eye_y: a.eye_y,
        };
        let (e, note) = onnx_engine::OnnxEngine::open(onnx, &settings)?;
        return Ok((Box::new(e), format!("{} (ONNX)", onnx.display()), note));
    }
    #[cfg(feature = "train")]
    {
        use ausweep_trainer::train::{self, weights::weights_dir};
        let device = train::parse_device(&a.device).map_err(anyhow::Error::msg)?;
        let cache = a.checkpoint_cache.clone().unwrap_or_else(default_cache);
        let (ckpt, how) = model_ref::resolve(&a.model, &a.remote.clone().into(), &cache)?;
        let weights = a.weights_dir.clone().unwrap_or_else(weights_dir);
        let (e, note) = torch_engine::TorchEngine::open(
            &ckpt,
            &weights,
            device,
            detector,
            (a.eye_distance, a.eye_y),
        )?;
        Ok((Box::new(e), how, note))
    }
    #[cfg(not(feature = "train"))]
    bail!(
        "--model {}: this build has no libtorch and runs exported models only (X.onnx); \
         write one with `ausweep export --model {} --out X.onnx --detector` in the full build",
        a.model,
        a.model
    )
}

/// Where sweep checkpoints are cached: ~/.cache/ausweep/checkpoints.
#[cfg(feature = "train")]
pub(crate) fn default_cache() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache/ausweep/checkpoints")
}

/// Column indices of the AUs to report; an AU the model does not know is an error.
fn select_aus(known: &[u32], wanted: Option<&[u32]>) -> Result<Vec<usize>> {
    let Some(wanted) = wanted else {
        return Ok((0..known.len()).collect());
    };
    let list = || {
        known
            .iter()
            .map(|a| format!("AU{a}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    wanted
        .iter()
        .map(|w| {
            known.iter().position(|k| k == w).ok_or_else(|| {
                anyhow!(
                    "--aus: the model does not know AU{w} (it was trained on {})",
                    list()
                )
            })
        })
        .collect()
}

fn short(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn progress(inputs: &[Input], stride: u64) -> ProgressBar {
    let mut total = 0u64;
    for i in inputs {
        total += match i {
            Input::Image(_) => 1,
            Input::Video(p) => inputs::probe(p)
                .ok()
                .and_then(|v| v.frames)
                .map_or(0, |n| n.div_ceil(stride.max(1))),
        };
    }
    if total < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames {per_sec} eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    fn video(
        &mut self,
        p: &Path,
        name: &str,
        stride: u64,
        batch: usize,
        writer: &mut Writer<Box<dyn Write>>,
        tally: &mut Tally,
        bar: &ProgressBar,
    ) -> Result<()> {
        let mut frames = VideoFrames::open(p, stride)?;
        let mut any = false;
        loop {
            let mut chunk = Vec::with_capacity(batch);
            while chunk.len() < batch {
                match frames.next_frame()? {
                    Some(f) => chunk.push(f),
                    None => break,
                }
            }
            if chunk.is_empty() {
                break;
            }
            any = true;
            let n = chunk.len() as u64;
            self.run_batch(name, chunk, writer, tally)?;
            bar.inc(n);
        }
        if !any {
            bail!("{}: no frames could be decoded", p.display());
        }
        Ok(())
    }

    /// Detects, aligns, predicts and writes one batch of same-size frames.
    fn run_batch(
        &mut self,
        name: &str,
        frames: Vec<(u64, f64, RgbImage)>,
        writer: &mut Writer<Box<dyn Write>>,
        tally: &mut Tally,
    ) -> Result<()> {
        let t0 = Instant::now();
        let images: Vec<&RgbImage> = frames.iter().map(|(_, _, img)| img).collect();
        let found = self.engine.run(&images)?;
        self.faces_seconds += t0.elapsed().as_secs_f64();
        let meta = self.engine.info();
        let thresholds = self.engine.thresholds();
        for ((index, ts, img), faces) in frames.into_iter().zip(found) {
            tally.frames += 1;
            if faces.is_empty() {
                tally.faceless_frames += 1;
            }
            let faces: Vec<_> = faces
                .into_iter()
                .enumerate()
                .map(|(k, (f, p))| output::face_out(k, f, &p, &meta.aus, &self.cols, thresholds))
                .collect();
            tally.faces += faces.len() as u64;
            let out = FrameOut {
                input: name.to_string(),
                frame: index + 1,
                timestamp: ts,
                faces,
            };
            writer.frame(&out).context("writing the output")?;
            if let Some(dir) = &self.annotate {
                let mut img = img;
                annotate::draw(&mut img, &out.faces);
                let stem = Path::new(name)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "frame".into());
                let file = if ts > 0.0 || index > 0 || name_is_video(name) {
                    dir.join(format!("{stem}_f{:06}.png", index + 1))
                } else {
                    dir.join(format!("{stem}.png"))
                };
                img.save(&file)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
        }
        Ok(())
    }
}

fn name_is_video(name: &str) -> bool {
    matches!(inputs::expand_kind(Path::new(name)), Input::Video(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_au_the_model_lacks_is_named_with_the_ones_it_has() {
        let known = [1, 2, 4, 6, 9, 12, 25, 26];
        assert_eq!(select_aus(&known, Some(&[12, 6])).unwrap(), vec![5, 3]);
        let err = select_aus(&known, Some(&[6, 15])).unwrap_err().to_string();
        assert!(err.contains("AU15") && err.contains("AU26"), "{err}");
        assert_eq!(select_aus(&known, None).unwrap().len(), 8);
    }
}
