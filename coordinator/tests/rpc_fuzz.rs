// Long file: one property-test harness that drives every RPC in random orders, with the model of
// the state it expects.
//! Property test: random bytes and random well-formed protobuf (known fields with random values,
//! unknown fields, nested garbage) sent to every RPC of the coordinator, with and without valid
//! admin, join and session credentials, over a real loopback connection to a sled-backed
//! coordinator. The coordinator must never panic (a hook records panics on its runtime's
//! threads), never hang, and never corrupt its store: a sweep settled before the fuzzing reads
//! back the same afterwards, and again after a shutdown and a restart on the same data directory.
//!
//! Every generated call is accounted for as one of: *answered* (the coordinator sent a gRPC
//! status, OK or not), *unanswered* (the channel was not ready, the connection or the stream
//! broke, or the response carried no gRPC status), or *hung* (no answer within
//! [`CALL_DEADLINE`]). One hang fails the test at once, naming the RPC and the case. At least
//! [`MIN_ANSWERED`] of the calls must be answered, every RPC at least once, and at least
//! [`MIN_HANDLED`] must get past the decoder and the credentials checks. The whole test runs
//! under a deadline that names the step it was in.
//!
//! Env: AUSWEEP_RPC_FUZZ_CASES (default 1000; below a few hundred an RPC may go uncalled, which
//! fails), AUSWEEP_RPC_FUZZ_SEED (default fixed).

use ausweep_proto::v1;
use ausweep_testkit::rpc::{self, InProcess, Registered, Upload};
use ausweep_testkit::{ADMIN, JOIN};
use bytes::{Buf, BufMut};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};
use prost::encoding::{encode_key, encode_varint, WireType};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, MetadataKey};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const SERVER_THREAD: &str = "coordinator-under-fuzz";
/// How long one fuzz call may take (channel ready, request sent, answer received, and for
/// `DownloadCheckpoint` the whole stream) before it counts as a hang. A call takes milliseconds.
/// No `grpc-timeout` is sent: the server would answer a hung handler with its own
/// DEADLINE_EXCEEDED, and the hang would pass for an answer.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// How long one setup or check step (a start, a restart, an RPC made by hand) may take.
const STEP_DEADLINE: Duration = Duration::from_secs(60);
/// The least share of the generated calls that must get a gRPC answer from the coordinator.
const MIN_ANSWERED: f64 = 0.99;
/// The least share of the generated calls that must reach an RPC's own checks: 19-24% do over
/// seeds (the rest are refused as undecodable or for their credentials); with every credential
/// of the fuzzer stale, 9% still would (protocol-header checks).
const MIN_HANDLED: f64 = 0.15;

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

/// Puts `auth`'s metadata on a call; `c` is the fuzzer's own registered worker.
fn meta(req: &mut tonic::metadata::MetadataMap, auth: &Auth, c: &Registered) {
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

/// What became of one call.
#[derive(Debug)]
enum Outcome {
    /// The coordinator answered with this status (OK included); `true` when it refused a body
    /// that does not decode (before any handler ran).
    Answered(Code, bool),
    /// No gRPC answer: the channel, the connection or the stream failed, or the response
    /// carried no status; why.
    Unanswered(String),
    /// No answer within [`CALL_DEADLINE`]; what the call was waiting for.
    Hung(&'static str),
}

/// Statuses tonic's client makes up when the response breaks the gRPC protocol: no
/// `grpc-status` at the end of the stream (also what a stream reset with NO_ERROR or CANCEL
/// looks like), an HTTP error status, a missing or truncated message.
const CLIENT_MADE: [&str; 4] = [
    "protocol error:",
    "grpc-status header missing",
    "Missing response message",
    "Unexpected EOF decoding stream",
];

/// Whether a failed call's status came from the coordinator (the `grpc-status` of an HTTP
/// response it sent) rather than from the client: tonic keeps a transport error as the status'
/// source, a status parsed from a response carries the response's headers, and the statuses
/// tonic infers from a response without one have the messages in [`CLIENT_MADE`].
fn from_server(s: &Status) -> bool {
    std::error::Error::source(s).is_none()
        && s.metadata().get("content-type").is_some()
        && !CLIENT_MADE.iter().any(|m| s.message().starts_with(m))
}

fn outcome(s: Status) -> Outcome {
    if from_server(&s) {
        let undecodable =
            s.code() == Code::Internal && s.message().starts_with("failed to decode Protobuf");
        Outcome::Answered(s.code(), undecodable)
    } else {
        Outcome::Unanswered(format!("{:?}: {}", s.code(), s.message()))
    }
}

fn answered<T>(r: Result<T, Status>) -> Outcome {
    match r {
        Ok(_) => Outcome::Answered(Code::Ok, false),
        Err(s) => outcome(s),
    }
}

/// Sends one case under [`CALL_DEADLINE`] and says what became of it.
async fn send(ch: &Channel, case: &Case, me: &Registered) -> Outcome {
    let (path, shape) = RPCS[case.rpc];
    let mut g = tonic::client::Grpc::new(ch.clone()).max_decoding_message_size(64 << 20);
    match tokio::time::timeout(CALL_DEADLINE, g.ready()).await {
        Err(_) => return Outcome::Hung("the channel to become ready"),
        Ok(Err(e)) => return Outcome::Unanswered(format!("channel not ready: {e}")),
        Ok(Ok(())) => {}
    }
    let path = http::uri::PathAndQuery::from_static(path);
    let stage = Cell::new("the answer");
    let call = async {
        match shape {
            Shape::Unary => {
                let mut req = Request::new(case.bodies[0].bytes());
                meta(req.metadata_mut(), &case.auth, me);
                answered(g.unary(req, path, Raw).await)
            }
            Shape::ClientStream => {
                let msgs: Vec<Vec<u8>> = case.bodies.iter().map(Body::bytes).collect();
                let mut req = Request::new(tokio_stream::iter(msgs));
                meta(req.metadata_mut(), &case.auth, me);
                answered(g.client_streaming(req, path, Raw).await)
            }
            Shape::ServerStream => {
                let watch = RPCS[case.rpc].0.ends_with("/Watch");
                let mut req = Request::new(case.bodies[0].bytes());
                meta(req.metadata_mut(), &case.auth, me);
                let mut s = match g.server_streaming(req, path, Raw).await {
                    Ok(resp) => resp.into_inner(),
                    Err(st) => return outcome(st),
                };
                if watch {
                    // Watch streams until cancelled: read what comes at once, then hang up.
                    for _ in 0..64 {
                        match tokio::time::timeout(Duration::from_millis(20), s.message()).await {
                            Ok(Ok(Some(_))) => {}
                            Ok(Err(st)) => return outcome(st),
                            Ok(Ok(None)) | Err(_) => break,
                        }
                    }
                    Outcome::Answered(Code::Ok, false)
                } else {
                    // A download ends: read it to its end (or its error status).
                    stage.set("the end of the stream");
                    loop {
                        match s.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => return Outcome::Answered(Code::Ok, false),
                            Err(st) => return outcome(st),
                        }
                    }
                }
            }
        }
    };
    let out = tokio::time::timeout(CALL_DEADLINE, call).await;
    out.unwrap_or_else(|_| Outcome::Hung(stage.get()))
}

/// The calls made to one RPC and what became of them.
#[derive(Debug, Default, Clone)]
struct Tally {
    sent: u32,
    /// Answers by status code (`Internal (undecodable)`: the body did not decode).
    codes: BTreeMap<String, u32>,
    unanswered: u32,
}

impl Tally {
    fn answered(&self) -> u32 {
        self.codes.values().sum()
    }

    /// Answers other than a refused body (it did not decode) or refused credentials
    /// (Unauthenticated, PermissionDenied): the call reached the RPC's own checks.
    fn handled(&self) -> u32 {
        self.codes
            .iter()
            .filter(|(c, _)| {
                !matches!(
                    c.as_str(),
                    "Unauthenticated" | "PermissionDenied" | "Internal (undecodable)"
                )
            })
            .map(|(_, n)| n)
            .sum()
    }
}

/// Every call the fuzzing made.
struct Account {
    per_rpc: Vec<Tally>,
    /// The first few calls without a gRPC answer: RPC, call number, why.
    unanswered_examples: Vec<String>,
    /// The first hang: RPC, call, what it waited for, the case.
    hung: Option<String>,
}

impl Account {
    fn new() -> Self {
        Account {
            per_rpc: vec![Tally::default(); RPCS.len()],
            unanswered_examples: Vec::new(),
            hung: None,
        }
    }

    fn sent(&self) -> u32 {
        self.per_rpc.iter().map(|t| t.sent).sum()
    }

    fn answered(&self) -> u32 {
        self.per_rpc.iter().map(Tally::answered).sum()
    }

    fn unanswered(&self) -> u32 {
        self.per_rpc.iter().map(|t| t.unanswered).sum()
    }

    fn record(&mut self, call: u32, case: &Case, out: Outcome) {
        let path = RPCS[case.rpc].0;
        let t = &mut self.per_rpc[case.rpc];
        t.sent += 1;
        match out {
            Outcome::Answered(c, undecodable) => {
                let key = if undecodable {
                    format!("{c:?} (undecodable)")
                } else {
                    format!("{c:?}")
                };
                *t.codes.entry(key).or_default() += 1;
            }
            Outcome::Unanswered(why) => {
                t.unanswered += 1;
                if self.unanswered_examples.len() < 5 {
                    self.unanswered_examples
                        .push(format!("{path} (call {call}): {why}"));
                }
            }
            Outcome::Hung(waiting) => {
                if self.hung.is_none() {
                    self.hung = Some(format!(
                        "{path} (call {call}) got no answer within {CALL_DEADLINE:?}, waiting for \
                         {waiting}; the case: {}",
                        brief(case)
                    ));
                }
            }
        }
    }

    fn report(&self) -> String {
        let mut s = format!(
            "{} calls generated: {} answered by the coordinator ({:.1}%), {} without a gRPC answer, \
             {} hung\n",
            self.sent(),
            self.answered(),
            100.0 * f64::from(self.answered()) / f64::from(self.sent().max(1)),
            self.unanswered(),
            u32::from(self.hung.is_some()),
        );
        for ((path, _), t) in RPCS.iter().zip(&self.per_rpc) {
            s += &format!(
                "  {path}: {} sent, {} answered ({} by its handler; {:?}), {} unanswered\n",
                t.sent,
                t.answered(),
                t.handled(),
                t.codes,
                t.unanswered
            );
        }
        for e in &self.unanswered_examples {
            s += &format!("  unanswered: {e}\n");
        }
        s
    }
}

/// A case's description, shortened (pool strings run to kilobytes).
fn brief(case: &Case) -> String {
    let s = format!("{case:?}");
    match s.char_indices().nth(1500) {
        Some((i, _)) => format!("{}… ({} chars)", &s[..i], s.len()),
        None => s,
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

/// What the test is doing now, for the whole-test deadline's message.
fn phase() -> &'static Mutex<String> {
    static P: OnceLock<Mutex<String>> = OnceLock::new();
    P.get_or_init(Default::default)
}

fn set_phase(what: impl Into<String>) {
    if let Ok(mut p) = phase().lock() {
        *p = what.into();
    }
}

/// Runs one setup or check step under [`STEP_DEADLINE`]; a step that does not finish fails the
/// test naming it.
fn step<T>(rt: &tokio::runtime::Runtime, what: &str, fut: impl Future<Output = T>) -> T {
    set_phase(what);
    rt.block_on(async { tokio::time::timeout(STEP_DEADLINE, fut).await })
        .unwrap_or_else(|_| {
            panic!("{what}: not done within {STEP_DEADLINE:?} (the coordinator hung?)")
        })
}

fn manifest(name: &str) -> String {
    format!(
        "name: {name}\ndataset:\n  source: {{kind: synthetic, subjects: 9, frames: 20}}\n  folds: !kfold {{k: 3}}\n  input_size: 32\n\
         backbones: [mobilenet_v2, mobilenet_v1]\n\
         stages:\n  - {{freeze: backbone, optimizer: {{lr: 0.001}}, epochs: 1}}\n  - {{freeze: none, optimizer: {{lr: 0.0001}}, epochs: 1}}\n\
         batch_size: 4\nresources: {{device: cpu}}\n"
    )
}

/// A sweep's state that must not change: summary and every job, without the notice.
fn settled(s: &v1::SweepStatus) -> (Option<v1::SweepSummary>, Vec<v1::JobStatus>, String) {
    (s.summary.clone(), s.jobs.clone(), s.manifest_json.clone())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_calls_to_every_rpc_never_crash_hang_or_corrupt_the_coordinator() {
    let cases: u32 = env_or("AUSWEEP_RPC_FUZZ_CASES", 1000);
    let seed: u64 = env_or("AUSWEEP_RPC_FUZZ_SEED", 0x5eed_0007);
    // Calls take milliseconds; a hung one fails after CALL_DEADLINE. This bounds everything
    // else (a stuck start, restart or shutdown, a loop that stops making progress).
    let limit = Duration::from_secs(120) + Duration::from_millis(100) * cases;
    let (done_tx, done) = std::sync::mpsc::channel();
    let body = std::thread::Builder::new()
        .name("rpc-fuzz".into())
        .spawn(move || {
            fuzz(cases, seed);
            let _ = done_tx.send(());
        })
        .expect("spawn the test body");
    match done.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            if let Err(p) = body.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(RecvTimeoutError::Timeout) => panic!(
            "rpc_fuzz did not finish within {limit:?}; it was at: {}",
            phase().lock().map(|p| p.clone()).unwrap_or_default()
        ),
    }
}

// Long function: the fuzz step: one match arm per RPC with the state it must leave.
fn fuzz(cases: u32, seed: u64) {
    install_panic_hook();
    // Server and client tasks run on this runtime's named threads; the test body drives the
    // calls from its own thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ip = step(
        &rt,
        "starting the coordinator",
        InProcess::start(rpc::config(Some(dir.path()))),
    );

    // Before: sweep A settled (one job succeeded with a stored checkpoint, the rest
    // cancelled), sweep B open for the fuzzer to lease from.
    let a_id = step(&rt, "submitting sweep A", ip.submit(&manifest("protected")));
    let mut keeper = step(
        &rt,
        "registering the keeper",
        rpc::register(&ip.ch, "keeper"),
    );
    let job = step(&rt, "leasing a job of A", rpc::lease(&mut keeper));
    let data = b"checkpoint bytes".to_vec();
    let blob_sha = step(
        &rt,
        "uploading A's checkpoint",
        rpc::upload(&mut keeper, &job, &data, Upload::default()),
    )
    .unwrap_or_else(|s| panic!("upload refused: {s:?}"));
    step(
        &rt,
        "completing A's job",
        rpc::complete(&mut keeper, &job, rpc::result(&blob_sha, &[], 0.5)),
    );
    step(
        &rt,
        "cancelling A",
        ip.admin.cancel(v1::CancelRequest {
            sweep_id: a_id.clone(),
        }),
    )
    .unwrap_or_else(|s| panic!("cancel A: {s:?}"));
    let a_before = step(&rt, "reading A", rpc::sweep(&mut ip.admin, &a_id));
    let s = a_before.summary.clone().expect("summary");
    assert_eq!(
        (s.succeeded, s.cancelled_jobs + 1),
        (1, s.total),
        "A settled"
    );
    let b_id = step(&rt, "submitting sweep B", ip.submit(&manifest("target")));
    let b_jobs: Vec<String> = step(&rt, "reading B", rpc::sweep(&mut ip.admin, &b_id))
        .jobs
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    let me = step(
        &rt,
        "registering the fuzzing worker",
        rpc::register_with(&ip.ch, "fuzz-worker", vec![rpc::cpu()]),
    );

    // Strings worth trying in any field: ids the coordinator knows, near misses, hostile names.
    let mut pool: Vec<Vec<u8>> = vec![
        Vec::new(),
        b_id.clone().into_bytes(),
        me.worker_id.clone().into_bytes(),
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
    let acct = RefCell::new(Account::new());
    let t0 = Instant::now();
    let result = runner.run(&case_strategy(pool), |case| {
        // After a hang every call would wait out its deadline: skip the rest (shrinking
        // included) and fail below with the hang.
        if acct.borrow().hung.is_some() {
            return Ok(());
        }
        let call = acct.borrow().sent();
        set_phase(format!("fuzz call {call} of {cases}: {}", RPCS[case.rpc].0));
        let out = rt.block_on(send(&ip.ch, &case, &me));
        acct.borrow_mut().record(call, &case, out);
        let p = panics().lock().map(|p| p.clone()).unwrap_or_default();
        prop_assert!(
            p.is_empty(),
            "the coordinator panicked on {}:\n{}",
            brief(&case),
            p.join("\n")
        );
        Ok(())
    });
    let took = t0.elapsed();
    let acct = acct.into_inner();
    let report = acct.report();
    println!(
        "rpc_fuzz: {cases} cases in {:.1}s; {report}",
        took.as_secs_f64()
    );
    if let Some(h) = &acct.hung {
        panic!("the coordinator hung: {h}\n{report}");
    }
    if let Err(e) = result {
        panic!("{e}\n{report}");
    }
    let (sent, answered) = (acct.sent(), acct.answered());
    assert!(
        sent >= cases,
        "only {sent} of {cases} cases were sent\n{report}"
    );
    assert!(
        f64::from(answered) >= MIN_ANSWERED * f64::from(sent),
        "only {answered} of {sent} calls got a gRPC answer from the coordinator (at least {:.0}% \
         must)\n{report}",
        100.0 * MIN_ANSWERED
    );
    // Every RPC was answered; and enough calls got past the door (a body that decodes,
    // credentials that pass) to exercise the handlers, not only the decoder and the auth.
    for ((path, _), t) in RPCS.iter().zip(&acct.per_rpc) {
        assert!(t.answered() > 0, "{path}: no call was answered\n{report}");
    }
    let handled: u32 = acct.per_rpc.iter().map(Tally::handled).sum();
    assert!(
        f64::from(handled) >= MIN_HANDLED * f64::from(sent),
        "only {handled} of {sent} calls got past the decoder and the credentials checks (at \
         least {:.0}% must)\n{report}",
        100.0 * MIN_HANDLED
    );

    // After: the coordinator still answers, A is unchanged, B is readable.
    set_phase("checking the store after the fuzzing");
    let a_after = step(
        &rt,
        "reading A after the fuzzing",
        rpc::sweep(&mut ip.admin, &a_id),
    );
    assert_eq!(settled(&a_after), settled(&a_before), "sweep A changed");
    let list = step(
        &rt,
        "listing sweeps after the fuzzing",
        ip.admin.list_sweeps(v1::ListSweepsRequest {}),
    )
    .unwrap_or_else(|s| panic!("list sweeps: {s:?}"))
    .into_inner();
    assert!(list.sweeps.iter().any(|s| s.sweep_id == a_id));
    let b_after = step(
        &rt,
        "reading B after the fuzzing",
        rpc::sweep(&mut ip.admin, &b_id),
    );
    // Let the clients close their connections, so the graceful shutdown need not wait.
    drop((me, keeper));
    let InProcess { handle, .. } = ip;
    step(&rt, "letting the clients hang up", async {
        tokio::time::sleep(Duration::from_millis(100)).await
    });
    step(&rt, "shutting the coordinator down", handle.shutdown());

    // Restart on the same directory: the store opens and holds both sweeps.
    let mut ip = step(
        &rt,
        "restarting the coordinator on the same data directory",
        InProcess::start(rpc::config(Some(dir.path()))),
    );
    let a_restarted = step(
        &rt,
        "reading A after the restart",
        rpc::sweep(&mut ip.admin, &a_id),
    );
    assert_eq!(
        settled(&a_restarted),
        settled(&a_before),
        "sweep A changed by restart"
    );
    let b_restarted = step(
        &rt,
        "reading B after the restart",
        rpc::sweep(&mut ip.admin, &b_id),
    );
    let ids = |s: &v1::SweepStatus| s.jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&b_restarted), ids(&b_after));
    assert_eq!(
        b_restarted.summary.map(|s| s.total),
        b_after.summary.map(|s| s.total)
    );
    // Workers can join again, and the checkpoint A's result names is still there, intact.
    step(
        &rt,
        "registering a worker after the restart",
        rpc::register(&ip.ch, "after-restart"),
    );
    let got = step(
        &rt,
        "downloading A's checkpoint after the restart",
        rpc::download(&mut ip.admin, &blob_sha),
    )
    .unwrap_or_else(|s| panic!("download A's checkpoint: {s:?}"));
    assert_eq!(got, data, "A's checkpoint changed");
    let InProcess { handle, .. } = ip;
    step(&rt, "letting the clients hang up", async {
        tokio::time::sleep(Duration::from_millis(100)).await
    });
    step(
        &rt,
        "shutting the restarted coordinator down",
        handle.shutdown(),
    );
    let p = panics().lock().map(|p| p.clone()).unwrap_or_default();
    assert!(p.is_empty(), "the coordinator panicked:\n{}", p.join("\n"));
}
