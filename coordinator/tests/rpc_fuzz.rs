//! Property test: random bytes and random well-formed protobuf (known fields with random values,
//! unknown fields, nested garbage) sent to every RPC of the coordinator, with and without valid
//! admin, join and session credentials, over a real loopback connection to a sled-backed
//! coordinator. The coordinator must never panic (a hook records panics on its runtime's
//! threads) and never corrupt its store: a sweep settled before the fuzzing reads back the same
//! afterwards, and again after a shutdown and a restart on the same data directory.
//!
//! Env: AUSWEEP_RPC_FUZZ_CASES (default 1000), AUSWEEP_RPC_FUZZ_SEED (default fixed).

use ausweep_coordinator::client;
use ausweep_coordinator::{serve, Config};
use ausweep_proto::v1;
use bytes::{Buf, BufMut};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};
use prost::encoding::{encode_key, encode_varint, WireType};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, MetadataKey};
use tonic::transport::Channel;
use tonic::{Request, Status};

const ADMIN: &str = "fuzz-admin-token-0123456789";
const JOIN: &str = "fuzz-join-token-0123456789";
const SERVER_THREAD: &str = "coordinator-under-fuzz";

/// Every RPC of ausweep.v1: path and shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Unary,
    ClientStream,
    ServerStream,
}

const RPCS: [(&str, Shape); 18] = [
    ("/ausweep.v1.Admin/Submit", Shape::Unary),
    ("/ausweep.v1.Admin/ListSweeps", Shape::Unary),
    ("/ausweep.v1.Admin/GetSweep", Shape::Unary),
    ("/ausweep.v1.Admin/Cancel", Shape::Unary),
    ("/ausweep.v1.Admin/ResubmitFailed", Shape::Unary),
    ("/ausweep.v1.Admin/Watch", Shape::ServerStream),
    ("/ausweep.v1.Admin/ListWorkers", Shape::Unary),
    ("/ausweep.v1.Admin/DrainWorker", Shape::Unary),
    ("/ausweep.v1.Admin/DownloadCheckpoint", Shape::ServerStream),
    ("/ausweep.v1.Worker/Register", Shape::Unary),
    ("/ausweep.v1.Worker/Heartbeat", Shape::Unary),
    ("/ausweep.v1.Worker/Lease", Shape::Unary),
    ("/ausweep.v1.Worker/ReportProgress", Shape::Unary),
    ("/ausweep.v1.Worker/Complete", Shape::Unary),
    ("/ausweep.v1.Worker/Fail", Shape::Unary),
    ("/ausweep.v1.Worker/UploadCheckpoint", Shape::ClientStream),
    ("/ausweep.v1.Worker/DownloadCheckpoint", Shape::ServerStream),
    ("/ausweep.v1.Worker/ReportDeviceStats", Shape::Unary),
];

/// A codec that sends and receives message bodies as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

/// One protobuf field with a random value; `Nested` is a length-delimited sub-message.
#[derive(Debug, Clone)]
enum Field {
    Varint(u32, u64),
    Len(u32, Vec<u8>),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Nested(u32, Vec<Field>),
}

fn encode(fields: &[Field], buf: &mut Vec<u8>) {
    for f in fields {
        match f {
            Field::Varint(n, v) => {
                encode_key(*n, WireType::Varint, buf);
                encode_varint(*v, buf);
            }
            Field::Len(n, b) => {
                encode_key(*n, WireType::LengthDelimited, buf);
                encode_varint(b.len() as u64, buf);
                buf.extend_from_slice(b);
            }
            Field::Fixed64(n, v) => {
                encode_key(*n, WireType::SixtyFourBit, buf);
                buf.put_u64_le(*v);
            }
            Field::Fixed32(n, v) => {
                encode_key(*n, WireType::ThirtyTwoBit, buf);
                buf.put_u32_le(*v);
            }
            Field::Nested(n, inner) => {
                let mut b = Vec::new();
                encode(inner, &mut b);
                encode_key(*n, WireType::LengthDelimited, buf);
                encode_varint(b.len() as u64, buf);
                buf.extend_from_slice(&b);
            }
        }
    }
}

/// How a call authenticates.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Admin,
    Join,
    Session,
    /// The session token under another worker id.
    SessionWrongWorker(String),
    /// Arbitrary header values (skipped where not valid ASCII metadata).
    Garbage {
        bearer: String,
        worker: String,
        protocol: String,
    },
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Proto(Vec<Field>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Bytes(b) => b.clone(),
            Body::Proto(f) => {
                let mut b = Vec::new();
                encode(f, &mut b);
                b
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    rpc: usize,
    auth: Auth,
    /// One message; client streams send all of them.
    bodies: Vec<Body>,
}

fn field_strategy(pool: Vec<Vec<u8>>) -> impl Strategy<Value = Field> {
    let num = prop_oneof![
        8 => 1u32..=8,
        1 => 9u32..=4096,
        1 => Just((1u32 << 29) - 1),
    ];
    let value = prop_oneof![
        3 => (num.clone(), prop::sample::select(pool)).prop_map(|(n, s)| Field::Len(n, s)),
        2 => (num.clone(), prop_oneof![any::<u64>(), 0u64..64, Just(u64::MAX)])
            .prop_map(|(n, v)| Field::Varint(n, v)),
        1 => (num.clone(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(n, b)| Field::Len(n, b)),
        1 => (num.clone(), any::<u64>()).prop_map(|(n, v)| Field::Fixed64(n, v)),
        1 => (num.clone(), any::<u32>()).prop_map(|(n, v)| Field::Fixed32(n, v)),
    ];
    value.prop_recursive(3, 24, 6, move |inner| {
        (1u32..=8, prop::collection::vec(inner, 0..6)).prop_map(|(n, f)| Field::Nested(n, f))
    })
}

fn case_strategy(pool: Vec<Vec<u8>>) -> impl Strategy<Value = Case> {
    let text = "[ -~]{0,40}";
    let auth = prop_oneof![
        1 => Just(Auth::None),
        3 => Just(Auth::Admin),
        2 => Just(Auth::Join),
        4 => Just(Auth::Session),
        1 => "[a-z0-9._-]{0,20}".prop_map(Auth::SessionWrongWorker),
        1 => (text, text, prop_oneof![Just("1".to_string()), "[0-9]{0,12}".prop_map(String::from), "[ -~]{0,8}".prop_map(String::from)])
            .prop_map(|(bearer, worker, protocol)| Auth::Garbage { bearer, worker, protocol }),
    ];
    let body = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        3 => prop::collection::vec(field_strategy(pool), 0..8).prop_map(Body::Proto),
    ];
    (0..RPCS.len(), auth, prop::collection::vec(body, 1..5)).prop_map(|(rpc, auth, bodies)| Case {
        rpc,
        auth,
        bodies,
    })
}

/// Credentials the fuzzer may present.
struct Creds {
    worker_id: String,
    session: String,
}

fn meta(req: &mut tonic::metadata::MetadataMap, auth: &Auth, c: &Creds) {
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = AsciiMetadataValue::try_from(v) {
            req.insert(MetadataKey::from_static(k), v);
        }
    };
    let proto = || "1".to_string();
    match auth {
        Auth::None => {}
        Auth::Admin => put("authorization", format!("Bearer {ADMIN}")),
        Auth::Join => {
            put("authorization", format!("Bearer {JOIN}"));
            put("x-ausweep-protocol", proto());
        }
        Auth::Session => {
            put("authorization", format!("Bearer {}", c.session));
            put("x-ausweep-worker", c.worker_id.clone());
            put("x-ausweep-protocol", proto());
        }
        Auth::SessionWrongWorker(w) => {
            put("authorization", format!("Bearer {}", c.session));
            put("x-ausweep-worker", w.clone());
            put("x-ausweep-protocol", proto());
        }
        Auth::Garbage {
            bearer,
            worker,
            protocol,
        } => {
            put("authorization", bearer.clone());
            put("x-ausweep-worker", worker.clone());
            put("x-ausweep-protocol", protocol.clone());
        }
    }
}

/// Sends one case; the answer does not matter, only that the coordinator survives it.
async fn send(ch: &Channel, case: &Case, creds: &Creds) {
    let (path, shape) = RPCS[case.rpc];
    let mut g = tonic::client::Grpc::new(ch.clone()).max_decoding_message_size(64 << 20);
    let limit = Duration::from_secs(5);
    let Ok(Ok(())) = tokio::time::timeout(limit, g.ready()).await else {
        return;
    };
    let path = http::uri::PathAndQuery::from_static(path);
    match shape {
        Shape::Unary => {
            let mut req = Request::new(case.bodies[0].bytes());
            meta(req.metadata_mut(), &case.auth, creds);
            let _ = tokio::time::timeout(limit, g.unary(req, path, Raw)).await;
        }
        Shape::ClientStream => {
            let msgs: Vec<Vec<u8>> = case.bodies.iter().map(Body::bytes).collect();
            let mut req = Request::new(tokio_stream::iter(msgs));
            meta(req.metadata_mut(), &case.auth, creds);
            let _ = tokio::time::timeout(limit, g.client_streaming(req, path, Raw)).await;
        }
        Shape::ServerStream => {
            let mut req = Request::new(case.bodies[0].bytes());
            meta(req.metadata_mut(), &case.auth, creds);
            if let Ok(Ok(resp)) =
                tokio::time::timeout(limit, g.server_streaming(req, path, Raw)).await
            {
                // Watch streams until cancelled: read what comes at once, then hang up.
                let mut s = resp.into_inner();
                for _ in 0..64 {
                    match tokio::time::timeout(Duration::from_millis(20), s.message()).await {
                        Ok(Ok(Some(_))) => {}
                        _ => break,
                    }
                }
            }
        }
    }
}

fn panics() -> &'static Mutex<Vec<String>> {
    static P: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// Records panics on the coordinator's runtime threads (they would otherwise only drop a
/// connection), then runs the default hook.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if thread.name() == Some(SERVER_THREAD) {
            let bt = std::backtrace::Backtrace::force_capture();
            if let Ok(mut p) = panics().lock() {
                p.push(format!("{info}\n{bt}"));
            }
        }
        default(info);
    }));
}

fn manifest(name: &str) -> String {
    format!(
        "name: {name}\ndataset:\n  source: {{kind: synthetic, subjects: 9, frames: 20}}\n  folds: !kfold {{k: 3}}\n  input_size: 32\n\
         backbones: [mobilenet_v2, mobilenet_v1]\n\
         stages:\n  - {{freeze: backbone, optimizer: {{lr: 0.001}}, epochs: 1}}\n  - {{freeze: none, optimizer: {{lr: 0.0001}}, epochs: 1}}\n\
         batch_size: 4\nresources: {{device: cpu}}\n"
    )
}

async fn register(ch: &Channel, name: &str) -> (client::Worker, Creds) {
    let mut w = client::worker(ch.clone(), None, JOIN).expect("join client");
    let r = w
        .register(v1::RegisterRequest {
            worker_name: name.into(),
            hostname: "fuzz".into(),
            devices: vec![v1::Device {
                index: 0,
                kind: v1::DeviceKind::Cpu as i32,
                memory_mib: 0,
                name: "cpu".into(),
                healthy: true,
            }],
        })
        .await
        .expect("register")
        .into_inner();
    let w = client::worker(ch.clone(), Some(&r.worker_id), &r.session_token).expect("session");
    (
        w,
        Creds {
            worker_id: r.worker_id,
            session: r.session_token,
        },
    )
}

/// A sweep's state that must not change: summary and every job, without the notice.
fn settled(s: &v1::SweepStatus) -> (Option<v1::SweepSummary>, Vec<v1::JobStatus>, String) {
    (s.summary.clone(), s.jobs.clone(), s.manifest_json.clone())
}

async fn sweep(admin: &mut client::Admin, id: &str) -> v1::SweepStatus {
    admin
        .get_sweep(v1::GetSweepRequest {
            sweep_id: id.into(),
        })
        .await
        .expect("get sweep")
        .into_inner()
}

#[test]
fn random_calls_to_every_rpc_never_crash_or_corrupt_the_coordinator() {
    install_panic_hook();
    let cases: u32 = std::env::var("AUSWEEP_RPC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("AUSWEEP_RPC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0007);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |rt: &tokio::runtime::Runtime| {
        rt.block_on(serve(Config::local(
            ADMIN,
            JOIN,
            Some(dir.path().to_path_buf()),
        )))
        .expect("serve")
    };
    let h = start(&server_rt);
    let url = format!("http://{}", h.addr);

    // Before: sweep A settled (one job succeeded with a stored checkpoint, the rest
    // cancelled), sweep B open for the fuzzer to lease from.
    let (a_id, a_before, b_id, b_jobs, creds, blob_sha, ch) = rt.block_on(async {
        let ch = client::connect(&url, None).await.expect("connect");
        let mut admin = client::admin(ch.clone(), ADMIN).expect("admin");
        let a = admin
            .submit(v1::SubmitRequest {
                manifest_yaml: manifest("protected"),
                file_name: "protected.yaml".into(),
            })
            .await
            .expect("submit A")
            .into_inner();
        let (mut keeper, _) = register(&ch, "keeper").await;
        let lease = keeper
            .lease(v1::LeaseRequest { device_index: 0 })
            .await
            .expect("lease")
            .into_inner()
            .assignment
            .expect("a job of A");
        let data = b"checkpoint bytes".to_vec();
        let sha = hex::encode(Sha256::digest(&data));
        let chunks = vec![
            v1::CheckpointChunk {
                part: Some(v1::checkpoint_chunk::Part::Header(v1::CheckpointHeader {
                    job_id: lease.job_id.clone(),
                    fencing_token: lease.fencing_token,
                    sha256: sha.clone(),
                    size: data.len() as u64,
                    epoch: 1,
                    ..Default::default()
                })),
            },
            v1::CheckpointChunk {
                part: Some(v1::checkpoint_chunk::Part::Data(data)),
            },
        ];
        keeper
            .upload_checkpoint(tokio_stream::iter(chunks))
            .await
            .expect("upload");
        let done = keeper
            .complete(v1::CompleteRequest {
                job_id: lease.job_id.clone(),
                fencing_token: lease.fencing_token,
                result: Some(v1::JobResult {
                    avg_f1: 0.5,
                    checkpoint_sha256: sha.clone(),
                    ..Default::default()
                }),
            })
            .await
            .expect("complete")
            .into_inner();
        assert!(done.accepted);
        admin
            .cancel(v1::CancelRequest {
                sweep_id: a.sweep_id.clone(),
            })
            .await
            .expect("cancel A");
        let before = sweep(&mut admin, &a.sweep_id).await;
        let s = before.summary.clone().expect("summary");
        assert_eq!((s.succeeded, s.cancelled_jobs + 1), (1, s.total));
        let b = admin
            .submit(v1::SubmitRequest {
                manifest_yaml: manifest("target"),
                file_name: "target.yaml".into(),
            })
            .await
            .expect("submit B")
            .into_inner();
        let b_jobs: Vec<String> = sweep(&mut admin, &b.sweep_id)
            .await
            .jobs
            .into_iter()
            .map(|j| j.job_id)
            .collect();
        let (_, creds) = register(&ch, "fuzz-worker").await;
        (a.sweep_id, before, b.sweep_id, b_jobs, creds, sha, ch)
    });

    // Strings worth trying in any field: ids the coordinator knows, near misses, hostile names.
    let mut pool: Vec<Vec<u8>> = vec![
        Vec::new(),
        b_id.clone().into_bytes(),
        creds.worker_id.clone().into_bytes(),
        blob_sha.clone().into_bytes(),
        "0".repeat(64).into_bytes(),
        b"../../../etc/passwd".to_vec(),
        "x".repeat(5000).into_bytes(),
        vec![0xff, 0xfe, 0x00],
        manifest("fuzzed").into_bytes(),
        manifest("target").into_bytes(),
        b"name: [\n".to_vec(),
        "\u{1F600}\u{0}".as_bytes().to_vec(),
        br#"{"backbone":"vgg19"}"#.to_vec(),
        b"keeper".to_vec(),
    ];
    pool.extend(b_jobs.iter().map(|j| j.clone().into_bytes()));
    pool.push(blob_sha.as_bytes()[..63].to_vec());

    let mut runner = TestRunner::new_with_rng(
        PtConfig {
            cases,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..PtConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &{
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s
        }),
    );
    let sent = Arc::new(Mutex::new([0u32; RPCS.len()]));
    let t0 = Instant::now();
    let result = runner.run(&case_strategy(pool), |case| {
        rt.block_on(send(&ch, &case, &creds));
        if let Ok(mut s) = sent.lock() {
            s[case.rpc] += 1;
        }
        let p = panics().lock().map(|p| p.clone()).unwrap_or_default();
        prop_assert!(
            p.is_empty(),
            "the coordinator panicked on {case:?}:\n{}",
            p.join("\n")
        );
        Ok(())
    });
    let took = t0.elapsed();
    let sent = *sent.lock().expect("counts");
    println!(
        "rpc_fuzz: {cases} cases in {:.1}s; per RPC: {:?}",
        took.as_secs_f64(),
        RPCS.iter()
            .map(|r| r.0.rsplit('/').next().unwrap_or(""))
            .zip(sent)
            .collect::<Vec<_>>()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        sent.iter().all(|&n| n > 0),
        "every RPC was called: {sent:?}"
    );

    // After: the coordinator still answers, A is unchanged, B is readable.
    let b_after = rt.block_on(async {
        let mut admin = client::admin(ch.clone(), ADMIN).expect("admin");
        let a_after = sweep(&mut admin, &a_id).await;
        assert_eq!(settled(&a_after), settled(&a_before), "sweep A changed");
        let list = admin
            .list_sweeps(v1::ListSweepsRequest {})
            .await
            .expect("list")
            .into_inner();
        assert!(list.sweeps.iter().any(|s| s.sweep_id == a_id));
        sweep(&mut admin, &b_id).await
    });
    drop(ch);
    // Let the client runtime close its connections, so the graceful shutdown need not wait.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    server_rt.block_on(h.shutdown());

    // Restart on the same directory: the store opens and holds both sweeps.
    let h = start(&server_rt);
    let url = format!("http://{}", h.addr);
    rt.block_on(async {
        let ch = client::connect(&url, None).await.expect("connect");
        let mut admin = client::admin(ch.clone(), ADMIN).expect("admin");
        let a_restarted = sweep(&mut admin, &a_id).await;
        assert_eq!(
            settled(&a_restarted),
            settled(&a_before),
            "sweep A changed by restart"
        );
        let b_restarted = sweep(&mut admin, &b_id).await;
        let ids = |s: &v1::SweepStatus| s.jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&b_restarted), ids(&b_after));
        assert_eq!(
            b_restarted.summary.map(|s| s.total),
            b_after.summary.map(|s| s.total)
        );
        // The checkpoint A's result names is still there, intact.
        let (mut w, _) = register(&ch, "after-restart").await;
        let mut s = w
            .download_checkpoint(v1::DownloadRequest {
                sha256: blob_sha.clone(),
            })
            .await
            .expect("download")
            .into_inner();
        let mut data = Vec::new();
        while let Some(c) = s.message().await.expect("chunk") {
            if let Some(v1::checkpoint_chunk::Part::Data(d)) = c.part {
                data.extend(d);
            }
        }
        assert_eq!(hex::encode(Sha256::digest(&data)), blob_sha);
    });
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    server_rt.block_on(h.shutdown());
    let p = panics().lock().map(|p| p.clone()).unwrap_or_default();
    assert!(p.is_empty(), "the coordinator panicked:\n{}", p.join("\n"));
}
