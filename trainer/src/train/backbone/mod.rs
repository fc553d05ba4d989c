//! ImageNet backbones as feature extractors with torchvision's parameter names (timm's for
//! MobileNet-v1), any input size, and an optional ImageNet classifier for `weights check`.

mod densenet;
mod layers;
mod mobilenet_v1;
mod mobilenet_v2;
mod vgg;

use ausweep_proto::job::Backbone;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// One block of a backbone: the unit that "unfreeze the last N blocks" counts.
pub(crate) struct Block {
    /// The block's forward pass.
    pub(crate) module: Box<dyn ModuleT>,
    /// Parameter-name prefixes (relative to the backbone root) owned by this block.
    pub(crate) prefixes: Vec<String>,
}

/// A backbone: blocks applied in order, then global average pooling.
pub struct BackboneNet {
    kind: Backbone,
    blocks: Vec<Block>,
    out_channels: i64,
    classifier: Option<Box<dyn ModuleT>>,
    classifier_prefix: &'static str,
}

impl std::fmt::Debug for BackboneNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackboneNet")
            .field("kind", &self.kind)
            .field("blocks", &self.blocks.len())
            .field("out_channels", &self.out_channels)
            .finish()
    }
}

impl BackboneNet {
    /// Builds `kind` under `path`; with `imagenet_classifier` it also gets its 1000-way classifier.
    pub fn new(path: &nn::Path, kind: Backbone, imagenet_classifier: bool) -> Self {
        let parts = match kind {
            Backbone::Densenet121 => {
                densenet::build(path, densenet::DENSENET121, imagenet_classifier)
            }
            Backbone::Densenet201 => {
                densenet::build(path, densenet::DENSENET201, imagenet_classifier)
            }
            Backbone::MobilenetV1 => mobilenet_v1::build(path, imagenet_classifier),
            Backbone::MobilenetV2 => mobilenet_v2::build(path, imagenet_classifier),
            Backbone::Vgg19 => vgg::build(path, imagenet_classifier),
        };
        BackboneNet {
            kind,
            blocks: parts.blocks,
            out_channels: parts.out_channels,
            classifier: parts.classifier,
            classifier_prefix: parts.classifier_prefix,
        }
    }

    /// Which backbone this is.
    pub fn kind(&self) -> Backbone {
        self.kind
    }

    /// Channels of the pooled feature vector.
    pub fn out_channels(&self) -> i64 {
        self.out_channels
    }

    /// Number of blocks (for "unfreeze the last N").
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Prefix of the ImageNet classifier's parameters (e.g. `classifier`).
    pub fn classifier_prefix(&self) -> &'static str {
        self.classifier_prefix
    }

    /// Parameter-name prefixes of block `i`.
    pub fn block_prefixes(&self, i: usize) -> &[String] {
        &self.blocks[i].prefixes
    }

    /// Feature map; blocks before `first_train_block` run in inference mode even when `train`.
    pub fn features(&self, xs: &Tensor, train: bool, first_train_block: usize) -> Tensor {
        let mut x = xs.shallow_clone();
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.module.forward_t(&x, train && i >= first_train_block);
        }
        x
    }

    /// Globally average-pooled features, `[B, out_channels]`.
    pub fn pooled(&self, xs: &Tensor, train: bool, first_train_block: usize) -> Tensor {
        self.features(xs, train, first_train_block)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }

    /// ImageNet logits (inference mode); `None` when built without the classifier.
    pub fn imagenet_logits(&self, xs: &Tensor) -> Option<Tensor> {
        let c = self.classifier.as_ref()?;
        let f = self.features(xs, false, 0);
        Some(c.forward_t(&f, false))
    }
}

/// What each architecture's builder returns.
pub(crate) struct Parts {
    pub(crate) blocks: Vec<Block>,
    pub(crate) out_channels: i64,
    pub(crate) classifier: Option<Box<dyn ModuleT>>,
    pub(crate) classifier_prefix: &'static str,
}

/// `kind`'s feature map as ONNX nodes from `x` over the weights named under `prefix` (e.g.
/// `backbone.`), the same network [`BackboneNet::features`] runs.
pub fn onnx(
    g: &mut ausweep_onnx::Graph,
    x: &ausweep_onnx::Value,
    kind: Backbone,
    prefix: &str,
) -> Result<ausweep_onnx::Value, ausweep_onnx::OnnxError> {
    match kind {
        Backbone::Densenet121 => densenet::onnx(g, x, prefix, densenet::DENSENET121),
        Backbone::Densenet201 => densenet::onnx(g, x, prefix, densenet::DENSENET201),
        Backbone::MobilenetV1 => mobilenet_v1::onnx(g, x, prefix),
        Backbone::MobilenetV2 => mobilenet_v2::onnx(g, x, prefix),
        Backbone::Vgg19 => vgg::onnx(g, x, prefix),
    }
}
