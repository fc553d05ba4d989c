//! Conv/BatchNorm helpers shared by the architectures.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A bias-free convolution.
pub(crate) fn conv(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    pad: i64,
    groups: i64,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: pad,
        groups,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// BatchNorm2d with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub(crate) fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// Conv → BN → ReLU6 with torchvision's `Conv2dNormActivation` names (`<p>.0`, `<p>.1`).
pub(crate) fn conv_bn_relu6(
    p: &nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    groups: i64,
) -> nn::SequentialT {
    nn::seq_t()
        .add(conv(p / "0", cin, cout, k, stride, (k - 1) / 2, groups))
        .add(bn(p / "1", cout))
        .add_fn(|x| x.relu6())
}

/// A module from a closure with a train flag.
pub(crate) fn func_t<F>(f: F) -> Box<dyn ModuleT>
where
    F: 'static + Fn(&Tensor, bool) -> Tensor + Send,
{
    Box::new(nn::func_t(f))
}
