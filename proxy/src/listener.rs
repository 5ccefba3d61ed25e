//! The proxy port: accept, serve the proxy protocol, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::admission::Refused;
use crate::audit::{Record, Service, Verdict};
use crate::body::ProxyBody;
use crate::framing::{self, CONFLICTING_FRAMING, Framing};
use crate::idle::IdleIo;
use crate::login;
use crate::proxy_tls::{HandshakeError, ProxyTls};
use crate::state::{ConnCtx, Lifecycle, Phase, State};
use crate::{connect, forward, identity, reply, serve};

/// Accepts clients until `shutdown` resolves, then waits up to the grace period for
/// in-flight requests and tunnels. With `tls`, clients speak TLS to gitgate first.
pub(crate) async fn run(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<Arc<ProxyTls>>,
    shutdown: impl Future<Output = ()>,
) {
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, client)) => {
                    let ctx = ConnCtx {
                        id: state.next_connection_id(),
                        client,
                        cert_subjects: Arc::new([]),
                        lifecycle: Lifecycle::new(phase_rx.clone(), alive_tx.clone()),
                        _held: None,
                    };
                    let span = tracing::info_span!("conn", id = ctx.id, client = %client);
                    tokio::spawn(connection(state.clone(), ctx, tcp, tls.clone()).instrument(span));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let grace = state.settings.limits.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: no new connections; waiting for in-flight requests"
    );
    let _ = phase_tx.send(Phase::Stopping);
    drop(alive_tx);
    let mut hurry = state.hurry.subscribe();
    tokio::select! {
        drained = tokio::time::timeout(grace, alive_rx.recv()) => {
            if drained.is_ok() {
                return;
            }
            tracing::warn!("grace period over; closing the remaining connections");
        }
        Ok(_) = hurry.wait_for(|hurry| *hurry) => {
            tracing::warn!("asked again to stop; closing the remaining connections now");
        }
    }
    let _ = phase_tx.send(Phase::Closing);
    if tokio::time::timeout(CLOSING, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after being told to close; leaving them",
            CLOSING.as_secs()
        );
    }
}

/// How long connections told to close at the end of the grace period get to end and
/// write their records.
const CLOSING: Duration = Duration::from_secs(2);

async fn connection(
    state: Arc<State>,
    mut ctx: ConnCtx,
    tcp: TcpStream,
    tls: Option<Arc<ProxyTls>>,
) {
    let admitted = match state.admission.admit(ctx.client.ip()) {
        Ok(admitted) => admitted,
        Err(refused) => return refuse(&state, &ctx, tcp, refused).await,
    };
    ctx._held = Some(Arc::new((
        admitted,
        state.observer.metrics.connection_opened(),
    )));
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_proxy(state, ctx, tcp).await;
    };
    let timeout = state.settings.limits.tls_handshake_timeout;
    match tls.accept(&state.ca, tcp, timeout).await {
        Ok((stream, subjects)) => {
            ctx.cert_subjects = subjects;
            serve_proxy(state, ctx, stream).await;
        }
        Err(HandshakeError::Failed(error)) => {
            tracing::info!(%error, "proxy TLS handshake failed");
            let reason = format!(
                "the client's TLS handshake with gitgate's HTTPS proxy listener failed: {error}"
            );
            serve::closed_for(&state, &ctx, "", "tls", 0, &reason);
        }
        Err(HandshakeError::Timeout) => serve::closed_for(
            &state,
            &ctx,
            "",
            "limits.tlsHandshakeTimeout",
            408,
            "client TLS handshake to the proxy listener not completed in time (limits.tlsHandshakeTimeout)",
        ),
    }
}

/// Serves the proxy protocol on an accepted (and, on `listenTls`, decrypted) connection.
async fn serve_proxy<T>(state: Arc<State>, ctx: ConnCtx, io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tcp, framing) = framing::watch(IdleIo::new(io, state.settings.limits.idle_timeout));
    let lifecycle = ctx.lifecycle.clone();
    let service = {
        let (state, ctx, framing) = (state.clone(), ctx.clone(), framing.clone());
        service_fn(move |req| {
            let (state, ctx, framing) = (state.clone(), ctx.clone(), framing.clone());
            async move { Ok::<_, Infallible>(route(state, ctx, &framing, req).await) }
        })
    };
    let conn = serve::builder(&state.settings.limits)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    if let Err(error) = serve::until_shutdown(conn, lifecycle).await {
        serve::connection_error(&state, &ctx, ("", &framing), &error);
    }
}

/// Turns away a connection over a limit: a 503 saying which, then close.
async fn refuse(state: &State, ctx: &ConnCtx, mut tcp: TcpStream, refused: Refused) {
    let reason = refused.reason(ctx.client.ip());
    let body = format!("gitgate: {reason}\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
    let mut record = Record::new(ctx.id, ctx.client, "", "", "", Service::Other);
    record.decide(Verdict::Deny, refused.rule(), &reason);
    record.status = 503;
    state.observer.emit(record);
}

/// The proxy protocol: CONNECT, absolute-form plain HTTP, or a request meant for a server.
async fn route(
    state: Arc<State>,
    ctx: ConnCtx,
    framing: &Framing,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if framing.conflict() {
        return conflicting_framing(&state, &ctx, &req);
    }
    if req.method() == Method::CONNECT {
        let response = connect::handle(state, ctx, req).await;
        // Once a CONNECT is granted, what follows is a tunnel, not HTTP; after a refusal
        // the connection may carry more requests, and they are still scanned.
        if response.status().is_success() {
            framing.stop();
        }
        return response;
    }
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return forward::plain(&state, &ctx, req).await;
    }
    if login::is_login_path(req.uri().path()) {
        // Among several sandboxes, only an identified one may log the person in or out.
        let mut record = Record::new(
            ctx.id,
            ctx.client,
            "",
            req.method().as_str(),
            req.uri().path(),
            Service::Other,
        );
        let identity = match identity::identify(
            &state,
            &ctx,
            &identity::Presented::from_headers(req.headers()),
            &mut record,
        ) {
            Ok(identity) => identity,
            Err(failure) => {
                let response = reply::failure(reply::Shape::Text, &failure);
                record.status = response.status().as_u16();
                state.observer.emit(record);
                return response;
            }
        };
        let caller = login::Caller::Sandbox(identity.profile.as_deref());
        let response = login::handle(&state, caller, &req).await;
        let status = response.status();
        let verdict = match status.is_success() {
            true => Verdict::Allow,
            false => Verdict::Deny,
        };
        record.decide(verdict, "login", "a sandbox's own login or logout");
        record.status = status.as_u16();
        state.observer.emit(record);
        return response;
    }
    reply::text(
        StatusCode::BAD_REQUEST,
        &format!(
            "gitgate: this is a forward proxy, not a web server; set HTTPS_PROXY=http://{} in the sandbox and use https:// URLs",
            state.settings.listen
        ),
    )
}

/// Refuses a request on a connection whose client sent an ambiguously framed head, and
/// closes the connection.
fn conflicting_framing(
    state: &State,
    ctx: &ConnCtx,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let host = req.uri().host().unwrap_or_default();
    let target = req.uri().to_string();
    let mut record = Record::new(
        ctx.id,
        ctx.client,
        host,
        req.method().as_str(),
        &target,
        Service::Other,
    );
    record.decide(Verdict::Deny, "request", CONFLICTING_FRAMING);
    record.status = 400;
    state.observer.emit(record);
    reply::closing(reply::text(
        StatusCode::BAD_REQUEST,
        &format!("gitgate: {CONFLICTING_FRAMING}"),
    ))
}
