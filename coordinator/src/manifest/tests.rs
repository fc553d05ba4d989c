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
fn only_the_last_stage_scores_its_test_fold_with_int8_kernels() {
    let two = parse(&experiments("demo.yaml"), "demo.yaml")
        .unwrap()
        .manifest;
    let g = &grid_points(&two)[0];
    let int8 = |m: &Manifest, stage| {
        job_spec(m, Backbone::MobilenetV2, 1, stage, g)
            .unwrap()
            .train
            .score_int8
    };
    assert_eq!((int8(&two, 1), int8(&two, 2)), (false, true));
    let mut one = two.clone();
    one.stages.truncate(1);
    assert!(
        int8(&one, 1),
        "a one-stage sweep's models are its stage-1 ones"
    );
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

#[test]
fn intensity_on_disfa_trains_its_twelve_aus_unless_the_manifest_lists_them() {
    use ausweep_proto::job::{LossKind, Objective, DISFA_LABELLED_AUS};
    let paper = experiments("paper.yaml");
    let unlisted = paper.replace("  aus: [1, 2, 4, 6, 9, 12, 25, 26]\n", "");
    assert_ne!(unlisted, paper, "paper.yaml lists its AUs");
    let intensity = format!("{unlisted}objective: intensity\n").replace("loss: lsep", "loss: mse");
    let p = parse(&intensity, "i").unwrap();
    assert_eq!(p.manifest.dataset.aus, DISFA_LABELLED_AUS);
    let g = &grid_points(&p.manifest)[0];
    let spec = job_spec(&p.manifest, Backbone::MobilenetV2, 1, 2, g).unwrap();
    assert_eq!(
        (spec.objective, spec.loss),
        (Objective::Intensity, LossKind::Mse)
    );
    assert_eq!(spec.data.aus, DISFA_LABELLED_AUS);
    // Written into the canonical form: the sweep id says which AUs run.
    assert!(
        p.canonical.contains("[1,2,4,5,6,9,12,15,17,20,25,26]"),
        "{}",
        p.canonical
    );
    // Listed AUs stay; occurrence keeps the paper's 8; the synthetic set labels 8.
    let listed = format!("{paper}objective: intensity\n").replace("loss: lsep", "loss: mse");
    assert_eq!(
        parse(&listed, "l").unwrap().manifest.dataset.aus,
        [1, 2, 4, 6, 9, 12, 25, 26]
    );
    assert_eq!(
        parse(&unlisted, "o").unwrap().manifest.dataset.aus,
        [1, 2, 4, 6, 9, 12, 25, 26]
    );
    let synthetic = parse(&experiments("demo-intensity.yaml"), "s").unwrap();
    assert_eq!(synthetic.manifest.dataset.aus, [1, 2, 4, 6, 9, 12, 25, 26]);
}

#[test]
fn a_grid_over_objective_gives_each_point_a_loss_of_its_own() {
    use ausweep_proto::job::{LossKind, Objective};
    let text = format!(
        "{}grid:\n  objective: [occurrence, intensity]\n",
        experiments("demo.yaml")
    );
    let p = parse(&text, "g").unwrap();
    let points = grid_points(&p.manifest);
    let run: Vec<(Objective, LossKind)> = points
        .iter()
        .map(|g| {
            let s = job_spec(&p.manifest, Backbone::MobilenetV2, 1, 2, g).unwrap();
            (s.objective, s.loss)
        })
        .collect();
    assert_eq!(
        run,
        [
            (Objective::Occurrence, LossKind::LsepBce),
            (Objective::Intensity, LossKind::Mse)
        ]
    );
    // The demo's loss (lsep_bce) fits occurrence and stays there. A grid that sets the loss
    // too keeps it, and a pair that cannot train is refused there.
    let both = format!("{text}  loss: [weighted_mse]\n");
    let e = parse(&both, "b").unwrap_err();
    assert_eq!(e.field, "grid.loss", "{e}");
    assert!(
        e.message.contains("`weighted_mse` is an intensity loss"),
        "{e}"
    );
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
