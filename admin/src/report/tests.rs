//! The report on a stored fixture sweep, recomputed by hand; stable CSV and JSON schemas.

use super::model::{build, Report};
use super::{chart, render, source};
use ausweep_coordinator::baselines::Baselines;
use ausweep_coordinator::sched::{State, Timing};
use ausweep_coordinator::store::records::{AuScoreRecord, JobRecord, JobState, ResultRecord};
use ausweep_coordinator::store::{Batch, MemStore, Store, Tree};
use ausweep_coordinator::{manifest, plan};

const AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

fn result(job: &str, au1: f64, rest: f64, trainable: u64, secs: f64, ips: f64) -> ResultRecord {
    let aus: Vec<AuScoreRecord> = AUS
        .iter()
        .map(|&au| AuScoreRecord {
            au,
            f1: if au == 1 { au1 } else { rest },
            precision: 0.5,
            recall: 0.5,
            threshold: 0.5,
        })
        .collect();
    ResultRecord {
        job: job.into(),
        attempt: 1,
        avg_f1: (au1 + 7.0 * rest) / 8.0,
        aus,
        params_total: 2_234_568,
        params_trainable: trainable,
        train_seconds: secs,
        images_per_sec: ips,
        checkpoint: "00".repeat(32),
        dataset: None,
        intensity: None,
    }
}

/// The paper sweep (24 jobs) with mobilenet_v2 stage 1 done on 3 folds, stage 2 on folds 1-2.
pub(super) fn fixture() -> (MemStore, String) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/paper.yaml"),
    )
    .unwrap();
    let parsed = manifest::parse(&text, "paper.yaml").unwrap();
    let jobs = plan::expand(&parsed.sweep_id, &parsed.manifest).unwrap();
    let store = MemStore::new();
    let mut st = State::new(Timing::default(), 1);
    let mut b = Batch::new();
    let specs = plan::encode_specs(&parsed.sweep_id, &jobs).unwrap();
    st.submit(&parsed, jobs, specs, 1, &mut b).unwrap();
    let id = parsed.sweep_id.clone();
    let j = |f: u32, s: u32| format!("{id}.mobilenet_v2.f{f}.s{s}.g0");
    for (f, au1, rest, secs, ips) in [
        (1, 0.10, 0.40, 100.0, 50.0),
        (2, 0.20, 0.50, 110.0, 60.0),
        (3, 0.30, 0.60, 120.0, 70.0),
    ] {
        b.put(
            Tree::Results,
            &j(f, 1),
            &result(&j(f, 1), au1, rest, 10_248, secs, ips),
        )
        .unwrap();
    }
    for (f, v) in [(1, 0.6), (2, 0.7)] {
        b.put(
            Tree::Results,
            &j(f, 2),
            &result(&j(f, 2), v, v, 2_234_568, 500.0, 20.0),
        )
        .unwrap();
    }
    store.commit(&b).unwrap();
    let mut b = Batch::new();
    for (k, _) in store.scan(Tree::Results).unwrap() {
        let raw = store.get(Tree::Jobs, &k).unwrap().unwrap();
        let mut job: JobRecord = ausweep_coordinator::store::decode(Tree::Jobs, &k, &raw).unwrap();
        job.state = JobState::Succeeded;
        b.put(Tree::Jobs, &k, &job).unwrap();
    }
    store.commit(&b).unwrap();
    (store, id)
}

fn report() -> Report {
    let (store, id) = fixture();
    let input = source::from_store(&store, &id).unwrap();
    assert_eq!(input.baselines, ["eac_net", "jaa_net", "lp_net"]);
    let file = Baselines::embedded().unwrap();
    let chosen = file.select(&input.baselines).unwrap();
    build(&input, &file, &chosen)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn numbers_recomputed_by_hand() {
    let r = report();
    assert!(r.partial);
    assert_eq!((r.jobs_total, r.jobs_done), (24, 5));
    assert_eq!(r.aus, AUS);
    assert_eq!(r.cells.len(), 8);
    let s1 = r
        .cells
        .iter()
        .find(|c| c.backbone == "mobilenet_v2" && c.stage == 1)
        .unwrap();
    assert!(!s1.partial);
    // AU1: 10, 20, 30 -> mean 20, sample std 10.
    let au1 = s1.f1["AU1"];
    assert!(close(au1.mean, 20.0) && close(au1.std, 10.0) && au1.n == 3);
    let au2 = s1.f1["AU2"];
    assert!(close(au2.mean, 50.0) && close(au2.std, 10.0));
    // Per-fold averages: (10 + 7*40)/8 = 36.25, 46.25, 56.25 -> 46.25 ± 10.
    let avgs: Vec<f64> = s1.folds.iter().map(|f| f.avg_f1).collect();
    assert!(close(avgs[0], 36.25) && close(avgs[1], 46.25) && close(avgs[2], 56.25));
    let a = s1.avg_f1.unwrap();
    assert!(close(a.mean, 46.25) && close(a.std, 10.0));
    assert_eq!((s1.params_total, s1.params_trainable), (2_234_568, 10_248));
    assert!(close(s1.train_seconds_total, 330.0) && close(s1.images_per_sec_mean, 60.0));
    let s2 = r
        .cells
        .iter()
        .find(|c| c.backbone == "mobilenet_v2" && c.stage == 2)
        .unwrap();
    assert!(s2.partial && s2.folds_done == 2 && s2.folds_planned == 3);
    // 60 and 70 -> 65 ± sqrt(50) = 7.0711.
    let a = s2.avg_f1.unwrap();
    assert!(close(a.mean, 65.0) && close(a.std, 50f64.sqrt()));
    let dn = r
        .cells
        .iter()
        .find(|c| c.backbone == "densenet121")
        .unwrap();
    assert!(dn.partial && dn.avg_f1.is_none() && dn.folds_done == 0);
    let eac = &r.baselines[0];
    assert_eq!(eac.name, "EAC-Net");
    assert!(eac.average_disagrees && close(eac.average_published, 48.5));
    assert!(close(eac.f1["AU26"], 15.6));
}

#[test]
fn markdown_marks_partial_rows_and_flags() {
    let md = render::markdown(&report());
    assert!(md.contains("**Partial:** 5 of 24 jobs"), "{md}");
    assert!(
        md.contains("| mobilenet_v2 stage 1 | 20.0 ± 10.0 | 50.0 ± 10.0 |"),
        "{md}"
    );
    assert!(md.contains("| mobilenet_v2 stage 2 * |"), "{md}");
    assert!(
        md.contains("| 46.2 ± 10.0 |") || md.contains("| 46.3 ± 10.0 |"),
        "{md}"
    );
    assert!(md.contains("48.5 (per-AU mean 57.4)"), "{md}");
    assert!(md.contains("1 of 3 folds missing"), "{md}");
}

#[test]
fn tables_say_what_data_they_were_measured_on() {
    // The fixture is the paper's sweep on DISFA: the baselines are comparable.
    let md = render::markdown(&report());
    assert!(
        md.contains("Measured on: DISFA left camera videos in /data/DISFA, face-aligned by `dataset prepare` (eyes template, 224 px)."),
        "{md}"
    );
    assert!(
        !md.contains("Not comparable") && md.contains("| EAC-Net (published) |"),
        "{md}"
    );
    // The same results said to come from the synthetic demo data: flagged in table and chart.
    let demo = manifest::parse(&ausweep_testkit::demo_manifest(), "demo.yaml").unwrap();
    let mut r = report();
    r.data = super::model::DataNote::of(&demo.manifest.dataset);
    assert!(!r.data.disfa);
    let md = render::markdown(&r);
    let ausweep_proto::job::DataSource::Synthetic {
        subjects, frames, ..
    } = demo.manifest.dataset.source
    else {
        panic!("the demo manifest is not synthetic");
    };
    let said = format!(
        "Measured on: the synthetic DISFA ({subjects} subjects × {frames} rendered frames, {} px).",
        demo.manifest.dataset.input_size
    );
    assert!(md.contains(&said), "{said}\n{md}");
    assert!(md.contains("**Not comparable:**"), "{md}");
    assert!(
        md.contains("| EAC-Net (published, on DISFA: not comparable) |"),
        "{md}"
    );
    let pts = chart::points(&r, chart::Metric::F1);
    assert!(pts
        .iter()
        .any(|p| !p.ours && p.label == "EAC-Net (on DISFA)"));
    let dir = tempfile::tempdir().unwrap();
    match chart::write(&r, dir.path()) {
        Ok(files) => {
            let svg = std::fs::read_to_string(&files[0]).unwrap();
            assert!(
                svg.contains("not DISFA: baselines not comparable"),
                "chart caption"
            );
        }
        Err(chart::ChartError::NoFont(p)) => panic!("no font ({p}): make setup installs one"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn csv_schemas_are_stable() {
    let r = report();
    let csv = render::csv(&r);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "source,method,backbone,stage,grid,au,f1_mean,f1_std,folds,partial,params_total,params_trainable"
    );
    assert!(csv.contains(
        "\nours,mobilenet_v2,mobilenet_v2,1,,AU1,20.0000,10.0000,3,false,2234568,10248\n"
    ));
    assert!(csv.contains(
        "\nours,mobilenet_v2,mobilenet_v2,1,,avg,46.2500,10.0000,3,false,2234568,10248\n"
    ));
    assert!(csv.contains("\npublished,eac_net,,,,avg,48.5000,,,false,150000000,150000000\n"));
    let cols = 12;
    for l in csv.lines() {
        assert_eq!(l.split(',').count(), cols, "{l}");
    }
    let folds = render::folds_csv(&r);
    assert_eq!(
        folds.lines().next().unwrap(),
        "backbone,stage,grid,fold,au,f1,params_total,params_trainable,train_seconds,images_per_sec"
    );
    assert!(folds.contains("\nmobilenet_v2,2,,2,avg,70.0000,2234568,2234568,500.000,20.000\n"));
    // 5 results x (8 AUs + avg) rows + header.
    assert_eq!(folds.lines().count(), 1 + 5 * 9);
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn json_schema_is_stable() {
    let v: serde_json::Value = serde_json::from_str(&render::json(&report()).unwrap()).unwrap();
    assert_eq!(
        keys(&v),
        [
            "aus",
            "baselines",
            "cells",
            "data",
            "jobs_done",
            "jobs_total",
            "name",
            "partial",
            "sweep_id",
            "version"
        ]
    );
    assert_eq!(
        keys(&v["cells"][0]),
        [
            "avg_f1",
            "backbone",
            "f1",
            "folds",
            "folds_done",
            "folds_planned",
            "grid",
            "images_per_sec_mean",
            "params_total",
            "params_trainable",
            "partial",
            "stage",
            "train_seconds_total"
        ]
    );
    let cell = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["backbone"] == "mobilenet_v2" && c["stage"] == 1)
        .unwrap();
    assert_eq!(keys(&cell["f1"]["AU1"]), ["mean", "n", "std"]);
    assert_eq!(
        keys(&cell["folds"][0]),
        [
            "avg_f1",
            "f1",
            "fold",
            "images_per_sec",
            "params_total",
            "params_trainable",
            "train_seconds"
        ]
    );
    assert_eq!(
        keys(&v["baselines"][0]),
        [
            "average_disagrees",
            "average_per_au",
            "average_published",
            "f1",
            "id",
            "name",
            "params",
            "source"
        ]
    );
}

#[test]
fn chart_has_ours_and_baselines() {
    let r = report();
    let pts = chart::points(&r, chart::Metric::F1);
    assert!(pts
        .iter()
        .any(|p| p.ours && p.label == "mobilenet_v2 s1" && p.x == 10_248.0));
    assert!(pts
        .iter()
        .any(|p| !p.ours && p.label == "EAC-Net" && close(p.score, 48.5)));
    assert_eq!(
        [1e4, 2.5e6, 1.5e8, 1e9].map(chart::si),
        ["10k", "2.5M", "150M", "1G"].map(String::from)
    );
    let dir = tempfile::tempdir().unwrap();
    match chart::write(&r, dir.path()) {
        Ok(files) => {
            let svg = std::fs::read_to_string(&files[0]).unwrap();
            assert!(
                svg.contains("<svg") && svg.contains("EAC-Net") && svg.contains("mobilenet_v2 s2")
            );
            assert!(svg.contains("(partial)"));
            let png = std::fs::read(&files[1]).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert!(png.len() > 5_000);
        }
        Err(chart::ChartError::NoFont(p)) => eprintln!("skipped: no font ({p})"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn grpc_status_converts_like_the_store() {
    let (store, id) = fixture();
    let from_store = source::from_store(&store, &id).unwrap();
    let st = ausweep_coordinator::sched::State::load(&store, Timing::default(), 2).unwrap();
    let d = st.sweep_detail(&id, 2).unwrap();
    let status = ausweep_proto::v1::SweepStatus {
        summary: Some(ausweep_coordinator::service::convert::summary(&d.view)),
        jobs: d
            .jobs
            .iter()
            .map(ausweep_coordinator::service::convert::job)
            .collect(),
        notice: d.notice.clone(),
        manifest_json: d.view.sweep.canonical.clone(),
        ..Default::default()
    };
    let from_api = source::from_status(&status).unwrap();
    assert_eq!(from_api.baselines, from_store.baselines);
    assert_eq!(from_api.jobs.len(), 24);
    let file = Baselines::embedded().unwrap();
    let chosen = file.select(&from_api.baselines).unwrap();
    let a = build(&from_api, &file, &chosen);
    let mut b = build(&from_store, &file, &chosen);
    // The API carries no attempt number or checkpoint; everything the report shows agrees.
    b.sweep_id.clone_from(&a.sweep_id);
    assert_eq!(render::csv(&a), render::csv(&b));
    assert_eq!(render::folds_csv(&a), render::folds_csv(&b));
    assert!(source::from_store(&store, "nope").is_err());
}

#[test]
fn intensity_cells_get_their_own_table_and_stay_out_of_the_f1_ones() {
    use super::model::{DataNote, JobRow, SweepInput};
    use ausweep_coordinator::store::records::{AuIntensityRecord, IntensityRecord};
    // MobileNet-v2 stage 2 on two folds: AU6 ICC 0.8 and 0.6, AU12 0.9 and 0.7.
    let scored = |fold: u32, icc6: f64, icc12: f64| {
        let mut r = result(
            &format!("s.mobilenet_v2.f{fold}.s2.g0"),
            0.0,
            0.0,
            10,
            1.0,
            1.0,
        );
        r.aus.clear();
        r.avg_f1 = 0.0;
        let au = |au, icc| AuIntensityRecord {
            au,
            icc,
            mae: 0.5,
            pcc: icc,
            support: 3,
            n: 9,
        };
        r.intensity = Some(IntensityRecord {
            aus: vec![au(6, icc6), au(12, icc12)],
            avg_icc: (icc6 + icc12) / 2.0,
            avg_mae: 0.5,
            avg_pcc: (icc6 + icc12) / 2.0,
        });
        JobRow {
            backbone: "mobilenet_v2".into(),
            fold,
            stage: 2,
            grid: String::new(),
            result: Some(r),
        }
    };
    let input = SweepInput {
        sweep_id: "s".into(),
        name: "int".into(),
        version: 1,
        baselines: vec![],
        data: DataNote {
            description: "the synthetic DISFA".into(),
            disfa: false,
        },
        jobs: vec![scored(1, 0.8, 0.9), scored(2, 0.6, 0.7)],
    };
    let r = build(&input, &Baselines::embedded().unwrap(), &[]);
    assert_eq!(r.aus, [6, 12]);
    let c = &r.cells[0];
    let i = c.intensity.as_ref().expect("an intensity cell");
    assert!(close(i.icc["AU6"].mean, 0.7) && close(i.icc["AU6"].std, 0.02f64.sqrt()));
    assert!(close(i.avg_icc.unwrap().mean, 0.75), "{i:?}");
    assert_eq!(c.avg_f1, None, "no F1 for intensity");
    let md = render::markdown(&r);
    assert!(
        md.contains("## AU intensity")
            && md.contains(
                "| mobilenet_v2 stage 2 | 0.700 ± 0.141 | 0.800 ± 0.141 | 0.750 ± 0.141 |"
            ),
        "{md}"
    );
    assert!(md.contains("| 1 | ICC 0.850 |"), "{md}");
    assert!(!md.contains("frame-level F1"), "no empty F1 table: {md}");
    assert_eq!(
        md.matches("| mobilenet_v2 stage 2 |").count(),
        1,
        "only the intensity table has the cell: {md}"
    );
    assert!(
        md.contains("LibreFace") && md.contains("not comparable"),
        "{md}"
    );
    assert!(
        chart::points(&r, chart::Metric::F1).is_empty(),
        "no F1 point for an intensity cell"
    );
    let icc = chart::points(&r, chart::Metric::Icc);
    assert_eq!(icc.len(), 1, "{icc:?}");
    assert!(
        close(icc[0].score, 0.75) && icc[0].label == "mobilenet_v2 s2",
        "{icc:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let files = chart::write(&r, dir.path()).expect("make setup installs a font");
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["intensity.svg", "intensity.png"], "no empty Fig. 5");
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        svg.contains("average ICC(3,1)") && svg.contains("mobilenet_v2 s2"),
        "chart text"
    );
    assert_eq!(
        render::csv(&r).lines().count(),
        1,
        "the F1 CSV holds its header only"
    );
}

#[test]
fn the_cost_section_sets_each_backbone_beside_its_best_f1() {
    use super::cost::{self, CostRow, CostTable};
    let r = report();
    let row = |b: &str, one: f64, all: f64, int8: Option<(u64, f64)>| CostRow {
        backbone: b.into(),
        input_size: 224,
        params: 2_236_680,
        macs: 300_000_000,
        onnx_bytes: 9_100_000,
        ms_one_thread: one,
        ms_all_threads: all,
        threads: 2,
        onnxruntime_ms_one_thread: None,
        ausweep_onnx_ms_one_thread: None,
        int8_onnx_bytes: int8.map(|i| i.0),
        int8_ms_one_thread: None,
        int8_f1_drop: int8.map(|i| i.1),
    };
    let t = CostTable {
        runtime: "a test".into(),
        rows: vec![
            row("mobilenet_v2", 12.5, 6.0, Some((2_400_000, 0.375))),
            row("densenet121", 80.0, 40.0, None),
        ],
    };
    let md = cost::markdown(&r, &t);
    // mobilenet_v2's best cell is stage 2 (65.0 over stage 1's 46.25); 1000 / 12.5 = 80 faces/s.
    assert!(
        md.contains(
            "| mobilenet_v2 | 224 | 2.24 | 0.300 | 9.1 | 2.4 | 12.5 | 80 | 6.0 | 65.0 | 0.38 |"
        ),
        "{md}"
    );
    // densenet121 has no F1 yet: its cost stands, its F1 is a dash.
    assert!(
        md.contains("| densenet121 | 224 | 2.24 | 0.300 | 9.1 | – | 80.0 | 12 | 40.0 | – | – |"),
        "{md}"
    );
    assert!(
        md.contains("measured with a test") && md.contains("2 threads"),
        "{md}"
    );
    let pts = cost::points(&r, &t);
    assert_eq!(pts.len(), 1, "{pts:?}");
    assert!(
        close(pts[0].x, 80.0) && close(pts[0].score, 65.0),
        "{pts:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    match chart::write_fig2(&r, &t, dir.path()) {
        Ok(files) => {
            assert_eq!(files[0], dir.path().join("fig2.svg"));
            let svg = std::fs::read_to_string(&files[0]).unwrap();
            assert!(
                svg.contains("faces per second") && svg.contains("mobilenet_v2"),
                "{svg}"
            );
        }
        Err(chart::ChartError::NoFont(p)) => panic!("no font ({p}): make setup installs one"),
        Err(e) => panic!("{e}"),
    }
}
