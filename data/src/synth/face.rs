//! Draws one synthetic face: per-subject identity, per-frame pose/lighting, geometry driven by the
//! 8 DISFA AU intensities. Upper-face cues (AU1, 2, 4, 6, 9) lie above the image's middle row and
//! lower-face cues (AU12, 25, 26) below it, so upper/lower face splicing keeps labels right.

use super::episodes::rng_for;
use crate::raster::{mix, scale, Canvas, Rgb, Xf};
use rand::Rng;

/// Vertical position of the face centre (fraction of the image) before jitter.
pub(crate) const FACE_CY: f32 = 0.46;
/// Face-local units per image side (larger: the face fills more of the frame).
pub(crate) const FACE_SCALE: f32 = 1.2;

/// What stays fixed for a subject.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    face_w: f32,
    face_h: f32,
    jaw_w: f32,
    skin: Rgb,
    hair: Rgb,
    brow: Rgb,
    lip: Rgb,
    iris: Rgb,
    bg_top: Rgb,
    bg_bottom: Rgb,
    shirt: Rgb,
    hairline: f32,
    eye_y: f32,
    eye_sep: f32,
    eye_w: f32,
    eye_h: f32,
    brow_gap: f32,
    brow_hw: f32,
    nose_y: f32,
    mouth_y: f32,
    mouth_w: f32,
    lip_hw: f32,
    light_grad: f32,
    phase: [f32; 4],
}

fn rgb(rng: &mut impl Rng, lo: Rgb, hi: Rgb) -> Rgb {
    [
        rng.random_range(lo[0]..=hi[0]),
        rng.random_range(lo[1]..=hi[1]),
        rng.random_range(lo[2]..=hi[2]),
    ]
}

impl Identity {
    /// The identity of subject `subject` under `seed`.
    pub(crate) fn new(seed: u64, subject: u32) -> Self {
        let mut r = rng_for(seed, 0x1D, subject as u64, 0);
        let tone = r.random_range(0.0..1.0f32);
        let skin = mix([0.96, 0.80, 0.68], [0.42, 0.28, 0.20], tone);
        let skin = [
            (skin[0] + r.random_range(-0.03..0.03f32)).clamp(0.0, 1.0),
            (skin[1] + r.random_range(-0.03..0.03f32)).clamp(0.0, 1.0),
            (skin[2] + r.random_range(-0.03..0.03f32)).clamp(0.0, 1.0),
        ];
        let hair = match r.random_range(0..4) {
            0 => rgb(&mut r, [0.05, 0.04, 0.03], [0.12, 0.10, 0.08]),
            1 => rgb(&mut r, [0.25, 0.15, 0.08], [0.40, 0.26, 0.14]),
            2 => rgb(&mut r, [0.70, 0.58, 0.35], [0.85, 0.72, 0.48]),
            _ => rgb(&mut r, [0.45, 0.45, 0.45], [0.65, 0.65, 0.65]),
        };
        // Brows always darker than the skin so they stay visible.
        let brow = [
            hair[0].min(skin[0] * 0.45),
            hair[1].min(skin[1] * 0.45),
            hair[2].min(skin[2] * 0.45),
        ];
        let lip = mix(skin, [0.72, 0.18, 0.24], r.random_range(0.5..0.75f32));
        let bg = rgb(&mut r, [0.2, 0.2, 0.2], [0.85, 0.85, 0.85]);
        Identity {
            face_w: r.random_range(0.25..0.31),
            face_h: r.random_range(0.36..0.41),
            jaw_w: r.random_range(0.72..0.9),
            skin,
            hair,
            brow,
            lip,
            iris: rgb(&mut r, [0.05, 0.05, 0.05], [0.35, 0.30, 0.25]),
            bg_top: bg,
            bg_bottom: scale(bg, r.random_range(0.7..1.0)),
            shirt: rgb(&mut r, [0.05, 0.05, 0.1], [0.8, 0.8, 0.8]),
            hairline: r.random_range(0.0..1.0),
            eye_y: r.random_range(-0.075..-0.05),
            eye_sep: r.random_range(0.095..0.12),
            eye_w: r.random_range(0.042..0.055),
            eye_h: r.random_range(0.022..0.03),
            brow_gap: r.random_range(0.075..0.095),
            brow_hw: r.random_range(0.010..0.018),
            nose_y: r.random_range(0.085..0.105),
            mouth_y: r.random_range(0.18..0.205),
            mouth_w: r.random_range(0.075..0.095),
            lip_hw: r.random_range(0.010..0.014),
            light_grad: r.random_range(-0.25..0.25),
            phase: [
                r.random_range(0.0..6.3),
                r.random_range(0.0..6.3),
                r.random_range(0.0..6.3),
                r.random_range(0.0..6.3),
            ],
        }
    }
}

/// Head pose, lighting and noise of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pose {
    dx: f32,
    dy: f32,
    scale: f32,
    angle: f32,
    gain: f32,
    grad: f32,
    noise: f32,
    noise_seed: u64,
}

impl Pose {
    /// A still, evenly lit, noiseless pose (for tests).
    #[cfg(test)]
    pub(crate) fn still() -> Self {
        Pose {
            dx: 0.0,
            dy: 0.0,
            scale: 1.0,
            angle: 0.0,
            gain: 1.0,
            grad: 0.0,
            noise: 0.0,
            noise_seed: 1,
        }
    }

    /// Applies this pose's lighting and noise to `c` and writes its CHW bytes into `out`.
    pub(crate) fn finish(&self, c: &Canvas, out: &mut [u8]) {
        c.finish(self.gain, self.grad, self.noise, self.noise_seed, out);
    }

    /// The in-crop jitter of this pose: offset (fractions of the side), scale and angle.
    pub(crate) fn jitter(&self) -> (f32, f32, f32, f32) {
        (self.dx, self.dy, self.scale, self.angle)
    }

    /// Frame `frame` (0-based) of subject `subject`: slow drift plus small per-frame jitter.
    pub(crate) fn new(seed: u64, subject: u32, frame: u32, id: &Identity) -> Self {
        let mut r = rng_for(seed, 0x905E, subject as u64, frame as u64);
        let t = frame as f32;
        let w = |period: f32, k: usize| (t * std::f32::consts::TAU / period + id.phase[k]).sin();
        let mut j = |a: f32| r.random_range(-a..=a);
        Pose {
            dx: 0.015 * w(211.0, 0) + j(0.004),
            dy: 0.012 * w(157.0, 1) + j(0.004),
            scale: 1.0 + 0.025 * w(293.0, 2) + j(0.006),
            angle: 0.04 * w(181.0, 3) + j(0.012),
            gain: 0.95 + 0.06 * w(97.0, 1) + j(0.03),
            grad: id.light_grad + j(0.05),
            noise: 3.0 + j(1.5).abs() * 2.0,
            noise_seed: r.random(),
        }
    }
}

/// Renders identity `id` in pose `pose` with AU intensities `au` (DISFA order, 0–5) into `out`
/// (CHW, `3 × size × size` bytes).
pub(crate) fn draw(id: &Identity, pose: &Pose, au: &[u8; 8], size: usize, out: &mut [u8]) {
    let xf = Xf::new(
        size,
        0.5 + pose.dx,
        FACE_CY + pose.dy,
        FACE_SCALE * pose.scale,
        pose.angle,
    );
    let mut c = Canvas::new(size, xf, id.bg_top, id.bg_bottom);
    paint(&mut c, id, au);
    pose.finish(&c, out);
}

/// How open the eyes are under AU intensities `au` (AU6 and AU4 narrow them, AU1/AU2 widen).
fn eye_openness(au: &[u8; 8]) -> f32 {
    let a = |k: usize| f32::from(au[k].min(5)) / 5.0;
    (1.0 - 0.5 * a(3) - 0.2 * a(2) + 0.3 * a(0).max(a(1))).clamp(0.3, 1.4)
}

/// Where the renderer draws the eye centres (the irises) under AU intensities `au`, in
/// face-local units (left and right as seen).
pub(crate) fn eye_centres(id: &Identity, au: &[u8; 8]) -> [(f32, f32); 2] {
    let eh = id.eye_h * eye_openness(au);
    let ey = id.eye_y + (id.eye_h - eh) * 0.5;
    [(-id.eye_sep, ey), (id.eye_sep, ey)]
}

/// Paints the face of `id` with AU intensities `au` onto `c` (in `c`'s face-local frame).
// Long function: draws one face layer by layer (skin, brows, eyes, nose, mouth, each AU's change);
// splitting would pass the same dozen measures to every part.
pub(crate) fn paint(c: &mut Canvas, id: &Identity, au: &[u8; 8]) {
    let a = |k: usize| f32::from(au[k].min(5)) / 5.0;
    let (a1, a2, a4, a6, a9, a12, a25, a26) = (a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7));
    let skin = id.skin;
    let crease = scale(skin, 0.55);

    // Body, hair, face and jaw (the jaw drops with AU26).
    c.ellipse(0.0, 0.66, 0.5, 0.22, id.shirt, 1.0);
    c.ellipse(0.0, 0.40, id.face_w * 0.5, 0.2, scale(skin, 0.85), 1.0);
    c.ellipse(0.0, -0.12, id.face_w * 1.12, id.face_h * 0.85, id.hair, 1.0);
    let jaw_drop = 0.045 * a26;
    c.ellipse(0.0, -0.02, id.face_w, id.face_h * 0.9, skin, 1.0);
    c.ellipse(
        0.0,
        0.13 + jaw_drop * 0.6,
        id.face_w * id.jaw_w,
        id.face_h * 0.55 + jaw_drop * 0.4,
        skin,
        1.0,
    );
    let top = -0.02 - 0.9 * id.face_h;
    let fringe_bottom = -0.255 - 0.06 * id.hairline;
    c.ellipse(
        0.0,
        top,
        id.face_w * 1.02,
        fringe_bottom - top,
        id.hair,
        1.0,
    );

    // Cheeks rise and darken with AU6.
    for s in [-1.0f32, 1.0] {
        c.ellipse(
            s * (id.eye_sep + 0.012),
            id.eye_y + 0.085 - 0.035 * a6,
            0.052,
            0.03,
            mix(scale(skin, 0.8), [0.8, 0.3, 0.3], 0.2),
            0.1 + 0.7 * a6,
        );
    }

    // Forehead wrinkles: central with AU1, lateral with AU2.
    let brow_base = id.eye_y - id.brow_gap;
    for dy in [0.055f32, 0.08] {
        let y = brow_base - dy;
        c.quad(
            (-0.06, y + 0.006),
            (0.0, y - 0.008),
            (0.06, y + 0.006),
            0.006,
            crease,
            0.8 * a1,
        );
        for s in [-1.0f32, 1.0] {
            c.quad(
                (s * 0.05, y + 0.002),
                (s * 0.11, y - 0.01),
                (s * 0.17, y + 0.012),
                0.006,
                crease,
                0.8 * a2,
            );
        }
    }
    // Vertical furrows between the brows with AU4.
    for s in [-1.0f32, 1.0] {
        c.line(
            (s * 0.016, brow_base - 0.005),
            (s * 0.012, id.eye_y - 0.03),
            0.006,
            crease,
            0.85 * a4,
        );
    }

    // Eyes: narrowed by AU6 (and AU4), widened by AU1/AU2.
    let openness = eye_openness(au);
    for s in [-1.0f32, 1.0] {
        let ex = s * id.eye_sep;
        let eh = id.eye_h * openness;
        let ey = id.eye_y + (id.eye_h - eh) * 0.5;
        let ew = id.eye_w;
        c.ellipse(ex, ey, ew, eh, [0.93, 0.92, 0.88], 1.0);
        let r = id.eye_h * 0.9;
        c.ellipse(ex, ey, r, r.min(eh * 0.95), id.iris, 1.0);
        c.ellipse(ex, ey, r * 0.4, (r * 0.4).min(eh * 0.6), [0.02; 3], 1.0);
        let lid = scale(skin, 0.3);
        c.quad(
            (ex - ew, ey),
            (ex, ey - 2.0 * eh),
            (ex + ew, ey),
            0.006,
            lid,
            1.0,
        );
        c.quad(
            (ex - ew, ey),
            (ex, ey + 1.6 * eh + 0.01 * a6),
            (ex + ew, ey),
            0.004,
            scale(skin, 0.6),
            0.4 + 0.5 * a6,
        );
        // Crow's feet with AU6.
        for k in [-1.0f32, 0.0, 1.0] {
            let x0 = ex + s * (ew + 0.01);
            c.line(
                (x0, ey + k * 0.012),
                (x0 + s * 0.03, ey + k * 0.022),
                0.005,
                crease,
                0.8 * a6,
            );
        }
    }

    // Brows: AU1 lifts the inner end, AU2 the outer part, AU4 lowers and pulls them together.
    for s in [-1.0f32, 1.0] {
        let inner = (
            s * (id.eye_sep - 0.06 - 0.015 * a4),
            brow_base - 0.075 * a1 + 0.045 * a4 + 0.025 * a9,
        );
        let ctrl = (
            s * (id.eye_sep + 0.01),
            brow_base - 0.03 - 0.05 * a2 - 0.035 * a1 + 0.035 * a4,
        );
        let outer = (
            s * (id.eye_sep + id.eye_w + 0.022),
            brow_base + 0.012 - 0.075 * a2 + 0.02 * a4 - 0.012 * a1,
        );
        c.quad(inner, ctrl, outer, id.brow_hw, id.brow, 1.0);
    }

    // Nose: wrinkles on the bridge and raised, flared nostrils with AU9.
    c.line(
        (0.014, id.eye_y + 0.01),
        (0.02, id.nose_y - 0.012),
        0.005,
        scale(skin, 0.75),
        0.5,
    );
    c.ellipse(0.0, id.nose_y, 0.03, 0.022, scale(skin, 0.93), 0.6);
    for k in 0..3 {
        let y = id.eye_y + 0.012 + k as f32 * 0.016;
        c.quad(
            (-0.026, y + 0.004),
            (0.0, y - 0.007),
            (0.026, y + 0.004),
            0.005,
            crease,
            0.85 * a9,
        );
    }
    for s in [-1.0f32, 1.0] {
        c.ellipse(
            s * (0.022 + 0.006 * a9),
            id.nose_y + 0.012 - 0.008 * a9,
            0.011 + 0.003 * a9,
            0.006,
            scale(skin, 0.3),
            0.9,
        );
    }

    // Mouth: AU12 widens and lifts the corners, AU25 parts the lips, AU26 drops the jaw.
    let hw = id.mouth_w + 0.04 * a12;
    let corner_y = id.mouth_y - 0.05 * a12;
    let gap = 0.045 * a25 + 0.065 * a26;
    let top_mid = id.mouth_y - 0.2 * gap - 0.006 * a9;
    let bottom_mid = id.mouth_y + 0.8 * gap;
    for s in [-1.0f32, 1.0] {
        c.quad(
            (s * 0.04, id.nose_y - 0.004),
            (s * (hw + 0.035), id.mouth_y - 0.07),
            (s * (hw + 0.015), corner_y + 0.025),
            0.005,
            crease,
            (0.15 + 0.55 * a12 + 0.1 * a9).min(0.85),
        );
    }
    let ctrl = |mid: f32| 2.0 * mid - corner_y;
    c.mouth(
        hw,
        corner_y,
        top_mid,
        bottom_mid,
        0.016,
        [0.25, 0.06, 0.07],
        [0.95, 0.93, 0.88],
    );
    c.quad(
        (-hw, corner_y),
        (0.0, ctrl(top_mid - id.lip_hw)),
        (hw, corner_y),
        id.lip_hw,
        id.lip,
        1.0,
    );
    c.quad(
        (-hw, corner_y),
        (0.0, ctrl(bottom_mid + id.lip_hw * 1.2)),
        (hw, corner_y),
        id.lip_hw * 1.2,
        scale(id.lip, 1.05),
        1.0,
    );
    c.quad(
        (-hw, corner_y),
        (0.0, ctrl(top_mid)),
        (hw, corner_y),
        0.004,
        [0.3, 0.08, 0.08],
        0.7,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 64;

    fn frame(id: &Identity, au: [u8; 8]) -> Vec<u8> {
        let mut out = vec![0u8; 3 * SIZE * SIZE];
        draw(id, &Pose::still(), &au, SIZE, &mut out);
        out
    }

    /// Summed absolute difference of two frames above and below the middle row.
    fn diff_halves(a: &[u8], b: &[u8]) -> (f64, f64) {
        let (mut up, mut down) = (0.0, 0.0);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let row = (i % (SIZE * SIZE)) / SIZE;
            let d = f64::from(x.abs_diff(*y));
            if row < SIZE / 2 {
                up += d;
            } else {
                down += d;
            }
        }
        (up, down)
    }

    #[test]
    fn every_au_changes_its_own_half_of_the_face() {
        for subject in 0..4 {
            let id = Identity::new(11, subject);
            let neutral = frame(&id, [0; 8]);
            for k in 0..8 {
                let mut au = [0u8; 8];
                au[k] = 5;
                let (up, down) = diff_halves(&neutral, &frame(&id, au));
                let total = up + down;
                // A strong cue: at 64 px, the equivalent of ≥ 15 pixel-channels changing fully.
                assert!(
                    total > 15.0 * 255.0,
                    "subject {subject} AU column {k}: diff {total}"
                );
                let upper_face = k < 5;
                let own = if upper_face { up } else { down };
                assert!(
                    own > 0.75 * total,
                    "subject {subject} AU column {k}: {up} above vs {down} below"
                );
            }
        }
    }

    #[test]
    fn intensity_is_monotone_in_visual_change() {
        let id = Identity::new(5, 1);
        let neutral = frame(&id, [0; 8]);
        for k in 0..8 {
            let mut last = 0.0;
            for v in [1u8, 3, 5] {
                let mut au = [0u8; 8];
                au[k] = v;
                let (u, d) = diff_halves(&neutral, &frame(&id, au));
                assert!(
                    u + d > last,
                    "AU column {k}: intensity {v} changes less than a lower one"
                );
                last = u + d;
            }
        }
    }

    #[test]
    fn subjects_look_different() {
        let a = frame(&Identity::new(1, 0), [0; 8]);
        let b = frame(&Identity::new(1, 1), [0; 8]);
        let (u, d) = diff_halves(&a, &b);
        assert!(u + d > 200.0 * 255.0);
    }

    #[test]
    fn pose_jitter_is_small_and_deterministic() {
        let id = Identity::new(3, 0);
        let p = Pose::new(3, 0, 10, &id);
        assert_eq!(p, Pose::new(3, 0, 10, &id));
        assert_ne!(p, Pose::new(3, 0, 11, &id));
        for f in 0..200 {
            let p = Pose::new(3, 0, f, &id);
            assert!(p.dx.abs() < 0.03 && p.dy.abs() < 0.03 && p.angle.abs() < 0.06);
            assert!((0.95..1.05).contains(&p.scale) && (0.8..1.1).contains(&p.gain));
        }
    }
}
