//! Following one subject's face through a video: pick the detection that continues the track,
//! reject jumps, and fill the frames without an accepted detection from their neighbours.

use crate::face::Face;
use serde::{Deserialize, Serialize};

/// How a frame's landmarks were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameFlag {
    /// Detected in this frame.
    Detected,
    /// Interpolated between the nearest detected frames before and after.
    Interpolated,
    /// Copied from the nearest detected frame (at the start or end of a gap with one side).
    Held,
    /// No face anywhere near: the crop is the frame's centre.
    NoFace,
}

impl FrameFlag {
    /// The flag's name in the per-frame files.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameFlag::Detected => "detected",
            FrameFlag::Interpolated => "interpolated",
            FrameFlag::Held => "held",
            FrameFlag::NoFace => "no_face",
        }
    }
}

/// One frame's landmarks and how they were found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    /// The five landmarks (eyes, nose, mouth corners), pixels.
    pub landmarks: [[f32; 2]; 5],
    /// O-net's confidence of the detection (0 when not detected).
    pub confidence: f32,
    /// How the landmarks were obtained.
    pub flag: FrameFlag,
}

/// When a detection continues the track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackConfig {
    /// Lowest O-net confidence that continues a track.
    pub min_confidence: f32,
    /// Lowest O-net confidence that starts (or re-acquires) one.
    pub acquire_confidence: f32,
    /// Largest move of the eye midpoint from the last accepted frame, in eye distances, per
    /// frame since it (the gate widens while the face is not seen).
    pub max_jump: f32,
    /// Largest change of the eye distance between accepted frames (ratio).
    pub max_scale_change: f32,
    /// After this many rejected frames in a row the track is re-acquired on the largest face.
    pub reacquire_after: u32,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            min_confidence: 0.7,
            acquire_confidence: 0.9,
            max_jump: 0.5,
            max_scale_change: 1.3,
            reacquire_after: 10,
        }
    }
}

fn eyes(l: &[[f32; 2]; 5]) -> ([f32; 2], f32) {
    let mid = [(l[0][0] + l[1][0]) / 2.0, (l[0][1] + l[1][1]) / 2.0];
    let d = (l[1][0] - l[0][0]).hypot(l[1][1] - l[0][1]).max(1.0);
    (mid, d)
}

/// Follows one face: [`Tracker::pick`] per frame, then [`Tracker::fill`] per batch.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackConfig,
    last: Option<Tracked>,
    misses: u32,
}

impl Tracker {
    /// A tracker that has seen nothing yet.
    pub fn new(cfg: TrackConfig) -> Self {
        Tracker {
            cfg,
            last: None,
            misses: 0,
        }
    }

    /// The last accepted detection.
    pub fn last(&self) -> Option<&Tracked> {
        self.last.as_ref()
    }

    /// The detection of this frame that continues the track, if any (faces largest first).
    pub fn pick(&mut self, faces: &[Face]) -> Option<Tracked> {
        let ok = faces
            .iter()
            .filter(|f| f.confidence >= self.cfg.min_confidence);
        let chosen = match &self.last {
            Some(last) => {
                // The gate widens with every frame the face was not seen: it may have moved.
                let gate = self.cfg.max_jump * (1.0 + self.misses as f32);
                let (m0, d0) = eyes(&last.landmarks);
                let near = ok
                    .clone()
                    .filter_map(|f| {
                        let (m, d) = eyes(&f.landmarks);
                        let jump = (m[0] - m0[0]).hypot(m[1] - m0[1]) / d0;
                        let ratio = (d / d0).max(d0 / d);
                        (jump <= gate && ratio <= self.cfg.max_scale_change).then_some((jump, f))
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, f)| f);
                // Lost for long: re-acquire on the most confident clear face anywhere.
                near.or_else(|| {
                    (self.misses >= self.cfg.reacquire_after)
                        .then(|| {
                            ok.clone()
                                .find(|f| f.confidence >= self.cfg.acquire_confidence)
                        })
                        .flatten()
                })
            }
            None => ok
                .clone()
                .find(|f| f.confidence >= self.cfg.acquire_confidence),
        };
        match chosen {
            Some(f) => {
                let t = Tracked {
                    landmarks: f.landmarks,
                    confidence: f.confidence,
                    flag: FrameFlag::Detected,
                };
                self.last = Some(t);
                self.misses = 0;
                Some(t)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Landmarks for every frame of a batch from its picks: gaps between detections are
    /// interpolated (the detection before the batch counts), a gap with a detection on one side
    /// only holds it, and a batch with none anywhere places `fallback` and flags `NoFace`.
    pub fn fill(
        before: Option<&Tracked>,
        picks: &[Option<Tracked>],
        fallback: [[f32; 2]; 5],
    ) -> Vec<Tracked> {
        let n = picks.len();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if let Some(t) = picks[i] {
                out.push(t);
                continue;
            }
            let prev = (0..i)
                .rev()
                .find_map(|j| picks[j].map(|t| (i - j, t)))
                .or_else(|| before.map(|t| (i + 1, *t)));
            let next = (i + 1..n).find_map(|j| picks[j].map(|t| (j - i, t)));
            let landmarks_flag = match (prev, next) {
                (Some((dp, p)), Some((dn, q))) => {
                    let w = dp as f32 / (dp + dn) as f32;
                    let mut l = p.landmarks;
                    for (pt, target) in l.iter_mut().zip(q.landmarks) {
                        for (v, t) in pt.iter_mut().zip(target) {
                            *v += (t - *v) * w;
                        }
                    }
                    (l, FrameFlag::Interpolated)
                }
                (Some((_, p)), None) | (None, Some((_, p))) => (p.landmarks, FrameFlag::Held),
                (None, None) => (fallback, FrameFlag::NoFace),
            };
            out.push(Tracked {
                landmarks: landmarks_flag.0,
                confidence: 0.0,
                flag: landmarks_flag.1,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, eye_dist: f32, confidence: f32) -> Face {
        let h = eye_dist / 2.0;
        Face {
            bbox: [x - 2.0 * h, y - 2.0 * h, x + 2.0 * h, y + 3.0 * h],
            confidence,
            landmarks: [
                [x - h, y],
                [x + h, y],
                [x, y + h],
                [x - h, y + 2.0 * h],
                [x + h, y + 2.0 * h],
            ],
        }
    }

    #[test]
    fn follows_the_nearest_face_and_rejects_jumps() {
        let mut t = Tracker::new(TrackConfig::default());
        // First frame: the largest confident face starts the track.
        assert!(t.pick(&[face(100.0, 100.0, 60.0, 0.99)]).is_some());
        // A bigger face elsewhere does not steal the track; the nearby one continues it.
        let got = t
            .pick(&[
                face(400.0, 100.0, 80.0, 0.99),
                face(104.0, 101.0, 61.0, 0.98),
            ])
            .unwrap();
        assert_eq!(got.landmarks[0][0], 104.0 - 30.5);
        // A lone detection far away (a jump) or unconfident is rejected.
        assert!(t.pick(&[face(200.0, 100.0, 60.0, 0.99)]).is_none());
        assert!(t.pick(&[face(104.0, 101.0, 60.0, 0.5)]).is_none());
        // Between the two thresholds: continues the track, but would not start one.
        let mut fresh = Tracker::new(TrackConfig::default());
        assert!(fresh.pick(&[face(104.0, 101.0, 60.0, 0.8)]).is_none());
        assert!(
            t.pick(&[face(104.0, 101.0, 120.0, 0.99)]).is_none(),
            "scale jump"
        );
        // After `reacquire_after` misses the track restarts on the most confident face anywhere
        // (a merely plausible one far away does not restart it).
        for _ in 0..7 {
            assert!(t.pick(&[]).is_none());
        }
        assert!(t.pick(&[face(900.0, 900.0, 60.0, 0.8)]).is_none());
        assert!(t.pick(&[face(900.0, 900.0, 60.0, 0.99)]).is_some());
        // The gate widens while the face is unseen: 0.8 eye distances is a jump right after a
        // detection, but fine one frame later.
        let mut g = Tracker::new(TrackConfig::default());
        assert!(g.pick(&[face(100.0, 100.0, 60.0, 0.99)]).is_some());
        assert!(g.pick(&[face(148.0, 100.0, 60.0, 0.99)]).is_none());
        assert!(g.pick(&[face(148.0, 100.0, 60.0, 0.99)]).is_some());
    }

    #[test]
    fn gaps_are_interpolated_held_or_flagged() {
        let at = |x: f32| {
            Some(Tracked {
                landmarks: [[x, 0.0]; 5],
                confidence: 0.99,
                flag: FrameFlag::Detected,
            })
        };
        let before = at(0.0).unwrap();
        let picks = [None, at(20.0), None, None, at(50.0), None];
        let f = Tracker::fill(Some(&before), &picks, [[-1.0, -1.0]; 5]);
        let xs: Vec<f32> = f.iter().map(|t| t.landmarks[0][0]).collect();
        assert_eq!(xs, vec![10.0, 20.0, 30.0, 40.0, 50.0, 50.0]);
        let flags: Vec<FrameFlag> = f.iter().map(|t| t.flag).collect();
        use FrameFlag::*;
        assert_eq!(
            flags,
            vec![
                Interpolated,
                Detected,
                Interpolated,
                Interpolated,
                Detected,
                Held
            ]
        );
        // Nothing before the batch: the leading gap holds the first detection.
        let f = Tracker::fill(None, &[None, at(7.0)], [[-1.0, -1.0]; 5]);
        assert_eq!((f[0].landmarks[0][0], f[0].flag), (7.0, Held));
        // Nothing anywhere: the fallback, flagged.
        let f = Tracker::fill(None, &[None, None], [[-1.0, -1.0]; 5]);
        assert!(f
            .iter()
            .all(|t| t.flag == NoFace && t.landmarks[0] == [-1.0, -1.0]));
    }
}
