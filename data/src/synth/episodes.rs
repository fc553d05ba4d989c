//! Video-like AU intensity tracks: expression episodes with ramps, gaps and typical co-occurrences.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Column of each DISFA AU in a track row (the order of [`crate::DISFA_AUS`]).
const AU1: usize = 0;
const AU2: usize = 1;
const AU4: usize = 2;
const AU6: usize = 3;
const AU9: usize = 4;
const AU12: usize = 5;
const AU25: usize = 6;
const AU26: usize = 7;

/// One AU of an episode kind: (column, probability it takes part, lowest peak, highest peak).
type Part = (usize, f64, u8, u8);

/// Episode kinds: (name, base weight, AUs). Co-occurrences follow DISFA: 6+12, 25+26, 1+2, 4+9.
const KINDS: &[(&str, f64, &[Part])] = &[
    (
        "smile",
        0.27,
        &[
            (AU6, 0.8, 2, 5),
            (AU12, 1.0, 2, 5),
            (AU25, 0.45, 2, 4),
            (AU26, 0.12, 2, 3),
        ],
    ),
    ("talk", 0.20, &[(AU25, 1.0, 2, 4), (AU26, 0.55, 2, 4)]),
    (
        "surprise",
        0.13,
        &[
            (AU1, 1.0, 2, 5),
            (AU2, 0.95, 2, 5),
            (AU25, 0.5, 2, 4),
            (AU26, 0.45, 2, 4),
        ],
    ),
    (
        "frown",
        0.22,
        &[(AU4, 1.0, 2, 5), (AU9, 0.2, 2, 3), (AU1, 0.15, 2, 3)],
    ),
    (
        "disgust",
        0.08,
        &[(AU9, 1.0, 2, 5), (AU4, 0.7, 2, 4), (AU25, 0.3, 2, 3)],
    ),
    ("sad", 0.08, &[(AU1, 1.0, 2, 4), (AU4, 0.8, 2, 4)]),
    (
        "laugh",
        0.06,
        &[
            (AU6, 1.0, 3, 5),
            (AU12, 1.0, 3, 5),
            (AU25, 1.0, 2, 5),
            (AU26, 0.8, 2, 5),
        ],
    ),
];

/// SplitMix64 finaliser: mixes seed material into an independent RNG seed.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic RNG for (`seed`, `tag`, `a`, `b`).
pub(crate) fn rng_for(seed: u64, tag: u64, a: u64, b: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed ^ tag).wrapping_add(a)).wrapping_add(b)))
}

/// Smooth 0→1 ramp.
fn smoothstep(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Adds one episode of `peak` on column `au` over `[start, end)` with ramps `up`/`down` frames.
fn add_episode(
    track: &mut [[u8; 8]],
    au: usize,
    peak: u8,
    start: usize,
    end: usize,
    up: usize,
    down: usize,
) {
    for (t, row) in track.iter_mut().enumerate().take(end).skip(start) {
        let rise = smoothstep((t - start + 1) as f32 / (up + 1) as f32);
        let fall = smoothstep((end - t) as f32 / (down + 1) as f32);
        let v = (peak as f32 * rise.min(fall)).round() as u8;
        row[au] = row[au].max(v.min(5));
    }
}

/// The intensity track (one `[u8; 8]` row per frame, DISFA AU order) of subject `subject`.
pub(crate) fn intensity_track(seed: u64, subject: u32, frames: u32) -> Vec<[u8; 8]> {
    let n = frames as usize;
    let mut track = vec![[0u8; 8]; n];
    let mut rng = rng_for(seed, 0xE915, subject as u64, 0);
    // Per-subject temperament: how often each kind occurs and how long the pauses are.
    let weights: Vec<f64> = KINDS
        .iter()
        .map(|k| k.1 * rng.random_range(0.5..1.5))
        .collect();
    let total: f64 = weights.iter().sum();
    // Short clips get proportionally shorter pauses, so even a few dozen frames show expressions.
    let span = (n as f64 / 300.0).clamp(0.15, 1.0);
    let gap_scale = rng.random_range(0.7..1.4) * span;
    let mut t = rng.random_range(0..((40.0 * span) as usize).max(1));
    while t < n {
        // A pause, sometimes with a weak (intensity 1, i.e. absent) twitch in it.
        let gap = ((rng.random_range(8.0..70.0) * gap_scale) as usize).max(4);
        if gap > 12 && rng.random_bool(0.35) {
            let s = t + rng.random_range(0..gap / 2);
            let len = rng.random_range(6..=gap / 2);
            add_episode(
                &mut track,
                rng.random_range(0..8),
                1,
                s,
                (s + len).min(n),
                3,
                3,
            );
        }
        t += gap;
        if t >= n {
            break;
        }
        // An episode: pick a kind, then which of its AUs take part and how strongly.
        let mut pick = rng.random_range(0.0..total);
        let mut kind = KINDS.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                kind = i;
                break;
            }
            pick -= w;
        }
        let up = rng.random_range(3..=12usize);
        let down = rng.random_range(3..=12usize);
        let len = up + down + rng.random_range(8..=60usize);
        for &(au, p, lo, hi) in KINDS[kind].2 {
            let peak = if rng.random_bool(p) {
                rng.random_range(lo..=hi)
            } else if rng.random_bool(0.3) {
                1
            } else {
                continue;
            };
            // AUs of one episode start and stop a few frames apart, as in real video.
            let s = t + rng.random_range(0..=3usize);
            let e = (t + len)
                .saturating_sub(rng.random_range(0..=3usize))
                .min(n);
            if e > s {
                add_episode(&mut track, au, peak, s, e, up, down);
            }
        }
        t += len;
    }
    track
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracks(subjects: u32, frames: u32) -> Vec<[u8; 8]> {
        (0..subjects)
            .flat_map(|s| intensity_track(7, s, frames))
            .collect()
    }

    #[test]
    fn rates_are_disfa_like() {
        let rows = tracks(12, 2000);
        let n = rows.len() as f64;
        for k in 0..8 {
            let rate = rows.iter().filter(|r| r[k] >= 2).count() as f64 / n;
            assert!(
                (0.03..=0.35).contains(&rate),
                "AU column {k}: positive rate {rate:.3}"
            );
        }
        let none = rows.iter().filter(|r| r.iter().all(|&v| v < 2)).count() as f64 / n;
        assert!((0.35..=0.65).contains(&none), "no-AU rate {none:.3}");
        assert!(
            rows.iter().any(|r| r.contains(&1)),
            "weak (absent) intensities occur"
        );
        assert!(rows.iter().all(|r| r.iter().all(|&v| v <= 5)));
    }

    #[test]
    fn typical_pairs_co_occur() {
        let rows = tracks(12, 2000);
        let cond = |a: usize, b: usize| {
            let na = rows.iter().filter(|r| r[a] >= 2).count() as f64;
            let nab = rows.iter().filter(|r| r[a] >= 2 && r[b] >= 2).count() as f64;
            nab / na
        };
        assert!(cond(AU12, AU6) > 0.5, "P(6|12) = {}", cond(AU12, AU6));
        assert!(cond(AU26, AU25) > 0.6, "P(25|26) = {}", cond(AU26, AU25));
        assert!(cond(AU2, AU1) > 0.6, "P(1|2) = {}", cond(AU2, AU1));
        assert!(
            cond(AU12, AU4) < 0.2,
            "smiles rarely frown: {}",
            cond(AU12, AU4)
        );
    }

    #[test]
    fn episodes_are_smooth_and_last() {
        let track = intensity_track(3, 0, 3000);
        for k in 0..8 {
            let col: Vec<u8> = track.iter().map(|r| r[k]).collect();
            // Intensity ramps: successive frames rarely jump by more than 2.
            let jumps = col.windows(2).filter(|w| w[0].abs_diff(w[1]) > 2).count();
            assert!(jumps * 50 < col.len(), "AU column {k}: {jumps} big jumps");
            // Runs of presence last (tens of frames), not single frames.
            let mut runs = vec![];
            let mut cur = 0;
            for &v in &col {
                if v >= 2 {
                    cur += 1;
                } else if cur > 0 {
                    runs.push(cur);
                    cur = 0;
                }
            }
            if !runs.is_empty() {
                let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
                assert!(mean >= 8.0, "AU column {k}: mean run {mean}");
            }
        }
    }

    #[test]
    fn deterministic_per_seed_and_subject() {
        assert_eq!(intensity_track(1, 2, 500), intensity_track(1, 2, 500));
        assert_ne!(intensity_track(1, 2, 500), intensity_track(2, 2, 500));
        assert_ne!(intensity_track(1, 2, 500), intensity_track(1, 3, 500));
        assert!(intensity_track(1, 2, 0).is_empty());
    }
}
