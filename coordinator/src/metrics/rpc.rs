//! A tower layer that counts gRPC calls by service, method and status code and times them.

use super::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Wraps the gRPC router.
#[derive(Clone)]
pub struct RpcLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The wrapped service.
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Bounded (service, method) labels of a request path `/pkg.Service/Method`.
pub fn labels(path: &str) -> (&'static str, String) {
    let known = [
        ("/ausweep.v1.Admin/", "admin"),
        ("/ausweep.v1.Worker/", "worker"),
        ("/grpc.health.v1.Health/", "health"),
        ("/grpc.reflection.v1.ServerReflection/", "reflection"),
    ];
    for (prefix, svc) in known {
        if let Some(m) = path.strip_prefix(prefix) {
            let ok = !m.is_empty() && m.len() <= 40 && m.chars().all(|c| c.is_ascii_alphanumeric());
            return (svc, if ok { m.to_string() } else { "other".into() });
        }
    }
    ("other", "other".into())
}

/// The name of a `grpc-status` code.
pub fn code_name(code: &str) -> &'static str {
    match code.trim() {
        "0" => "OK",
        "1" => "Cancelled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for RpcService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let (service, method) = labels(req.uri().path());
        let start = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let r = fut.await;
            // Errors of unary calls come trailers-only, in the headers; no status there is OK.
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                Err(_) => "TransportError",
            };
            metrics.observe_rpc(service, &method, code, start.elapsed());
            r
        })
    }
}
