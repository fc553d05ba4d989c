//! Channels-last memory format (NHWC strides under NCHW shapes), what cuDNN's fastest
//! convolution kernels (tensor cores, with AMP) want. tch has no memory-format API, so the
//! format is made the way PyTorch's `.to(memory_format=torch.channels_last)` makes it: a
//! permute to NHWC, a contiguous copy, and the permute back.

use tch::{nn, Tensor};

/// Whether trainers on CUDA use channels-last (`AUSWEEP_CHANNELS_LAST=0` turns it off).
pub fn enabled_for(device: tch::Device) -> bool {
    device.is_cuda() && std::env::var("AUSWEEP_CHANNELS_LAST").map_or(true, |v| v != "0")
}

/// `x` in channels-last memory format when it is 4-D (other ranks are returned as they are).
pub fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether `x` is a 4-D tensor laid out channels-last (channel stride 1, width stride C).
pub fn is_channels_last(x: &Tensor) -> bool {
    x.dim() == 4 && x.stride()[1] == 1 && x.stride()[3] == x.size()[1] && x.size()[1] > 1
}

/// Converts every 4-D variable of `vs` (the convolution weights) to channels-last, in place, so
/// the optimiser's state built from them (`zeros_like`) follows.
pub fn to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = channels_last(&t);
                t.set_data(&cl);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn channels_last_keeps_values_and_a_model_gives_the_same_output() {
        tch::manual_seed(0);
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let cl = channels_last(&x);
        assert!(is_channels_last(&cl) && !is_channels_last(&x));
        assert_eq!(cl.size(), x.size());
        assert!(cl.equal(&x));
        let vs = nn::VarStore::new(Device::Cpu);
        let net = crate::train::backbone::BackboneNet::new(
            &vs.root(),
            ausweep_proto::job::Backbone::MobilenetV2,
            false,
        );
        let before = tch::no_grad(|| net.pooled(&x, false, usize::MAX));
        to_channels_last(&vs);
        // The stem convolution, [32, 3, 3, 3]: its layouts differ (1x1 kernels look alike).
        let conv = vs
            .variables()
            .remove("features.0.0.weight")
            .expect("mobilenet_v2's stem convolution");
        assert!(is_channels_last(&conv), "weights were not converted");
        let after = tch::no_grad(|| net.pooled(&cl, false, usize::MAX));
        let d = (before - after).abs().max().double_value(&[]);
        assert!(d < 1e-4, "channels-last changed the output by {d}");
    }
}
