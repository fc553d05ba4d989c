//! A tiny anti-aliased rasteriser: filled ellipses, thick polylines and quadratic curves, and a
//! mouth-opening fill, drawn in a rotated/scaled "face-local" frame onto an RGB float buffer.

/// RGB colour with channels in 0..=1.
pub(crate) type Rgb = [f32; 3];

/// Face-local → pixel transform: `pixel = origin + s · R(angle) · local`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Xf {
    ox: f32,
    oy: f32,
    s: f32,
    cos: f32,
    sin: f32,
}

impl Xf {
    /// Face centre at `(cx, cy)` (fractions of the image), `scale` local units per image side, `angle` radians.
    pub(crate) fn new(size: usize, cx: f32, cy: f32, scale: f32, angle: f32) -> Self {
        let n = size as f32;
        Xf {
            ox: cx * n,
            oy: cy * n,
            s: scale * n,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// Face centre at pixel `(ox, oy)`, `s` pixels per local unit, `angle` radians.
    pub(crate) fn pixels(ox: f32, oy: f32, s: f32, angle: f32) -> Self {
        Xf {
            ox,
            oy,
            s,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// Pixel position of local point `(x, y)`.
    pub(crate) fn fwd(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.ox + self.s * (self.cos * x - self.sin * y),
            self.oy + self.s * (self.sin * x + self.cos * y),
        )
    }

    fn inv(&self, px: f32, py: f32) -> (f32, f32) {
        let dx = (px - self.ox) / self.s;
        let dy = (py - self.oy) / self.s;
        (
            self.cos * dx + self.sin * dy,
            -self.sin * dx + self.cos * dy,
        )
    }
}

/// Coverage of a pixel whose centre is at signed distance `d` (local units; negative inside).
#[inline]
fn aa(d: f32, s: f32) -> f32 {
    (0.5 - d * s).clamp(0.0, 1.0)
}

/// Multiplies a colour by `k`.
pub(crate) fn scale(c: Rgb, k: f32) -> Rgb {
    [c[0] * k, c[1] * k, c[2] * k]
}

/// Linear mix of two colours (`t = 0` gives `a`).
pub(crate) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// An RGB float canvas (row-major, interleaved) with a face-local transform.
pub(crate) struct Canvas {
    w: usize,
    h: usize,
    px: Vec<Rgb>,
    xf: Xf,
}

impl Canvas {
    /// A `size × size` canvas filled with a vertical gradient from `top` to `bottom`.
    pub(crate) fn new(size: usize, xf: Xf, top: Rgb, bottom: Rgb) -> Self {
        let mut px = Vec::with_capacity(size * size);
        for y in 0..size {
            let c = mix(top, bottom, (y as f32 + 0.5) / size.max(1) as f32);
            px.extend(std::iter::repeat_n(c, size));
        }
        Canvas {
            w: size,
            h: size,
            px,
            xf,
        }
    }

    /// A `w × h` canvas over `background` (row-major, `w × h` colours; resized to fit).
    pub(crate) fn over(w: usize, h: usize, mut background: Vec<Rgb>, xf: Xf) -> Self {
        background.resize(w * h, [0.0; 3]);
        Canvas {
            w,
            h,
            px: background,
            xf,
        }
    }

    /// The canvas's colours (row-major).
    pub(crate) fn into_pixels(self) -> Vec<Rgb> {
        self.px
    }

    /// Fills the pixel rectangle `[x0, x1) × [y0, y1)` (clamped) with `color` (no transform).
    pub(crate) fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, color: Rgb) {
        for y in y0.min(self.h)..y1.min(self.h) {
            for x in x0.min(self.w)..x1.min(self.w) {
                self.px[y * self.w + x] = color;
            }
        }
    }

    /// Pixel bounding box of a local-space box, clamped to the canvas; `None` if off-canvas.
    fn bbox(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<(usize, usize, usize, usize)> {
        let pts = [
            self.xf.fwd(x0, y0),
            self.xf.fwd(x1, y0),
            self.xf.fwd(x0, y1),
            self.xf.fwd(x1, y1),
        ];
        let (mut lx, mut ly, mut hx, mut hy) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for (x, y) in pts {
            lx = lx.min(x);
            ly = ly.min(y);
            hx = hx.max(x);
            hy = hy.max(y);
        }
        let (w, h) = (self.w as f32, self.h as f32);
        if !(hx >= -1.0 && hy >= -1.0 && lx <= w + 1.0 && ly <= h + 1.0) {
            return None;
        }
        let cx = |v: f32| (v.max(0.0) as usize).min(self.w);
        let cy = |v: f32| (v.max(0.0) as usize).min(self.h);
        Some((
            cx(lx.floor() - 1.0),
            cy(ly.floor() - 1.0),
            cx(hx.ceil() + 1.0),
            cy(hy.ceil() + 1.0),
        ))
    }

    /// Blends `color` into every pixel of a local box by `alpha × cov(local x, local y, px scale)`.
    fn shade(
        &mut self,
        bx: (f32, f32, f32, f32),
        color: Rgb,
        alpha: f32,
        cov: impl Fn(f32, f32, f32) -> f32,
    ) {
        if alpha <= 0.0 {
            return;
        }
        let Some((x0, y0, x1, y1)) = self.bbox(bx.0, bx.1, bx.2, bx.3) else {
            return;
        };
        let s = self.xf.s;
        for py in y0..y1 {
            for px in x0..x1 {
                let (lx, ly) = self.xf.inv(px as f32 + 0.5, py as f32 + 0.5);
                let a = alpha.min(1.0) * cov(lx, ly, s);
                if a > 0.0 {
                    let p = &mut self.px[py * self.w + px];
                    for c in 0..3 {
                        p[c] += (color[c] - p[c]) * a;
                    }
                }
            }
        }
    }

    /// Fills an axis-aligned (in local space) ellipse.
    pub(crate) fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, color: Rgb, alpha: f32) {
        if rx <= 0.0 || ry <= 0.0 {
            return;
        }
        let rmin = rx.min(ry);
        self.shade(
            (cx - rx, cy - ry, cx + rx, cy + ry),
            color,
            alpha,
            |x, y, s| {
                let qx = (x - cx) / rx;
                let qy = (y - cy) / ry;
                let k0 = (qx * qx + qy * qy).sqrt();
                let k1 = ((qx / rx).powi(2) + (qy / ry).powi(2)).sqrt();
                let d = if k1 > 1e-6 {
                    k0 * (k0 - 1.0) / k1
                } else {
                    -rmin
                };
                aa(d, s)
            },
        );
    }

    /// Strokes a polyline with half-width `hw` and round joins/caps.
    pub(crate) fn polyline(&mut self, pts: &[(f32, f32)], hw: f32, color: Rgb, alpha: f32) {
        if pts.len() < 2 {
            return;
        }
        let (mut lx, mut ly, mut hx, mut hy) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &(x, y) in pts {
            lx = lx.min(x);
            ly = ly.min(y);
            hx = hx.max(x);
            hy = hy.max(y);
        }
        self.shade(
            (lx - hw, ly - hw, hx + hw, hy + hw),
            color,
            alpha,
            |x, y, s| {
                let mut best = f32::MAX;
                for w in pts.windows(2) {
                    best = best.min(seg_dist(x, y, w[0], w[1]));
                }
                aa(best - hw, s)
            },
        );
    }

    /// Strokes a straight line.
    pub(crate) fn line(&mut self, a: (f32, f32), b: (f32, f32), hw: f32, color: Rgb, alpha: f32) {
        self.polyline(&[a, b], hw, color, alpha);
    }

    /// Strokes the quadratic Bézier curve `p0 → (control p1) → p2`.
    pub(crate) fn quad(
        &mut self,
        p0: (f32, f32),
        p1: (f32, f32),
        p2: (f32, f32),
        hw: f32,
        color: Rgb,
        alpha: f32,
    ) {
        const SEGS: usize = 8;
        let mut pts = [(0.0f32, 0.0f32); SEGS + 1];
        for (i, p) in pts.iter_mut().enumerate() {
            let t = i as f32 / SEGS as f32;
            let u = 1.0 - t;
            *p = (
                u * u * p0.0 + 2.0 * u * t * p1.0 + t * t * p2.0,
                u * u * p0.1 + 2.0 * u * t * p1.1 + t * t * p2.1,
            );
        }
        self.polyline(&pts, hw, color, alpha);
    }

    /// Fills the region between two quadratic curves sharing the corners `(±hw, corner_y)` whose
    /// midpoints are at `top_mid` and `bottom_mid` (local y); pixels within `teeth` of the top
    /// curve get `teeth_color`, the rest `color`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mouth(
        &mut self,
        hw: f32,
        corner_y: f32,
        top_mid: f32,
        bottom_mid: f32,
        teeth: f32,
        color: Rgb,
        teeth_color: Rgb,
    ) {
        if bottom_mid <= top_mid || hw <= 0.0 {
            return;
        }
        let lo = corner_y.min(top_mid);
        let hi = corner_y.max(bottom_mid);
        let curve = move |x: f32, mid: f32| {
            let t = ((x + hw) / (2.0 * hw)).clamp(0.0, 1.0);
            corner_y + 4.0 * t * (1.0 - t) * (mid - corner_y)
        };
        let inside = move |x: f32, y: f32, s: f32| {
            aa(curve(x, top_mid) - y, s) * aa(y - curve(x, bottom_mid), s) * aa(x.abs() - hw, s)
        };
        let bx = (-hw, lo, hw, hi);
        self.shade(bx, color, 1.0, inside);
        if teeth > 0.0 {
            self.shade(bx, teeth_color, 1.0, move |x, y, s| {
                inside(x, y, s) * aa(y - (curve(x, top_mid) + teeth), s)
            });
        }
    }

    /// Applies lighting (`gain`, horizontal gradient `grad`) and uniform noise of ± `noise` (0..255
    /// units), then writes CHW uint8 into `out` (`3 × h × w` bytes).
    pub(crate) fn finish(&self, gain: f32, grad: f32, noise: f32, noise_seed: u64, out: &mut [u8]) {
        let plane = self.w * self.h;
        debug_assert_eq!(out.len(), 3 * plane);
        let mut state = noise_seed | 1;
        let mut next = move || {
            // xorshift64*: cheap, deterministic per frame.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (v >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for y in 0..self.h {
            for x in 0..self.w {
                let i = y * self.w + x;
                let light = gain * (1.0 + grad * ((x as f32 + 0.5) / self.w as f32 - 0.5));
                for c in 0..3 {
                    let v = self.px[i][c] * light * 255.0 + noise * next();
                    if let Some(o) = out.get_mut(c * plane + i) {
                        *o = v.round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
}

fn seg_dist(x: f32, y: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
    (px * px + py * py).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(c: &Canvas) -> Vec<u8> {
        let mut out = vec![0u8; 3 * c.w * c.h];
        c.finish(1.0, 0.0, 0.0, 1, &mut out);
        out
    }

    #[test]
    fn ellipse_covers_its_area_with_soft_edges() {
        let xf = Xf::new(40, 0.5, 0.5, 1.0, 0.0);
        let mut c = Canvas::new(40, xf, [0.0; 3], [0.0; 3]);
        c.ellipse(0.0, 0.0, 0.25, 0.125, [1.0, 1.0, 1.0], 1.0);
        let out = render(&c);
        let red = &out[..1600];
        let sum: f32 = red.iter().map(|&v| v as f32 / 255.0).sum();
        let area = std::f32::consts::PI * 10.0 * 5.0; // radii 10 px and 5 px
        assert!(
            (sum - area).abs() / area < 0.05,
            "coverage {sum} vs area {area}"
        );
        assert_eq!(red[20 * 40 + 20], 255, "centre filled");
        assert_eq!(red[0], 0, "corner empty");
        assert!(
            red.iter().any(|&v| v > 20 && v < 235),
            "some anti-aliased edge pixels"
        );
    }

    #[test]
    fn rotation_moves_a_stroke() {
        let size = 32;
        let mut a = Canvas::new(size, Xf::new(size, 0.5, 0.5, 1.0, 0.0), [0.0; 3], [0.0; 3]);
        let mut b = Canvas::new(
            size,
            Xf::new(size, 0.5, 0.5, 1.0, std::f32::consts::FRAC_PI_2),
            [0.0; 3],
            [0.0; 3],
        );
        for c in [&mut a, &mut b] {
            c.line((-0.3, 0.0), (0.3, 0.0), 0.03, [1.0; 3], 1.0);
        }
        let (oa, ob) = (render(&a), render(&b));
        // Horizontal line: row 16 lit at x = 8; rotated 90°: column 16 lit at y = 8.
        assert!(oa[16 * size + 8] > 200 && oa[8 * size + 16] < 20);
        assert!(ob[8 * size + 16] > 200 && ob[16 * size + 8] < 20);
    }

    #[test]
    fn mouth_fill_is_empty_when_closed_and_dark_when_open() {
        let size = 32;
        let xf = Xf::new(size, 0.5, 0.5, 1.0, 0.0);
        let mut c = Canvas::new(size, xf, [1.0; 3], [1.0; 3]);
        c.mouth(0.2, 0.0, 0.0, 0.0, 0.0, [0.0; 3], [1.0; 3]);
        assert!(render(&c).iter().all(|&v| v == 255));
        c.mouth(0.2, 0.0, -0.05, 0.2, 0.0, [0.0; 3], [1.0; 3]);
        let out = render(&c);
        // Local (0, 0.05) → pixel (16, 17.6): inside the opening.
        assert_eq!(out[17 * size + 16], 0);
    }

    #[test]
    fn noise_is_bounded_and_deterministic() {
        let c = Canvas::new(16, Xf::new(16, 0.5, 0.5, 1.0, 0.0), [0.5; 3], [0.5; 3]);
        let mut a = vec![0u8; 3 * 256];
        let mut b = vec![0u8; 3 * 256];
        c.finish(1.0, 0.0, 6.0, 42, &mut a);
        c.finish(1.0, 0.0, 6.0, 42, &mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|&v| (121..=134).contains(&v)), "{a:?}");
        assert!(a.iter().any(|&v| v != a[0]));
    }
}
