include!("../scripts/torch_rpath.rs");

fn main() {
    torch_rpath();
}
