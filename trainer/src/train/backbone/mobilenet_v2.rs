//! MobileNet-v2 (Sandler et al. 2018) with torchvision's parameter names.

use super::layers::{bn, conv, conv_bn_relu6, func_t};
use super::{Block, Parts};
use ausweep_onnx::{Binary, Graph, OnnxError, Value};
use tch::nn::{self, ModuleT};

/// (expansion t, channels c, repeats n, first stride s), torchvision's table.
const SETTINGS: [(i64, i64, i64, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

fn inverted_residual(p: &nn::Path, cin: i64, cout: i64, stride: i64, t: i64) -> Box<dyn ModuleT> {
    let hidden = cin * t;
    let c = p / "conv";
    let mut seq = nn::seq_t();
    let mut i = 0;
    if t != 1 {
        seq = seq.add(conv_bn_relu6(&(&c / "0"), cin, hidden, 1, 1, 1));
        i = 1;
    }
    seq = seq
        .add(conv_bn_relu6(
            &(&c / i.to_string()),
            hidden,
            hidden,
            3,
            stride,
            hidden,
        ))
        .add(conv(&c / (i + 1).to_string(), hidden, cout, 1, 1, 0, 1))
        .add(bn(&c / (i + 2).to_string(), cout));
    let residual = stride == 1 && cin == cout;
    func_t(move |x, train| {
        let y = seq.forward_t(x, train);
        if residual {
            y + x
        } else {
            y
        }
    })
}

/// Builds the 19 feature blocks (`features.0` … `features.18`) and optionally `classifier.1`.
pub(crate) fn build(p: &nn::Path, classifier: bool) -> Parts {
    let f = p / "features";
    let mut blocks = Vec::new();
    let stem = conv_bn_relu6(&(&f / "0"), 3, 32, 3, 2, 1);
    blocks.push(Block {
        module: Box::new(stem),
        prefixes: vec!["features.0.".into()],
    });
    let mut cin = 32;
    let mut idx = 1;
    for (t, c, n, s) in SETTINGS {
        for r in 0..n {
            let stride = if r == 0 { s } else { 1 };
            blocks.push(Block {
                module: inverted_residual(&(&f / idx.to_string()), cin, c, stride, t),
                prefixes: vec![format!("features.{idx}.")],
            });
            cin = c;
            idx += 1;
        }
    }
    let last = conv_bn_relu6(&(&f / idx.to_string()), cin, 1280, 1, 1, 1);
    blocks.push(Block {
        module: Box::new(last),
        prefixes: vec![format!("features.{idx}.")],
    });
    let classifier = classifier.then(|| {
        let fc = nn::linear(p / "classifier" / "1", 1280, 1000, Default::default());
        func_t(move |x, _| fc.forward_t(&x.adaptive_avg_pool2d([1, 1]).flatten(1, -1), false))
    });
    Parts {
        blocks,
        out_channels: 1280,
        classifier,
        classifier_prefix: "classifier.",
    }
}

/// Conv → BN → ReLU6 under `<p>.0`, `<p>.1`, as [`conv_bn_relu6`] builds it.
fn onnx_conv_bn_relu6(
    g: &mut Graph,
    x: &Value,
    p: &str,
    k: i64,
    stride: i64,
    groups: i64,
) -> Result<Value, OnnxError> {
    let y = g.conv(x, &format!("{p}.0"), stride, (k - 1) / 2, groups)?;
    let y = g.batch_norm(&y, &format!("{p}.1"))?;
    Ok(g.relu6(&y))
}

/// The same network as an ONNX graph over the weights under `p`: the 1280-channel map.
pub(crate) fn onnx(g: &mut Graph, x: &Value, p: &str) -> Result<Value, OnnxError> {
    let f = format!("{p}features");
    let mut y = onnx_conv_bn_relu6(g, x, &format!("{f}.0"), 3, 2, 1)?;
    let mut cin = 32;
    let mut idx = 1;
    for (t, c, n, s) in SETTINGS {
        for r in 0..n {
            let stride = if r == 0 { s } else { 1 };
            let cp = format!("{f}.{idx}.conv");
            let hidden = cin * t;
            let mut i = 0;
            let mut z = y.clone();
            if t != 1 {
                z = onnx_conv_bn_relu6(g, &z, &format!("{cp}.0"), 1, 1, 1)?;
                i = 1;
            }
            z = onnx_conv_bn_relu6(g, &z, &format!("{cp}.{i}"), 3, stride, hidden)?;
            z = g.conv(&z, &format!("{cp}.{}", i + 1), 1, 0, 1)?;
            z = g.batch_norm(&z, &format!("{cp}.{}", i + 2))?;
            y = if stride == 1 && cin == c {
                g.binary(Binary::Add, &z, &y)
            } else {
                z
            };
            cin = c;
            idx += 1;
        }
    }
    onnx_conv_bn_relu6(g, &y, &format!("{f}.{idx}"), 1, 1, 1)
}
