//! The binaries must load libtorch's CUDA backend whenever the torch build ships one: nothing in
//! our code calls into `libtorch_cuda.so`, so a plain `--as-needed` link drops it and every CUDA
//! op on a GPU node fails with "Could not run 'aten::empty_strided' ... from the 'CUDA' backend".
//!
//! What needs no GPU runs everywhere (the CUDA build `make setup` installs ships the backend, so a
//! CPU machine checks the link too; device flags; the error for a missing GPU). What needs a GPU
//! is `#[ignore]`d, so a CPU run lists it as ignored instead of passing it. On a GPU node run
//!
//! ```text
//! AUSWEEP_REQUIRE_CUDA=1 cargo test -p ausweep-trainer --test cuda_backend -- --include-ignored
//! ```
//!
//! where a CPU-only torch, a missing driver or no visible device fails every test that can see it.

use std::path::{Path, PathBuf};
use tch::Device;

/// `AUSWEEP_REQUIRE_CUDA=1`: this is a GPU run, so the absence of CUDA is a failure.
fn cuda_required() -> bool {
    std::env::var("AUSWEEP_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// Shared objects mapped into this process.
fn mapped_libraries() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let mut libs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .map(PathBuf::from)
        .collect();
    libs.dedup();
    libs
}

/// torch's lib directory (where `libtorch_cpu.so` is mapped from) and every mapped library.
fn torch_libraries() -> (PathBuf, Vec<PathBuf>) {
    // Touch libtorch so it is certainly mapped.
    let _ = tch::Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
    let libs = mapped_libraries();
    let cpu = libs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
        .expect("libtorch_cpu.so is mapped");
    (cpu.parent().expect("a directory").to_path_buf(), libs)
}

/// The CUDA backend's libraries a torch build ships in `dir`: none for a CPU-only build.
fn shipped_cuda_backend(dir: &Path) -> Vec<PathBuf> {
    ["libtorch_cuda.so", "libc10_cuda.so"]
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn cuda_backend_is_loaded_when_torch_has_one() {
    let (dir, libs) = torch_libraries();
    let backend = shipped_cuda_backend(&dir);
    assert!(
        !backend.is_empty() || !cuda_required(),
        "AUSWEEP_REQUIRE_CUDA=1, but the torch in {} is a CPU-only build (no libtorch_cuda.so)",
        dir.display()
    );
    eprintln!(
        "torch in {}: CUDA backend libraries shipped: {backend:?}",
        dir.display()
    );
    for lib in &backend {
        assert!(
            libs.contains(lib),
            "{} exists but was not loaded: the link dropped it",
            lib.display()
        );
    }
    // With the backend loaded, a CUDA allocation either works (a GPU is there) or fails for want
    // of a device, never because the operator has no CUDA kernel. (A CPU-only build has no CUDA
    // kernels to register: `cuda_kernels_run_on_the_gpu` covers that case on a GPU node.)
    if !backend.is_empty() {
        match tch::Tensor::f_zeros([2], (tch::Kind::Float, Device::Cuda(0))) {
            Ok(t) => assert_eq!(t.size(), vec![2]),
            Err(e) => {
                assert!(
                    !e.to_string().contains("Could not run"),
                    "CUDA kernels are not registered: {e}"
                );
                assert!(
                    !cuda_required(),
                    "AUSWEEP_REQUIRE_CUDA=1, but no CUDA device can allocate: {e}"
                );
            }
        }
    }
}

/// The GPU half: fails, never skips, wherever CUDA is missing. Ignored on CPU runs (listed as
/// ignored in cargo's summary); run it with `--include-ignored` on a GPU node.
#[test]
#[ignore = "needs a CUDA GPU: on a GPU node run \
            `AUSWEEP_REQUIRE_CUDA=1 cargo test -p ausweep-trainer --test cuda_backend -- --include-ignored`"]
fn cuda_kernels_run_on_the_gpu() {
    let (dir, libs) = torch_libraries();
    let cuda = dir.join("libtorch_cuda.so");
    assert!(
        cuda.exists(),
        "the torch in {} is a CPU-only build (no libtorch_cuda.so)",
        dir.display()
    );
    assert!(libs.contains(&cuda), "{} was not loaded", cuda.display());
    let n = tch::Cuda::device_count();
    assert!(
        n >= 1 && tch::Cuda::is_available(),
        "libtorch sees {n} CUDA device(s): no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it"
    );
    assert_eq!(
        ausweep_trainer::train::parse_device("cuda"),
        Ok(Device::Cuda(0))
    );
    assert_eq!(
        ausweep_trainer::train::parse_device("auto"),
        Ok(Device::Cuda(0))
    );
    // A real kernel (a convolution, as the backbones run), same result as on the CPU.
    tch::manual_seed(0);
    let x = tch::Tensor::randn([2, 3, 16, 16], (tch::Kind::Float, Device::Cpu));
    let w = tch::Tensor::randn([4, 3, 3, 3], (tch::Kind::Float, Device::Cpu));
    let on_cpu = x.conv2d(&w, None::<tch::Tensor>, 1, 1, 1, 1);
    let on_gpu = x
        .to_device(Device::Cuda(0))
        .conv2d(
            &w.to_device(Device::Cuda(0)),
            None::<tch::Tensor>,
            1,
            1,
            1,
            1,
        )
        .to_device(Device::Cpu);
    let d = (on_cpu - on_gpu).abs().max().double_value(&[]);
    // TF32 convolutions (the default on Ampere and later) round to ~1e-3 relative.
    assert!(
        d < 5e-2,
        "the GPU convolution differs from the CPU one by {d}"
    );
}

/// A real two-stage job on the GPU: frames gathered from the pack into pinned memory and copied
/// non-blocking, augmentation on the device, stage 2 under autocast; finite losses and a result.
#[test]
#[ignore = "needs a CUDA GPU: on a GPU node run \
            `AUSWEEP_REQUIRE_CUDA=1 cargo test -p ausweep-trainer --test cuda_backend -- --include-ignored`"]
fn a_two_stage_job_trains_on_the_gpu() {
    use ausweep_trainer::train::{self, weights, RunOptions};
    assert!(
        tch::Cuda::is_available(),
        "libtorch sees no CUDA device: no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it"
    );
    let dir = tempfile::tempdir().unwrap();
    let job = |stage: u8, amp: bool| {
        let text = format!(
            "backbone: mobilenet_v2\nweights: none\nstage: {stage}\nfold: 1\nseed: 3\namp: {amp}\n\
             data:\n  source: {{kind: synthetic, subjects: 27, frames: 12, seed: 5}}\n  input_size: 64\n  val_subjects: 2\n\
             augment: {{flip: 0.5, crop: 0.1, jitter: 0.2, splice_upper_lower: 0.3}}\n\
             train: {{epochs: 2, batch_size: 16, lr: 0.01, backbone_lr: 0.001}}\nloss: lsep\n"
        );
        ausweep_proto::job::JobSpec::from_yaml(&text, "gpu job").unwrap()
    };
    let opts = |out: &str| RunOptions {
        out_dir: dir.path().join(out),
        device: Device::Cuda(0),
        weights_dir: weights::weights_dir(),
        log_every: 0,
        print_events: false,
        data_cache: dir.path().join("data"),
    };
    let s1 = train::run(&job(1, false), &opts("s1")).expect("stage 1 on cuda:0");
    assert!(s1.test.avg_f1.is_finite() && s1.epochs == 2, "{s1:?}");
    let mut j2 = job(2, true);
    j2.init_checkpoint = Some(dir.path().join("s1/final.safetensors"));
    let s2 = train::run(&j2, &opts("s2")).expect("stage 2 with AMP on cuda:0");
    assert!(s2.test.avg_f1.is_finite() && s2.epochs == 2, "{s2:?}");
}

#[test]
fn device_flags_parse_and_fall_back_to_the_cpu_only_when_asked() {
    use ausweep_trainer::train::parse_device;
    let n = tch::Cuda::device_count();
    assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
    // `auto` is the one flag that falls back to the CPU.
    let auto = if n > 0 { Device::Cuda(0) } else { Device::Cpu };
    assert_eq!(parse_device("auto"), Ok(auto));
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA:0", ""] {
        let e = parse_device(bad).unwrap_err();
        assert!(e.contains("unknown device"), "{bad:?}: {e}");
    }
    // `cuda` without a device is an error, not a silent CPU run.
    match parse_device("cuda") {
        Ok(d) => assert!(n > 0 && d == Device::Cuda(0), "{d:?} with {n} device(s)"),
        Err(e) => assert!(n == 0 && e.contains("cuda:0 requested"), "{e}"),
    }
}

#[test]
fn asking_for_a_missing_gpu_is_a_clear_error() {
    let n = tch::Cuda::device_count() as usize;
    let err = ausweep_trainer::train::parse_device(&format!("cuda:{n}")).unwrap_err();
    assert!(err.contains(&format!("cuda:{n} requested")), "{err}");
}
