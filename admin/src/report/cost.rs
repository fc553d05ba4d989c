//! The resource side of the paper beside its accuracy: what one face costs each backbone at
//! inference (measured by `ausweep bench cost --json` or by `ausweep demo` on the machine that
//! will run it) next to the backbone's best average F1, and the points of the Fig. 2 view (F1
//! against faces per second).

use super::chart::Point;
use super::Report;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One backbone's inference cost per face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    /// Backbone name.
    pub backbone: String,
    /// Input side, pixels.
    pub input_size: u32,
    /// Trainable parameters (backbone and head).
    pub params: u64,
    /// Multiply-adds per face (convolutions and dense layers).
    pub macs: u64,
    /// Size of the fp32 ONNX file, bytes.
    pub onnx_bytes: u64,
    /// Median milliseconds per face (batch 1) with one thread.
    pub ms_one_thread: f64,
    /// Median milliseconds per face with `threads` threads.
    pub ms_all_threads: f64,
    /// Threads of the second measurement.
    pub threads: u32,
    /// onnxruntime's milliseconds per face with one thread on the same ONNX file, if measured.
    #[serde(default)]
    pub onnxruntime_ms_one_thread: Option<f64>,
    /// ausweep's own ONNX predictor's milliseconds per face with one thread, if measured.
    #[serde(default)]
    pub ausweep_onnx_ms_one_thread: Option<f64>,
    /// Size of the ONNX file with int8 kernels, bytes, if written.
    #[serde(default)]
    pub int8_onnx_bytes: Option<u64>,
    /// ausweep's ONNX predictor's milliseconds per face on the int8 file, one thread, if measured.
    #[serde(default)]
    pub int8_ms_one_thread: Option<f64>,
    /// Average F1 points the int8 kernels lost on the model's test fold, where it was measured.
    #[serde(default)]
    pub int8_f1_drop: Option<f64>,
}

/// A cost table: where it was measured and one row per backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostTable {
    /// What ran the models (e.g. `libtorch, 2-core CPU`).
    pub runtime: String,
    /// Rows.
    pub rows: Vec<CostRow>,
}

impl CostTable {
    /// Reads a table written by `ausweep bench cost --json`; the error names the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--cost {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--cost {}: not a cost table (ausweep bench cost --json): {e}",
                path.display()
            )
        })
    }
}

/// The best average F1 % of `backbone` over the report's F1 cells (any stage or grid point).
fn best_f1(r: &Report, backbone: &str) -> Option<f64> {
    r.cells
        .iter()
        .filter(|c| c.backbone == backbone)
        .filter_map(|c| c.avg_f1.map(|m| m.mean))
        .max_by(f64::total_cmp)
}

/// The "Inference cost" section of the markdown report.
pub fn markdown(r: &Report, cost: &CostTable) -> String {
    let threads = cost.rows.first().map_or(1, |c| c.threads);
    let mut s = format!(
        "## Inference cost\n\nPer face at inference, batch 1, measured with {}; multiply-adds \
         count convolutions and dense layers; the F1 is the backbone's best average above \
         (docs/performance.md).\n\n| backbone | input px | params (M) | multiply-adds (G) | \
         ONNX MB | int8 MB | ms per face, 1 thread | faces/s, 1 thread | ms per face, {threads} \
         threads | best avg F1 % | int8 F1 drop (points) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        cost.runtime
    );
    for c in &cost.rows {
        s += &format!(
            "| {} | {} | {:.2} | {:.3} | {:.1} | {} | {:.1} | {:.0} | {:.1} | {} | {} |\n",
            c.backbone,
            c.input_size,
            c.params as f64 / 1e6,
            c.macs as f64 / 1e9,
            c.onnx_bytes as f64 / 1e6,
            c.int8_onnx_bytes
                .map_or("–".into(), |b| format!("{:.1}", b as f64 / 1e6)),
            c.ms_one_thread,
            1e3 / c.ms_one_thread,
            c.ms_all_threads,
            best_f1(r, &c.backbone).map_or("–".into(), |f| format!("{f:.1}")),
            c.int8_f1_drop.map_or("–".into(), |d| format!("{d:.2}")),
        );
    }
    s
}

/// The Fig. 2 points: each backbone's best average F1 against its faces per second with one
/// thread (backbones without an F1 cell are left out).
pub fn points(r: &Report, cost: &CostTable) -> Vec<Point> {
    cost.rows
        .iter()
        .filter(|c| c.ms_one_thread > 0.0)
        .filter_map(|c| {
            Some(Point {
                label: c.backbone.clone(),
                x: 1e3 / c.ms_one_thread,
                score: best_f1(r, &c.backbone)?,
                ours: true,
            })
        })
        .collect()
}
