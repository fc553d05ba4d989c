use super::*;
use ausweep_proto::job::WeightsSource;
use std::path::Path;

fn experiments(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../experiments")
        .join(name);
    std::fs::read_to_string(&p).unwrap()
}

#[test]
fn paper_and_demo_manifests_are_valid() {
    let paper = parse(&experiments("paper.yaml"), "paper.yaml").unwrap();
    assert_eq!(paper.manifest.backbones.len(), 4);
    assert_eq!(folds(&paper.manifest), vec![1, 2, 3]);
    assert_eq!(paper.manifest.stages.len(), 2);
    assert_eq!(paper.manifest.stages[1].optimizer.lr, 1e-5);
    assert_eq!(paper.manifest.dataset.input_size, 224);
    let demo = parse(&experiments("demo.yaml"), "demo.yaml").unwrap();
    assert_eq!(demo.manifest.dataset.input_size, 64);
    assert_eq!(folds(&demo.manifest), vec![1, 2, 3]);
    assert_eq!(demo.manifest.resources.device, DeviceReq::Cpu);
    // The demo trains mobilenet_v2 from its ImageNet weights and mobilenet_v1 from scratch.
    let g = &grid_points(&demo.manifest)[0];
    let v2 = job_spec(&demo.manifest, Backbone::MobilenetV2, 1, 1, g).unwrap();
    let v1 = job_spec(&demo.manifest, Backbone::MobilenetV1, 1, 1, g).unwrap();
    assert_eq!(v2.weights, WeightsSource::Imagenet);
    assert_eq!(v1.weights, WeightsSource::None);
}

#[test]
fn sweep_id_is_canonical_and_changes_with_content() {
    let text = experiments("demo.yaml");
    let a = parse(&text, "a").unwrap();
    // Comments, key order and spelled-out defaults do not change the id.
    let reordered = format!(
        "# another comment\nbatch_size: 32\n{}\npriority: 0\n",
        text.replace("batch_size: 32\n", "")
    );
    let b = parse(&reordered, "b").unwrap();
    assert_eq!(a.sweep_id, b.sweep_id);
    assert_eq!(a.sweep_id.len(), 16);
    assert!(text.contains("epochs: 10"));
    let c = parse(&text.replace("epochs: 10", "epochs: 11"), "c").unwrap();
    assert_ne!(a.sweep_id, c.sweep_id);
    assert_eq!(from_canonical(&a.canonical).unwrap(), a.manifest);
}

#[test]
fn grid_points_expand_and_apply() {
    let text = format!(
        "{}grid:\n  train.lr: [0.01, 0.001]\n  seed: [1, 2, 3]\n",
        experiments("demo.yaml")
    );
    let p = parse(&text, "g").unwrap();
    let points = grid_points(&p.manifest);
    assert_eq!(points.len(), 6);
    let spec = job_spec(&p.manifest, Backbone::MobilenetV2, 2, 1, &points[5]).unwrap();
    assert_eq!(spec.seed, 3);
    assert_eq!(spec.train.lr, 0.001);
    assert_eq!(points[5].label(), "seed=3,train.lr=0.001");
}

/// Every file in testdata/manifests/bad fails with the file name, the line marked `# <-`, the
/// field and the hint its `# expect:` header lists.
#[test]
fn bad_manifest_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/manifests/bad");
    let mut n = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let mut wants = expect.split(" | ");
        let field = wants.next().unwrap();
        n += 1;
        let err = match parse(&text, &name) {
            Ok(_) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        let shown = err.to_string();
        let line = text.lines().position(|l| l.contains("# <-")).map(|i| i + 1);
        let ok = shown.starts_with(&name)
            && err.field == field
            && wants.all(|w| shown.contains(w))
            && (line.is_none() || err.line == line);
        if !ok {
            failures.push(format!(
                "{name} (want field {field}, line {line:?}): {shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 20, "only {n} bad manifests");
}

#[test]
fn alias_bomb_is_refused_with_file_and_line() {
    // 42 KB of aliases that expand to 1.8 billion grid values; without the bound they would
    // be materialised before validation runs (and the parser's own alias guard allows them).
    let mut text = String::from(
        "name: bomb\ndataset:\n  source: {kind: synthetic, subjects: 9, frames: 20}\nbackbones: [vgg19]\nstages:\n  - {freeze: backbone, optimizer: {lr: 0.001}, epochs: 1}\n",
    );
    parse(&text, "ok.yaml").unwrap();
    text.push_str("grid:\n");
    text.push_str(&ausweep_proto::yaml::wide_bomb_lines(2));
    let e = parse(&text, "bomb.yaml").unwrap_err();
    assert_eq!(e.file, "bomb.yaml");
    assert!(e.line.is_some(), "{e}");
    assert!(e.message.contains("alias"), "{e}");
    assert!(e.to_string().starts_with("bomb.yaml:"), "{e}");
}
