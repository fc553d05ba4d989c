//! MTCNN and the default eye alignment on ausweep's own synthetic DISFA: faces rendered at
//! 160 px are found, and their aligned 64 px crops match the 64 px training frames of the same
//! frames better with the default geometry than with a crop a little larger, smaller, higher or
//! lower: the defaults are where the renderer puts the eyes.

use ausweep_data::synth::{render_samples, SynthConfig};
use ausweep_vision::face::{AlignSpec, Detector, DetectorConfig};
use tch::{Device, Kind, Tensor};

fn frames(size: u32) -> Tensor {
    let s = render_samples(&SynthConfig {
        subjects: 3,
        frames: 8,
        size,
        seed: 1,
    });
    let side = i64::from(size);
    Tensor::from_slice(&s.pixels).view([s.len() as i64, 3, side, side])
}

/// Mean absolute difference (0–255) between the aligned crops and the training frames.
fn error(
    spec: &AlignSpec,
    big: &Tensor,
    small: &Tensor,
    found: &[(usize, ausweep_vision::face::Face)],
) -> f64 {
    let crops: Vec<_> = found.iter().map(|(_, f)| spec.crop_of(f)).collect();
    let idx: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
    let x = ausweep_vision::face::align::extract(spec, big, &crops, &idx, 64).unwrap();
    let want = small
        .index_select(
            0,
            &Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>()),
        )
        .to_kind(Kind::Float);
    (x - want).abs().mean(Kind::Double).double_value(&[])
}

#[test]
fn synthetic_faces_are_found_and_aligned_like_the_training_frames() {
    let (big, small) = (frames(160), frames(64));
    let weights = ausweep_weights::dirs::weights_dir();
    let det = Detector::load(&weights, Device::Cpu, DetectorConfig::default()).unwrap();
    let found: Vec<_> = det
        .detect(&big)
        .unwrap()
        .into_iter()
        .enumerate()
        .filter(|(_, f)| f.len() == 1)
        .map(|(i, mut f)| (i, f.remove(0)))
        .collect();
    let n = big.size()[0] as usize;
    assert!(
        found.len() * 10 >= n * 8,
        "one face in only {} of {n} frames",
        found.len()
    );
    let d = AlignSpec::default();
    let base = error(&d, &big, &small, &found);
    let others = [
        AlignSpec {
            eye_distance: d.eye_distance * 1.15,
            ..d
        },
        AlignSpec {
            eye_distance: d.eye_distance / 1.15,
            ..d
        },
        AlignSpec {
            eye_y: d.eye_y + 0.04,
            ..d
        },
        AlignSpec {
            eye_y: d.eye_y - 0.04,
            ..d
        },
    ];
    for o in others {
        let e = error(&o, &big, &small, &found);
        eprintln!("{o:?}: {e:.2} vs default {base:.2}");
        assert!(
            base < e,
            "{o:?} fits better ({e:.2}) than the default ({base:.2})"
        );
    }
    eprintln!("{} of {n} frames, default error {base:.2}", found.len());
}
