//! The new head: global average pooling → BatchNorm → ReLU → Dropout(0.2) → Linear(K).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Dropout probability of the head.
pub const HEAD_DROPOUT: f64 = 0.2;

/// The AU head on top of pooled backbone features (names `bn.*`, `fc.*`).
#[derive(Debug)]
pub struct Head {
    bn: nn::BatchNorm,
    fc: nn::Linear,
}

impl Head {
    /// A head for `in_features` pooled channels and `k` AUs.
    pub fn new(p: &nn::Path, in_features: i64, k: i64) -> Self {
        Head {
            bn: nn::batch_norm1d(p / "bn", in_features, Default::default()),
            fc: nn::linear(p / "fc", in_features, k, Default::default()),
        }
    }

    /// Logits `[B, K]` from pooled features `[B, C]`.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Tensor {
        self.bn
            .forward_t(pooled, train)
            .relu()
            .dropout(HEAD_DROPOUT, train)
            .apply(&self.fc)
    }
}
