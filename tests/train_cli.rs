//! `ausweep train` as a user runs it: a real child process, JSON lines on stdout.

use ausweep_proto::trainer::TrainerExit;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// One trainer at a time: the tests of this file run in parallel threads, and each trainer
/// uses every core.
static ONE_TRAINER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_trainer() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the others still run.
    ONE_TRAINER.lock().unwrap_or_else(|p| p.into_inner())
}

fn ausweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ausweep"))
}

fn write_job(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

const DATA: &str = "data:\n  source: {kind: synthetic, subjects: 27, frames: 60, seed: 1}\n  input_size: 48\n  val_subjects: 2\n";

/// `ausweep train JOB --out OUT --device cpu`, which must succeed (its stderr otherwise).
fn train_on_cpu(job: &Path, out: &Path) -> std::process::Output {
    let o = ausweep()
        .arg("train")
        .arg(job)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn result(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap()
}

#[test]
fn two_stages_learn_and_fine_tuning_beats_the_frozen_backbone() {
    let _one = one_trainer();
    let d = tempfile::tempdir().unwrap();
    let s1 = write_job(
        d.path(),
        "s1.yaml",
        &format!("backbone: mobilenet_v2\nweights: imagenet\nstage: 1\nfold: 1\nseed: 7\n{DATA}train: {{epochs: 4, batch_size: 32, lr: 0.003}}\nloss: lsep_bce\nthresholds: tuned\naugment: {{flip: 0}}\n"),
    );
    let s2 = write_job(
        d.path(),
        "s2.yaml",
        &format!("backbone: mobilenet_v2\nstage: 2\nfold: 1\nseed: 7\n{DATA}train: {{epochs: 8, batch_size: 32, lr: 0.001, backbone_lr: 0.002}}\nloss: lsep_bce\nthresholds: tuned\naugment: {{flip: 0.5}}\n"),
    );
    let o1 = d.path().join("o1");
    let out = train_on_cpu(&s1, &o1);
    // Every stdout line is a JSON event; the stream starts with `start` and ends with `done`.
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "start");
    assert_eq!(events.last().unwrap()["event"], "done");
    assert_eq!(
        events.iter().filter(|e| e["event"] == "checkpoint").count(),
        4
    );
    // The result and the final checkpoint say what the model was trained on.
    let ckpt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(o1.join("final.json")).unwrap()).unwrap();
    for d in [&result(&o1)["dataset"], &ckpt["dataset"]] {
        assert_eq!(d["kind"], "synthetic", "{d}");
        assert_eq!(d["crop"], "eyes", "{d}");
        assert_eq!(d["size"], 48, "{d}");
        assert_eq!(d["frames"], 27 * 60, "{d}");
        assert_eq!(d["template_points"][0][1][1], 0.385, "{d}");
    }
    let o2 = d.path().join("o2");
    let out = ausweep()
        .arg("train")
        .arg(&s2)
        .arg("--out")
        .arg(&o2)
        .arg("--init-checkpoint")
        .arg(o1.join("final.safetensors"))
        .args(["--device", "cpu", "--summary"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AU26"),
        "summary table on stderr"
    );
    let (r1, r2) = (result(&o1), result(&o2));
    let (f1, f2) = (
        r1["test"]["avg_f1"].as_f64().unwrap(),
        r2["test"]["avg_f1"].as_f64().unwrap(),
    );
    println!("stage 1 F1 {f1:.3}, stage 2 F1 {f2:.3}");
    assert!(
        f2 > 0.4,
        "stage 2 should clearly learn the synthetic AUs: {f2}"
    );
    assert!(f2 > f1 + 0.1, "stage 2 ({f2}) should beat stage 1 ({f1})");
    assert!(r2["params_trainable"].as_i64() > r1["params_trainable"].as_i64());
}

#[test]
fn a_killed_run_resumes_from_its_newest_checkpoint() {
    let _one = one_trainer();
    let d = tempfile::tempdir().unwrap();
    let job = write_job(
        d.path(),
        "j.yaml",
        &format!("backbone: mobilenet_v2\nweights: none\nstage: 1\nfold: 3\nseed: 1\n{DATA}train: {{epochs: 40, batch_size: 16, lr: 0.003, cache_features: false}}\naugment: {{flip: 0.5}}\n"),
    );
    let out_dir = d.path().join("o");
    let mut child = ausweep()
        .arg("train")
        .arg(&job)
        .arg("--out")
        .arg(&out_dir)
        .args(["--device", "cpu", "--log-every", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "checkpoint" && v["epoch"] == 2 {
            child.kill().unwrap(); // SIGKILL mid-training
            break;
        }
    }
    child.wait().unwrap();
    assert!(!out_dir.join("result.json").exists());
    // Shorten the rest by letting the rerun see the same job: it must continue after epoch 2.
    let mut rerun = ausweep()
        .arg("train")
        .arg(&job)
        .arg("--out")
        .arg(&out_dir)
        .args(["--device", "cpu", "--log-every", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first: serde_json::Value = {
        let mut lines = BufReader::new(rerun.stdout.take().unwrap()).lines();
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap()
    };
    let _ = rerun.kill();
    let _ = rerun.wait();
    assert_eq!(first["event"], "resume", "{first}");
    assert!(first["epoch"].as_u64().unwrap() >= 2, "{first}");
}

#[test]
fn bad_job_files_name_the_field() {
    let _one = one_trainer();
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("backbone: resnet50\nstage: 1\nfold: 1\n", "backbone"),
        (
            &*format!("backbone: mobilenet_v2\nstage: 1\nfold: 1\n{DATA}train: {{epochs: 0}}\n"),
            "train.epochs",
        ),
        (
            &*format!("backbone: mobilenet_v2\nstage: 1\nfold: 1\n{DATA}trian: {{epochs: 1}}\n"),
            "trian",
        ),
        (
            &*format!("backbone: mobilenet_v2\nstage: 2\nfold: 1\n{DATA}"),
            "init_checkpoint",
        ),
    ];
    for (i, (body, field)) in cases.iter().enumerate() {
        let job = write_job(d.path(), &format!("bad{i}.yaml"), body);
        let out = ausweep()
            .arg("train")
            .arg(&job)
            .arg("--out")
            .arg(d.path().join("o"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The agent reads the failure's kind from the exit code, never from these words.
        assert_eq!(
            out.status.code(),
            Some(TrainerExit::BadConfig.code()),
            "case {i}: {err}"
        );
        assert!(
            err.contains(field) && err.contains(&format!("bad{i}.yaml")),
            "case {i}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Data this node cannot read (a mount missing here) is the node's problem: exit 74.
    let job = write_job(
        d.path(),
        "unmounted.yaml",
        "backbone: mobilenet_v2\nstage: 1\nfold: 1\ndata:\n  source: {kind: disfa, \
         labels_root: /nonexistent/mnt/labels, frames_root: /nonexistent/mnt/frames}\n  \
         input_size: 48\n",
    );
    let out = ausweep()
        .arg("train")
        .arg(&job)
        .arg("--out")
        .arg(d.path().join("o"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(TrainerExit::Node.code()), "{err}");
    assert!(err.contains("/nonexistent/mnt/labels"), "{err}");
}

#[test]
fn weights_check_recognises_the_cat() {
    let _one = one_trainer();
    let out = ausweep()
        .args(["weights", "check", "mobilenet_v2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let top1 = text.lines().nth(1).unwrap_or("");
    assert!(
        ["tabby", "tiger cat", "Egyptian cat"]
            .iter()
            .any(|c| top1.contains(c)),
        "top-1 should be a cat: {text}"
    );
}

#[test]
fn score_gives_an_intensity_job_the_trainers_own_figures() {
    let _one = one_trainer();
    let d = tempfile::tempdir().unwrap();
    let job = write_job(
        d.path(),
        "int.yaml",
        "backbone: mobilenet_v2\nweights: imagenet\nstage: 1\nfold: 2\nseed: 3\n\
         data:\n  source: {kind: synthetic, subjects: 27, frames: 12, seed: 2}\n  input_size: 48\n  val_subjects: 2\n\
         train: {epochs: 3, batch_size: 32, lr: 0.01}\nobjective: intensity\nloss: mse\n",
    );
    let o = d.path().join("o");
    train_on_cpu(&job, &o);
    let own = &result(&o)["intensity"];
    // The trainer's test-fold predictions, scored again as a lab scores OpenFace's output.
    let out = ausweep()
        .args(["score", "--intensity", "--json", "--pred"])
        .arg(o.join("test_predictions.csv"))
        .arg("--labels")
        .arg(o.join("test_labels.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a, b) = (
        own["per_au"].as_array().unwrap(),
        scored["per_au"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 8, "{own}");
    assert_eq!(a.len(), b.len(), "{own}\n{scored}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["au"], y["au"], "{x} vs {y}");
        for m in ["icc", "mae", "pcc"] {
            let (p, q) = (x[m].as_f64().unwrap(), y[m].as_f64().unwrap());
            // The CSV holds six decimals of each prediction.
            assert!(
                (p - q).abs() < 1e-4,
                "AU{} {m}: trainer {p}, score {q}",
                x["au"]
            );
        }
    }
    let (p, q) = (
        own["avg_icc"].as_f64().unwrap(),
        scored["avg_icc"].as_f64().unwrap(),
    );
    assert!((p - q).abs() < 1e-4, "avg ICC: trainer {p}, score {q}");
    // Not a vacuous agreement: predictions and labels vary together on some AU (how well the
    // head learns is the trainer's e2e test; three epochs on 12 frames learn little).
    assert!(
        a.iter().any(|x| x["pcc"].as_f64().unwrap().abs() > 0.01),
        "{own}"
    );
}
