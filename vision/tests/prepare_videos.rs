//! `prepare` on DISFA-like synthetic videos (real ffmpeg, real MTCNN): the face is found or
//! tracked in nearly every frame, the aligned eyes land where the template puts them (measured
//! against the renderer's ground truth), labels follow their frames, a one-frame-short video is
//! trimmed, a bigger mismatch is refused naming the subject and both counts, and a second
//! preparation of the same source reuses the first.

use ausweep_data::pack::PackedCache;
use ausweep_data::synth::video::{write_videos, Camera, VideoSynthConfig};
use ausweep_vision::prepare::{self, PrepareConfig, PrepareError, Template};
use std::path::Path;

const FRAMES: u32 = 40;

fn videos(dir: &Path) {
    write_videos(
        dir,
        &VideoSynthConfig {
            subjects: 3,
            frames: FRAMES,
            width: 512,
            height: 384,
            seed: 5,
            cameras: vec![Camera::Left],
            short_subjects: vec!["SN003".into()],
        },
    )
    .unwrap();
}

fn config(videos: &Path, out: &Path) -> PrepareConfig {
    PrepareConfig {
        videos_root: videos.to_path_buf(),
        labels_root: videos.to_path_buf(),
        out_root: out.to_path_buf(),
        camera: Camera::Left,
        template: Template::Eyes,
        size: 48,
        subjects: None,
        min_face: None,
        batch: 8,
        device: tch::Device::Cpu,
        weights_dir: ausweep_weights::dirs::weights_dir(),
    }
}

#[test]
fn videos_are_prepared_into_aligned_labelled_crops() {
    let d = tempfile::tempdir().unwrap();
    let (src, out) = (d.path().join("disfa"), d.path().join("prepared"));
    videos(&src);
    let cfg = config(&src, &out);
    let mut seen = Vec::new();
    let p = prepare::prepare(&cfg, &mut |p| seen.push(p.subject.clone())).unwrap();
    assert!(!p.reused);
    let m = &p.manifest;
    let counts: Vec<(String, u64, u64, u64)> = m
        .subjects
        .iter()
        .map(|s| (s.subject.clone(), s.video_frames, s.label_frames, s.frames))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("SN001".into(), 40, 40, 40),
            ("SN002".into(), 40, 40, 40),
            ("SN003".into(), 39, 40, 39)
        ],
        "the one-frame-short video is trimmed to its length"
    );
    let tracked: u64 = m.subjects.iter().map(|s| s.detected + s.interpolated).sum();
    assert!(
        tracked * 100 >= m.frames * 99,
        "face found or tracked in {tracked} of {} frames: {:?}",
        m.frames,
        m.subjects
    );
    assert!(m.subjects.iter().all(|s| s.video_sha256.len() == 64));

    // Aligned eye error, in pixels of a 112-px crop: the renderer's true eyes mapped through
    // each frame's fitted transform, against where the template puts the eyes.
    let mut errors = Vec::new();
    for s in &m.subjects {
        let truth = src.join(format!("Landmarks/{}_left.csv", s.subject));
        errors.extend(
            prepare::accuracy::eye_errors(&p.dir, &s.subject, &truth, Template::Eyes, 112).unwrap(),
        );
    }
    assert_eq!(errors.len(), 2 * 119);
    let (median, p95, within) = prepare::accuracy::summary(&mut errors, 2.0);
    eprintln!(
        "aligned eye error at 112 px: median {median:.2} px, p95 {p95:.2} px, {:.0} % within 2 px",
        100.0 * within
    );
    assert!(
        median <= 2.0,
        "median aligned eye error {median:.2} px > 2 px"
    );

    // The pack: 12 DISFA AUs, every kept frame, labels from the label files.
    let pack = PackedCache::open(&p.pack).unwrap();
    assert_eq!(pack.len(), 119);
    assert_eq!(pack.aus().len(), 12);
    assert_eq!(pack.size(), 48);
    let k = pack.aus().len();
    let rows: Vec<usize> = (0..pack.len())
        .filter(|&i| pack.subject_names()[pack.subjects()[i] as usize] == "SN002")
        .collect();
    let mut active = 0;
    for (col, au) in pack.aus().iter().enumerate() {
        let text =
            std::fs::read_to_string(src.join(format!("ActionUnit_Labels/SN002/SN002_au{au}.txt")))
                .unwrap();
        let from_file: Vec<u8> = text
            .lines()
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let from_pack: Vec<u8> = rows
            .iter()
            .map(|&i| pack.intensities()[i * k + col])
            .collect();
        assert_eq!(from_pack, from_file, "AU{au} of SN002");
        active += from_file.iter().filter(|&&v| v > 0).count();
    }
    assert!(
        active > 0,
        "no AU ever active in SN002: a vacuous comparison"
    );

    // Same source and settings: reused, nothing redone.
    seen.clear();
    let again = prepare::prepare(&cfg, &mut |p| seen.push(p.subject.clone())).unwrap();
    assert!(again.reused && again.dir == p.dir && seen.is_empty());
}

#[test]
fn a_frame_count_mismatch_names_the_subject_and_stores_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (src, out) = (d.path().join("disfa"), d.path().join("prepared"));
    videos(&src);
    // SN002's labels run three frames past its video.
    for au in [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26] {
        let f = src.join(format!("ActionUnit_Labels/SN002/SN002_au{au}.txt"));
        let mut text = std::fs::read_to_string(&f).unwrap();
        for frame in FRAMES + 1..=FRAMES + 3 {
            text.push_str(&format!("{frame},0\n"));
        }
        std::fs::write(&f, text).unwrap();
    }
    let cfg = config(&src, &out);
    let err = prepare::prepare(&cfg, &mut |_| {}).unwrap_err();
    match &err {
        PrepareError::Counts {
            subject,
            video_frames,
            label_frames,
            ..
        } => assert_eq!(
            (subject.as_str(), *video_frames, *label_frames),
            ("SN002", 40, 43)
        ),
        other => panic!("expected a frame-count error, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("SN002") && msg.contains("40") && msg.contains("43"),
        "{msg}"
    );
    let dir = prepare::dataset_dir(&cfg).unwrap();
    assert!(!dir.join("manifest.json").exists() && !dir.join("dataset.pack").exists());
    // SN001, before the bad subject, is kept for the next run.
    assert!(dir.join("parts/SN001.json").is_file());
}
