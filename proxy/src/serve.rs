//! Serving one HTTP/1.1 connection until it ends or shutdown asks it to finish.

use std::future::Future;
use std::pin::pin;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioTimer;

use crate::audit::{Record, Service, Verdict};
use crate::body::ProxyBody;
use crate::framing::Framing;
use crate::settings::Limits;
use crate::state::{ConnCtx, Lifecycle, State};

/// An HTTP/1.1 server builder with gitgate's timeouts.
pub(crate) fn builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
}

/// Drives `conn`; on shutdown lets the request in flight finish, then closes; once the
/// grace period is over, drops it (the request in flight records that it was cut off).
pub(crate) async fn until_shutdown<C>(conn: C, mut lifecycle: Lifecycle) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConn,
{
    let mut conn = pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        () = lifecycle.stopping() => conn.as_mut().start_graceful(),
    }
    tokio::select! {
        result = conn => result,
        () = lifecycle.closing() => Ok(()),
    }
}

/// Records a connection that ended because a limit was hit (head too large or too
/// slow, idle for too long); other errors are only logged, as is a kept-alive connection
/// closed at `headerReadTimeout` with no next request begun (`framing`).
pub(crate) fn connection_error(
    state: &State,
    ctx: &ConnCtx,
    (host, framing): (&str, &Framing),
    error: &hyper::Error,
) {
    if error.is_timeout() && framing.between_requests() {
        tracing::debug!(client = %ctx.client, "idle kept-alive connection closed at limits.headerReadTimeout");
        return;
    }
    let idle = std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
    let (rule, status, reason) = if error.is_parse_too_large() {
        (
            "limits.maxHeaderBytes",
            431,
            "request head too large (limits.maxHeaderBytes, limits.maxHeaders)",
        )
    } else if error.is_timeout() {
        (
            "limits.headerReadTimeout",
            408,
            "request head not received in time (limits.headerReadTimeout)",
        )
    } else if idle {
        (
            "limits.idleTimeout",
            408,
            "no data moved for too long (limits.idleTimeout)",
        )
    } else {
        tracing::debug!(%error, "connection ended with an error");
        return;
    };
    closed_for(state, ctx, host, rule, status, reason);
}

/// Records a connection gitgate closed because of `rule` (a limit it reached, a TLS
/// handshake that failed).
pub(crate) fn closed_for(
    state: &State,
    ctx: &ConnCtx,
    host: &str,
    rule: &str,
    status: u16,
    reason: &str,
) {
    tracing::info!(client = %ctx.client, rule, "connection closed");
    let mut record = Record::new(ctx.id, ctx.client, host, "", "", Service::Other);
    record.decide(Verdict::Deny, rule, reason);
    record.status = status;
    state.observer.emit(record);
}

/// Connections that can be asked to stop after the current request.
pub(crate) trait GracefulConn {
    fn start_graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConn for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: HttpService<Incoming, ResBody = ProxyBody>,
{
    fn start_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> GracefulConn for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = ProxyBody>,
{
    fn start_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
