// Long file: the preparation pipeline's orchestration per subject (decode, detect, track, align,
// write parts, pack); its stages are ffmpeg.rs, track.rs, template.rs and accuracy.rs.
//! `ausweep dataset prepare`: DISFA's videos → face-aligned crops in a packed file the trainer
//! reads. Per subject: ffmpeg decodes the chosen camera's video, MTCNN finds the face in batches
//! (searching only for faces at least `min_face` pixels high, as DISFA's are large), a tracker
//! keeps the subject's face and fills frames without a good detection from their neighbours
//! (flagged), a similarity transform puts the landmarks on the crop template, and the crops go
//! into a per-subject part. A finished part is never redone (a killed preparation resumes at the
//! subject it was in); when every subject is done the parts are joined into `dataset.pack` and
//! `manifest.json` records where everything came from.
//!
//! Output folder: `<out_root>/disfa-<camera>-<template>-<size>px-<id>/` where `<id>` is a hash of
//! the videos' names, sizes and modification times, the label files' contents, the template,
//! size, detector settings and detector weights: the same source and settings reuse it.

pub mod accuracy;
pub use ausweep_edge::video as ffmpeg;
pub mod template;
pub mod track;

use crate::face::{Detector, DetectorConfig, Face, FaceError};
use ausweep_data::disfa::{self, DisfaLayout};
use ausweep_data::pack::{FrameSink, PackWriter, PackedCache};
use ausweep_data::synth::video::{Camera, DISFA_LABEL_AUS};
use ausweep_data::{DataError, FrameExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
pub use template::{Similarity, Template};
use track::{TrackConfig, Tracked, Tracker};

/// Frames (about 3 s of DISFA) held back after the newest detection, waiting for the next one
/// to interpolate between; a longer gap holds the last landmarks.
const MAX_WAITING: usize = 64;

impl From<ffmpeg::VideoError> for PrepareError {
    fn from(e: ffmpeg::VideoError) -> Self {
        match e {
            ffmpeg::VideoError::Tool(m) => PrepareError::Tool(m),
            ffmpeg::VideoError::Video { path, msg } => PrepareError::Video { path, msg },
        }
    }
}

/// Format tag of a prepared dataset's manifest.
pub const FORMAT: &str = "ausweep-prepared-v1";

/// What can go wrong preparing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// ffmpeg / ffprobe missing or failing to start.
    #[error("{0}")]
    Tool(String),
    /// A video could not be read.
    #[error("video {path}: {msg}")]
    Video {
        /// The video.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A subject's video and labels disagree on the frame count by more than one frame.
    #[error("{subject}: the video {video} has {video_frames} frames but the labels in {labels} have {label_frames}; only a difference of one frame is trimmed (DISFA's SN010 is one short in some copies). Re-extract or re-download this subject's video, or leave it out with --subjects")]
    Counts {
        /// Subject id.
        subject: String,
        /// The video.
        video: PathBuf,
        /// Frames in the video.
        video_frames: u64,
        /// The subject's label folder.
        labels: PathBuf,
        /// Labelled frames.
        label_frames: u64,
    },
    /// A configuration or layout problem.
    #[error("{0}")]
    Config(String),
    /// The data layer failed (labels, packs).
    #[error(transparent)]
    Data(#[from] DataError),
    /// The face pipeline failed.
    #[error(transparent)]
    Face(#[from] FaceError),
    /// libtorch failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to prepare, and how.
#[derive(Debug, Clone)]
pub struct PrepareConfig {
    /// Folder holding `Videos_LeftCamera/` and/or `Videos_RightCamera/`.
    pub videos_root: PathBuf,
    /// Folder holding `ActionUnit_Labels/` (or that folder itself).
    pub labels_root: PathBuf,
    /// Where prepared datasets live (one content-addressed folder each).
    pub out_root: PathBuf,
    /// Which camera's video.
    pub camera: Camera,
    /// Crop template.
    pub template: Template,
    /// Crop side, pixels.
    pub size: u32,
    /// Subjects to prepare (default: every subject with labels).
    pub subjects: Option<Vec<String>>,
    /// Smallest face searched for, pixels (default: an eighth of the frame height).
    pub min_face: Option<f64>,
    /// Frames per detection batch.
    pub batch: usize,
    /// Where MTCNN and the warps run.
    pub device: Device,
    /// Folder of `mtcnn_{pnet,rnet,onet}.safetensors`.
    pub weights_dir: PathBuf,
}

/// Time spent per step, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for ffmpeg's decoded frames.
    pub decode_s: f64,
    /// MTCNN.
    pub detect_s: f64,
    /// Similarity fits and warps.
    pub align_s: f64,
    /// Writing the crops.
    pub write_s: f64,
}

impl Timings {
    fn add(&mut self, o: &Timings) {
        self.decode_s += o.decode_s;
        self.detect_s += o.detect_s;
        self.align_s += o.align_s;
        self.write_s += o.write_s;
    }
}

/// One prepared subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectSummary {
    /// Subject id.
    pub subject: String,
    /// The video's file name.
    pub video: String,
    /// sha256 of the video file.
    pub video_sha256: String,
    /// Frames in the video.
    pub video_frames: u64,
    /// Frames in the label files.
    pub label_frames: u64,
    /// Frames kept (the smaller of the two).
    pub frames: u64,
    /// Frames the face was detected in.
    pub detected: u64,
    /// Frames interpolated between detections.
    pub interpolated: u64,
    /// Frames holding a neighbour's landmarks.
    pub held: u64,
    /// Frames with no face found anywhere near.
    pub no_face: u64,
    /// Time spent per step.
    pub timings: Timings,
}

/// A prepared dataset's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedManifest {
    /// [`FORMAT`].
    pub format: String,
    /// The content address (also the pack's source hash).
    pub id: String,
    /// Camera.
    pub camera: Camera,
    /// Crop template name.
    pub template: Template,
    /// Template points (landmark index, side fractions).
    pub template_points: Vec<(usize, [f64; 2])>,
    /// Crop side, pixels.
    pub size: u32,
    /// AU columns of the pack.
    pub aus: Vec<u32>,
    /// Smallest face searched for, pixels.
    pub min_face: f64,
    /// MTCNN thresholds.
    pub thresholds: [f32; 3],
    /// sha256 of each MTCNN weights file.
    pub detector_weights: Vec<(String, String)>,
    /// Per subject.
    pub subjects: Vec<SubjectSummary>,
    /// Frames in all.
    pub frames: u64,
    /// The ausweep version that wrote it.
    pub ausweep_version: String,
}

/// A prepared dataset on disk.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its folder.
    pub dir: PathBuf,
    /// `dir/dataset.pack`.
    pub pack: PathBuf,
    /// What `manifest.json` says.
    pub manifest: PreparedManifest,
    /// Whether it existed already (nothing was done).
    pub reused: bool,
}

/// Progress of a running preparation.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Subject being prepared.
    pub subject: String,
    /// Its index (0-based) and the number of subjects.
    pub index: (usize, usize),
    /// Frames done of this subject and its total.
    pub frames: (u64, u64),
    /// Frames per second over this subject so far.
    pub fps: f64,
    /// Estimated time left for the whole preparation.
    pub eta: Duration,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.eta.as_secs();
        write!(
            f,
            "prepare {} ({}/{}): {}/{} frames, {:.0} frames/s, ETA {}m{:02}s",
            self.subject,
            self.index.0 + 1,
            self.index.1,
            self.frames.0,
            self.frames.1,
            self.fps,
            e / 60,
            e % 60
        )
    }
}

const MTCNN: [&str; 3] = ["pnet", "rnet", "onet"];

fn labels_layout(cfg: &PrepareConfig) -> DisfaLayout {
    let mut l = DisfaLayout::new(&cfg.labels_root, &cfg.labels_root);
    l.frame_ext = FrameExt::Png;
    l.subjects = cfg.subjects.clone();
    l
}

fn detector_config(cfg: &PrepareConfig, height: u32) -> DetectorConfig {
    DetectorConfig {
        min_face_size: cfg.min_face.unwrap_or(f64::from(height) / 8.0).max(12.0),
        ..DetectorConfig::default()
    }
}

/// The folder `cfg` prepares into (cheap: hashes label files, not videos).
pub fn dataset_dir(cfg: &PrepareConfig) -> Result<PathBuf, PrepareError> {
    let layout = labels_layout(cfg);
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(
        format!(
            "|{}|{:?}|{}|{:?}|{:?}\0",
            cfg.camera.as_str(),
            cfg.template.points(),
            cfg.size,
            cfg.min_face,
            DetectorConfig::default().thresholds
        )
        .as_bytes(),
    );
    for net in MTCNN {
        let p = cfg.weights_dir.join(format!("mtcnn_{net}.safetensors"));
        let bytes = std::fs::read(&p).map_err(|e| {
            PrepareError::Config(format!(
                "MTCNN weights {}: {e} (make setup converts them)",
                p.display()
            ))
        })?;
        h.update(Sha256::digest(&bytes));
    }
    for subject in layout.subject_list()? {
        let video = cfg.camera.video(&cfg.videos_root, &subject);
        let meta = std::fs::metadata(&video).map_err(|e| {
            PrepareError::Config(format!(
                "{subject}: no {} video at {} ({e}); prepare another camera or leave the subject out with --subjects",
                cfg.camera.as_str(),
                video.display()
            ))
        })?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.update(format!("{subject}|{}|{mtime}\0", meta.len()).as_bytes());
        for au in DISFA_LABEL_AUS {
            let f = layout.label_file(&subject, au);
            let bytes = std::fs::read(&f).map_err(|_| DataError::MissingLabelFile(f.clone()))?;
            h.update(Sha256::digest(&bytes));
        }
    }
    let id = hex::encode(h.finalize());
    Ok(cfg.out_root.join(format!(
        "disfa-{}-{}-{}px-{}",
        cfg.camera.as_str(),
        cfg.template.name(),
        cfg.size,
        &id[..16]
    )))
}

fn read_manifest(dir: &Path) -> Option<PreparedManifest> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PrepareError> {
    ausweep_fsutil::write(path, bytes).map_err(io(path))
}

/// Prepares the dataset `cfg` describes (or finds it prepared), holding a lock on its folder so
/// two preparations of one source never race; `progress` hears about every couple of seconds.
// Long function: locks, reuses or prepares the folder and then packs it; every step depends on the
// one before.
pub fn prepare(
    cfg: &PrepareConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Prepared, PrepareError> {
    if cfg.size < 16 || cfg.batch == 0 {
        return Err(PrepareError::Config(format!(
            "crop size {} (at least 16) and batch {} (at least 1)",
            cfg.size, cfg.batch
        )));
    }
    let dir = dataset_dir(cfg)?;
    let pack = dir.join("dataset.pack");
    let done = |dir: &Path| read_manifest(dir).filter(|m| m.format == FORMAT && pack.is_file());
    if let Some(manifest) = done(&dir) {
        return Ok(Prepared {
            dir,
            pack,
            manifest,
            reused: true,
        });
    }
    std::fs::create_dir_all(dir.join("parts")).map_err(io(&dir))?;
    std::fs::create_dir_all(dir.join("frames")).map_err(io(&dir))?;
    let lock_path = dir.join(".lock");
    let _lock = ausweep_fsutil::FileLock::take(&lock_path).map_err(io(&lock_path))?;
    if let Some(manifest) = done(&dir) {
        return Ok(Prepared {
            dir,
            pack,
            manifest,
            reused: true,
        });
    }
    // A killed run's half-written part is discarded; finished parts are kept.
    if let Ok(rd) = std::fs::read_dir(dir.join("parts")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().contains(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let layout = labels_layout(cfg);
    let subjects = layout.subject_list()?;
    let mut detector: Option<(Detector, DetectorConfig)> = None;
    let mut summaries = Vec::new();
    let started = Instant::now();
    let mut frames_done_before = 0u64;
    let mut first_height = None;
    for (i, subject) in subjects.iter().enumerate() {
        let part = dir.join("parts").join(format!("{subject}.pack"));
        let summary_path = dir.join("parts").join(format!("{subject}.json"));
        let finished = std::fs::read_to_string(&summary_path)
            .ok()
            .and_then(|t| serde_json::from_str::<SubjectSummary>(&t).ok())
            .filter(|_| part.is_file());
        if let Some(s) = finished {
            frames_done_before += s.frames;
            summaries.push(s);
            continue;
        }
        let video = cfg.camera.video(&cfg.videos_root, subject);
        let probe = ffmpeg::probe(&video)?;
        first_height.get_or_insert(probe.height);
        let dcfg = detector_config(cfg, probe.height);
        // MTCNN looks at a copy shrunk so the smallest face searched for is still 48 px (O-net's
        // input side): faces as large as DISFA's lose nothing, and the pyramid costs a quarter.
        let reduce = (dcfg.min_face_size / 48.0).floor().clamp(1.0, 4.0) as i64;
        let dcfg = DetectorConfig {
            min_face_size: dcfg.min_face_size / reduce as f64,
            ..dcfg
        };
        if detector.as_ref().is_none_or(|(_, c)| *c != dcfg) {
            detector = Some((Detector::load(&cfg.weights_dir, cfg.device, dcfg)?, dcfg));
        }
        let Some((det, _)) = detector.as_ref() else {
            continue;
        };
        let ctx = SubjectJob {
            cfg,
            subject,
            index: (i, subjects.len()),
            layout: &layout,
            video: &video,
            probe,
            part: &part,
            frames_csv: &dir.join("frames").join(format!("{subject}.csv")),
            id: &id,
            started,
            frames_done_before,
            reduce,
        };
        let s = ctx.run(det, progress)?;
        write_atomic(
            &summary_path,
            &serde_json::to_vec_pretty(&s).unwrap_or_default(),
        )?;
        frames_done_before += s.frames;
        summaries.push(s);
    }
    // Join the parts into one pack, then record the manifest (its presence marks the end).
    let mut w = PackWriter::create(&pack, cfg.size, &DISFA_LABEL_AUS)?;
    for s in &summaries {
        let p = PackedCache::open(&dir.join("parts").join(format!("{}.pack", s.subject)))?;
        let k = p.aus().len();
        for f in 0..p.len() {
            w.push(
                &s.subject,
                p.frames()[f],
                &p.intensities()[f * k..(f + 1) * k],
                &p.frame(f)?,
            )?;
        }
    }
    w.finish(&id)?;
    let dcfg = detector
        .map(|(_, c)| c)
        .unwrap_or_else(|| detector_config(cfg, 768));
    let manifest = PreparedManifest {
        format: FORMAT.into(),
        id,
        camera: cfg.camera,
        template: cfg.template,
        template_points: cfg.template.points(),
        size: cfg.size,
        aus: DISFA_LABEL_AUS.to_vec(),
        min_face: dcfg.min_face_size,
        thresholds: dcfg.thresholds,
        detector_weights: MTCNN
            .iter()
            .map(|n| {
                let p = cfg.weights_dir.join(format!("mtcnn_{n}.safetensors"));
                let h = std::fs::read(&p)
                    .map(|b| hex::encode(Sha256::digest(&b)))
                    .unwrap_or_default();
                (format!("mtcnn_{n}.safetensors"), h)
            })
            .collect(),
        frames: summaries.iter().map(|s| s.frames).sum(),
        subjects: summaries,
        ausweep_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_atomic(
        &dir.join("manifest.json"),
        &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )?;
    for s in &manifest.subjects {
        let _ = std::fs::remove_file(dir.join("parts").join(format!("{}.pack", s.subject)));
    }
    Ok(Prepared {
        dir,
        pack,
        manifest,
        reused: false,
    })
}

/// One subject's preparation.
struct SubjectJob<'a> {
    cfg: &'a PrepareConfig,
    subject: &'a str,
    index: (usize, usize),
    layout: &'a DisfaLayout,
    video: &'a Path,
    probe: ffmpeg::Probe,
    part: &'a Path,
    frames_csv: &'a Path,
    id: &'a str,
    started: Instant,
    frames_done_before: u64,
    reduce: i64,
}

impl SubjectJob<'_> {
    // Long function: the per-subject pipeline, stage after stage, with the resumable parts'
    // bookkeeping between them.
    fn run(
        &self,
        det: &Detector,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<SubjectSummary, PrepareError> {
        let mut report = ausweep_data::SkipReport::default();
        let labels = disfa::subject_labels(
            self.layout,
            self.subject,
            &DISFA_LABEL_AUS,
            false,
            &mut report,
        )?;
        let label_frames = labels.len() as u64;
        let video_frames = self.probe.frames;
        if video_frames.abs_diff(label_frames) > 1 {
            return Err(PrepareError::Counts {
                subject: self.subject.to_string(),
                video: self.video.to_path_buf(),
                video_frames,
                labels: self.layout.labels_dir().join(self.subject),
                label_frames,
            });
        }
        let keep = video_frames.min(label_frames);
        if video_frames != label_frames {
            eprintln!(
                "prepare {}: the video has {video_frames} frames and the labels {label_frames}; keeping the first {keep} (the policy for a one-frame difference)",
                self.subject
            );
        }
        // Hash the video while it is decoded (the page cache serves both).
        let video = self.video.to_path_buf();
        let hasher = std::thread::spawn(move || -> std::io::Result<String> {
            let mut f = std::fs::File::open(&video)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        });
        let (w, h) = (self.probe.width, self.probe.height);
        let mut frames = ffmpeg::Frames::open(self.video, &self.probe)?;
        let mut out = PackWriter::create(self.part, self.cfg.size, &DISFA_LABEL_AUS)?;
        let mut tracker = Tracker::new(TrackConfig::default());
        let fallback = centre_landmarks(w, h);
        let mut csv = String::from(
            "frame,flag,confidence,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,mouth_left_x,mouth_left_y,mouth_right_x,mouth_right_y\n",
        );
        let mut t = Timings::default();
        let mut counts = [0u64; 4];
        let mut buf = Vec::new();
        let fbytes = w as usize * h as usize * 3;
        // Frames read but not written: those after the newest detection wait (up to
        // MAX_WAITING) for the next one, so a gap between batches is interpolated, not held.
        let mut waiting: Vec<u8> = Vec::new();
        let mut waiting_picks: Vec<Option<Tracked>> = Vec::new();
        let mut before: Option<Tracked> = None;
        let (mut read, mut done) = (0u64, 0u64);
        let began = Instant::now();
        let mut last_report = Instant::now();
        while done < keep {
            let want = (self.cfg.batch as u64).min(keep - read) as usize;
            if want > 0 {
                let t0 = Instant::now();
                let n = frames.read_batch(want, &mut buf)?;
                t.decode_s += t0.elapsed().as_secs_f64();
                if n == 0 {
                    return Err(PrepareError::Video {
                        path: self.video.to_path_buf(),
                        msg: format!("ended after {read} frames; ffprobe counted {video_frames}"),
                    });
                }
                let t0 = Instant::now();
                let imgs = Tensor::from_slice(&buf)
                    .view([n as i64, i64::from(h), i64::from(w), 3])
                    .permute([0, 3, 1, 2])
                    .to_device(self.cfg.device);
                let faces = detect_reduced(det, &imgs, self.reduce)?;
                waiting_picks.extend(faces.iter().map(|f| tracker.pick(f)));
                waiting.extend_from_slice(&buf[..n * fbytes]);
                read += n as u64;
                t.detect_s += t0.elapsed().as_secs_f64();
            }
            let emit = ready(&waiting_picks, read == keep);
            if emit == 0 {
                continue;
            }
            let t0 = Instant::now();
            let tracked = Tracker::fill(before.as_ref(), &waiting_picks[..emit], fallback);
            let imgs = Tensor::from_slice(&waiting[..emit * fbytes])
                .view([emit as i64, i64::from(h), i64::from(w), 3])
                .permute([0, 3, 1, 2])
                .to_device(self.cfg.device);
            let crops = tracked
                .iter()
                .enumerate()
                .map(|(j, tr)| {
                    let to_crop = self.cfg.template.fit(&tr.landmarks, self.cfg.size);
                    template::warp_region(&imgs.get(j as i64), &to_crop, i64::from(self.cfg.size))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let crops = Tensor::cat(&crops, 0)
                .round()
                .clamp(0.0, 255.0)
                .to_kind(Kind::Uint8)
                .to_device(Device::Cpu)
                .contiguous();
            let fb = 3 * self.cfg.size as usize * self.cfg.size as usize;
            let mut pixels = vec![0u8; emit * fb];
            crops.copy_data_u8(&mut pixels, emit * fb);
            t.align_s += t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            for (j, tr) in tracked.iter().enumerate() {
                let (frame, row) = &labels[done as usize + j];
                out.push(self.subject, *frame, row, &pixels[j * fb..(j + 1) * fb])?;
                counts[tr.flag as usize] += 1;
                let _ = write!(csv, "{frame},{},{:.4}", tr.flag.as_str(), tr.confidence);
                for p in tr.landmarks {
                    let _ = write!(csv, ",{:.2},{:.2}", p[0], p[1]);
                }
                csv.push('\n');
            }
            if let Some(last) = waiting_picks[..emit].iter().rev().find_map(|p| *p) {
                before = Some(last);
            }
            waiting.drain(..emit * fbytes);
            waiting_picks.drain(..emit);
            t.write_s += t0.elapsed().as_secs_f64();
            done += emit as u64;
            if last_report.elapsed() >= Duration::from_secs(2) || done == keep {
                last_report = Instant::now();
                let fps = done as f64 / began.elapsed().as_secs_f64().max(1e-9);
                let total_done = self.frames_done_before + done;
                let overall = total_done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                let left_subjects = (self.index.1 - self.index.0 - 1) as f64;
                let left = (keep - done) as f64 + left_subjects * keep as f64;
                progress(&Progress {
                    subject: self.subject.to_string(),
                    index: self.index,
                    frames: (done, keep),
                    fps,
                    eta: Duration::from_secs_f64(left / overall.max(1e-9)),
                });
            }
        }
        drop(frames);
        let t0 = Instant::now();
        out.finish(self.id)?;
        write_atomic(self.frames_csv, csv.as_bytes())?;
        t.write_s += t0.elapsed().as_secs_f64();
        let video_sha256 = hasher
            .join()
            .map_err(|_| PrepareError::Config("the video hashing thread panicked".into()))?
            .map_err(io(self.video))?;
        let [detected, interpolated, held, no_face] = counts;
        let mut timings = Timings::default();
        timings.add(&t);
        Ok(SubjectSummary {
            subject: self.subject.to_string(),
            video: self
                .video
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            video_sha256,
            video_frames,
            label_frames,
            frames: keep,
            detected,
            interpolated,
            held,
            no_face,
            timings,
        })
    }
}

/// How many of the waiting frames can be written: through the newest detection (the frames
/// after it wait for the next one, to be interpolated), or all of them at the end of the video or
/// when more than [`MAX_WAITING`] wait.
fn ready(picks: &[Option<Tracked>], at_end: bool) -> usize {
    if at_end || picks.len() > MAX_WAITING {
        return picks.len();
    }
    picks.iter().rposition(Option::is_some).map_or(0, |i| i + 1)
}

/// MTCNN on `imgs` (`[B,3,H,W]` u8) shrunk `reduce`× by area averaging (a frame at a time, so
/// no float copy of the whole batch exists), with boxes and landmarks mapped back to full-size
/// pixel-index coordinates.
fn detect_reduced(
    det: &Detector,
    imgs: &Tensor,
    reduce: i64,
) -> Result<Vec<Vec<Face>>, PrepareError> {
    let n = imgs.size()[0];
    let small: Vec<Tensor> = (0..n)
        .map(|i| {
            let f = imgs.get(i).unsqueeze(0).to_kind(Kind::Float);
            if reduce > 1 {
                f.avg_pool2d(
                    [reduce, reduce],
                    [reduce, reduce],
                    [0, 0],
                    false,
                    true,
                    None,
                )
            } else {
                f
            }
        })
        .collect();
    let mut faces = det.detect(&Tensor::cat(&small, 0))?;
    let k = reduce as f32;
    // Small pixel i covers full pixels [i·k, (i+1)·k): its centre is at i·k + (k − 1)/2.
    let back = |v: f32| v * k + (k - 1.0) / 2.0;
    for f in faces.iter_mut().flatten() {
        f.bbox = f.bbox.map(|v| v * k);
        f.landmarks = f.landmarks.map(|p| p.map(back));
    }
    Ok(faces)
}

/// Landmarks of a face-sized template at the frame's centre (for frames with no face at all).
fn centre_landmarks(w: u32, h: u32) -> [[f32; 2]; 5] {
    let (cx, cy, d) = (w as f32 / 2.0, h as f32 * 0.45, h as f32 / 10.0);
    [
        [cx - d / 2.0, cy],
        [cx + d / 2.0, cy],
        [cx, cy + 0.6 * d],
        [cx - 0.4 * d, cy + 1.1 * d],
        [cx + 0.4 * d, cy + 1.1 * d],
    ]
}

/// Sums the timings of every subject of a manifest.
pub fn total_timings(m: &PreparedManifest) -> Timings {
    let mut t = Timings::default();
    for s in &m.subjects {
        t.add(&s.timings);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use track::FrameFlag;

    #[test]
    fn frames_after_the_newest_detection_wait_for_the_next() {
        let det = Some(Tracked {
            landmarks: [[0.0; 2]; 5],
            confidence: 0.99,
            flag: FrameFlag::Detected,
        });
        // A batch ending in a gap: write through the detection, keep the gap waiting.
        assert_eq!(ready(&[det, None, det, None, None], false), 3);
        assert_eq!(ready(&[None, None], false), 0);
        // The end of the video, or too long a wait: everything goes (the tail is held).
        assert_eq!(ready(&[det, None, None], true), 3);
        let long = vec![None; MAX_WAITING + 1];
        assert_eq!(ready(&long, false), MAX_WAITING + 1);
        assert_eq!(ready(&long[..MAX_WAITING], false), 0);
    }
}
