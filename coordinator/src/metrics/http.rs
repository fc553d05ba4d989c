//! The `/metrics` endpoint (axum), on its own port.

use super::Metrics;
use crate::sched::Scheduler;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Binds `/metrics` on `listen`; returns the bound address and the future that serves it.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    sched: Scheduler,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || scrape(metrics.clone(), sched.clone())),
        )
        .route(
            "/",
            get(|| async { "ausweep coordinator metrics: /metrics\n" }),
        );
    Ok((addr, async move {
        let _ = axum::serve(listener, app).await;
    }))
}

async fn scrape(metrics: Arc<Metrics>, sched: Scheduler) -> impl IntoResponse {
    let m = metrics.clone();
    let t = Instant::now();
    let refreshed = sched
        .call(move |st, now, _| {
            m.refresh(st, now);
            Ok(())
        })
        .await;
    metrics.observe_sched("scrape", t.elapsed());
    if let Err(e) = refreshed {
        return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
    }
    match metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
