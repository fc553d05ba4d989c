//! Where an aligned face crop comes from in its image: the eyes template (eyes level, their
//! distance and height fixed), or five landmarks fitted to a template by a similarity; each as
//! the normalised affine map that `grid_sample` (and [`crate::pixels::sample_affine`]) reads.
//! Pure geometry, shared by the libtorch and ONNX predictors and dataset preparation.

use crate::mtcnn::Face;
use serde::{Deserialize, Serialize};

/// Where landmarks go in an aligned crop (fractions of its side, `(0, 0)` the top-left corner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// The two eye centres, 0.258 of the side apart, their midpoint at (0.5, 0.385): the geometry
    /// of ausweep's synthetic frames and `ausweep predict`'s default crop.
    #[default]
    Eyes,
    /// All five landmarks, least squares: ArcFace's 112-px template scaled by 0.825 about the
    /// centre and raised by 0.09, so the eyes land near the `eyes` template's and the forehead and
    /// chin stay in the crop.
    Five,
}

/// ArcFace's five-point template on a 112-px crop.
const ARCFACE_112: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

impl Template {
    /// The template's name in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Template::Eyes => "eyes",
            Template::Five => "five",
        }
    }

    /// The landmarks used (indices into MTCNN's five) and their positions as side fractions.
    pub fn points(self) -> Vec<(usize, [f64; 2])> {
        match self {
            Template::Eyes => vec![(0, [0.5 - 0.129, 0.385]), (1, [0.5 + 0.129, 0.385])],
            Template::Five => ARCFACE_112
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let f = |v: f64| 0.5 + (v / 112.0 - 0.5) * 0.825;
                    (i, [f(p[0]), f(p[1]) - 0.09])
                })
                .collect(),
        }
    }

    /// The similarity from source pixels to `size`-pixel crop pixels for `landmarks`
    /// (pixel-index coordinates both sides: a pixel's centre is at its integer index).
    pub fn fit(self, landmarks: &[[f32; 2]; 5], size: u32) -> Similarity {
        let s = f64::from(size);
        let (src, dst): (Vec<[f64; 2]>, Vec<[f64; 2]>) = self
            .points()
            .into_iter()
            .map(|(i, p)| {
                (
                    [f64::from(landmarks[i][0]), f64::from(landmarks[i][1])],
                    [p[0] * s - 0.5, p[1] * s - 0.5],
                )
            })
            .unzip();
        Similarity::fit(&src, &dst)
    }
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "eyes" => Ok(Template::Eyes),
            "five" => Ok(Template::Five),
            other => Err(format!("crop template `{other}`: use eyes or five")),
        }
    }
}

/// `q = [a −b; b a] · p + t`: rotation, uniform scale and translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Scale × cos(angle).
    pub a: f64,
    /// Scale × sin(angle).
    pub b: f64,
    /// Translation.
    pub t: [f64; 2],
}

impl Similarity {
    /// The least-squares similarity taking `src[i]` to `dst[i]` (exact for two distinct points).
    pub fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Similarity {
        let n = src.len().min(dst.len()).max(1) as f64;
        let mean = |v: &[[f64; 2]]| {
            let (x, y) = v.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
            [x / n, y / n]
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
        for (p, q) in src.iter().zip(dst) {
            let (sx, sy) = (p[0] - ms[0], p[1] - ms[1]);
            let (dx, dy) = (q[0] - md[0], q[1] - md[1]);
            num_a += sx * dx + sy * dy;
            num_b += sx * dy - sy * dx;
            den += sx * sx + sy * sy;
        }
        let den = den.max(1e-12);
        let (a, b) = (num_a / den, num_b / den);
        Similarity {
            a,
            b,
            t: [
                md[0] - (a * ms[0] - b * ms[1]),
                md[1] - (b * ms[0] + a * ms[1]),
            ],
        }
    }

    /// Where `p` goes.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.t[0],
            self.b * p[0] + self.a * p[1] + self.t[1],
        ]
    }

    /// The inverse transform.
    pub fn inverse(&self) -> Similarity {
        let d = (self.a * self.a + self.b * self.b).max(1e-24);
        let (a, b) = (self.a / d, -self.b / d);
        Similarity {
            a,
            b,
            t: [
                -(a * self.t[0] - b * self.t[1]),
                -(b * self.t[0] + a * self.t[1]),
            ],
        }
    }

    /// Scale factor (crop pixels per source pixel).
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }
}

/// Where the eyes sit in an aligned crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignSpec {
    /// Distance between the eye centres as a fraction of the crop side.
    pub eye_distance: f64,
    /// Height of the eye midpoint as a fraction of the crop side (from the top).
    pub eye_y: f64,
}

impl Default for AlignSpec {
    /// The geometry of ausweep's synthetic DISFA frames: eyes 0.258 of the side apart (2 × 0.1075
    /// face units × scale 1.2) with their midpoint 0.385 from the top (0.46 − 0.0625 × 1.2).
    fn default() -> Self {
        AlignSpec {
            eye_distance: 0.258,
            eye_y: 0.385,
        }
    }
}

/// An aligned crop's placement in its source image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceCrop {
    /// Eye midpoint in source pixels.
    pub centre: [f64; 2],
    /// Crop side in source pixels.
    pub side: f64,
    /// Rotation of the eye line, radians.
    pub angle: f64,
}

impl AlignSpec {
    /// The crop of `face`: from its two eye landmarks.
    pub fn crop_of(&self, face: &Face) -> FaceCrop {
        let [l, r] = [face.landmarks[0], face.landmarks[1]];
        let (dx, dy) = (f64::from(r[0] - l[0]), f64::from(r[1] - l[1]));
        let dist = dx.hypot(dy).max(1.0);
        FaceCrop {
            centre: [f64::from(l[0] + r[0]) / 2.0, f64::from(l[1] + r[1]) / 2.0],
            side: dist / self.eye_distance,
            angle: dy.atan2(dx),
        }
    }

    /// The normalised affine map (output → input, `align_corners = false`) of `crop` in a `w`×`h`
    /// image, and the source pixels per crop pixel at `size`.
    pub fn affine(&self, crop: &FaceCrop, w: f64, h: f64, size: u32) -> ([f32; 6], f64) {
        let (sin, cos) = crop.angle.sin_cos();
        let l = crop.side;
        let down = (0.5 - self.eye_y) * l;
        (
            [
                (l / w * cos) as f32,
                (-l / w * sin) as f32,
                ((2.0 / w) * (crop.centre[0] - sin * down) + 1.0 / w - 1.0) as f32,
                (l / h * sin) as f32,
                (l / h * cos) as f32,
                ((2.0 / h) * (crop.centre[1] + cos * down) + 1.0 / h - 1.0) as f32,
            ],
            l / f64::from(size),
        )
    }
}

impl Similarity {
    /// The normalised affine map (output → input, `align_corners = false`) of this source →
    /// crop transform in a `w`×`h` image for a `size`-pixel crop, and the source pixels per crop
    /// pixel.
    pub fn affine(&self, w: f64, h: f64, size: u32) -> ([f32; 6], f64) {
        // Output normalised x_o ↔ crop pixel u = (S·x_o + S − 1) / 2; source pixel x = M·u + t;
        // source normalised x_n = (2x + 1) / W − 1.
        let sz = f64::from(size);
        let inv = self.inverse();
        let (p, q) = (inv.a, -inv.b);
        let (r, u) = (inv.b, inv.a);
        let half = (sz - 1.0) / 2.0;
        (
            [
                (p * sz / w) as f32,
                (q * sz / w) as f32,
                ((2.0 * (p * half + q * half + inv.t[0]) + 1.0) / w - 1.0) as f32,
                (r * sz / h) as f32,
                (u * sz / h) as f32,
                ((2.0 * (r * half + u * half + inv.t[1]) + 1.0) / h - 1.0) as f32,
            ],
            inv.scale(),
        )
    }
}

/// A crop geometry: how a predictor cuts a face out like its model's training faces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crop {
    /// Eyes on two points (distance and height as fractions of the side).
    Eyes(AlignSpec),
    /// Five landmarks on the `five` template.
    Five,
}

impl Crop {
    /// The normalised affine map of `face`'s crop in a `w`×`h` image at `size` pixels, and the
    /// source pixels per crop pixel.
    pub fn affine(&self, face: &Face, w: f64, h: f64, size: u32) -> ([f32; 6], f64) {
        match self {
            Crop::Eyes(spec) => spec.affine(&spec.crop_of(face), w, h, size),
            Crop::Five => Template::Five.fit(&face.landmarks, size).affine(w, h, size),
        }
    }
}

/// How training frames were cropped, as an exported model's `ausweep.crop` names it (the
/// serde names of the checkpoint's crop kind; the libtorch engine maps that enum onto this one
/// with an exhaustive match, and a test holds the names equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropKind {
    /// Eye centres placed on two template points.
    Eyes,
    /// Five landmarks fitted to the `five` template.
    Five,
    /// The centre square of whole frames (no face alignment).
    CentreSquare,
    /// Whatever the listed images were.
    AsGiven,
}

/// How a model's training faces were cropped: what a checkpoint's dataset identity and an
/// exported model's `ausweep.crop` record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CropOrigin {
    /// The crop kind.
    pub crop: CropKind,
    /// The template's points: landmark index and position as side fractions.
    pub template_points: Vec<(usize, [f64; 2])>,
    /// The dataset kind (`synthetic`, `disfa_videos`, …).
    pub dataset: String,
}

impl Crop {
    /// The crop that matches a model's training faces (`origin`), unless `eye_distance` /
    /// `eye_y` override it; with a note for the user when it had to be assumed or was overridden.
    pub fn of(
        origin: Option<&CropOrigin>,
        eye_distance: Option<f64>,
        eye_y: Option<f64>,
    ) -> Result<(Crop, Option<String>), String> {
        let (mut crop, mut note) = match origin {
            None => (
                Crop::Eyes(AlignSpec::default()),
                Some("the model does not record how its faces were cropped (an older version); using ausweep's eyes template".to_string()),
            ),
            Some(d) => match d.crop {
                CropKind::Eyes => match d.template_points.as_slice() {
                    [(_, l), (_, r), ..] if r[0] > l[0] => (
                        Crop::Eyes(AlignSpec {
                            eye_distance: r[0] - l[0],
                            eye_y: (l[1] + r[1]) / 2.0,
                        }),
                        None,
                    ),
                    _ => {
                        return Err(format!(
                            "the model's eyes template has unusable points {:?}",
                            d.template_points
                        ))
                    }
                },
                CropKind::Five => (Crop::Five, None),
                CropKind::CentreSquare | CropKind::AsGiven => (
                    Crop::Eyes(AlignSpec::default()),
                    Some(format!(
                        "the model was trained on {} frames that were not face-aligned ({:?}); faces are cropped with ausweep's eyes template, which may not match",
                        d.dataset, d.crop
                    )),
                ),
            },
        };
        if eye_distance.is_some() || eye_y.is_some() {
            let mut spec = match crop {
                Crop::Eyes(s) => s,
                Crop::Five => AlignSpec::default(),
            };
            if let Some(d) = eye_distance {
                if !(d > 0.0 && d < 1.0) {
                    return Err(format!("--eye-distance {d}: must be between 0 and 1"));
                }
                spec.eye_distance = d;
            }
            if let Some(y) = eye_y {
                if !(y > 0.0 && y < 1.0) {
                    return Err(format!("--eye-y {y}: must be between 0 and 1"));
                }
                spec.eye_y = y;
            }
            note = Some(format!(
                "--eye-distance/--eye-y override the model's crop ({crop:?}); its training faces were cropped differently"
            ));
            crop = Crop::Eyes(spec);
        }
        Ok((crop, note))
    }
}
