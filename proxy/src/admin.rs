//! Admin endpoints on their own listener: `/healthz`, `/readyz`, `/metrics`, and the
//! device-flow login (`/login`, `/logout`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full};
use crate::reply;
use crate::state::State;

pub(crate) async fn run(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
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
