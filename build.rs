include!("scripts/torch_rpath.rs");

fn main() {
    // The control-plane build (no `train` feature) links no libtorch.
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_some() {
        torch_rpath();
    }
}
