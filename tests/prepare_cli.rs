//! `ausweep dataset synth --videos` and `ausweep dataset prepare` as a user runs them (real child
//! processes, real ffmpeg and MTCNN): a preparation killed mid-way resumes without redoing
//! finished subjects and ends with the same bytes as an uninterrupted one, and two preparations
//! of one source started together prepare it once.

use ausweep_testkit::wait::{until_blocking, Seen};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ausweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ausweep"))
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn synth(dir: &Path) {
    ok(
        ausweep()
            .args(["dataset", "synth"])
            .arg(dir)
            .args(["--videos", "--subjects", "3", "--frames", "60"])
            .args(["--width", "512", "--height", "384", "--cameras", "left"])
            .output()
            .unwrap(),
        "synth --videos",
    );
}

fn prepare(src: &Path, out: &Path) -> Command {
    let mut c = ausweep();
    c.args(["dataset", "prepare"])
        .arg(src)
        .arg("--out")
        .arg(out)
        .args(["--size", "32", "--batch", "4"]);
    c
}

/// The one prepared-dataset folder under `out`.
fn dataset_dir(out: &Path) -> Option<PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

fn subjects_worked_on(stderr: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stderr);
    let mut s: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("prepare "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|s| s.trim_end_matches(':').to_string())
        .collect();
    s.dedup();
    s
}

#[test]
fn a_killed_preparation_resumes_where_it_stopped() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("disfa");
    synth(&src);
    let (killed, fresh) = (d.path().join("killed"), d.path().join("fresh"));

    let mut child = prepare(&src, &killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = until_blocking(
        "the first subject's part",
        Duration::from_secs(120),
        Duration::from_millis(10),
        || {
            let done = dataset_dir(&killed).map(|d| d.join("parts/SN001.json"));
            match done {
                Some(p) if p.is_file() => Seen::Done(p),
                other => Seen::Not(format!("no finished first subject yet ({other:?})")),
            }
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = dataset_dir(&killed).unwrap();
    assert!(first.is_file());
    let finished: Vec<String> = ["SN001", "SN002", "SN003"]
        .into_iter()
        .filter(|s| dir.join(format!("parts/{s}.json")).is_file())
        .map(String::from)
        .collect();
    if finished.len() == 3 {
        panic!("the preparation finished every subject before it was killed; nothing to resume");
    }
    assert!(!dir.join("manifest.json").exists(), "killed before the end");

    let again = ok(prepare(&src, &killed).output().unwrap(), "resumed prepare");
    let redone = subjects_worked_on(&again.stderr);
    for s in &finished {
        assert!(
            !redone.contains(s),
            "{s} was finished before the kill but redone: {redone:?}"
        );
    }
    assert!(!redone.is_empty(), "the resumed run did nothing");
    assert!(dir.join("manifest.json").is_file());

    ok(
        prepare(&src, &fresh).output().unwrap(),
        "uninterrupted prepare",
    );
    let fresh_dir = dataset_dir(&fresh).unwrap();
    assert_eq!(
        dir.file_name(),
        fresh_dir.file_name(),
        "same source and settings, same address"
    );
    let (a, b) = (
        std::fs::read(dir.join("dataset.pack")).unwrap(),
        std::fs::read(fresh_dir.join("dataset.pack")).unwrap(),
    );
    assert!(
        a == b,
        "the resumed pack differs from the uninterrupted one"
    );
}

#[test]
fn two_preparations_of_one_source_prepare_it_once() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("disfa");
    synth(&src);
    let out = d.path().join("prepared");
    let spawn = || {
        prepare(&src, &out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        ok(a.wait_with_output().unwrap(), "first"),
        ok(b.wait_with_output().unwrap(), "second"),
    );
    let (wa, wb) = (subjects_worked_on(&a.stderr), subjects_worked_on(&b.stderr));
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        wa.is_empty() != wb.is_empty(),
        "exactly one of them prepares: {wa:?} / {wb:?}"
    );
    let (worker, waiter) = if wa.is_empty() { (&b, &a) } else { (&a, &b) };
    assert!(
        stdout(worker).starts_with("prepared:"),
        "{}",
        stdout(worker)
    );
    assert!(
        stdout(waiter).starts_with("already prepared:"),
        "{}",
        stdout(waiter)
    );
}
