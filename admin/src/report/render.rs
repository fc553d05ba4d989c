//! Writing a [`Report`] as Markdown, CSV (long format, stable columns) or JSON.

use super::model::{au_key, Report};
use std::fmt::Write;

/// Columns of the summary CSV: one row per (method, AU), `au` = `avg` for the average.
pub const CSV_HEADER: &str =
    "source,method,backbone,stage,grid,au,f1_mean,f1_std,folds,partial,params_total,params_trainable";

/// Columns of the per-fold CSV.
pub const FOLDS_CSV_HEADER: &str =
    "backbone,stage,grid,fold,au,f1,params_total,params_trainable,train_seconds,images_per_sec";

fn pm(m: Option<&super::model::MeanStd>) -> String {
    match m {
        Some(m) if m.n > 1 => format!("{:.1} ± {:.1}", m.mean, m.std),
        Some(m) => format!("{:.1}", m.mean),
        None => "–".into(),
    }
}

fn millions(p: u64) -> String {
    format!("{:.2} M", p as f64 / 1e6)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Sweep {} (`{}` v{})\n", r.sweep_id, r.name, r.version);
    if r.partial {
        let _ = writeln!(
            s,
            "**Partial:** {} of {} jobs have results; rows marked * lack folds.\n",
            r.jobs_done, r.jobs_total
        );
    }
    let _ = writeln!(s, "Measured on: {}.\n", r.data.description);
    if !r.data.disfa && !r.baselines.is_empty() {
        let _ = writeln!(
            s,
            "**Not comparable:** the published rows were measured on DISFA, these results on {}; \
             set them side by side only to check the method runs.\n",
            r.data.description
        );
    }
    // An intensity-only sweep has no F1 table (its own table follows the per-fold one).
    if r.cells.iter().any(|c| c.intensity.is_none()) || !r.baselines.is_empty() {
        f1_table(r, &mut s);
    }
    let _ = writeln!(s, "\n## Per fold and resources\n");
    let _ = writeln!(
        s,
        "| backbone | stage | grid | fold | {} | params | trainable | train s | images/s |",
        if r.cells.iter().any(|c| c.intensity.is_some()) {
            "avg F1 % or ICC"
        } else {
            "avg F1 %"
        }
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for c in &r.cells {
        for f in &c.folds {
            let score = f
                .avg_icc
                .map_or(format!("{:.1}", f.avg_f1), |i| format!("ICC {i:.3}"));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {score} | {} | {} | {:.0} | {:.1} |",
                c.backbone,
                c.stage,
                c.grid,
                f.fold,
                millions(f.params_total),
                millions(f.params_trainable),
                f.train_seconds,
                f.images_per_sec
            );
        }
        if c.folds_done < c.folds_planned {
            let _ = writeln!(
                s,
                "| {} | {} | {} | – | {} of {} folds missing | | | | |",
                c.backbone,
                c.stage,
                c.grid,
                c.folds_planned - c.folds_done,
                c.folds_planned
            );
        }
    }
    s.push_str(&super::intensity::markdown(r));
    if !r.baselines.is_empty() {
        let _ = writeln!(s, "\n## Baselines\n");
        for b in &r.baselines {
            let p = b.params.map_or("parameters unknown".into(), millions);
            let _ = writeln!(s, "- {}: {}; source: {}", b.name, p, b.source);
        }
    }
    s
}

/// The F1 table: ours (mean ± std over folds) and the published rows.
fn f1_table(r: &Report, s: &mut String) {
    let _ = writeln!(
        s,
        "DISFA protocol: frame-level F1 % per AU pooled over each test fold, averaged over AUs; \
         ours are mean ± std (n − 1) over folds.\n"
    );
    let aus: Vec<String> = r.aus.iter().map(|a| au_key(*a)).collect();
    let _ = writeln!(s, "| method | {} | avg |", aus.join(" | "));
    let _ = writeln!(s, "|---|{}---|", "---|".repeat(aus.len()));
    for c in r.cells.iter().filter(|c| c.intensity.is_none()) {
        let grid = if c.grid.is_empty() {
            String::new()
        } else {
            format!(" [{}]", c.grid)
        };
        let cols: Vec<String> = aus.iter().map(|k| pm(c.f1.get(k))).collect();
        let _ = writeln!(
            s,
            "| {} stage {}{}{} | {} | {} |",
            c.backbone,
            c.stage,
            grid,
            if c.partial { " *" } else { "" },
            cols.join(" | "),
            pm(c.avg_f1.as_ref())
        );
    }
    for b in &r.baselines {
        let cols: Vec<String> = aus
            .iter()
            .map(|k| b.f1.get(k).map_or("–".into(), |v| format!("{v:.1}")))
            .collect();
        let avg = if b.average_disagrees {
            format!(
                "{:.1} (per-AU mean {:.1})",
                b.average_published, b.average_per_au
            )
        } else {
            format!("{:.1}", b.average_published)
        };
        let _ = writeln!(
            s,
            "| {} (published{}) | {} | {} |",
            b.name,
            if r.data.disfa {
                ""
            } else {
                ", on DISFA: not comparable"
            },
            cols.join(" | "),
            avg
        );
    }
}

/// The summary CSV ([`CSV_HEADER`]).
pub fn csv(r: &Report) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    // F1 only: intensity cells are in the JSON and the markdown.
    for c in r.cells.iter().filter(|c| c.intensity.is_none()) {
        let rows = r
            .aus
            .iter()
            .map(|a| (au_key(*a), c.f1.get(&au_key(*a)).copied()))
            .chain([("avg".to_string(), c.avg_f1)]);
        for (au, m) in rows {
            let (mean, std, n) = m.map_or((String::new(), String::new(), 0), |m| {
                (format!("{:.4}", m.mean), format!("{:.4}", m.std), m.n)
            });
            let _ = writeln!(
                s,
                "ours,{},{},{},{},{au},{mean},{std},{n},{},{},{}",
                csv_field(&c.backbone),
                csv_field(&c.backbone),
                c.stage,
                csv_field(&c.grid),
                c.partial,
                c.params_total,
                c.params_trainable
            );
        }
    }
    for b in &r.baselines {
        let rows = r
            .aus
            .iter()
            .filter_map(|a| b.f1.get(&au_key(*a)).map(|v| (au_key(*a), *v)))
            .chain([("avg".to_string(), b.average_published)]);
        let params = b.params.map_or(String::new(), |p| p.to_string());
        for (au, v) in rows {
            let _ = writeln!(
                s,
                "published,{},,,,{au},{v:.4},,,false,{params},{params}",
                csv_field(&b.id)
            );
        }
    }
    s
}

/// The per-fold CSV ([`FOLDS_CSV_HEADER`]).
pub fn folds_csv(r: &Report) -> String {
    let mut s = format!("{FOLDS_CSV_HEADER}\n");
    for c in &r.cells {
        for f in c.folds.iter().filter(|f| f.avg_icc.is_none()) {
            let rows = r
                .aus
                .iter()
                .filter_map(|a| f.f1.get(&au_key(*a)).map(|v| (au_key(*a), *v)))
                .chain([("avg".to_string(), f.avg_f1)]);
            for (au, v) in rows {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{au},{v:.4},{},{},{:.3},{:.3}",
                    csv_field(&c.backbone),
                    c.stage,
                    csv_field(&c.grid),
                    f.fold,
                    f.params_total,
                    f.params_trainable,
                    f.train_seconds,
                    f.images_per_sec
                );
            }
        }
    }
    s
}

/// The report as pretty JSON (field names are the schema).
pub fn json(r: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(r)
}
