//! The three MTCNN networks with facenet-pytorch's layer names (`conv1`, `prelu1`, `dense4`, ...).

use super::FaceError;
use std::path::Path;
use tch::nn;
use tch::{Device, Tensor};

fn conv(p: &nn::Path, name: &str, i: i64, o: i64, k: i64) -> nn::Conv2D {
    nn::conv2d(p / name, i, o, k, Default::default())
}

/// PReLU with one slope per channel (`<name>.weight`).
#[derive(Debug)]
struct Prelu {
    weight: Tensor,
}

impl Prelu {
    fn new(p: &nn::Path, name: &str, n: i64) -> Self {
        Prelu {
            weight: (p / name).var("weight", &[n], nn::Init::Const(0.25)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.prelu(&self.weight)
    }
}

fn pool(x: &Tensor, k: i64, s: i64) -> Tensor {
    x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], true)
}

/// Flattens `[B,C,H,W]` the way the original Caffe/TF model does (`permute(0,3,2,1)`).
fn flatten_wh(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    x.permute([0, 3, 2, 1]).contiguous().view([b, -1])
}

/// Proposal net: fully convolutional, `(box regression [B,4,h,w], face prob [B,2,h,w])`.
#[derive(Debug)]
pub struct PNet {
    vs: nn::VarStore,
    c1: nn::Conv2D,
    p1: Prelu,
    c2: nn::Conv2D,
    p2: Prelu,
    c3: nn::Conv2D,
    p3: Prelu,
    c41: nn::Conv2D,
    c42: nn::Conv2D,
}

impl PNet {
    /// Builds the net on `device` and loads `file`.
    pub fn load(file: &Path, device: Device) -> Result<Self, FaceError> {
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let net = PNet {
            c1: conv(&p, "conv1", 3, 10, 3),
            p1: Prelu::new(&p, "prelu1", 10),
            c2: conv(&p, "conv2", 10, 16, 3),
            p2: Prelu::new(&p, "prelu2", 16),
            c3: conv(&p, "conv3", 16, 32, 3),
            p3: Prelu::new(&p, "prelu3", 32),
            c41: conv(&p, "conv4_1", 32, 2, 1),
            c42: conv(&p, "conv4_2", 32, 4, 1),
            vs,
        };
        load(&net.vs, file)?;
        Ok(net)
    }

    /// `(regression, probabilities)` for normalised images `[B,3,H,W]`.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = pool(&self.p1.forward(&x.apply(&self.c1)), 2, 2);
        let x = self.p2.forward(&x.apply(&self.c2));
        let x = self.p3.forward(&x.apply(&self.c3));
        let a = x.apply(&self.c41).softmax(1, tch::Kind::Float);
        (x.apply(&self.c42), a)
    }
}

/// Refinement net on 24×24 crops: `(box regression [N,4], face prob [N,2])`.
#[derive(Debug)]
pub struct RNet {
    vs: nn::VarStore,
    c1: nn::Conv2D,
    p1: Prelu,
    c2: nn::Conv2D,
    p2: Prelu,
    c3: nn::Conv2D,
    p3: Prelu,
    d4: nn::Linear,
    p4: Prelu,
    d51: nn::Linear,
    d52: nn::Linear,
}

impl RNet {
    /// Builds the net on `device` and loads `file`.
    pub fn load(file: &Path, device: Device) -> Result<Self, FaceError> {
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let lin = |n: &str, i, o| nn::linear(&p / n, i, o, Default::default());
        let net = RNet {
            c1: conv(&p, "conv1", 3, 28, 3),
            p1: Prelu::new(&p, "prelu1", 28),
            c2: conv(&p, "conv2", 28, 48, 3),
            p2: Prelu::new(&p, "prelu2", 48),
            c3: conv(&p, "conv3", 48, 64, 2),
            p3: Prelu::new(&p, "prelu3", 64),
            d4: lin("dense4", 576, 128),
            p4: Prelu::new(&p, "prelu4", 128),
            d51: lin("dense5_1", 128, 2),
            d52: lin("dense5_2", 128, 4),
            vs,
        };
        load(&net.vs, file)?;
        Ok(net)
    }

    /// `(regression, probabilities)` for normalised 24×24 crops.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = pool(&self.p1.forward(&x.apply(&self.c1)), 3, 2);
        let x = pool(&self.p2.forward(&x.apply(&self.c2)), 3, 2);
        let x = self.p3.forward(&x.apply(&self.c3));
        let x = self.p4.forward(&flatten_wh(&x).apply(&self.d4));
        let a = x.apply(&self.d51).softmax(1, tch::Kind::Float);
        (x.apply(&self.d52), a)
    }
}

/// Output net on 48×48 crops: `(box regression [N,4], landmarks [N,10], face prob [N,2])`.
#[derive(Debug)]
pub struct ONet {
    vs: nn::VarStore,
    c1: nn::Conv2D,
    p1: Prelu,
    c2: nn::Conv2D,
    p2: Prelu,
    c3: nn::Conv2D,
    p3: Prelu,
    c4: nn::Conv2D,
    p4: Prelu,
    d5: nn::Linear,
    p5: Prelu,
    d61: nn::Linear,
    d62: nn::Linear,
    d63: nn::Linear,
}

impl ONet {
    /// Builds the net on `device` and loads `file`.
    pub fn load(file: &Path, device: Device) -> Result<Self, FaceError> {
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let lin = |n: &str, i, o| nn::linear(&p / n, i, o, Default::default());
        let net = ONet {
            c1: conv(&p, "conv1", 3, 32, 3),
            p1: Prelu::new(&p, "prelu1", 32),
            c2: conv(&p, "conv2", 32, 64, 3),
            p2: Prelu::new(&p, "prelu2", 64),
            c3: conv(&p, "conv3", 64, 64, 3),
            p3: Prelu::new(&p, "prelu3", 64),
            c4: conv(&p, "conv4", 64, 128, 2),
            p4: Prelu::new(&p, "prelu4", 128),
            d5: lin("dense5", 1152, 256),
            p5: Prelu::new(&p, "prelu5", 256),
            d61: lin("dense6_1", 256, 2),
            d62: lin("dense6_2", 256, 4),
            d63: lin("dense6_3", 256, 10),
            vs,
        };
        load(&net.vs, file)?;
        Ok(net)
    }

    /// `(regression, landmarks, probabilities)` for normalised 48×48 crops.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let x = pool(&self.p1.forward(&x.apply(&self.c1)), 3, 2);
        let x = pool(&self.p2.forward(&x.apply(&self.c2)), 3, 2);
        let x = pool(&self.p3.forward(&x.apply(&self.c3)), 2, 2);
        let x = self.p4.forward(&x.apply(&self.c4));
        let x = self.p5.forward(&flatten_wh(&x).apply(&self.d5));
        let a = x.apply(&self.d61).softmax(1, tch::Kind::Float);
        (x.apply(&self.d62), x.apply(&self.d63), a)
    }
}

fn load(vs: &nn::VarStore, file: &Path) -> Result<(), FaceError> {
    crate::tensors::load_file(vs, file, None).map_err(|e| FaceError::Weights {
        path: file.into(),
        message: e.to_string(),
    })
}
