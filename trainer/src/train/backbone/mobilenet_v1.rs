//! MobileNet-v1 (Howard et al. 2017) with timm's `mobilenetv1_100` parameter names.

use super::layers::{bn, conv, func_t};
use super::{Block, Parts};
use ausweep_onnx::{Graph, OnnxError, Value};
use tch::nn::{self, ModuleT};

/// Output channels and first stride of each of timm's five block groups.
const STAGES: [(&[i64], i64); 5] = [
    (&[64], 1),
    (&[128, 128], 2),
    (&[256, 256], 2),
    (&[512, 512, 512, 512, 512, 512], 2),
    (&[1024, 1024], 2),
];

fn separable(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Box<dyn ModuleT> {
    let dw = conv(p / "conv_dw", cin, cin, 3, stride, 1, cin);
    let bn1 = bn(p / "bn1", cin);
    let pw = conv(p / "conv_pw", cin, cout, 1, 1, 0, 1);
    let bn2 = bn(p / "bn2", cout);
    func_t(move |x, train| {
        let y = bn1.forward_t(&x.apply(&dw), train).relu6();
        bn2.forward_t(&y.apply(&pw), train).relu6()
    })
}

/// Builds the stem plus one block per group (`blocks.0` … `blocks.4`), optionally `classifier`.
pub(crate) fn build(p: &nn::Path, classifier: bool) -> Parts {
    let stem_conv = conv(p / "conv_stem", 3, 32, 3, 2, 1, 1);
    let stem_bn = bn(p / "bn1", 32);
    let mut blocks = vec![Block {
        module: func_t(move |x, train| stem_bn.forward_t(&x.apply(&stem_conv), train).relu6()),
        prefixes: vec!["conv_stem.".into(), "bn1.".into()],
    }];
    let mut cin = 32;
    for (g, (chans, first_stride)) in STAGES.iter().enumerate() {
        let gp = p / "blocks" / g.to_string();
        let mut layers = Vec::new();
        for (j, &c) in chans.iter().enumerate() {
            let stride = if j == 0 { *first_stride } else { 1 };
            layers.push(separable(&(&gp / j.to_string()), cin, c, stride));
            cin = c;
        }
        blocks.push(Block {
            module: func_t(move |x, train| {
                let mut y = x.shallow_clone();
                for l in &layers {
                    y = l.forward_t(&y, train);
                }
                y
            }),
            prefixes: vec![format!("blocks.{g}.")],
        });
    }
    let classifier = classifier.then(|| {
        let fc = nn::linear(p / "classifier", 1024, 1000, Default::default());
        func_t(move |x, _| fc.forward_t(&x.adaptive_avg_pool2d([1, 1]).flatten(1, -1), false))
    });
    Parts {
        blocks,
        out_channels: 1024,
        classifier,
        classifier_prefix: "classifier.",
    }
}

/// The same network as an ONNX graph over the weights under `p`: the last block's output.
pub(crate) fn onnx(g: &mut Graph, x: &Value, p: &str) -> Result<Value, OnnxError> {
    let y = g.conv(x, &format!("{p}conv_stem"), 2, 1, 1)?;
    let y = g.batch_norm(&y, &format!("{p}bn1"))?;
    let mut y = g.relu6(&y);
    let mut cin = 32;
    for (gi, (chans, first_stride)) in STAGES.iter().enumerate() {
        for (j, &c) in chans.iter().enumerate() {
            let stride = if j == 0 { *first_stride } else { 1 };
            let lp = format!("{p}blocks.{gi}.{j}");
            y = g.conv(&y, &format!("{lp}.conv_dw"), stride, 1, cin)?;
            y = g.batch_norm(&y, &format!("{lp}.bn1"))?;
            y = g.relu6(&y);
            y = g.conv(&y, &format!("{lp}.conv_pw"), 1, 0, 1)?;
            y = g.batch_norm(&y, &format!("{lp}.bn2"))?;
            y = g.relu6(&y);
            cin = c;
        }
    }
    Ok(y)
}
