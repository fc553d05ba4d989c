//! Parity with torchvision (timm for MobileNet-v1): same weights, same input, same logits.

use ausweep_proto::job::Backbone;
use ausweep_trainer::train::backbone::BackboneNet;
use ausweep_trainer::train::weights;
use std::path::PathBuf;
use std::process::Command;
use tch::{nn, Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn reference(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/reference.py"))
        .args(["parity", name])
        .arg(dir.path())
        .output()
        .expect("run the venv's python (make setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = dir.path().to_path_buf();
    (dir, p)
}

fn check(kind: Backbone) {
    let (_keep, dir) = reference(kind.name());
    let vs = nn::VarStore::new(Device::Cpu);
    let net = BackboneNet::new(&vs.root(), kind, true);
    weights::load_file(&vs, &dir.join("weights.safetensors"), None).unwrap();
    let io: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("io.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let y = tch::no_grad(|| net.imagenet_logits(&io["input"]).unwrap());
    let want = &io["output"];
    assert_eq!(y.size(), want.size());
    let diff = (&y - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    println!("{kind}: max |diff| = {diff:e} (max |logit| {scale:.3})");
    assert!(diff <= 1e-4, "{kind}: max abs diff {diff}");
    // The feature extractor alone must agree with the classifier path's input too.
    let pooled = tch::no_grad(|| net.pooled(&io["input"], false, 0));
    assert_eq!(pooled.size(), vec![2, net.out_channels()]);
}

#[test]
fn mobilenet_v2_matches_torchvision() {
    check(Backbone::MobilenetV2);
}

#[test]
fn mobilenet_v1_matches_timm() {
    check(Backbone::MobilenetV1);
}

#[test]
fn densenet121_matches_torchvision() {
    check(Backbone::Densenet121);
}

#[test]
fn densenet201_matches_torchvision() {
    check(Backbone::Densenet201);
}

#[test]
fn vgg19_matches_torchvision() {
    check(Backbone::Vgg19);
}

#[test]
fn strict_loading_names_the_bad_key() {
    let (_keep, dir) = reference("mobilenet_v2");
    let file = dir.join("weights.safetensors");
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file).unwrap();
    // Wrong backbone: every DenseNet key is missing from a MobileNet file.
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = BackboneNet::new(&vs.root(), Backbone::Densenet121, false);
    let e = weights::load_file(&vs, &file, Some("classifier."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing tensor `features."), "{e}");
    // A mis-shaped tensor is named with both shapes.
    let i = t
        .iter()
        .position(|(n, _)| n == "features.18.1.weight")
        .unwrap();
    t[i].1 = Tensor::zeros([7], (tch::Kind::Float, Device::Cpu));
    let bad = dir.join("bad.safetensors");
    Tensor::write_safetensors(&t, &bad).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = BackboneNet::new(&vs.root(), Backbone::MobilenetV2, false);
    let e = weights::load_file(&vs, &bad, Some("classifier."))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("features.18.1.weight") && e.contains("[7]") && e.contains("[1280]"),
        "{e}"
    );
    // Without the classifier built, its tensors are unexpected unless ignored.
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = BackboneNet::new(&vs.root(), Backbone::MobilenetV2, false);
    let e = weights::load_file(&vs, &file, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unexpected") && e.contains("classifier.1.weight"),
        "{e}"
    );
    weights::load_file(&vs, &file, Some("classifier.")).unwrap();
}
