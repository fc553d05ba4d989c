//! Turns frame indices into normalised input batches on the device, with the job's
//! augmentation: face splice (upper/lower, left/right), flip, random crop, colour jitter.
//! Frames are gathered as uint8 straight from the memory-mapped pack, batch by batch; on CUDA
//! they go through pinned memory with a non-blocking copy, and everything after the copy
//! (conversion, normalisation, flip, crop, jitter) runs on the device.

use ausweep_data::pack::PackedCache;
use ausweep_proto::job::AugmentSpec;
use rand::{Rng, RngCore};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// AUs whose evidence is in the upper half of the face (the rest are lower-face AUs).
pub const UPPER_FACE_AUS: [u32; 7] = [1, 2, 4, 5, 6, 7, 9];

/// Frames and labels of a dataset, ready for batching.
pub struct BatchMaker {
    pack: Arc<PackedCache>,
    labels: Tensor,
    upper: Tensor,
    device: Device,
    mean: Tensor,
    std: Tensor,
    channels_last: bool,
}

/// Spliced frames in a batch, for tests and logs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SpliceLog {
    /// (row, partner frame) of upper/lower splices.
    pub upper_lower: Vec<(usize, usize)>,
    /// (row, partner frame) of left/right splices.
    pub left_right: Vec<(usize, usize)>,
}

impl BatchMaker {
    /// Frames from `pack`, `labels` 0/1 f32 `[N,K]` (CPU) per pack frame, the AU list.
    pub fn new(pack: Arc<PackedCache>, labels: Tensor, aus: &[u32], device: Device) -> Self {
        let upper: Vec<bool> = aus.iter().map(|a| UPPER_FACE_AUS.contains(a)).collect();
        let (mean, std) = super::imagenet::norm(device);
        BatchMaker {
            pack,
            labels,
            upper: Tensor::from_slice(&upper),
            device,
            mean,
            std,
            channels_last: super::layout::enabled_for(device),
        }
    }

    /// A second handle on the same frames (shares storage), for a prefetch thread.
    pub fn shallow_clone(&self) -> Self {
        BatchMaker {
            pack: Arc::clone(&self.pack),
            labels: self.labels.shallow_clone(),
            upper: self.upper.shallow_clone(),
            device: self.device,
            mean: self.mean.shallow_clone(),
            std: self.std.shallow_clone(),
            channels_last: self.channels_last,
        }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.pack.len()
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.pack.is_empty()
    }

    /// Frames `idx` as uint8 `[B,3,S,S]` on the CPU, copied straight from the mapped pack into
    /// the tensor (pinned when the device is CUDA, so the copy to it can be non-blocking).
    pub fn frames(&self, idx: &[usize]) -> Tensor {
        let s = i64::from(self.pack.size());
        let t = Tensor::empty([idx.len() as i64, 3, s, s], (Kind::Uint8, Device::Cpu));
        let t = if self.device.is_cuda() {
            t.pin_memory(self.device)
        } else {
            t
        };
        let n = idx.len() * self.pack.frame_bytes();
        if n > 0 {
            // SAFETY: `t` is a fresh, contiguous uint8 CPU tensor of exactly `n` bytes that no
            // other handle refers to yet; the slice does not outlive this block.
            let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr().cast::<u8>(), n) };
            self.pack
                .gather(idx, buf)
                .expect("frame indices come from this pack's own split");
        }
        t
    }

    /// A uint8 CPU batch on the device (non-blocking from pinned memory on CUDA).
    fn to_device(&self, x: &Tensor) -> Tensor {
        if self.device.is_cuda() {
            x.to_device_(self.device, Kind::Uint8, true, false)
        } else {
            x.shallow_clone()
        }
    }

    /// 0/1 labels of `idx`, `[B,K]` on the CPU.
    pub fn labels(&self, idx: &[usize]) -> Tensor {
        self.labels.index_select(0, &index(idx))
    }

    /// An evaluation batch: the frames as they are, normalised, on the device.
    pub fn plain(&self, idx: &[usize]) -> Tensor {
        let x = self.to_device(&self.frames(idx));
        self.normalise(&(x.to_kind(Kind::Float) / 255.0))
    }

    /// A training batch with augmentation; splice partners come from `pool` (other subjects).
    pub fn augmented(
        &self,
        idx: &[usize],
        pool: &[usize],
        aug: &AugmentSpec,
        rng: &mut dyn RngCore,
    ) -> (Tensor, Tensor, SpliceLog) {
        let mut x = self.frames(idx);
        let mut y = self.labels.index_select(0, &index(idx));
        let log = self.splice(&mut x, &mut y, idx, pool, aug, rng);
        let b = idx.len() as i64;
        let mut x = self.to_device(&x).to_kind(Kind::Float) / 255.0;
        if aug.flip > 0.0 {
            let m: Vec<bool> = (0..b).map(|_| rng.random_bool(aug.flip)).collect();
            let m = Tensor::from_slice(&m)
                .to_device(self.device)
                .view([b, 1, 1, 1]);
            x = x.flip([3]).where_self(&m, &x);
        }
        if aug.crop > 0.0 {
            x = random_crop(&x, aug.crop, rng);
        }
        if aug.jitter > 0.0 {
            x = jitter(&x, aug.jitter, rng);
        }
        (self.normalise(&x), y.to_device(self.device), log)
    }

    fn normalise(&self, x: &Tensor) -> Tensor {
        let x = (x - &self.mean) / &self.std;
        if self.channels_last {
            super::layout::channels_last(&x)
        } else {
            x
        }
    }

    /// Face splice in place on u8 frames: upper/lower takes upper-face AU labels from the frame
    /// that gives the upper half and lower-face labels from the other; left/right marks an AU
    /// present when either half's source has it (FACS scores one-sided action as present).
    fn splice(
        &self,
        x: &mut Tensor,
        y: &mut Tensor,
        idx: &[usize],
        pool: &[usize],
        aug: &AugmentSpec,
        rng: &mut dyn RngCore,
    ) -> SpliceLog {
        let mut log = SpliceLog::default();
        if (aug.splice_upper_lower == 0.0 && aug.splice_left_right == 0.0) || pool.is_empty() {
            return log;
        }
        let s = x.size()[2];
        let half = s / 2;
        for (row, &i) in idx.iter().enumerate() {
            let ul = rng.random_bool(aug.splice_upper_lower);
            let lr = !ul && rng.random_bool(aug.splice_left_right);
            if !ul && !lr {
                continue;
            }
            let Some(j) = partner(self.pack.subjects(), i, pool, rng) else {
                continue;
            };
            let r = row as i64;
            let other = self.frames(&[j]).get(0);
            let yo = self.labels.get(j as i64);
            let xr = x.get(r);
            let mut yr = y.get(r);
            if ul {
                xr.narrow(1, half, s - half)
                    .copy_(&other.narrow(1, half, s - half));
                let mixed = yr.where_self(&self.upper, &yo);
                yr.copy_(&mixed);
                log.upper_lower.push((row, j));
            } else {
                xr.narrow(2, half, s - half)
                    .copy_(&other.narrow(2, half, s - half));
                let mixed = yr.maximum(&yo);
                yr.copy_(&mixed);
                log.left_right.push((row, j));
            }
        }
        log
    }
}

/// Training batches prepared on a background thread, `depth` ahead of the consumer, in the
/// same order and with the same random draws as preparing them inline.
pub struct Prefetch {
    rx: std::sync::mpsc::Receiver<(Tensor, Tensor)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Prefetch {
    /// Starts preparing `batches` (frame indices) with `aug`, drawing from `rng`.
    pub fn start<R: RngCore + Send + 'static>(
        bm: BatchMaker,
        batches: Vec<Vec<usize>>,
        pool: Vec<usize>,
        aug: AugmentSpec,
        mut rng: R,
        depth: usize,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        let handle = std::thread::spawn(move || {
            for idx in batches {
                let (x, y, _) = bm.augmented(&idx, &pool, &aug, &mut rng);
                if tx.send((x, y)).is_err() {
                    break;
                }
            }
        });
        Prefetch {
            rx,
            handle: Some(handle),
        }
    }
}

impl Iterator for Prefetch {
    type Item = (Tensor, Tensor);
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Unblock the producer (its send fails once the receiver is gone), then wait for it.
        let (_, dead) = std::sync::mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn index(idx: &[usize]) -> Tensor {
    let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::from_slice(&v)
}

/// A random frame of `pool` from a different subject than frame `i` (None after 16 misses).
fn partner(subjects: &[u32], i: usize, pool: &[usize], rng: &mut dyn RngCore) -> Option<usize> {
    (0..16)
        .map(|_| pool[rng.random_range(0..pool.len())])
        .find(|&j| subjects[j] != subjects[i])
}

/// Reflect-pads by `frac` of the side and crops each frame back at a random offset.
fn random_crop(x: &Tensor, frac: f64, rng: &mut dyn RngCore) -> Tensor {
    let (b, s) = (x.size()[0], x.size()[2]);
    let pad = ((s as f64 * frac).round() as i64)
        .clamp(1, s / 2 - 1)
        .max(1);
    let padded = x.reflection_pad2d([pad, pad, pad, pad]);
    let crops: Vec<Tensor> = (0..b)
        .map(|i| {
            let (oy, ox) = (rng.random_range(0..=2 * pad), rng.random_range(0..=2 * pad));
            padded.get(i).narrow(1, oy, s).narrow(2, ox, s)
        })
        .collect();
    Tensor::stack(&crops, 0)
}

/// Per-frame brightness, contrast and saturation factors in `1 ± strength`.
fn jitter(x: &Tensor, strength: f64, rng: &mut dyn RngCore) -> Tensor {
    let b = x.size()[0];
    let mut draw = || -> Tensor {
        let v: Vec<f32> = (0..b)
            .map(|_| (1.0 + rng.random_range(-strength..=strength)) as f32)
            .collect();
        Tensor::from_slice(&v)
            .to_device(x.device())
            .view([b, 1, 1, 1])
    };
    let (bright, contrast, sat) = (draw(), draw(), draw());
    let x = x * bright;
    let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    let x = (&x - &mean) * contrast + &mean;
    let gray = x.mean_dim([1i64].as_slice(), true, Kind::Float);
    ((&x - &gray) * sat + &gray).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Frame i is filled with value 10*(i+1); labels: frame 0 has every AU, frame 1 none;
    /// subjects 0, 1, 2, 2. The pack lives in a temp dir kept alive by the returned guard.
    fn maker() -> (BatchMaker, tempfile::TempDir) {
        let aus = [1, 2, 4, 6, 9, 12, 25, 26];
        let dir = tempfile::tempdir().unwrap();
        let samples = ausweep_data::Samples {
            size: 8,
            aus: aus.to_vec(),
            pixels: (0..4u8).flat_map(|i| vec![10 * (i + 1); 192]).collect(),
            intensities: vec![0; 32],
            subjects: vec![0, 1, 2, 2],
            subject_names: vec!["A".into(), "B".into(), "C".into()],
            frames: vec![1, 1, 1, 2],
        };
        let path = dir.path().join("t.pack");
        ausweep_data::pack::write(&path, &samples, "t").unwrap();
        let pack = Arc::new(PackedCache::open(&path).unwrap());
        let mut labels = vec![0f32; 4 * 8];
        labels[..8].fill(1.0);
        labels[16..24].copy_from_slice(&[1., 0., 1., 0., 1., 0., 1., 0.]);
        let m = BatchMaker::new(
            pack,
            Tensor::from_slice(&labels).view([4, 8]),
            &aus,
            Device::Cpu,
        );
        (m, dir)
    }

    #[test]
    fn frames_are_gathered_from_the_pack_in_index_order() {
        let (m, _dir) = maker();
        let x = m.frames(&[3, 0, 3]);
        assert_eq!(x.size(), vec![3, 3, 8, 8]);
        assert_eq!(x.kind(), Kind::Uint8);
        let firsts: Vec<i64> = (0..3).map(|r| x.int64_value(&[r, 2, 7, 7])).collect();
        assert_eq!(firsts, [40, 10, 40]);
        assert_eq!(m.frames(&[]).size(), vec![0, 3, 8, 8]);
    }

    #[test]
    fn upper_lower_splice_takes_region_labels_from_each_half() {
        let (m, _dir) = maker();
        let aug = AugmentSpec {
            flip: 0.0,
            splice_upper_lower: 1.0,
            ..AugmentSpec::none()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Frame 0 (all AUs) spliced over partner frame 1 (no AUs): upper AUs stay, lower go.
        let (x, y, log) = m.augmented(&[0], &[1], &aug, &mut rng);
        assert_eq!(log.upper_lower, vec![(0, 1)]);
        let y: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(y, vec![1., 1., 1., 1., 1., 0., 0., 0.]);
        // Pixels: upper half from frame 0 (10), lower half from frame 1 (20).
        let (mean, std) = crate::train::imagenet::norm(Device::Cpu);
        let raw = (x * std + mean) * 255.0;
        assert!((raw.double_value(&[0, 0, 0, 0]) - 10.0).abs() < 1e-3);
        assert!((raw.double_value(&[0, 0, 7, 0]) - 20.0).abs() < 1e-3);
        // The reverse: no AUs on top, all AUs below → only the lower-face AUs.
        let (_, y, _) = m.augmented(&[1], &[0], &aug, &mut rng);
        let y: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(y, vec![0., 0., 0., 0., 0., 1., 1., 1.]);
    }

    #[test]
    fn left_right_splice_unions_labels_and_never_pairs_a_subject_with_itself() {
        let (m, _dir) = maker();
        let aug = AugmentSpec {
            flip: 0.0,
            splice_left_right: 1.0,
            ..AugmentSpec::none()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (_, y, log) = m.augmented(&[1], &[2], &aug, &mut rng);
        assert_eq!(log.left_right, vec![(0, 2)]);
        let y: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(y, vec![1., 0., 1., 0., 1., 0., 1., 0.]);
        // Frames 2 and 3 share a subject: no partner, no splice.
        let (_, _, log) = m.augmented(&[2], &[3], &aug, &mut rng);
        assert!(log.left_right.is_empty());
    }

    #[test]
    fn prefetched_batches_equal_inline_ones() {
        let (m, _dir) = maker();
        let aug = AugmentSpec {
            flip: 0.5,
            crop: 0.25,
            jitter: 0.3,
            splice_upper_lower: 0.5,
            splice_left_right: 0.0,
        };
        let batches = vec![vec![0, 1], vec![2, 3], vec![3, 0]];
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let inline: Vec<(Tensor, Tensor)> = batches
            .iter()
            .map(|b| {
                let (x, y, _) = m.augmented(b, &[0, 1, 2, 3], &aug, &mut rng);
                (x, y)
            })
            .collect();
        let pre: Vec<(Tensor, Tensor)> = Prefetch::start(
            m.shallow_clone(),
            batches,
            vec![0, 1, 2, 3],
            aug,
            ChaCha8Rng::seed_from_u64(4),
            2,
        )
        .collect();
        assert_eq!(pre.len(), 3);
        for (a, b) in inline.iter().zip(&pre) {
            assert!(a.0.equal(&b.0) && a.1.equal(&b.1));
        }
        // Dropping a half-consumed prefetch must not hang.
        let mut p = Prefetch::start(
            m.shallow_clone(),
            vec![vec![0, 1]; 50],
            vec![0, 1],
            AugmentSpec::none(),
            ChaCha8Rng::seed_from_u64(1),
            1,
        );
        assert!(p.next().is_some());
        drop(p);
    }

    #[test]
    fn same_seed_same_batch() {
        let (m, _dir) = maker();
        let aug = AugmentSpec {
            flip: 0.5,
            crop: 0.25,
            jitter: 0.3,
            splice_upper_lower: 0.5,
            splice_left_right: 0.5,
        };
        let a = m.augmented(
            &[0, 1, 2, 3],
            &[0, 1, 2, 3],
            &aug,
            &mut ChaCha8Rng::seed_from_u64(9),
        );
        let b = m.augmented(
            &[0, 1, 2, 3],
            &[0, 1, 2, 3],
            &aug,
            &mut ChaCha8Rng::seed_from_u64(9),
        );
        assert!(a.0.equal(&b.0) && a.1.equal(&b.1));
        assert_eq!(a.0.size(), vec![4, 3, 8, 8]);
    }
}
