//! How the libtorch engine crops a face: the way the checkpoint's training faces were cropped
//! (its recorded template and size, [`Crop::of`]), unless flags override it.

use anyhow::Result;
pub use ausweep_edge::crop::Crop;
use ausweep_edge::crop::{CropKind, CropOrigin};
use ausweep_proto::trainer::result::CropKind as Recorded;
use ausweep_trainer::train::checkpoint::CheckpointMeta;
use ausweep_vision::face::{align, Face};
use ausweep_vision::prepare::{template, Template};
use tch::Tensor;

/// How a checkpoint's training faces were cropped, from its dataset identity.
pub fn origin(meta: &CheckpointMeta) -> Option<CropOrigin> {
    meta.dataset.as_ref().map(|d| CropOrigin {
        crop: kind(&d.crop),
        template_points: d.template_points.clone(),
        dataset: d.kind.clone(),
    })
}

/// The checkpoint's crop kind as an exported model names it.
fn kind(k: &Recorded) -> CropKind {
    match k {
        Recorded::Eyes => CropKind::Eyes,
        Recorded::Five => CropKind::Five,
        Recorded::CentreSquare => CropKind::CentreSquare,
        Recorded::AsGiven => CropKind::AsGiven,
    }
}

/// The crop of a checkpoint (see [`Crop::of`]).
pub fn of(
    meta: &CheckpointMeta,
    eye_distance: Option<f64>,
    eye_y: Option<f64>,
) -> Result<(Crop, Option<String>)> {
    Crop::of(origin(meta).as_ref(), eye_distance, eye_y).map_err(anyhow::Error::msg)
}

/// Crops `[N,3,size,size]` of `faces` (each with the index of its image in `imgs`).
pub fn extract(crop: &Crop, imgs: &Tensor, faces: &[(usize, &Face)], size: i64) -> Result<Tensor> {
    let image_of: Vec<usize> = faces.iter().map(|(i, _)| *i).collect();
    Ok(match crop {
        Crop::Eyes(spec) => {
            let crops: Vec<_> = faces.iter().map(|(_, f)| spec.crop_of(f)).collect();
            align::extract(spec, imgs, &crops, &image_of, size)?
        }
        Crop::Five => {
            let maps: Vec<_> = faces
                .iter()
                .map(|(_, f)| Template::Five.fit(&f.landmarks, size as u32))
                .collect();
            template::warp(imgs, &maps, &image_of, size)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ausweep_edge::crop::AlignSpec;
    use ausweep_trainer::train::provenance::{CropKind, DatasetIdentity};
    use tch::{Device, Kind};

    type Points = Vec<(usize, [f64; 2])>;

    fn meta(crop: Option<(CropKind, Points)>) -> CheckpointMeta {
        let mut m: CheckpointMeta = serde_json::from_value(serde_json::json!({
            "format": ausweep_trainer::train::checkpoint::FORMAT, "backbone": "mobilenet_v2",
            "stage": 2, "epoch": 1, "aus": [1], "input_size": 48, "thresholds": [0.5],
            "metrics": null, "optim_step": 0, "sha256": "", "train_seconds": 0.0
        }))
        .unwrap();
        m.dataset = crop.map(|(crop, template_points)| DatasetIdentity {
            kind: "disfa_videos".into(),
            content_hash: "h".into(),
            frames: 1,
            aus: vec![1],
            crop,
            template_points,
            size: 48,
            normalisation: String::new(),
        });
        m
    }

    /// An image whose red channel is the column index and green the row index.
    fn ramps(h: i64, w: i64) -> Tensor {
        let o = (Kind::Float, Device::Cpu);
        let x = Tensor::arange(w, o).view([1, w]).expand([h, w], false);
        let y = Tensor::arange(h, o).view([h, 1]).expand([h, w], false);
        Tensor::stack(&[x, y, Tensor::zeros([h, w], o)], 0).unsqueeze(0)
    }

    /// The source (x, y) the crop shows at crop pixel (u, v).
    fn source_at(t: &Tensor, u: i64, v: i64) -> [f64; 2] {
        [t.double_value(&[0, 0, v, u]), t.double_value(&[0, 1, v, u])]
    }

    #[test]
    fn crop_kinds_keep_their_names_between_a_checkpoint_and_an_exported_model() {
        for k in [
            Recorded::Eyes,
            Recorded::Five,
            Recorded::CentreSquare,
            Recorded::AsGiven,
        ] {
            let written = serde_json::to_value(&k).unwrap();
            let read: ausweep_edge::crop::CropKind =
                serde_json::from_value(written.clone()).unwrap();
            assert_eq!(read, kind(&k), "{written}");
        }
    }

    #[test]
    fn the_box_to_crop_mapping_follows_the_checkpoint() {
        let face = Face {
            bbox: [0.0; 4],
            confidence: 1.0,
            landmarks: [
                [150.0, 120.0],
                [210.0, 120.0],
                [180.0, 150.0],
                [160.0, 175.0],
                [200.0, 175.0],
            ],
        };
        let img = ramps(300, 400);
        let size = 48;
        // A checkpoint trained on crops with eyes 0.3 of the side apart at 0.45 of its height:
        // the left eye (150, 120) shows at crop pixel ((0.5 − 0.15)·48 − 0.5, 0.45·48 − 0.5).
        let pts = vec![(0, [0.35, 0.45]), (1, [0.65, 0.45])];
        let (crop, note) = of(&meta(Some((CropKind::Eyes, pts))), None, None).unwrap();
        assert_eq!(note, None);
        assert!(
            matches!(crop, Crop::Eyes(s) if (s.eye_distance - 0.3).abs() < 1e-12 && s.eye_y == 0.45),
            "{crop:?}"
        );
        let t = extract(&crop, &img, &[(0, &face)], size).unwrap();
        let (u, v) = ((0.35 * 48.0 - 0.5) as i64, (0.45 * 48.0 - 0.5) as i64);
        let got = source_at(&t, u, v);
        let scale = 60.0 / (0.3 * 48.0);
        assert!(
            (got[0] - 150.0).abs() < scale && (got[1] - 120.0).abs() < scale,
            "{got:?}"
        );
        // The default geometry puts a different point there: the mapping really changed.
        let default =
            extract(&Crop::Eyes(AlignSpec::default()), &img, &[(0, &face)], size).unwrap();
        let other = source_at(&default, u, v);
        assert!((other[1] - 120.0).abs() > 5.0, "{other:?}");

        // A five-point checkpoint: the crop follows the `five` template's fit.
        let (crop, _) = of(
            &meta(Some((CropKind::Five, Template::Five.points()))),
            None,
            None,
        )
        .unwrap();
        assert_eq!(crop, Crop::Five);
        let t = extract(&crop, &img, &[(0, &face)], size).unwrap();
        let fit = Template::Five.fit(&face.landmarks, size as u32);
        let p = fit.inverse().apply([20.0, 30.0]);
        let got = source_at(&t, 20, 30);
        assert!(
            (got[0] - p[0]).abs() < 0.5 && (got[1] - p[1]).abs() < 0.5,
            "{got:?} vs {p:?}"
        );

        // Flags override, with a note; an old checkpoint gets the default, with a note.
        let (crop, note) = of(&meta(Some((CropKind::Five, vec![]))), Some(0.3), None).unwrap();
        assert!(matches!(crop, Crop::Eyes(s) if s.eye_distance == 0.3) && note.is_some());
        let (crop, note) = of(&meta(None), None, None).unwrap();
        assert_eq!(crop, Crop::Eyes(AlignSpec::default()));
        assert!(note.unwrap().contains("older version"));
        let e = of(&meta(None), Some(1.5), None).unwrap_err().to_string();
        assert!(
            e.contains("--eye-distance 1.5") && e.contains("between 0 and 1"),
            "{e}"
        );
    }
}
