//! DenseNet (Huang et al. 2017) with torchvision's parameter names; any input size.

use super::layers::{bn, conv, func_t};
use super::{Block, Parts};
use ausweep_onnx::{Graph, OnnxError, Value};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Growth rate, block sizes and stem width of one DenseNet.
#[derive(Clone, Copy)]
pub(crate) struct Config {
    growth: i64,
    layers: [i64; 4],
    init: i64,
}

/// DenseNet-121.
pub(crate) const DENSENET121: Config = Config {
    growth: 32,
    layers: [6, 12, 24, 16],
    init: 64,
};
/// DenseNet-201.
pub(crate) const DENSENET201: Config = Config {
    growth: 32,
    layers: [6, 12, 48, 32],
    init: 64,
};

const BN_SIZE: i64 = 4;

fn dense_layer(p: &nn::Path, cin: i64, growth: i64) -> Box<dyn ModuleT> {
    let n1 = bn(p / "norm1", cin);
    let c1 = conv(p / "conv1", cin, BN_SIZE * growth, 1, 1, 0, 1);
    let n2 = bn(p / "norm2", BN_SIZE * growth);
    let c2 = conv(p / "conv2", BN_SIZE * growth, growth, 3, 1, 1, 1);
    func_t(move |x, train| {
        let y = n1.forward_t(x, train).relu().apply(&c1);
        n2.forward_t(&y, train).relu().apply(&c2)
    })
}

fn dense_block(p: &nn::Path, cin: i64, n: i64, growth: i64) -> Box<dyn ModuleT> {
    let layers: Vec<_> = (0..n)
        .map(|i| {
            dense_layer(
                &(p / format!("denselayer{}", i + 1)),
                cin + i * growth,
                growth,
            )
        })
        .collect();
    func_t(move |x, train| {
        let mut feats = vec![x.shallow_clone()];
        for l in &layers {
            let inp = Tensor::cat(&feats, 1);
            feats.push(l.forward_t(&inp, train));
        }
        Tensor::cat(&feats, 1)
    })
}

fn transition(p: &nn::Path, cin: i64, cout: i64) -> Box<dyn ModuleT> {
    let n = bn(p / "norm", cin);
    let c = conv(p / "conv", cin, cout, 1, 1, 0, 1);
    func_t(move |x, train| {
        n.forward_t(x, train).relu().apply(&c).avg_pool2d(
            [2, 2],
            [2, 2],
            [0, 0],
            false,
            true,
            None::<i64>,
        )
    })
}

/// Blocks: stem, denseblock1, transition1, …, denseblock4 + norm5 (+ ReLU); optional `classifier`.
pub(crate) fn build(p: &nn::Path, cfg: Config, classifier: bool) -> Parts {
    let f = p / "features";
    let conv0 = conv(&f / "conv0", 3, cfg.init, 7, 2, 3, 1);
    let norm0 = bn(&f / "norm0", cfg.init);
    let mut blocks = vec![Block {
        module: func_t(move |x, train| {
            norm0.forward_t(&x.apply(&conv0), train).relu().max_pool2d(
                [3, 3],
                [2, 2],
                [1, 1],
                [1, 1],
                false,
            )
        }),
        prefixes: vec!["features.conv0.".into(), "features.norm0.".into()],
    }];
    let mut c = cfg.init;
    for (i, &n) in cfg.layers.iter().enumerate() {
        let name = format!("denseblock{}", i + 1);
        let block = dense_block(&(&f / name.as_str()), c, n, cfg.growth);
        c += n * cfg.growth;
        if i == 3 {
            let norm5 = bn(&f / "norm5", c);
            blocks.push(Block {
                module: func_t(move |x, train| {
                    norm5.forward_t(&block.forward_t(x, train), train).relu()
                }),
                prefixes: vec![format!("features.{name}."), "features.norm5.".into()],
            });
        } else {
            blocks.push(Block {
                module: block,
                prefixes: vec![format!("features.{name}.")],
            });
            let tname = format!("transition{}", i + 1);
            blocks.push(Block {
                module: transition(&(&f / tname.as_str()), c, c / 2),
                prefixes: vec![format!("features.{tname}.")],
            });
            c /= 2;
        }
    }
    let classifier = classifier.then(|| {
        let fc = nn::linear(p / "classifier", c, 1000, Default::default());
        func_t(move |x, _| fc.forward_t(&x.adaptive_avg_pool2d([1, 1]).flatten(1, -1), false))
    });
    Parts {
        blocks,
        out_channels: c,
        classifier,
        classifier_prefix: "classifier.",
    }
}

/// The same network as an ONNX graph over the weights under `p` (e.g. `backbone.`): the
/// feature map after norm5 and its ReLU.
pub(crate) fn onnx(g: &mut Graph, x: &Value, p: &str, cfg: Config) -> Result<Value, OnnxError> {
    let f = format!("{p}features");
    let y = g.conv(x, &format!("{f}.conv0"), 2, 3, 1)?;
    let y = g.batch_norm(&y, &format!("{f}.norm0"))?;
    let y = g.relu(&y);
    let mut y = g.max_pool(&y, 3, 2, 1, false);
    for (i, &n) in cfg.layers.iter().enumerate() {
        let block = format!("{f}.denseblock{}", i + 1);
        let mut feats = vec![y.clone()];
        for l in 0..n {
            let lp = format!("{block}.denselayer{}", l + 1);
            let inp = g.concat(&feats, 1);
            let z = g.batch_norm(&inp, &format!("{lp}.norm1"))?;
            let z = g.relu(&z);
            let z = g.conv(&z, &format!("{lp}.conv1"), 1, 0, 1)?;
            let z = g.batch_norm(&z, &format!("{lp}.norm2"))?;
            let z = g.relu(&z);
            feats.push(g.conv(&z, &format!("{lp}.conv2"), 1, 1, 1)?);
        }
        y = g.concat(&feats, 1);
        if i == 3 {
            y = g.batch_norm(&y, &format!("{f}.norm5"))?;
            y = g.relu(&y);
        } else {
            let t = format!("{f}.transition{}", i + 1);
            y = g.batch_norm(&y, &format!("{t}.norm"))?;
            y = g.relu(&y);
            y = g.conv(&y, &format!("{t}.conv"), 1, 0, 1)?;
            y = g.avg_pool(&y, 2, 2);
        }
    }
    Ok(y)
}
