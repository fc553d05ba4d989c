// Shared by the build scripts of every package whose binaries or tests link libtorch:
// asks the project's venv where torch/lib is and bakes it into the rpath, so nobody has
// to export LD_LIBRARY_PATH.
fn torch_rpath() {
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib = if let Ok(root) = std::env::var("LIBTORCH") {
        Some(std::path::PathBuf::from(root).join("lib"))
    } else {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        std::process::Command::new(python)
            .args([
                "-c",
                "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    match lib {
        Some(dir) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            // Nothing in our code calls into libtorch_cuda.so, so `--as-needed` drops it and the
            // CUDA kernels never register ("Could not run 'aten::empty_strided' ... 'CUDA'
            // backend"). Keep it whenever the torch build has it.
            if dir.join("libtorch_cuda.so").exists() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
            }
        }
        None => println!("cargo:warning=torch not found: run `make setup` (binaries will need LD_LIBRARY_PATH)"),
    }
}
