//! Admin endpoints on their own listener: `/healthz`, `/readyz`, `/metrics`, and the
//! device-flow login (`/login`, `/logout`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full};
use crate::reply;
use crate::state::State;

/// The most admin connections at once (probes and a metrics scraper need a few); more
/// are closed as they come, so a flood of them cannot take gitgate's descriptors.
pub(crate) const MAX_CONNECTIONS: usize = 64;

pub(crate) async fn run(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                max = MAX_CONNECTIONS,
                "admin connection closed: too many open"
            );
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let limits = &state.settings.limits;
            // A request head within headerReadTimeout, and nothing idle past idleTimeout.
            let io = crate::idle::IdleIo::new(tcp, limits.idle_timeout);
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let routes = state.clone();
            let service = service_fn(move |req| {
                let state = routes.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = http.serve_connection(TokioIo::new(io), service).await;
        });
    }
}

async fn route(state: &State, req: Request<Incoming>) -> Response<ProxyBody> {
    if crate::login::is_login_path(req.uri().path()) {
        return crate::login::handle(state, crate::login::Caller::Operator, &req).await;
    }
    if req.method() != Method::GET {
        return reply::text(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    match req.uri().path() {
        "/healthz" => reply::text(StatusCode::OK, "ok"),
        "/readyz" => match state.tokens.readiness().await {
            Ok(()) => reply::text(StatusCode::OK, "ready"),
            Err(error) => reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {error}"),
            ),
        },
        "/metrics" => {
            let text = state.observer.metrics.encode(state.tokens.soonest_expiry());
            let mut response = Response::new(full(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => reply::text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics",
        ),
    }
}
