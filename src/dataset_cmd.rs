//! `ausweep dataset`: render the synthetic DISFA, inspect a DISFA-layout tree.

use anyhow::Result;
use ausweep_data::{disfa, synth};
use clap::Subcommand;
use std::path::PathBuf;

/// Dataset commands.
#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Render the synthetic DISFA in DISFA's layout (labels + frames).
    Synth {
        /// Output folder (gets ActionUnit_Labels/ and Frames/).
        out: PathBuf,
        /// Number of subjects (DISFA ids while <= 27).
        #[arg(long, default_value_t = 27)]
        subjects: u32,
        /// Frames per subject.
        #[arg(long, default_value_t = 300)]
        frames: u32,
        /// Side of the frames in pixels.
        #[arg(long, default_value_t = 64)]
        size: u32,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write a PNG grid of a neutral frame and each AU at its strongest.
        #[arg(long)]
        preview: Option<PathBuf>,
        /// Write DISFA-like videos instead of cropped frames: per subject
        /// `Videos_LeftCamera/LeftVideoSNxxx_comp.avi` (and right), the head moving over a
        /// cluttered room, with label files and ground-truth eye positions in `Landmarks/`.
        #[arg(long)]
        videos: bool,
        /// Video width (with --videos).
        #[arg(long, default_value_t = 1024)]
        width: u32,
        /// Video height (with --videos).
        #[arg(long, default_value_t = 768)]
        height: u32,
        /// Cameras (with --videos): left, right or both, comma-separated.
        #[arg(long, default_value = "left,right", value_delimiter = ',')]
        cameras: Vec<ausweep_data::synth::video::Camera>,
        /// Subjects whose videos are one frame shorter than their labels, as some DISFA copies
        /// of SN010 are (with --videos).
        #[arg(long, value_delimiter = ',')]
        short: Vec<String>,
    },
    /// Prepare DISFA's videos for training: decode with ffmpeg, find and track the face with
    /// MTCNN, align it to a crop template and write the crops into a packed dataset (resumable,
    /// locked, content-addressed under --out).
    Prepare {
        /// Folder holding `Videos_LeftCamera/` (and/or `Videos_RightCamera/`).
        videos_root: PathBuf,
        /// Folder holding `ActionUnit_Labels/` (default: the videos folder).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Where prepared datasets live (default: `$AUSWEEP_DATA_CACHE/prepared`, else
        /// `~/.cache/ausweep/data/prepared`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Camera: left or right.
        #[arg(long, default_value = "left")]
        camera: ausweep_data::synth::video::Camera,
        /// Crop template: eyes (ausweep's, eyes level at 0.385 of the side) or five (all five
        /// landmarks, least squares).
        #[arg(long, default_value = "eyes")]
        template: ausweep_vision::prepare::Template,
        /// Crop side, pixels.
        #[arg(long, default_value_t = 224)]
        size: u32,
        /// Only these subjects (comma-separated, e.g. SN001,SN002).
        #[arg(long, value_delimiter = ',')]
        subjects: Option<Vec<String>>,
        /// Smallest face searched for, pixels (default: an eighth of the frame height).
        #[arg(long)]
        min_face: Option<f64>,
        /// Frames per detection batch.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Device for detection and alignment: cpu, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Read a DISFA-layout tree and print its subjects, frames and AU positive rates.
    Stats {
        /// Folder holding ActionUnit_Labels/ (or that folder itself).
        labels_root: PathBuf,
        /// Folder holding SNxxx/<frame-1>.jpg|png (or Frames/).
        frames_root: PathBuf,
        /// Presence threshold.
        #[arg(long, default_value_t = 2)]
        threshold: u8,
        /// Skip and count bad frames instead of failing.
        #[arg(long)]
        lenient: bool,
    },
}

/// Runs a dataset command.
// Long function: one arm per `ausweep dataset` verb, each a few lines.
pub fn run(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::Synth {
            out,
            subjects,
            frames,
            size,
            seed,
            preview,
            videos,
            width,
            height,
            cameras,
            short,
        } => {
            if videos {
                let cfg = synth::video::VideoSynthConfig {
                    subjects,
                    frames,
                    width,
                    height,
                    seed,
                    cameras,
                    short_subjects: short,
                };
                let t = std::time::Instant::now();
                let s = synth::video::write_videos(&out, &cfg)?;
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "wrote {} videos ({} frames of {width}x{height}, {:.0} frames/s) and labels to {}",
                    s.videos.len(),
                    s.frames,
                    s.frames as f64 / secs.max(1e-9),
                    out.display()
                );
                return Ok(());
            }
            let cfg = synth::SynthConfig {
                subjects,
                frames,
                size,
                seed,
            };
            cfg.validate()?;
            let s = synth::write_disfa(&out, &cfg)?;
            println!(
                "wrote {subjects} subjects x {frames} frames of {size} px to {}",
                out.display()
            );
            println!("{s:?}");
            if let Some(p) = preview {
                let samples = synth::render_samples(&cfg);
                let idx = synth::showcase_indices(&samples);
                synth::save_preview(&samples, &idx, idx.len() as u32, &p)?;
                println!("preview: {}", p.display());
            }
            Ok(())
        }
        DatasetCmd::Prepare {
            videos_root,
            labels,
            out,
            camera,
            template,
            size,
            subjects,
            min_face,
            batch,
            device,
        } => {
            use ausweep_vision::prepare;
            let cfg = prepare::PrepareConfig {
                labels_root: labels.unwrap_or_else(|| videos_root.clone()),
                videos_root,
                out_root: out.unwrap_or_else(|| {
                    ausweep_trainer::train::weights::data_cache_dir().join("prepared")
                }),
                camera,
                template,
                size,
                subjects,
                min_face,
                batch,
                device: ausweep_trainer::train::parse_device(&device)
                    .map_err(anyhow::Error::msg)?,
                weights_dir: ausweep_trainer::train::weights::weights_dir(),
            };
            let t = std::time::Instant::now();
            let p = prepare::prepare(&cfg, &mut |p| eprintln!("{p}"))?;
            print_prepared(&p, t.elapsed().as_secs_f64());
            Ok(())
        }
        DatasetCmd::Stats {
            labels_root,
            frames_root,
            threshold,
            lenient,
        } => {
            let opts = disfa::ReadOptions {
                lenient,
                ..Default::default()
            };
            let (s, skips) =
                disfa::read(&disfa::DisfaLayout::new(&labels_root, &frames_root), &opts)?;
            if !skips.is_empty() {
                println!("skipped: {skips}");
            }
            let k = s.aus.len();
            let labels = s.presence(threshold);
            println!("{} subjects, {} frames", s.subject_names.len(), s.len());
            for (j, au) in s.aus.iter().enumerate() {
                let pos = (0..s.len()).filter(|&i| labels[i * k + j] == 1).count();
                println!(
                    "  AU{au:<3} {:6.2} % present",
                    100.0 * pos as f64 / s.len().max(1) as f64
                );
            }
            let none = (0..s.len())
                .filter(|&i| labels[i * k..(i + 1) * k].iter().all(|&v| v == 0))
                .count();
            println!(
                "  no AU  {:6.2} %",
                100.0 * none as f64 / s.len().max(1) as f64
            );
            Ok(())
        }
    }
}

/// Prints what a preparation produced: folder, counts per subject, time per step.
fn print_prepared(p: &ausweep_vision::prepare::Prepared, secs: f64) {
    let m = &p.manifest;
    let what = if p.reused {
        "already prepared"
    } else {
        "prepared"
    };
    println!(
        "{what}: {} ({} subjects, {} frames, {} px, template {}, camera {})",
        p.dir.display(),
        m.subjects.len(),
        m.frames,
        m.size,
        m.template.name(),
        m.camera.as_str()
    );
    println!("  subject  frames  detected  interpolated  held  no_face");
    for s in &m.subjects {
        println!(
            "  {:<7} {:>7} {:>9} {:>13} {:>5} {:>8}",
            s.subject, s.frames, s.detected, s.interpolated, s.held, s.no_face
        );
    }
    if !p.reused {
        let t = ausweep_vision::prepare::total_timings(m);
        let per = |s: f64| m.frames as f64 / s.max(1e-9);
        println!(
            "  {:.1} s in all, {:.1} frames/s; decode {:.1} s, detect {:.1} s ({:.0} frames/s), align {:.1} s, write {:.1} s",
            secs,
            m.frames as f64 / secs.max(1e-9),
            t.decode_s,
            t.detect_s,
            per(t.detect_s),
            t.align_s,
            t.write_s
        );
    }
}
