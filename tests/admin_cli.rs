// Long file: end-to-end scenarios of every admin verb against real coordinator processes, one
// scenario per test.
//! The admin verbs as a user types them (`ausweep submit`, `status`, `watch`, `workers`,
//! `drain`, `cancel`, `resubmit-failed`) against a real coordinator process, with real workers:
//! a worker drained mid-job stops at its next checkpoint and the job resumes elsewhere from it.

mod common;

use ausweep_proto::v1;
use ausweep_testkit::procs::exit_seen;
use ausweep_testkit::wait::{self, Seen};
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `ausweep ARGS` against `coord` with the admin token from the environment.
fn cli(coord: &Coordinator, args: &[&str]) -> Output {
    cli_token(coord, ADMIN, args)
}

fn cli_token(coord: &Coordinator, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("AUSWEEP_COORDINATOR", coord.url())
        .env("AUSWEEP_ADMIN_TOKEN", token)
        .output()
        .expect("run ausweep")
}

/// Stdout of a run that must succeed (panics with its stderr otherwise).
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "`ausweep {what}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a run that must fail.
fn refused(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "`ausweep {what}` succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sweep id in `submitted: sweep ID (...)`.
fn sweep_id(stdout: &str) -> String {
    stdout
        .split("sweep ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sweep id in {stdout:?}"))
        .to_string()
}

/// Polls `ausweep ARGS` until its stdout satisfies `pred`.
fn wait_cli(coord: &Coordinator, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
    wait::until_blocking(
        what,
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let out = cli(coord, args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && pred(&text) {
                Seen::Done(text)
            } else {
                Seen::Not(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        },
    )
}

/// The STATE column of `ausweep status SWEEP`'s job rows.
fn states(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("mobilenet_v2"))
        .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string())
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long function: one scenario told in order: every verb, then a drain while a job runs.
async fn every_admin_verb_against_a_real_coordinator_and_a_drain_mid_job() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut coord = start_coordinator(&root.join("c"), LEASE_MS);
    let mut admin = coord.admin().await;

    // submit: the same file twice gives the same sweep.
    let file = write(root, "cli.yaml", &manifest("cli", &[1], 6));
    let first = ok(cli(&coord, &["submit", &file]), "submit");
    assert!(first.starts_with("submitted: sweep "), "{first}");
    assert!(first.contains("(cli v1, 2 jobs)"), "{first}");
    let id = sweep_id(&first);
    let again = ok(cli(&coord, &["submit", &file]), "submit (again)");
    assert!(again.starts_with("already submitted: sweep "), "{again}");
    assert_eq!(sweep_id(&again), id);
    // A bad manifest names its file and line; nothing is submitted.
    let bad = write(
        root,
        "bad.yaml",
        &manifest("bad", &[1], 6).replace("batch_size: 8", "batch_size: -8"),
    );
    let err = refused(cli(&coord, &["submit", &bad]), "submit bad.yaml");
    assert!(
        err.contains("bad.yaml:") && err.contains("batch_size"),
        "{err}"
    );
    // A wrong token is refused as unauthenticated, before anything is read.
    let err = refused(
        cli_token(&coord, "wrong-token-0123456789", &["status"]),
        "status (wrong token)",
    );
    assert!(err.contains("bad admin token"), "{err}");

    // status: every sweep, then one sweep's jobs.
    let all = ok(cli(&coord, &["status"]), "status");
    let row = all
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        row.contains("cli") && row.split_whitespace().nth(3) == Some("2"),
        "{row}"
    );
    assert!(!all.contains("bad"), "{all}");
    let one = ok(cli(&coord, &["status", &id]), "status ID");
    assert_eq!(states(&one), ["pending", "pending"], "{one}");
    let err = refused(
        cli(&coord, &["status", "no-such-sweep"]),
        "status no-such-sweep",
    );
    assert!(err.contains("no-such-sweep"), "{err}");

    // watch follows the sweep and exits once every job has finished.
    let mut watch = Command::new(bin())
        .args(["watch", &id])
        .env("AUSWEEP_COORDINATOR", coord.url())
        .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let jsonl = root.join("watch.jsonl");
    let mut watch_json = Command::new(bin())
        .args(["watch", &id, "--output", "jsonl"])
        .env("AUSWEEP_COORDINATOR", coord.url())
        .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
        .stdout(std::fs::File::create(&jsonl).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // workers: the node is listed once it registered.
    let w = start_worker(&coord.url(), root, "w", &[]);
    let listed = wait_cli(&coord, &["workers"], "`ausweep workers` to list w", |t| {
        t.lines().any(|l| {
            l.starts_with("w ")
                && l.contains("yes")
                && l.contains("cpu0")
                && l.contains("mobilenet_v2")
        })
    });
    assert!(listed.starts_with("WORKER"), "{listed}");

    // drain while stage 2 runs: the worker stops at its next checkpoint and exits 0, the job
    // goes back to pending with that checkpoint.
    let st = wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(300),
        "stage 2 to run on w",
        &[&w],
        |st| {
            st.jobs
                .iter()
                .any(|j| j.stage == 2 && j.state() == v1::JobState::Leased && j.progress.is_some())
        },
    )
    .await;
    let job = st
        .jobs
        .iter()
        .find(|j| j.stage == 2)
        .unwrap()
        .job_id
        .clone();
    let drained = ok(cli(&coord, &["drain", "w"]), "drain w");
    assert!(
        drained.contains("draining w: 1 running job(s)"),
        "{drained}"
    );
    let err = refused(cli(&coord, &["drain", "nobody"]), "drain nobody");
    assert!(err.contains("no worker `nobody`"), "{err}");
    let mut w = w;
    let code = w.wait_exit(Duration::from_secs(180)).await;
    assert!(code.success(), "drain exit {code:?}\n{}", w.log());
    assert!(
        w.log().contains("worker drained after checkpoint"),
        "{}",
        w.log()
    );
    let st = status(&mut admin, &id).await;
    let j = st.jobs.iter().find(|j| j.job_id == job).unwrap();
    assert_eq!(j.state(), v1::JobState::Pending, "{}", describe(&st));
    assert!(!j.newest_checkpoint_sha256.is_empty(), "{}", describe(&st));
    let drained_attempt = j.attempt;

    // Another worker resumes the job from the drained checkpoint.
    let v = start_worker(&coord.url(), root, "v", &[]);
    let st = wait_done(&coord, &id, Duration::from_secs(300), &[&v]).await;
    let j = st.jobs.iter().find(|j| j.job_id == job).unwrap();
    assert!(j.attempt > drained_attempt, "{}", describe(&st));
    let r = result_json(&[&v], &job, j.attempt).expect("result.json of the resumed attempt");
    assert!(
        r["resumed_from_epoch"].as_u64().is_some_and(|e| e >= 1),
        "{r}"
    );
    let code = wait::until(
        "`ausweep watch` to exit after the sweep finished",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let seen = exit_seen(&mut watch, || "still running".into());
            async move { seen }
        },
    )
    .await;
    assert!(code.success(), "watch exited {code:?}");
    // The JSON-lines watch saw reasons, progress and both jobs finish, each line an object.
    let code = wait::until_blocking(
        "`ausweep watch --output jsonl` to exit",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            exit_seen(&mut watch_json, || {
                std::fs::read_to_string(&jsonl).unwrap_or_default()
            })
        },
    );
    assert!(code.success(), "watch --output jsonl exited {code:?}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    for e in &events {
        for key in ["type", "job_id", "state", "attempt", "message", "progress"] {
            assert!(e.get(key).is_some(), "no {key} in {e}");
        }
    }
    let of = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert!(of("reason") >= 1 && of("progress") >= 1, "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "state" && e["state"] == "done")
            .count(),
        2,
        "{events:?}"
    );
    let one = ok(cli(&coord, &["status", &id]), "status ID");
    assert_eq!(states(&one), ["done", "done"], "{one}");
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let text = ok(cli(&coord, &a), &a.join(" "));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{a:?}: not JSON: {e}: {text}"))
    };
    let one = json(&["status", &id]);
    assert_eq!(one["sweep_id"], id.as_str());
    let jobs = one["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    for j in jobs {
        for key in [
            "job_id",
            "backbone",
            "fold",
            "stage",
            "state",
            "attempt",
            "max_attempts",
            "failures",
            "lost_attempts",
            "worker_id",
            "pending_reason",
            "last_error",
            "depends_on",
            "epochs",
            "progress",
            "result",
            "newest_checkpoint_sha256",
        ] {
            assert!(j.get(key).is_some(), "no {key} in {j}");
        }
        assert_eq!(j["state"], "done");
        assert_eq!(j["result"]["aus"].as_array().map(Vec::len), Some(8), "{j}");
    }
    let all = json(&["status"]);
    let row = all["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sweep_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            row["total"].as_u64(),
            row["succeeded"].as_u64(),
            row["name"].as_str()
        ),
        (Some(2), Some(2), Some("cli")),
        "{row}"
    );
    let ws = json(&["workers"]);
    let wv = ws["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "v")
        .unwrap()
        .clone();
    assert_eq!(wv["devices"][0]["kind"], "cpu", "{wv}");
    assert_eq!(wv["alive"], true, "{wv}");
    assert!(
        wv["weights"]
            .as_array()
            .is_some_and(|a| a.iter().any(|h| h["name"] == "mobilenet_v2")),
        "{wv}"
    );
    let d = json(&["drain", "v"]);
    assert_eq!(
        d,
        serde_json::json!({"worker_id": "v", "found": true, "leased_jobs": []})
    );
    drop(v);

    // Size limits: `submit` names the file and the limit before sending; past its own check,
    // the coordinator names them too.
    let big = write(
        root,
        "big.yaml",
        &format!("# {}\n{}", "x".repeat(300_000), manifest("big", &[1], 1)),
    );
    let err = refused(cli(&coord, &["submit", &big]), "submit big.yaml");
    assert!(
        err.contains("big.yaml") && err.contains("the limit is 262144"),
        "{err}"
    );
    let err = refused(
        cli(&coord, &["submit", &big, "--max-manifest-kib", "1024"]),
        "submit big.yaml --max-manifest-kib 1024",
    );
    assert!(
        err.contains("big.yaml: the manifest is 30")
            && err.contains("accepts at most 262144")
            && err.contains("--max-manifest-kib"),
        "{err}"
    );

    // cancel, then resubmit-failed requeues what was cancelled.
    let file2 = write(root, "later.yaml", &manifest("later", &[2], 1));
    let id2 = sweep_id(&ok(cli(&coord, &["submit", &file2]), "submit later.yaml"));
    let out = ok(cli(&coord, &["cancel", &id2]), "cancel");
    assert_eq!(out.trim(), "cancelled 2 jobs");
    let one = ok(cli(&coord, &["status", &id2]), "status ID2");
    assert_eq!(states(&one), ["cancelled", "cancelled"], "{one}");
    let all = ok(cli(&coord, &["status"]), "status");
    assert!(
        all.lines()
            .any(|l| l.starts_with(&id2) && l.ends_with("(cancelled)")),
        "{all}"
    );
    let out = ok(cli(&coord, &["resubmit-failed", &id2]), "resubmit-failed");
    assert_eq!(out.trim(), "requeued 2 jobs");
    assert_eq!(
        json(&["cancel", &id2]),
        serde_json::json!({"sweep_id": id2, "cancelled": 2})
    );
    assert_eq!(
        json(&["resubmit-failed", &id2]),
        serde_json::json!({"sweep_id": id2, "requeued": 2})
    );
    let again = json(&["submit", &file2]);
    assert_eq!(
        again,
        serde_json::json!({"sweep_id": id2, "name": "later", "version": 1, "jobs": 2, "created": false})
    );
    let one = ok(cli(&coord, &["status", &id2]), "status ID2");
    assert_eq!(states(&one), ["pending", "pending"], "{one}");
    coord.stop();
}

#[test]
fn dataset_and_bench_verbs_run_as_a_user_types_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("disfa");
    let run = |args: &[&str]| {
        let o = Command::new(bin())
            .args(args)
            .env("OMP_NUM_THREADS", "1")
            .env("CUDA_VISIBLE_DEVICES", "")
            .output()
            .unwrap();
        let what = args.join(" ");
        ok(o, &what)
    };
    let synth = out.to_str().unwrap();
    run(&[
        "dataset",
        "synth",
        synth,
        "--subjects",
        "3",
        "--frames",
        "5",
        "--size",
        "32",
    ]);
    let stats = run(&["dataset", "stats", synth, synth]);
    assert!(
        stats.contains("3 subjects") || stats.contains("subjects: 3"),
        "{stats}"
    );
    assert!(stats.contains("15"), "{stats}");
    let loader = run(&[
        "bench",
        "loader",
        "--subjects",
        "3",
        "--frames",
        "8",
        "--size",
        "32",
        "--batch",
        "4",
    ]);
    assert!(loader.contains("images/s"), "{loader}");
    let train = run(&[
        "bench",
        "train",
        "--backbones",
        "mobilenet_v2",
        "--batch",
        "2",
        "--size",
        "32",
        "--steps",
        "1",
    ]);
    let row = train
        .lines()
        .find(|l| l.starts_with("mobilenet_v2"))
        .unwrap_or_else(|| panic!("{train}"));
    let ratio: f64 = row
        .split_whitespace()
        .last()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {row:?}"));
    assert!(ratio > 0.0, "{row}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definitions() {
    let run = |args: &[&str]| {
        ok(
            Command::new(bin()).args(args).output().unwrap(),
            &args.join(" "),
        )
    };
    for shell in ["bash", "zsh", "fish"] {
        let text = run(&["completions", shell]);
        for verb in [
            "submit",
            "status",
            "watch",
            "drain",
            "resubmit-failed",
            "output",
        ] {
            assert!(text.contains(verb), "{shell} completions lack {verb}");
        }
    }
    let man = run(&["man"]);
    assert!(
        man.contains(".TH ausweep 1") && man.contains("resubmit\\-failed"),
        "{man}"
    );
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    for page in ["ausweep.1", "ausweep-submit.1", "ausweep-watch.1"] {
        assert!(dir.path().join(page).is_file(), "no {page}");
    }
    let err = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("invalid value 'tcsh'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_gives_the_coordinators_verdict_on_every_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = start_coordinator(tmp.path(), LEASE_MS);
    let mut admin = coord.admin().await;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = ["experiments", "coordinator/testdata/manifests/bad"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "{files:?}");
    let (mut good, mut bad) = (0, 0);
    for f in &files {
        let name = f.to_str().unwrap();
        let plan = Command::new(bin())
            .args(["plan", name, "--output", "json"])
            .output()
            .unwrap();
        // The coordinator's own verdict, without the CLI's local check.
        let text = std::fs::read_to_string(f).unwrap();
        let answer = admin
            .submit(v1::SubmitRequest {
                manifest_yaml: text,
                file_name: name.into(),
            })
            .await;
        match answer {
            Ok(r) => {
                let r = r.into_inner();
                let out = ok(plan, &format!("plan {name}"));
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["sweep_id"], r.sweep_id.as_str(), "{name}");
                assert_eq!(
                    v["jobs"].as_array().map(Vec::len),
                    Some(r.jobs as usize),
                    "{name}"
                );
                good += 1;
            }
            Err(s) => {
                let err = refused(plan, &format!("plan {name}"));
                assert_eq!(
                    err.trim(),
                    format!("error: {}", s.message()),
                    "{name}: plan and the coordinator disagree"
                );
                bad += 1;
            }
        }
    }
    assert!(good >= 2 && bad >= 25, "{good} accepted, {bad} refused");
}

/// A CA, a server certificate for `localhost` and a client certificate it signed, and a client
/// certificate from another CA, as PEM files in `dir`.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |name: &str, issuer: &CertifiedIssuer<'static, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        (
            write(dir, &format!("{name}.pem"), &cert.pem()),
            write(dir, &format!("{name}.key"), &key.serialize_pem()),
        )
    };
    let (root, other) = (ca("lab CA"), ca("another CA"));
    Pki {
        ca: write(dir, "ca.pem", &root.pem()),
        server: leaf("server", &root),
        client: leaf("client", &root),
        stranger: leaf("stranger", &other),
    }
}

/// Every client command reaches a coordinator that requires mutual TLS, with the client
/// certificate as flags or environment; without one, or with one from another CA, the refusal is
/// one line that names the cause. Sweeps are named by their name as well as their id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long function: one scenario told in order: each refusal, then each command that gets through.
async fn every_client_command_speaks_mutual_tls_and_says_why_it_is_refused() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let p = pki(root);
    let mut coord = Coordinator {
        child: None,
        bin: bin().to_path_buf(),
        port: 0,
        data: root.join("coord"),
        log: root.join("coordinator.log"),
        lease_ms: LEASE_MS,
        env: vec![
            ("AUSWEEP_TLS_CERT".into(), p.server.0.clone()),
            ("AUSWEEP_TLS_KEY".into(), p.server.1.clone()),
            ("AUSWEEP_TLS_CLIENT_CA".into(), p.ca.clone()),
        ],
    };
    coord.spawn();
    let url = format!("https://localhost:{}", coord.port);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(bin())
            .args(args)
            .env("AUSWEEP_COORDINATOR", &url)
            .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
            .env("AUSWEEP_CA", &p.ca)
            .envs(env.iter().copied())
            .output()
            .expect("run ausweep")
    };
    let mine = [
        ("AUSWEEP_CLIENT_CERT", p.client.0.as_str()),
        ("AUSWEEP_CLIENT_KEY", p.client.1.as_str()),
    ];
    // No client certificate: one line, the cause and the flags that mend it.
    let err = refused(run(&["status"], &[]), "status without a client certificate");
    assert_eq!(
        err.trim(),
        format!(
            "error: connecting to {url}: the coordinator requires a client certificate (mutual \
             TLS): give --client-cert and --client-key (AUSWEEP_CLIENT_CERT, AUSWEEP_CLIENT_KEY)"
        )
    );
    let err = refused(
        run(
            &[
                "status",
                "--client-cert",
                &p.stranger.0,
                "--client-key",
                &p.stranger.1,
            ],
            &[],
        ),
        "status with another CA's certificate",
    );
    assert!(
        err.contains(&format!(
            "the coordinator refused the client certificate {}",
            p.stranger.0
        )) && err.trim().lines().count() == 1,
        "{err}"
    );
    // With it, as flags and as environment, every verb gets through.
    let file = write(root, "tls.yaml", &manifest("tls", &[1], 6));
    let out = ok(run(&["submit", &file], &mine), "submit over mutual TLS");
    let id = sweep_id(&out);
    ok(
        run(
            &[
                "status",
                "--client-cert",
                &p.client.0,
                "--client-key",
                &p.client.1,
            ],
            &[],
        ),
        "status with the certificate as flags",
    );
    // By name: the newest sweep of that name.
    let status = ok(run(&["status", "tls"], &mine), "status by name");
    assert_eq!(states(&status), ["pending", "pending"], "{status}");
    // Scripts get the id the name resolved to.
    let json = ok(
        run(&["status", "tls", "--output", "json"], &mine),
        "status by name, JSON",
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["sweep_id"], id.as_str(), "{json}");
    let report = ok(
        run(&["report", "tls", "--format", "json"], &mine),
        "report by name",
    );
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(json["sweep_id"], id.as_str(), "{report}");
    // predict SWEEP:BACKBONE reaches the coordinator (the sweep has no finished job yet).
    let err = refused(
        run(&["predict", "--model", "tls:mobilenet_v2", &file], &mine),
        "predict from a sweep",
    );
    assert!(
        err.contains("sweep tls has no finished job of backbone `mobilenet_v2`"),
        "{err}"
    );
    // An unknown name lists what there is.
    let err = refused(
        run(&["status", "paper"], &mine),
        "status of an unknown name",
    );
    assert!(
        err.contains(&format!(
            "no sweep `paper` by id, name or unique id prefix; sweeps: tls v1 ({id})"
        )),
        "{err}"
    );
    // A worker agent with the same variables registers over mutual TLS.
    let worker = Worker::start(
        bin(),
        &url,
        root,
        "tls-node",
        &[
            ("AUSWEEP_CA", p.ca.as_str()),
            ("AUSWEEP_CLIENT_CERT", p.client.0.as_str()),
            ("AUSWEEP_CLIENT_KEY", p.client.1.as_str()),
        ],
    );
    wait::until_blocking(
        "the worker to register over mutual TLS",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = run(&["workers"], &mine);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("tls-node") {
                Seen::Done(())
            } else {
                Seen::Not(format!("{text}{}", worker.log()))
            }
        },
    );
    let out = ok(
        run(&["cancel", "tls", "--output", "json"], &mine),
        "cancel by name",
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["sweep_id"], id.as_str(), "{json}");
    drop(worker);
    coord.kill();
}

/// A scheduler that dies (here: a panic in its lease expiry, armed by fault injection) stops the
/// coordinator with the cause and a non-zero exit, where it used to answer UNAVAILABLE forever;
/// a restart recovers every job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_scheduler_stops_the_coordinator_and_a_restart_recovers_every_job() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut coord = start_coordinator(&root.join("c"), LEASE_MS);
    let file = write(root, "dies.yaml", &manifest("dies", &[1, 2], 6));
    let id = sweep_id(&ok(cli(&coord, &["submit", &file]), "submit"));
    coord.stop();
    coord.env = vec![("AUSWEEP_FAULT_AT".into(), "scheduler-expiry-panic".into())];
    coord.spawn();
    let mut child = coord.child.take().expect("the coordinator runs");
    let log = coord.log.clone();
    let status = wait::until_blocking(
        "the coordinator to exit once its scheduler died",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            exit_seen(&mut child, || {
                std::fs::read_to_string(&log).unwrap_or_default()
            })
        },
    );
    assert_eq!(status.code(), Some(1), "{}", coord.log());
    let text = coord.log();
    assert!(
        text.contains(
            "ausweep coordinator: exiting: the scheduler stopped: the scheduler loop \
                       panicked: fault injection: panic at scheduler-expiry-panic"
        ),
        "{text}"
    );
    coord.env.clear();
    coord.spawn();
    // A restart reuses the port: wait until the coordinator answers there.
    coord.admin().await;
    let status = ok(cli(&coord, &["status", &id]), "status after the restart");
    assert_eq!(states(&status), ["pending"; 4], "{status}");
}
