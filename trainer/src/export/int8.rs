//! The int8 side of an export: a model scored with the kernels an int8 file computes with (so a
//! job measures the int8 file's F1 on its own test fold, on its own device, without an ONNX
//! runtime), and the rule that keeps an int8 file only where it loses at most one point of F1.

use crate::train::checkpoint::CheckpointMeta;
use crate::train::{Model, TrainError};
use ausweep_onnx::int8::{is_kernel, round_trip};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The most average F1 an int8 file may lose on its test fold, in points (%).
pub const MAX_F1_DROP_POINTS: f64 = 1.0;

/// What the int8 kernels did to a checkpoint's test fold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Int8Drop {
    /// Average F1 % with the f32 kernels.
    pub fp32_f1: f64,
    /// Average F1 % with the int8 kernels.
    pub int8_f1: f64,
}

impl Int8Drop {
    /// F1 points lost (negative where int8 scored higher).
    pub fn points(&self) -> f64 {
        self.fp32_f1 - self.int8_f1
    }

    /// Whether an int8 file of this checkpoint is kept.
    pub fn kept(&self) -> bool {
        self.points() <= MAX_F1_DROP_POINTS
    }

    /// The drop recorded in a checkpoint (`None` before this version and for intensity models).
    pub fn of(meta: &CheckpointMeta) -> Option<Int8Drop> {
        Some(Int8Drop {
            fp32_f1: 100.0 * meta.metrics.as_ref()?.avg_f1,
            int8_f1: 100.0 * meta.int8.as_ref()?.avg_f1,
        })
    }

    /// The drop of checkpoint `file` when its int8 file may be kept; else why not.
    pub fn check(file: &Path, meta: &CheckpointMeta) -> Result<Int8Drop, TrainError> {
        let refuse = |message: String| TrainError::Checkpoint {
            path: file.into(),
            message,
        };
        let d = Int8Drop::of(meta).ok_or_else(|| {
            refuse(
                "has no int8 score of its test fold (final checkpoints of occurrence jobs of \
                 this version have one): export it without --int8"
                    .into(),
            )
        })?;
        if !d.kept() {
            return Err(refuse(format!(
                "int8 kernels lose {:.2} points of average F1 on the test fold ({:.2} % → {:.2} \
                 %), more than the {MAX_F1_DROP_POINTS} allowed: export it without --int8",
                d.points(),
                d.fp32_f1,
                d.int8_f1
            )));
        }
        Ok(d)
    }
}

/// Runs `f` with the model's convolution and dense kernels replaced by the values an int8 file
/// computes with ([`ausweep_onnx::int8::round_trip`]), then puts the f32 kernels back.
pub fn with_int8_kernels<R>(model: &Model, f: impl FnOnce() -> R) -> Result<R, TrainError> {
    let mut kernels: Vec<Tensor> = model
        .backbone_vs
        .variables()
        .into_values()
        .chain(model.head_vs.variables().into_values())
        .filter(|t| is_kernel(&t.size()))
        .collect();
    let saved: Vec<Tensor> = kernels.iter().map(Tensor::copy).collect();
    let quantized: Result<Vec<Tensor>, TrainError> = kernels.iter().map(int8_values).collect();
    tch::no_grad(|| {
        for (t, q) in kernels.iter_mut().zip(quantized?) {
            t.copy_(&q);
        }
        Ok::<(), TrainError>(())
    })?;
    let out = f();
    tch::no_grad(|| {
        for (t, s) in kernels.iter_mut().zip(&saved) {
            t.copy_(s);
        }
    });
    Ok(out)
}

/// The int8 file's values of one kernel, on its device and in its kind.
fn int8_values(t: &Tensor) -> Result<Tensor, TrainError> {
    let dims = t.size();
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    let v = Vec::<f32>::try_from(&flat)?;
    let channels = usize::try_from(dims[0]).unwrap_or(1);
    Ok(Tensor::from_slice(&round_trip(&v, channels))
        .view(dims.as_slice())
        .to_device(t.device())
        .to_kind(t.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ausweep_proto::job::Backbone;

    fn kernel_values(m: &Model) -> Vec<f32> {
        let t = &m.backbone_vs.variables()["features.0.0.weight"];
        Vec::<f32>::try_from(&t.contiguous().view([-1])).unwrap()
    }

    #[test]
    fn the_f32_kernels_come_back_after_scoring_with_int8_ones() {
        let m = Model::new(Backbone::MobilenetV2, 3, Device::Cpu);
        let before = kernel_values(&m);
        let inside = with_int8_kernels(&m, || kernel_values(&m)).unwrap();
        assert_eq!(inside, round_trip(&before, 32));
        assert_ne!(inside, before, "the int8 values are not the f32 ones");
        assert_eq!(kernel_values(&m), before);
    }

    #[test]
    fn an_int8_file_is_kept_up_to_one_point_of_f1_lost() {
        use crate::train::metrics::Scores;
        let scores = |avg_f1| Scores {
            per_au: Vec::new(),
            avg_f1,
        };
        let mut meta = CheckpointMeta::untrained("mobilenet_v2", &[1], 64);
        let file = Path::new("m/final.safetensors");
        let err = Int8Drop::check(file, &meta).unwrap_err().to_string();
        assert!(err.contains("has no int8 score"), "{err}");
        meta.metrics = Some(scores(0.60));
        meta.int8 = Some(scores(0.591));
        let d = Int8Drop::check(file, &meta).unwrap();
        assert!((d.points() - 0.9).abs() < 1e-9, "{d:?}");
        meta.int8 = Some(scores(0.585));
        let err = Int8Drop::check(file, &meta).unwrap_err().to_string();
        assert!(
            err.contains("m/final.safetensors: int8 kernels lose 1.50 points")
                && err.contains("(60.00 % → 58.50 %)"),
            "{err}"
        );
    }
}
