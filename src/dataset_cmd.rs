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
    },
    /// Extract frames from DISFA's videos with ffmpeg into `FRAMES_ROOT/SNxxx/<frame-1>.png`.
    Ingest {
        /// Folder of the videos (e.g. `Videos_LeftCamera`).
        videos: PathBuf,
        /// Where the frame folders go.
        frames_root: PathBuf,
        /// png or jpg.
        #[arg(long, default_value = "png")]
        ext: String,
        /// Re-extract subjects that already have frames.
        #[arg(long)]
        force: bool,
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
pub fn run(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::Synth {
            out,
            subjects,
            frames,
            size,
            seed,
            preview,
        } => {
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
        DatasetCmd::Ingest {
            videos,
            frames_root,
            ext,
            force,
        } => {
            for r in ausweep_data::ingest::ingest(&videos, &frames_root, &ext, force)? {
                let what = if r.skipped { "kept" } else { "extracted" };
                println!(
                    "{}: {what} {} frames ({})",
                    r.subject,
                    r.frames,
                    r.video.display()
                );
            }
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
