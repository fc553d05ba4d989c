//! The report's AU-intensity side: per backbone, stage and grid point, ICC(3,1), MAE and PCC per
//! AU and averaged, mean ± std over folds, beside the published DISFA intensity figures.

use super::model::{au_key, MeanStd};
use ausweep_coordinator::store::records::ResultRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One cell's intensity scores over its folds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntensityCell {
    /// Per AU ICC(3,1), mean ± std over folds, keyed `AU<n>`.
    pub icc: BTreeMap<String, MeanStd>,
    /// Per AU MAE.
    pub mae: BTreeMap<String, MeanStd>,
    /// Per AU Pearson's r.
    pub pcc: BTreeMap<String, MeanStd>,
    /// Average ICC over AUs, mean ± std of the per-fold averages.
    pub avg_icc: Option<MeanStd>,
    /// Average MAE.
    pub avg_mae: Option<MeanStd>,
    /// Average PCC.
    pub avg_pcc: Option<MeanStd>,
}

/// A published DISFA intensity figure and how it was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    /// Method.
    pub name: &'static str,
    /// Metric (`PCC`, `ICC(3,1)`, `MAE`).
    pub metric: &'static str,
    /// Average over DISFA's 12 AUs.
    pub value: f64,
    /// Protocol, and why it is not the 3-fold one where it differs.
    pub protocol: &'static str,
    /// Where the figure is printed.
    pub source: &'static str,
}

/// The published figures the report sets ours beside (docs/intensity.md says how each was
/// checked; figures seen only second-hand are left out).
pub const PUBLISHED: [Published; 1] = [Published {
    name: "LibreFace (Chang et al., WACV 2024)",
    metric: "PCC",
    value: 0.63,
    protocol: "12 AUs, 5-fold cross-validation, checkpoint chosen on the test fold; a PCC, \
               which bounds an ICC(3,1) from above: not comparable with ours",
    source: "abstract, arXiv:2308.10713; protocol from the ihp-lab/LibreFace README and \
             AU_Recognition/solver_train.py",
}];

/// The intensity scores of a cell whose folds' results are `results` (None when no fold has
/// intensity scores).
pub fn cell(results: &[&ResultRecord], aus: &[u32]) -> Option<IntensityCell> {
    let scored: Vec<_> = results
        .iter()
        .filter_map(|r| r.intensity.as_ref())
        .collect();
    if scored.is_empty() {
        return None;
    }
    let per_au = |f: fn(&ausweep_coordinator::store::records::AuIntensityRecord) -> f64| {
        aus.iter()
            .filter_map(|au| {
                let v: Vec<f64> = scored
                    .iter()
                    .filter_map(|s| s.aus.iter().find(|a| a.au == *au).map(f))
                    .collect();
                MeanStd::of(&v).map(|m| (au_key(*au), m))
            })
            .collect()
    };
    let avg = |f: fn(&ausweep_coordinator::store::records::IntensityRecord) -> f64| {
        MeanStd::of(&scored.iter().map(|s| f(s)).collect::<Vec<_>>())
    };
    Some(IntensityCell {
        icc: per_au(|a| a.icc),
        mae: per_au(|a| a.mae),
        pcc: per_au(|a| a.pcc),
        avg_icc: avg(|s| s.avg_icc),
        avg_mae: avg(|s| s.avg_mae),
        avg_pcc: avg(|s| s.avg_pcc),
    })
}

fn pm(m: Option<&MeanStd>) -> String {
    m.map_or("–".into(), |m| format!("{:.3} ± {:.3}", m.mean, m.std))
}

/// The markdown section (empty when no cell has intensity scores).
pub fn markdown(r: &super::Report) -> String {
    let cells: Vec<_> = r
        .cells
        .iter()
        .filter_map(|c| c.intensity.as_ref().map(|i| (c, i)))
        .collect();
    if cells.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## AU intensity\n\n");
    let _ = writeln!(
        s,
        "Per AU ICC(3,1) on each test fold, mean ± std (n − 1) over folds; the averages are over \
         AUs (docs/intensity.md). MAE is in intensity levels (0–5).\n"
    );
    let aus: Vec<String> = r.aus.iter().map(|a| au_key(*a)).collect();
    let _ = writeln!(
        s,
        "| method | {} | avg ICC | avg MAE | avg PCC |",
        aus.join(" | ")
    );
    let _ = writeln!(s, "|---|{}---|---|---|", "---|".repeat(aus.len()));
    for (c, i) in cells {
        let grid = if c.grid.is_empty() {
            String::new()
        } else {
            format!(" [{}]", c.grid)
        };
        let cols: Vec<String> = aus.iter().map(|k| pm(i.icc.get(k))).collect();
        let _ = writeln!(
            s,
            "| {} stage {}{}{} | {} | {} | {} | {} |",
            c.backbone,
            c.stage,
            grid,
            if c.partial { " *" } else { "" },
            cols.join(" | "),
            pm(i.avg_icc.as_ref()),
            pm(i.avg_mae.as_ref()),
            pm(i.avg_pcc.as_ref())
        );
    }
    let _ = writeln!(s, "\nPublished DISFA intensity figures:\n");
    for p in &PUBLISHED {
        let _ = writeln!(
            s,
            "- {}: average {} {:.2}; {}{}; source: {}",
            p.name,
            p.metric,
            p.value,
            p.protocol,
            if r.data.disfa {
                String::new()
            } else {
                format!(
                    "; measured on DISFA, ours on {}: not comparable",
                    r.data.description
                )
            },
            p.source
        );
    }
    s
}
