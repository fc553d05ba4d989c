//! `ausweep bench prepare`: dataset preparation frames/s (decode / detect / align / write) next to
//! the pipeline a lab would write in Python (OpenCV decoding, facenet-pytorch's MTCNN, OpenCV's
//! warpAffine) on the same videos, plus the alignment accuracy against the synthetic videos'
//! ground-truth eyes.

use anyhow::{Context, Result};
use ausweep_data::synth::video::{write_videos, Camera, VideoSynthConfig};
use ausweep_vision::prepare::{self, accuracy, PrepareConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What to measure (the flags of `ausweep bench prepare`).
#[derive(clap::Args)]
pub struct Args {
    /// An existing video root (Videos_LeftCamera/, ActionUnit_Labels/); default: render
    /// synthetic videos.
    #[arg(long)]
    pub videos: Option<PathBuf>,
    /// Synthetic subjects.
    #[arg(long, default_value_t = 2)]
    pub subjects: u32,
    /// Synthetic frames per subject (DISFA: 4845).
    #[arg(long, default_value_t = 200)]
    pub frames: u32,
    /// Synthetic video width.
    #[arg(long, default_value_t = 1024)]
    pub width: u32,
    /// Synthetic video height.
    #[arg(long, default_value_t = 768)]
    pub height: u32,
    /// Crop side, pixels.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Frames per detection batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Crop template: eyes or five.
    #[arg(long, default_value = "eyes")]
    pub template: ausweep_vision::prepare::Template,
    /// Device: cpu or cuda:N (the reference runs on the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Frames of each video the reference prepares (0: all).
    #[arg(long, default_value_t = 0)]
    pub reference_frames: u64,
    /// Skip the reference.
    #[arg(long)]
    pub no_reference: bool,
}

fn line(name: &str, frames: u64, total: f64, split: [f64; 4]) {
    let fps = |s: f64| frames as f64 / s.max(1e-9);
    println!(
        "  {name:<34} {:8.1} frames/s   decode {:7.0}  detect {:6.1}  align {:7.0}  write {:8.0} frames/s",
        fps(total),
        fps(split[0]),
        fps(split[1]),
        fps(split[2]),
        fps(split[3])
    );
}

/// Runs the benchmark.
// Long function: the benchmark's script: each preparation stage timed against its reference in
// order.
pub fn run(a: Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (root, synthetic) = match &a.videos {
        Some(v) => (v.clone(), false),
        None => {
            let root = tmp.path().join("videos");
            let t = Instant::now();
            let s = write_videos(
                &root,
                &VideoSynthConfig {
                    subjects: a.subjects,
                    frames: a.frames,
                    width: a.width,
                    height: a.height,
                    seed: 0,
                    cameras: vec![Camera::Left],
                    short_subjects: vec![],
                },
            )?;
            let secs = t.elapsed().as_secs_f64();
            let bytes: u64 = s
                .videos
                .iter()
                .filter_map(|v| std::fs::metadata(v).ok())
                .map(|m| m.len())
                .sum();
            println!(
                "rendered {} synthetic videos, {} frames of {}x{} in {secs:.1} s ({:.0} frames/s), {:.1} MB on disk",
                s.videos.len(),
                s.frames,
                a.width,
                a.height,
                s.frames as f64 / secs.max(1e-9),
                bytes as f64 / 1e6
            );
            (root, true)
        }
    };
    let cfg = PrepareConfig {
        videos_root: root.clone(),
        labels_root: root.clone(),
        out_root: tmp.path().join("prepared"),
        camera: Camera::Left,
        template: a.template,
        size: a.size,
        subjects: None,
        min_face: None,
        batch: a.batch,
        device: ausweep_trainer::train::parse_device(&a.device).map_err(anyhow::Error::msg)?,
        weights_dir: ausweep_trainer::train::weights::weights_dir(),
    };
    let rss0 = peak_rss_mib();
    let t = Instant::now();
    let p = prepare::prepare(&cfg, &mut |p| eprintln!("{p}"))?;
    let secs = t.elapsed().as_secs_f64();
    let m = &p.manifest;
    let tt = prepare::total_timings(m);
    let pack_bytes = std::fs::metadata(&p.pack).map(|m| m.len()).unwrap_or(0);
    println!(
        "prepare: {} subjects, {} frames -> {} px crops (template {}), {} on {} CPU threads; pack {:.1} MB ({:.1} KB/frame), peak RSS {:.0} MiB (was {:.0} before)",
        m.subjects.len(),
        m.frames,
        m.size,
        m.template.name(),
        a.device,
        tch::get_num_threads(),
        pack_bytes as f64 / 1e6,
        pack_bytes as f64 / 1e3 / m.frames.max(1) as f64,
        peak_rss_mib(),
        rss0
    );
    line(
        "ausweep",
        m.frames,
        secs,
        [tt.decode_s, tt.detect_s, tt.align_s, tt.write_s],
    );
    let tracked: u64 = m.subjects.iter().map(|s| s.detected + s.interpolated).sum();
    let flagged: u64 = m
        .subjects
        .iter()
        .map(|s| s.interpolated + s.held + s.no_face)
        .sum();
    println!(
        "    face detected or interpolated in {:.2} % of frames; {flagged} frames flagged (interpolated, held or no face)",
        100.0 * tracked as f64 / m.frames.max(1) as f64
    );
    if synthetic {
        let mut errors = Vec::new();
        for s in &m.subjects {
            let truth = root.join(format!("Landmarks/{}_left.csv", s.subject));
            errors.extend(accuracy::eye_errors(
                &p.dir, &s.subject, &truth, a.template, 112,
            )?);
        }
        let (median, p95, within) = accuracy::summary(&mut errors, 2.0);
        println!(
            "    aligned eye error (112-px crop, against the renderer's truth): median {median:.2} px, p95 {p95:.2} px, {:.1} % within 2 px",
            100.0 * within
        );
    }
    if a.no_reference {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prepare_reference.py");
    let min_face = m.min_face.to_string();
    let (mut frames, mut total, mut split) = (0u64, 0.0, [0.0; 4]);
    for s in &m.subjects {
        let video = Camera::Left.video(&root, &s.subject);
        let v = crate::bench::reference_json(
            Command::new(crate::python())
                .arg(&script)
                .arg(&video)
                .arg(tmp.path().join("reference.raw"))
                .args(["--size", &a.size.to_string(), "--min-face", &min_face])
                .args(["--batch", &a.batch.to_string()])
                .args(["--frames", &a.reference_frames.to_string()]),
        )?;
        let f = |k: &str| {
            v[k].as_f64()
                .with_context(|| format!("reference printed no {k}"))
        };
        frames += f("frames")? as u64;
        total += f("seconds")?;
        for (i, k) in ["decode_s", "detect_s", "align_s", "write_s"]
            .iter()
            .enumerate()
        {
            split[i] += f(k)?;
        }
    }
    line("facenet-pytorch + OpenCV", frames, total, split);
    let ours = m.frames as f64 / secs;
    let theirs = frames as f64 / total.max(1e-9);
    println!(
        "  ratio ausweep / reference          {:8.2}x{}",
        ours / theirs,
        if a.reference_frames > 0 {
            format!(
                " (reference on the first {} frames of each video)",
                a.reference_frames
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// This process's peak resident memory, MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    ausweep_trainer::train::peak_rss_bytes() as f64 / (1024.0 * 1024.0)
}
