//! `ausweep predict` as a user runs it: a real child process on real photographs, a video that
//! ffmpeg encodes here, and broken inputs.

mod common;

use ausweep_proto::job::{Backbone, Objective};
use ausweep_trainer::train::checkpoint::{self, CheckpointMeta};
use ausweep_trainer::train::Model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

fn ausweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ausweep"))
        .arg("predict")
        .args(["--device", "cpu"])
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// A MobileNet-v2 checkpoint (seeded random weights, 64 px) with the given AUs and thresholds
/// in `dir/final.*`, as `ausweep train` writes it.
fn checkpoint(dir: &Path, aus: &[u32], head_outputs: usize, thresholds: &[f64]) -> PathBuf {
    checkpoint_of(dir, aus, head_outputs, thresholds, Objective::Occurrence)
}

/// As [`checkpoint`], of a model trained for `objective`.
fn checkpoint_of(
    dir: &Path,
    aus: &[u32],
    head_outputs: usize,
    thresholds: &[f64],
    objective: Objective,
) -> PathBuf {
    tch::manual_seed(11);
    let m = Model::new(Backbone::MobilenetV2, head_outputs, tch::Device::Cpu);
    let meta = CheckpointMeta {
        thresholds: thresholds.to_vec(),
        objective,
        ..CheckpointMeta::untrained("mobilenet_v2", aus, 64)
    };
    checkpoint::write(dir, "final", &m.named_tensors(), meta).unwrap();
    dir.to_path_buf()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn photos_give_faces_aus_and_emotions_and_broken_inputs_are_named() {
    let d = tempfile::tempdir().unwrap();
    let model = checkpoint(&d.path().join("model"), &AUS, 8, &[0.5; 8]);
    let astronaut = common::photo(d.path(), "astronaut");
    let cat = common::photo(d.path(), "chelsea");
    let broken = d.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = d.path().join("out.jsonl");
    let ann = d.path().join("ann");
    let r = ausweep(&[
        "--model",
        model.to_str().unwrap(),
        astronaut.to_str().unwrap(),
        cat.to_str().unwrap(),
        broken.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--annotate",
        ann.to_str().unwrap(),
    ]);
    let err = text(&r.stderr);
    // The broken file fails the run, by name, and the readable ones are still written.
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("broken.png") && err.contains("not a readable image"),
        "{err}"
    );
    assert!(
        err.contains("no face found in") && err.contains("chelsea.png"),
        "{err}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["faces"].as_array().unwrap().len(), 0);
    let faces = lines[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1);
    let f = &faces[0];
    // facenet-pytorch finds the astronaut at [181.1, 62.2, 267.7, 172.1].
    let want = [181.05, 62.16, 267.75, 172.05];
    for k in 0..4 {
        let got = f["bbox"][k].as_f64().unwrap();
        assert!((got - want[k]).abs() < 1.0, "bbox {}", f["bbox"]);
    }
    let aus = f["aus"].as_array().unwrap();
    assert_eq!(aus.len(), 8);
    let probs: Vec<f64> = aus.iter().map(|a| a["prob"].as_f64().unwrap()).collect();
    for a in aus {
        let p = a["prob"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{a}");
        assert_eq!(a["present"].as_bool().unwrap(), p >= 0.5, "{a}");
    }
    assert!(
        probs.iter().any(|p| (p - probs[0]).abs() > 1e-4),
        "constant outputs {probs:?}"
    );
    let emo = f["emotions"].as_array().unwrap();
    let decidable: Vec<&str> = emo
        .iter()
        .filter(|e| e["decidable"] == true)
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(decidable, ["happiness"]);
    let happy = aus[3]["present"].as_bool().unwrap() && aus[5]["present"].as_bool().unwrap();
    assert_eq!(emo[0]["present"].as_bool(), Some(happy));
    assert!(emo[1]["present"].is_null() && emo[1]["missing"] == serde_json::json!([15]));
    // The annotated frame keeps the photo's size and has the box drawn in.
    let a = image::open(ann.join("astronaut.png")).unwrap().to_rgb8();
    assert_eq!(a.dimensions(), (512, 512));
    assert_eq!(a.get_pixel(181, 120).0, [255, 200, 0]);

    // Predictions do not depend on the batch: the astronaut alone gives the same numbers.
    let r = ausweep(&[
        "--model",
        model.to_str().unwrap(),
        astronaut.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let alone: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(alone["faces"][0]["aus"], f["aus"]);
}

#[test]
fn a_video_gives_openface_rows_for_every_strided_frame() {
    let d = tempfile::tempdir().unwrap();
    let model = checkpoint(&d.path().join("model"), &AUS, 8, &[0.3; 8]);
    let astronaut = common::photo(d.path(), "astronaut");
    // Six frames at 10 fps: the photo, shifted a little each frame.
    let video = d.path().join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i"])
        .arg(&astronaut)
        .args(["-vf", "scale=256:256,crop=224:224:4*n:0", "-frames:v", "6"])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "12"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(st.success());
    let csv = d.path().join("out.csv");
    let r = ausweep(&[
        "--model",
        model.to_str().unwrap(),
        video.to_str().unwrap(),
        "--stride",
        "2",
        "--batch",
        "2",
        "--aus",
        "12,6",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let body = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = body.lines().map(|l| l.split(", ").collect()).collect();
    assert_eq!(
        rows[0],
        [
            "frame",
            "face_id",
            "timestamp",
            "confidence",
            "success",
            "AU12_c",
            "AU06_c",
            "AU12_prob",
            "AU06_prob",
            "x1",
            "y1",
            "x2",
            "y2",
            "input"
        ]
    );
    let frames: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(frames, ["1", "3", "5"], "{body}");
    let stamps: Vec<&str> = rows[1..].iter().map(|r| r[2]).collect();
    assert_eq!(stamps, ["0.000", "0.200", "0.400"]);
    for r in &rows[1..] {
        assert_eq!(r.len(), rows[0].len());
        assert_eq!(r[4], "1", "face found in {r:?}");
        let p: f64 = r[7].parse().unwrap();
        assert_eq!(r[5], if p >= 0.3 { "1.00" } else { "0.00" }, "{r:?}");
    }
    // The crop moves 4 px per frame: the face's centre moves left 8 px every second frame.
    let cx: Vec<f64> = rows[1..]
        .iter()
        .map(|r| (r[9].parse::<f64>().unwrap() + r[11].parse::<f64>().unwrap()) / 2.0)
        .collect();
    assert!((cx[0] - cx[2] - 16.0).abs() < 4.0, "{cx:?}");
}

#[test]
fn a_damaged_video_is_named_and_the_other_inputs_are_still_written() {
    let d = tempfile::tempdir().unwrap();
    let model = checkpoint(&d.path().join("model"), &AUS, 8, &[0.5; 8]);
    let astronaut = common::photo(d.path(), "astronaut");
    let video = d.path().join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=224x224:rate=10",
        ])
        .args([
            "-frames:v",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-crf",
            "12",
        ])
        .arg(&video)
        .status()
        .unwrap();
    assert!(st.success());
    // The middle of the stream overwritten: ffprobe still reads the container, ffmpeg decodes
    // what it can, says so on stderr, and exits 0.
    let mut bytes = std::fs::read(&video).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n * 3 / 10..n * 6 / 10] {
        *b = 0x5A;
    }
    let damaged = d.path().join("damaged.mp4");
    std::fs::write(&damaged, bytes).unwrap();
    let out = d.path().join("out.jsonl");
    let r = ausweep(&[
        "--model",
        model.to_str().unwrap(),
        damaged.to_str().unwrap(),
        astronaut.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: the video is damaged: ffmpeg: ",
            damaged.display()
        )),
        "{err}"
    );
    let rows = std::fs::read_to_string(&out).unwrap();
    assert!(
        rows.lines().any(|l| l.contains("astronaut.png")),
        "the photo after the damaged video was not written: {rows}"
    );
}

#[test]
fn au_list_mismatches_are_refused_with_what_the_model_knows() {
    let d = tempfile::tempdir().unwrap();
    let astronaut = common::photo(d.path(), "astronaut");
    let model = checkpoint(&d.path().join("model"), &AUS, 8, &[0.5; 8]);
    let r = ausweep(&[
        "--model",
        model.to_str().unwrap(),
        "--aus",
        "6,15",
        astronaut.to_str().unwrap(),
    ]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(err.contains("AU15") && err.contains("AU26"), "{err}");
    // Metadata listing 3 AUs for a head with 8 outputs.
    let bad = checkpoint(&d.path().join("bad"), &[1, 2, 4], 8, &[0.5; 3]);
    let r = ausweep(&[
        "--model",
        bad.to_str().unwrap(),
        astronaut.to_str().unwrap(),
    ]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        err.contains("final.safetensors") && err.contains("fc"),
        "{err}"
    );
    // Neither a file nor a SWEEP:BACKBONE reference.
    let r = ausweep(&["--model", "nowhere", astronaut.to_str().unwrap()]);
    assert!(
        text(&r.stderr).contains("--model nowhere"),
        "{}",
        text(&r.stderr)
    );
}

#[test]
fn an_intensity_model_writes_openface_intensity_columns_that_an_openface_script_reads() {
    let d = tempfile::tempdir().unwrap();
    // An intensity checkpoint has no thresholds: level 2 decides presence.
    let model = checkpoint_of(&d.path().join("model"), &AUS, 8, &[], Objective::Intensity);
    let photo = common::photo(d.path(), "astronaut");
    let (csv, json) = (d.path().join("out.csv"), d.path().join("out.jsonl"));
    for out in [&csv, &json] {
        let r = ausweep(&[
            "--model",
            model.to_str().unwrap(),
            photo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(r.status.success(), "{}", text(&r.stderr));
    }
    let v: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    let aus = v["faces"][0]["aus"].as_array().unwrap().clone();
    assert_eq!(aus.len(), 8, "{v}");
    let read = ausweep_testkit::python::run("openface_csv.py", &[csv.as_os_str()]);
    let of: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let want: Vec<String> = AUS.iter().map(|a| format!("AU{a:02}_r")).collect();
    assert_eq!(of["r_columns"], serde_json::json!(want), "{of}");
    let row = &of["rows"][0];
    for a in &aus {
        let i = a["intensity"]
            .as_f64()
            .expect("an intensity model reports intensity");
        assert!((0.0..=5.0).contains(&i), "{a}");
        assert_eq!(a["present"].as_bool().unwrap(), i >= 2.0, "{a}");
        let key = format!("{:02}", a["au"].as_u64().unwrap());
        // The CSV holds two decimals, as OpenFace's does.
        let r = row["r"][&key].as_f64().unwrap();
        assert!((r - i).abs() <= 0.005 + 1e-6, "AU{key}: CSV {r}, JSON {i}");
        assert_eq!(row["c"][&key].as_f64().unwrap() == 1.0, i >= 2.0, "AU{key}");
    }
    let is: Vec<f64> = aus
        .iter()
        .map(|a| a["intensity"].as_f64().unwrap())
        .collect();
    assert!(
        is.iter().any(|x| (x - is[0]).abs() > 1e-3),
        "constant intensities {is:?}"
    );
}
