//! Stage 1's feature cache: the frozen backbone's pooled features of each frame, computed once.
//! On a GPU they stay in device memory; on the CPU they go to an unlinked file beside the job's
//! output and batches are gathered from it with positioned reads (as pixels are from the pack),
//! so the trainer's resident memory does not grow with the dataset.

use super::batch::BatchMaker;
use super::error::TrainError;
use super::run::Model;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Pooled features `[N, C]` (f32) of a list of frames.
pub enum Features {
    /// In device memory.
    Device(Tensor),
    /// In a file (deleted already: it lives as long as this handle), `c` floats per row.
    File {
        /// The open file.
        file: std::fs::File,
        /// Rows.
        n: usize,
        /// Floats per row.
        c: usize,
    },
}

impl Features {
    /// Computes the features of frames `idx` in chunks of `batch`; on the CPU they are written to
    /// a temporary file in `dir`.
    pub fn compute(
        model: &Model,
        bm: &BatchMaker,
        idx: &[usize],
        batch: usize,
        device: Device,
        dir: &Path,
    ) -> Result<Self, TrainError> {
        let c = model.backbone.out_channels() as usize;
        let pooled = |chunk: &[usize]| {
            tch::no_grad(|| model.backbone.pooled(&bm.plain(chunk), false, usize::MAX))
                .to_kind(Kind::Float)
        };
        if device.is_cuda() {
            let out = Tensor::zeros([idx.len() as i64, c as i64], (Kind::Float, device));
            let mut at = 0i64;
            for chunk in idx.chunks(batch.max(1)) {
                let f = pooled(chunk);
                let n = f.size()[0];
                let mut dst = out.narrow(0, at, n);
                dst.copy_(&f);
                at += n;
            }
            return Ok(Features::Device(out));
        }
        let path = dir.join(format!(".features-{}.f32", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(TrainError::io(&path))?;
        // Unlinked now: the data lives until the handle closes, even if the trainer is killed.
        std::fs::remove_file(&path).map_err(TrainError::io(&path))?;
        let mut at = 0u64;
        let mut buf: Vec<f32> = Vec::new();
        for chunk in idx.chunks(batch.max(1)) {
            let f = pooled(chunk).to_device(Device::Cpu).contiguous();
            buf.resize(chunk.len() * c, 0.0);
            f.copy_data(&mut buf, chunk.len() * c);
            let bytes: Vec<u8> = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
            file.write_all_at(&bytes, at)
                .map_err(TrainError::io(&path))?;
            at += bytes.len() as u64;
        }
        Ok(Features::File {
            file,
            n: idx.len(),
            c,
        })
    }

    /// Rows `pos` as a `[len, C]` tensor on `device`.
    pub fn rows(&self, pos: &[usize], device: Device) -> Result<Tensor, TrainError> {
        match self {
            Features::Device(t) => {
                let p: Vec<i64> = pos.iter().map(|&p| p as i64).collect();
                Ok(t.index_select(0, &Tensor::from_slice(&p).to_device(t.device())))
            }
            Features::File { file, n, c } => {
                let mut bytes = vec![0u8; pos.len() * c * 4];
                for (&p, dst) in pos.iter().zip(bytes.chunks_exact_mut(c * 4)) {
                    if p >= *n {
                        return Err(TrainError::Config(format!(
                            "feature row {p} out of range ({n} rows)"
                        )));
                    }
                    file.read_exact_at(dst, (p * c * 4) as u64)
                        .map_err(TrainError::io("stage-1 feature cache"))?;
                }
                let v: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Ok(Tensor::from_slice(&v)
                    .view([pos.len() as i64, *c as i64])
                    .to_device(device))
            }
        }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Features::Device(t) => t.size()[0] as usize,
            Features::File { n, .. } => *n,
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sigmoid probabilities of the head on every row, in chunks of `batch`, as a flat `N × K`
    /// vector (inference mode), as [`Model::predict`] gives for frames.
    pub fn predict(
        &self,
        model: &Model,
        batch: usize,
        device: Device,
    ) -> Result<Vec<f32>, TrainError> {
        let mut out = Vec::new();
        let all: Vec<usize> = (0..self.len()).collect();
        for chunk in all.chunks(batch.max(1)) {
            let x = self.rows(chunk, device)?;
            let p = tch::no_grad(|| model.head.forward_t(&x, false).sigmoid());
            let v: Vec<f32> =
                Vec::try_from(p.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1))
                    .unwrap_or_default();
            out.extend(v);
        }
        Ok(out)
    }
}
