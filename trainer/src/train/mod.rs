//! The trainer: the paper's transfer learning (frozen-backbone stage 1, fine-tuning stage 2)
//! with LSEP, per-AU F1, atomic checkpoints and exact resume.

pub mod backbone;
pub mod batch;
pub mod checkpoint;
pub mod dataset;
pub mod error;
pub mod features;
mod fit;
pub mod head;
pub mod imagenet;
pub mod layout;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod provenance;
pub mod run;
pub mod weights;

pub use error::TrainError;

pub use ausweep_proto::trainer::result::JobResult;
pub use run::{run, Model, RunOptions};

/// Parses a device flag: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available); a CUDA device
/// must exist and libtorch's CUDA backend must be loaded.
pub fn parse_device(s: &str) -> Result<tch::Device, String> {
    let device = match s {
        "cpu" => tch::Device::Cpu,
        "auto" => tch::Device::cuda_if_available(),
        "cuda" => tch::Device::Cuda(0),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| format!("unknown device `{s}`: use cpu, cuda, cuda:N or auto"))?,
    };
    if let tch::Device::Cuda(n) = device {
        check_cuda(n)?;
    }
    Ok(device)
}

static CUDA_BACKEND: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();

/// Loads libtorch's CUDA backend (`libtorch_cuda.so`, found through the binary's rpath or
/// `LD_LIBRARY_PATH`) before anything touches torch: the path it was loaded from, or why not.
/// A build from the venv links it already (a no-op then); the release tarball's binary does not
/// need it, so it starts on nodes without CUDA libraries and gains CUDA from a torch put on the
/// library path.
pub fn load_cuda_backend() -> Result<String, String> {
    CUDA_BACKEND
        .get_or_init(|| {
            // SAFETY: a NUL-terminated name; dlerror is read right after, on this thread.
            let err = unsafe {
                let h = libc::dlopen(
                    c"libtorch_cuda.so".as_ptr(),
                    libc::RTLD_NOW | libc::RTLD_GLOBAL,
                );
                if h.is_null() {
                    let e = libc::dlerror();
                    Some(if e.is_null() {
                        "libtorch_cuda.so could not be loaded".to_string()
                    } else {
                        std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
                    })
                } else {
                    None
                }
            };
            match err {
                Some(e) => Err(e),
                None => Ok(mapped("libtorch_cuda.so").unwrap_or_else(|| "libtorch_cuda.so".into())),
            }
        })
        .clone()
}

/// The path of a shared library mapped into this process (from `/proc/self/maps`).
fn mapped(name: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with(&format!("/{name}")))
        .map(str::to_string)
}

/// Checks that libtorch can run kernels on CUDA device `n`.
pub fn check_cuda(n: usize) -> Result<(), String> {
    let count = tch::Cuda::device_count();
    if (n as i64) < count {
        return Ok(());
    }
    let backend = match CUDA_BACKEND.get() {
        Some(Err(e)) => format!("; libtorch's CUDA backend is not loaded ({e})"),
        Some(Ok(p)) => format!("; libtorch's CUDA backend is loaded ({p})"),
        None => String::new(),
    };
    Err(format!(
        "cuda:{n} requested, but libtorch sees {count} CUDA device(s): no GPU or driver here, \
         CUDA_VISIBLE_DEVICES hides it, or the binary did not load libtorch_cuda.so \
         (see README, troubleshooting){backend}"
    ))
}

/// This process's peak resident set size (`VmHWM` from `/proc/self/status`), bytes; 0 where
/// that file is not there.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
