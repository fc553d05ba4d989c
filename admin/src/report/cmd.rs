//! `ausweep report` and `ausweep score`: arguments and what they run.

use super::{build, chart, render, score, source};
use anyhow::{bail, Context, Result};
use ausweep_coordinator::baselines::Baselines;
use ausweep_proto::v1;
use std::path::PathBuf;

/// Output formats of `ausweep report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Markdown tables.
    Md,
    /// Long-format CSV (stable columns).
    Csv,
    /// JSON (stable keys).
    Json,
}

/// `ausweep report` options.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Sweep id (or, with --store, a sweep name: its newest version).
    pub sweep: String,
    /// Output format on stdout (with --out, every format and the charts are written).
    pub format: Format,
    /// Write report.md, report.csv, folds.csv, report.json, fig5.svg and fig5.png here.
    pub out: Option<PathBuf>,
    /// Read a coordinator's state directory (or its db/) instead of asking the coordinator;
    /// the coordinator must not be running on it.
    pub store: Option<PathBuf>,
    /// Baselines to compare with (comma-separated ids); default: those the manifest names.
    pub baselines: Option<Vec<String>>,
    /// Baselines file (default: the built-in experiments/baselines.yaml).
    pub baselines_file: Option<PathBuf>,
    /// How to reach the coordinator (not needed with --store).
    pub conn: crate::conn::Conn,
    /// An inference cost table (`ausweep bench cost --json`): adds the "Inference cost" section
    /// and `fig2.*` (F1 against faces per second).
    pub cost: Option<PathBuf>,
}

/// `ausweep score` options.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Predictions CSV (header of AU columns; probabilities or 0/1, or with `intensity`
    /// intensities 0–5 in OpenFace's `AU<nn>_r` columns).
    pub pred: PathBuf,
    /// Labels CSV (header of AU columns; 0/1, or with `intensity` intensities 0–5).
    pub labels: PathBuf,
    /// AUs to score (default: every AU column of the labels).
    pub aus: Vec<u32>,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Score AU intensity (ICC(3,1), MAE, PCC) instead of occurrence (F1).
    pub intensity: bool,
}

/// Runs `ausweep score`; returns what it prints.
pub fn run_score(a: &ScoreOptions) -> Result<String> {
    if a.intensity {
        let kind = score::Columns::Intensity;
        let pred = score::AuTable::load_as(&a.pred, kind)?;
        let labels = score::AuTable::load_as(&a.labels, kind)?;
        let r = score::score_intensity(&pred, &labels, &a.aus)?;
        return Ok(if a.json {
            serde_json::to_string_pretty(&r)? + "\n"
        } else {
            r.to_text()
        });
    }
    let pred = score::AuTable::load(&a.pred)?;
    let labels = score::AuTable::load(&a.labels)?;
    let r = score::score(&pred, &labels, &a.aus)?;
    Ok(if a.json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        r.to_text()
    })
}

async fn input(a: &ReportOptions) -> Result<super::SweepInput> {
    if let Some(dir) = &a.store {
        let db = if dir.join("db").is_dir() {
            dir.join("db")
        } else {
            dir.clone()
        };
        if !db.is_dir() {
            bail!("{}: no such store directory", db.display());
        }
        let store = ausweep_coordinator::store::SledStore::open(&db).with_context(|| {
            format!("opening {} (is a coordinator running on it?)", db.display())
        })?;
        return Ok(source::from_store(&store, &a.sweep)?);
    }
    if a.conn.admin_token.is_none() {
        bail!("give an admin token (--admin-token or AUSWEEP_ADMIN_TOKEN), or read a state directory with --store");
    }
    let status = a
        .conn
        .admin("report")
        .await?
        .get_sweep(v1::GetSweepRequest {
            sweep_id: a.sweep.clone(),
        })
        .await?
        .into_inner();
    Ok(source::from_status(&status)?)
}

/// Runs `ausweep report`; returns what it prints.
pub async fn run_report(a: &ReportOptions) -> Result<String> {
    let input = input(a).await?;
    let file = match &a.baselines_file {
        Some(p) => Baselines::load(p)?,
        None => Baselines::embedded()?,
    };
    let ids = a
        .baselines
        .clone()
        .unwrap_or_else(|| input.baselines.clone());
    let chosen = file.select(&ids)?;
    let r = build(&input, &file, &chosen);
    let cost = a
        .cost
        .as_deref()
        .map(super::cost::CostTable::load)
        .transpose()?;
    let md = || match &cost {
        Some(c) => format!("{}\n{}", render::markdown(&r), super::cost::markdown(&r, c)),
        None => render::markdown(&r),
    };
    let text = match a.format {
        Format::Md => md(),
        Format::Csv => render::csv(&r),
        Format::Json => render::json(&r)? + "\n",
    };
    let Some(dir) = &a.out else {
        return Ok(text);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, body) in [
        ("report.md", md()),
        ("report.csv", render::csv(&r)),
        ("folds.csv", render::folds_csv(&r)),
        ("report.json", render::json(&r)? + "\n"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
    }
    let mut out = String::new();
    match chart::write(&r, dir) {
        Ok(files) => written.extend(files),
        Err(e) => out += &format!("warning: chart skipped: {e}\n"),
    }
    if let Some(c) = &cost {
        match chart::write_fig2(&r, c, dir) {
            Ok(files) => written.extend(files),
            Err(e) => out += &format!("warning: fig2 skipped: {e}\n"),
        }
    }
    for p in written {
        out += &format!("wrote {}\n", p.display());
    }
    if r.partial {
        out += &format!(
            "note: partial sweep ({} of {} jobs have results)\n",
            r.jobs_done, r.jobs_total
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn report_from_a_store_directory_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        {
            let store = ausweep_coordinator::store::SledStore::open(&db).unwrap();
            let (mem, _) = super::super::tests::fixture();
            let mut b = ausweep_coordinator::store::Batch::new();
            for t in ausweep_coordinator::store::Tree::ALL {
                for (k, v) in ausweep_coordinator::store::Store::scan(&mem, t).unwrap() {
                    b.ops.push(ausweep_coordinator::store::Op::Put(t, k, v));
                }
            }
            ausweep_coordinator::store::Store::commit(&store, &b).unwrap();
        }
        let out = dir.path().join("out");
        let args = ReportOptions {
            sweep: "paper".into(),
            format: Format::Csv,
            out: Some(out.clone()),
            store: Some(dir.path().to_path_buf()),
            baselines: Some(vec!["jaa_net".into()]),
            baselines_file: None,
            conn: crate::conn::Conn::plain("", None),
            cost: None,
        };
        let msg = run_report(&args).await.unwrap();
        assert!(
            msg.contains("report.json") && msg.contains("partial sweep (5 of 24"),
            "{msg}"
        );
        let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
        assert!(csv.contains("published,jaa_net,") && !csv.contains("eac_net"));
        let mut a = args.clone();
        a.store = None;
        let e = run_report(&a).await.unwrap_err().to_string();
        assert!(e.contains("--store"), "{e}");
        a.store = Some(dir.path().join("missing"));
        assert!(run_report(&a).await.is_err());
    }

    #[test]
    fn score_command_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let l = dir.path().join("l.csv");
        std::fs::write(&p, "AU1,AU2\n1,0\n0.7,0.2\n").unwrap();
        std::fs::write(&l, "AU1,AU2\n1,0\n0,1\n").unwrap();
        let a = ScoreOptions {
            pred: p,
            labels: l.clone(),
            aus: vec![],
            json: true,
            intensity: false,
        };
        let v: serde_json::Value = serde_json::from_str(&run_score(&a).unwrap()).unwrap();
        // AU1: tp 1 fp 1 -> P .5 R 1 F1 2/3; AU2: fn 1 -> 0; avg 1/3.
        assert!((v["avg_f1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        let missing = ScoreOptions {
            pred: dir.path().join("nope.csv"),
            labels: l,
            aus: vec![],
            json: false,
            intensity: false,
        };
        assert!(run_score(&missing)
            .unwrap_err()
            .to_string()
            .contains("nope.csv"));
    }

    #[test]
    fn score_command_scores_intensity() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let l = dir.path().join("l.csv");
        // OpenFace's layout: AU01_r is read, AU01_c ignored. p = [1, 3, 5], y = [0, 3, 3]:
        // ICC(3,1) = 6/7, MAE = 1, r = √3/2 (worked in ausweep_metrics::intensity's tests).
        std::fs::write(&p, "frame,AU01_c,AU01_r\n1,1,1.0\n2,0,3.0\n3,1,5.0\n").unwrap();
        std::fs::write(&l, "frame,AU1\n1,0\n2,3\n3,3\n").unwrap();
        let mut a = ScoreOptions {
            pred: p,
            labels: l,
            aus: vec![],
            json: true,
            intensity: true,
        };
        let v: serde_json::Value = serde_json::from_str(&run_score(&a).unwrap()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["avg_icc", "avg_mae", "avg_pcc", "frames", "per_au"]);
        assert_eq!(v["frames"], 3);
        let au1 = &v["per_au"][0];
        assert_eq!(
            (&au1["au"], &au1["support"], &au1["n"]),
            (&1.into(), &2.into(), &3.into())
        );
        assert!(
            (au1["icc"].as_f64().unwrap() - 6.0 / 7.0).abs() < 1e-12,
            "{v}"
        );
        assert!((v["avg_mae"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{v}");
        assert!((v["avg_pcc"].as_f64().unwrap() - 3f64.sqrt() / 2.0).abs() < 1e-12);
        a.json = false;
        let text = run_score(&a).unwrap();
        assert!(
            text.contains("avg ICC(3,1) 0.857, MAE 1.000, PCC 0.866"),
            "{text}"
        );
        // Without --intensity the same files are read as occurrence: AU01_c, and labels 0/1.
        a.intensity = false;
        let e = run_score(&a).unwrap_err().to_string();
        assert!(
            e.ends_with("l.csv:3: column AU1: label 3 is not 0 or 1"),
            "{e}"
        );
    }
}
