//! `make dist`'s tarball runs wherever it is unpacked: `scripts/dist.sh` packs this build's
//! binary, the tarball is unpacked into a fresh folder, and everything runs from there with
//! another HOME, a bare environment and no venv: the libraries resolve inside the folder,
//! `weights check`, a tiny `train` and a tiny `demo` work on the shipped weights, and CUDA comes
//! from a torch put on LD_LIBRARY_PATH, not from the build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY: &str = "name: dist-demo
dataset:
  source: {kind: synthetic, subjects: 9, frames: 8, seed: 5}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {k: 3, seed: 0}
  input_size: 32
  val_subjects: 1
run_folds: [1]
backbones: [mobilenet_v2]
weights: imagenet
loss: lsep
augment: {flip: 0.0}
stages:
  - freeze: backbone
    optimizer: {lr: 3.0e-3}
    epochs: 1
  - freeze: none
    optimizer: {lr: 1.0e-3}
    epochs: 1
batch_size: 8
resources:
  device: cpu
";

const JOB: &str = "backbone: mobilenet_v2\nweights: imagenet\nstage: 1\nfold: 1\nseed: 1\n\
data:\n  source: {kind: synthetic, subjects: 9, frames: 8, seed: 2}\n  input_size: 32\n  val_subjects: 1\n\
train: {epochs: 1, batch_size: 8, lr: 0.01}\nloss: lsep\n";

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The unpacked binary in a bare environment: PATH of the system only, HOME in the temp dir,
/// and a Python that does not exist (the binary would otherwise find the build's venv).
fn bare(bin: &Path, home: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("AUSWEEP_PYTHON", home.join("no-python"))
        .env("OMP_NUM_THREADS", "1");
    c
}

fn torch_lib() -> PathBuf {
    let o = Command::new(ausweep_testkit::python::venv_python())
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

#[test]
// Long function: one scenario told in order.
fn the_release_tarball_runs_from_a_fresh_folder_without_the_venv() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = ausweep_testkit::repo();
    let o = Command::new("bash")
        .arg(repo.join("scripts/dist.sh"))
        .arg(env!("CARGO_BIN_EXE_ausweep"))
        .arg(t.join("out"))
        .env("GZIP_LEVEL", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "dist.sh failed:\n{}", text(&o));
    let tarball = std::fs::read_dir(t.join("out"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("a .tar.gz in dist's output");
    let unpacked = t.join("elsewhere");
    std::fs::create_dir_all(&unpacked).unwrap();
    let o = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar: {}", text(&o));
    let root = std::fs::read_dir(&unpacked)
        .unwrap()
        .next()
        .expect("one folder in the tarball")
        .unwrap()
        .path();
    let bin = root.join("bin/ausweep");
    let home = t.join("home");
    std::fs::create_dir_all(&home).unwrap();

    // 1. Every library resolves, torch's inside the unpacked folder, nothing from the build.
    let o = Command::new("ldd").arg(&bin).env_clear().output().unwrap();
    let ldd = text(&o);
    assert!(o.status.success() && !ldd.contains("not found"), "{ldd}");
    let build_paths = [repo.to_string_lossy().to_string(), ".cache/ausweep".into()];
    for line in ldd.lines() {
        assert!(
            !build_paths.iter().any(|p| line.contains(p.as_str())),
            "a library comes from the build, not the tarball: {line}\n{ldd}"
        );
        // The library's name, not the load address (ASLR can print `…4c10…`).
        let name = line.split_whitespace().next().unwrap_or("");
        if name.contains("torch") || name.starts_with("libc10") {
            assert!(
                line.contains(root.to_string_lossy().as_ref()),
                "libtorch from outside the tarball: {line}\n{ldd}"
            );
        }
    }
    assert!(
        !ldd.contains("libtorch_cuda"),
        "the release binary needs libtorch_cuda.so at start:\n{ldd}"
    );

    // 2. The shipped weights and photo: MobileNet-v2 sees a cat.
    let o = bare(&bin, &home)
        .args(["weights", "check", "mobilenet_v2"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "weights check: {out}");
    assert!(out.contains("cat"), "top-5 without a cat: {out}");

    // 3. A tiny stage-1 job on the shipped ImageNet weights.
    let job = t.join("job.yaml");
    std::fs::write(&job, JOB).unwrap();
    let o = bare(&bin, &home)
        .arg("train")
        .arg(&job)
        .arg("--out")
        .arg(t.join("train"))
        .args(["--device", "cpu", "--log-every", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "train: {}", text(&o));
    assert!(t.join("train/result.json").is_file());

    // 4. A tiny demo: coordinator, worker and trainers all started from the unpacked binary.
    let m = t.join("tiny.yaml");
    std::fs::write(&m, TINY).unwrap();
    let o = bare(&bin, &home)
        .arg("demo")
        .arg("--manifest")
        .arg(&m)
        .arg("--out")
        .arg(t.join("demo"))
        .args(["--timeout-min", "5"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "demo: {out}");
    assert!(out.contains("2 jobs trained"), "{out}");
    assert!(t.join("demo/report/report.md").is_file(), "{out}");

    // 5. CUDA: without a CUDA torch the error says the backend is absent and why; with the
    //    venv's CUDA torch on LD_LIBRARY_PATH the binary loads its backend at start.
    let cuda = |extra: Option<&Path>| {
        let mut c = bare(&bin, &home);
        if let Some(lib) = extra {
            c.env("LD_LIBRARY_PATH", lib);
        }
        c.arg("train")
            .arg(&job)
            .arg("--out")
            .arg(t.join("cuda"))
            .args(["--device", "cuda", "--log-every", "0"])
            .output()
            .unwrap()
    };
    let o = cuda(None);
    let out = text(&o);
    assert!(
        !o.status.success() && out.contains("CUDA backend is not loaded"),
        "{out}"
    );
    let lib = std::fs::canonicalize(torch_lib()).unwrap();
    let o = cuda(Some(&lib));
    let out = text(&o);
    let loaded = format!(
        "CUDA backend is loaded ({})",
        lib.join("libtorch_cuda.so").display()
    );
    // Where a GPU is visible the job trains instead, which proves the same.
    assert!(
        o.status.success() || out.contains(&loaded),
        "a CUDA torch on LD_LIBRARY_PATH did not give the binary its CUDA backend \
         (want `{loaded}`): {out}"
    );
}
