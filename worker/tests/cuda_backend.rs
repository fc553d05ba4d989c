//! The binaries must load libtorch's CUDA backend whenever the torch build ships one: nothing in
//! our code calls into `libtorch_cuda.so`, so a plain `--as-needed` link drops it and every CUDA
//! op on a GPU node fails with "Could not run 'aten::empty_strided' ... from the 'CUDA' backend".

use std::path::PathBuf;

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

#[test]
fn cuda_backend_is_loaded_when_torch_has_one() {
    // Touch libtorch so it is certainly mapped.
    let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
    let libs = mapped_libraries();
    let cpu = libs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
        .expect("libtorch_cpu.so is mapped");
    let cuda = cpu.with_file_name("libtorch_cuda.so");
    if !cuda.exists() {
        eprintln!("CPU-only torch at {}: nothing to check", cpu.display());
        return;
    }
    assert!(
        libs.contains(&cuda),
        "{} exists but was not loaded: the link dropped it",
        cuda.display()
    );
    // With the backend loaded, a CUDA allocation either works (a GPU is there) or fails for want
    // of a device, never because the operator has no CUDA kernel.
    match tch::Tensor::f_zeros([2], (tch::Kind::Float, tch::Device::Cuda(0))) {
        Ok(t) => assert_eq!(t.size(), vec![2]),
        Err(e) => assert!(
            !e.to_string().contains("Could not run"),
            "CUDA kernels are not registered: {e}"
        ),
    }
}

#[test]
fn asking_for_a_missing_gpu_is_a_clear_error() {
    let n = tch::Cuda::device_count() as usize;
    let err = ausweep_worker::train::parse_device(&format!("cuda:{n}")).unwrap_err();
    assert!(err.contains(&format!("cuda:{n} requested")), "{err}");
}
