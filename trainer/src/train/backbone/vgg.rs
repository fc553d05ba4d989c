//! VGG-19 (Simonyan & Zisserman 2015) with torchvision's parameter names; any input size.

use super::layers::func_t;
use super::{Block, Parts};
use ausweep_onnx::{Graph, OnnxError, Value};
use tch::nn;

/// Channels of the convolutions in each of the five groups (each group ends in a max-pool).
const GROUPS: [&[i64]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256, 256],
    &[512, 512, 512, 512],
    &[512, 512, 512, 512],
];

/// Five conv groups under `features.<i>` (torchvision's indices count ReLUs and pools too).
pub(crate) fn build(p: &nn::Path, classifier: bool) -> Parts {
    let f = p / "features";
    let mut idx = 0usize;
    let mut cin = 3;
    let mut blocks = Vec::new();
    for chans in GROUPS {
        let mut convs = Vec::new();
        let mut prefixes = Vec::new();
        for &c in chans {
            let cfg = nn::ConvConfig {
                padding: 1,
                ..Default::default()
            };
            convs.push(nn::conv2d(&f / idx.to_string(), cin, c, 3, cfg));
            prefixes.push(format!("features.{idx}."));
            cin = c;
            idx += 2; // conv, relu
        }
        idx += 1; // max-pool
        blocks.push(Block {
            module: func_t(move |x, _| {
                let mut y = x.shallow_clone();
                for c in &convs {
                    y = y.apply(c).relu();
                }
                y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            }),
            prefixes,
        });
    }
    let classifier = classifier.then(|| {
        let c = p / "classifier";
        let fc0 = nn::linear(&c / "0", 512 * 7 * 7, 4096, Default::default());
        let fc3 = nn::linear(&c / "3", 4096, 4096, Default::default());
        let fc6 = nn::linear(&c / "6", 4096, 1000, Default::default());
        func_t(move |x, _| {
            x.adaptive_avg_pool2d([7, 7])
                .flatten(1, -1)
                .apply(&fc0)
                .relu()
                .apply(&fc3)
                .relu()
                .apply(&fc6)
        })
    });
    Parts {
        blocks,
        out_channels: 512,
        classifier,
        classifier_prefix: "classifier.",
    }
}

/// The same network as an ONNX graph over the weights under `p`: the fifth group's pooled map.
pub(crate) fn onnx(g: &mut Graph, x: &Value, p: &str) -> Result<Value, OnnxError> {
    let mut idx = 0usize;
    let mut y = x.clone();
    for chans in GROUPS {
        for _ in chans.iter() {
            y = g.conv(&y, &format!("{p}features.{idx}"), 1, 1, 1)?;
            y = g.relu(&y);
            idx += 2;
        }
        idx += 1;
        y = g.max_pool(&y, 2, 2, 0, false);
    }
    Ok(y)
}
