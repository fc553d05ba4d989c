//! The three MTCNN nets as ONNX files, the same layers as [`super::nets`] with the input
//! normalisation inside: images in (RGB, 0–255), the nets' outputs out.

use super::FaceError;
use ausweep_onnx::{Binary, Dim, Graph, OnnxError, Value};
use std::path::Path;

/// One of the three nets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// Proposal net, fully convolutional: `regression [N,4,h,w]`, `probs [N,2,h,w]`.
    P,
    /// Refinement net on 24×24 crops: `regression [N,4]`, `probs [N,2]`.
    R,
    /// Output net on 48×48 crops: `regression [N,4]`, `landmarks [N,10]`, `probs [N,2]`.
    O,
}

impl Net {
    /// All three, in detection order.
    pub const ALL: [Net; 3] = [Net::P, Net::R, Net::O];

    /// `pnet`, `rnet` or `onet` (as in `mtcnn_<name>.safetensors`).
    pub fn name(self) -> &'static str {
        match self {
            Net::P => "pnet",
            Net::R => "rnet",
            Net::O => "onet",
        }
    }
}

/// The ONNX model of `net` from `mtcnn_<name>.safetensors` in `weights_dir`; input `images`.
pub fn onnx(weights_dir: &Path, net: Net) -> Result<Vec<u8>, FaceError> {
    let file = weights_dir.join(format!("mtcnn_{}.safetensors", net.name()));
    let bad = |message: String| FaceError::Weights {
        path: file.clone(),
        message,
    };
    let weights = crate::tensors::onnx_weights(&file, |_| true).map_err(|e| bad(e.to_string()))?;
    let build = || -> Result<Vec<u8>, OnnxError> {
        let mut g = Graph::new(&format!("mtcnn_{}", net.name()), weights);
        let side = match net {
            Net::P => None,
            Net::R => Some(24),
            Net::O => Some(48),
        };
        let hw = side.map_or([Dim::Named("height"), Dim::Named("width")], |s| {
            [Dim::Fixed(s), Dim::Fixed(s)]
        });
        let n = Dim::Named("batch");
        let x = g.input(
            "images",
            &[n.clone(), Dim::Fixed(3), hw[0].clone(), hw[1].clone()],
        );
        let centre = g.constant("pixel_centre", &[], &[127.5]);
        let scale = g.constant("pixel_scale", &[], &[0.0078125]);
        let x = g.binary(Binary::Sub, &x, &centre);
        let x = g.binary(Binary::Mul, &x, &scale);
        match net {
            Net::P => pnet(&mut g, &x)?,
            Net::R => rnet(&mut g, &x)?,
            Net::O => onet(&mut g, &x)?,
        }
        g.finish(
            "ausweep",
            &[(
                "ausweep.input".to_string(),
                "images [N,3,H,W] RGB 0-255; normalised inside as (x - 127.5) / 128".to_string(),
            )],
        )
    };
    build().map_err(|e| bad(e.to_string()))
}

/// Conv (stride 1, no padding) → PReLU, optionally → max-pool `(k, s)` with ceil mode.
fn conv_prelu(
    g: &mut Graph,
    x: &Value,
    i: u32,
    pool: Option<(i64, i64)>,
) -> Result<Value, OnnxError> {
    let y = g.conv(x, &format!("conv{i}"), 1, 0, 1)?;
    let y = g.prelu(&y, &format!("prelu{i}"), true)?;
    Ok(match pool {
        Some((k, s)) => g.max_pool(&y, k, s, 0, true),
        None => y,
    })
}

fn pnet(g: &mut Graph, x: &Value) -> Result<(), OnnxError> {
    let y = conv_prelu(g, x, 1, Some((2, 2)))?;
    let y = conv_prelu(g, &y, 2, None)?;
    let y = conv_prelu(g, &y, 3, None)?;
    let a = g.conv(&y, "conv4_1", 1, 0, 1)?;
    let a = g.softmax(&a, 1);
    let r = g.conv(&y, "conv4_2", 1, 0, 1)?;
    let n = Dim::Named("batch");
    let (h, w) = (Dim::Named("out_height"), Dim::Named("out_width"));
    g.output(
        &r,
        "regression",
        &[n.clone(), Dim::Fixed(4), h.clone(), w.clone()],
    );
    g.output(&a, "probs", &[n, Dim::Fixed(2), h, w]);
    Ok(())
}

/// `[N,C,H,W]` flattened as the original Caffe/TF model does (`permute(0,3,2,1)`), then a
/// dense layer and its PReLU.
fn dense_prelu(g: &mut Graph, x: &Value, dense: &str, prelu: &str) -> Result<Value, OnnxError> {
    let t = g.transpose(x, &[0, 3, 2, 1]);
    let f = g.flatten(&t);
    let y = g.linear(&f, dense)?;
    g.prelu(&y, prelu, false)
}

fn rnet(g: &mut Graph, x: &Value) -> Result<(), OnnxError> {
    let y = conv_prelu(g, x, 1, Some((3, 2)))?;
    let y = conv_prelu(g, &y, 2, Some((3, 2)))?;
    let y = conv_prelu(g, &y, 3, None)?;
    let y = dense_prelu(g, &y, "dense4", "prelu4")?;
    let a = g.linear(&y, "dense5_1")?;
    let a = g.softmax(&a, 1);
    let r = g.linear(&y, "dense5_2")?;
    let n = Dim::Named("batch");
    g.output(&r, "regression", &[n.clone(), Dim::Fixed(4)]);
    g.output(&a, "probs", &[n, Dim::Fixed(2)]);
    Ok(())
}

fn onet(g: &mut Graph, x: &Value) -> Result<(), OnnxError> {
    let y = conv_prelu(g, x, 1, Some((3, 2)))?;
    let y = conv_prelu(g, &y, 2, Some((3, 2)))?;
    let y = conv_prelu(g, &y, 3, Some((2, 2)))?;
    let y = conv_prelu(g, &y, 4, None)?;
    let y = dense_prelu(g, &y, "dense5", "prelu5")?;
    let a = g.linear(&y, "dense6_1")?;
    let a = g.softmax(&a, 1);
    let r = g.linear(&y, "dense6_2")?;
    let l = g.linear(&y, "dense6_3")?;
    let n = Dim::Named("batch");
    g.output(&r, "regression", &[n.clone(), Dim::Fixed(4)]);
    g.output(&l, "landmarks", &[n.clone(), Dim::Fixed(10)]);
    g.output(&a, "probs", &[n, Dim::Fixed(2)]);
    Ok(())
}
