//! Accept loop, TLS, HTTP/1.1 and routing by `Host`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::Fault;
use crate::record::{Live, Recorder};
use crate::tokens::TokenStore;
use crate::users::UserStore;

/// Most connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 256;
/// Most `git http-backend` children at once; more requests wait.
pub(crate) const MAX_CGI: usize = 32;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for children to be killed and reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Every response body the stand-in sends.
pub(crate) type RespBody = UnsyncBoxBody<Bytes, io::Error>;

/// State shared by the server tasks and the [`crate::StandIn`] handle.
pub(crate) struct Shared {
    pub(crate) repos: PathBuf,
    pub(crate) home: PathBuf,
    pub(crate) app_id: String,
    /// DER `RSAPublicKey` JWTs are verified against.
    pub(crate) app_public_key: Vec<u8>,
    pub(crate) recorder: Recorder,
    pub(crate) tokens: Mutex<TokenStore>,
    pub(crate) users: Mutex<UserStore>,
    pub(crate) fault: watch::Sender<Option<Fault>>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Number of live CGI children (shutdown waits for 0).
    pub(crate) children: watch::Sender<usize>,
    pub(crate) cgi_slots: Arc<Semaphore>,
    pub(crate) api_calls: AtomicU64,
    /// Signs LFS action `href`s for the storage host.
    pub(crate) lfs_key: ring::hmac::Key,
    /// Pull requests opened through the API.
    pub(crate) pulls: Mutex<Vec<crate::hub::Pull>>,
    /// Releases made through the API.
    pub(crate) releases: Mutex<Vec<crate::rest::Release>>,
}

impl Shared {
    pub(crate) fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn pulls(&self) -> MutexGuard<'_, Vec<crate::hub::Pull>> {
        self.pulls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn releases(&self) -> MutexGuard<'_, Vec<crate::rest::Release>> {
        self.releases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn users(&self) -> MutexGuard<'_, UserStore> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault.borrow().clone()
    }

    /// Whether `owner/name` exists on disk.
    pub(crate) fn repo_exists(&self, owner: &str, name: &str) -> bool {
        crate::repos::exists(&self.repos, owner, name)
    }

    /// Counts a live child until the guard is dropped.
    pub(crate) fn child_guard(self: &Arc<Self>) -> ChildGuard {
        self.children.send_modify(|n| *n += 1);
        ChildGuard(Arc::clone(self))
    }
}

/// Decrements the live-children count on drop.
pub(crate) struct ChildGuard(Arc<Shared>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.0.children.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Serves until `shared.shutdown` turns true, then drops every connection and waits for the
/// CGI children to be killed and reaped.
pub(crate) async fn serve(listener: TcpListener, tls: TlsAcceptor, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else { continue };
                let (tls, shared) = (tls.clone(), Arc::clone(&shared));
                conns.spawn(async move {
                    let _permit = permit;
                    let _ = tcp.set_nodelay(true);
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await
                    else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(route(shared, peer, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    drop(listener);
    conns.shutdown().await;
    let mut children = shared.children.subscribe();
    let _ = tokio::time::timeout(REAP_TIMEOUT, children.wait_for(|n| *n == 0)).await;
}

/// Records the request, then dispatches on the host.
async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let host = host_of(&parts);
    let live = shared.recorder.record(&host, &parts);
    let body = Counted {
        inner: body,
        live: Arc::clone(&live),
    };
    let resp = match host.as_str() {
        "github.com" if crate::oauth::is_login(parts.uri.path()) => {
            crate::oauth::login(&shared, &parts, body).await
        }
        // GitHub Enterprise Server's layout: the API below /api/v3, GraphQL at /api/graphql.
        "github.com" if parts.uri.path().starts_with("/api/") => match ghes_api(parts) {
            Some(parts) => {
                let gzip = crate::api::takes_gzip(&parts);
                crate::api::compressed(gzip, crate::api::handle(&shared, parts, body).await).await
            }
            None => text(StatusCode::NOT_FOUND, "Not Found\n"),
        },
        "github.com" => crate::git::handle(&shared, peer, parts, body).await,
        "api.github.com" => {
            let gzip = crate::api::takes_gzip(&parts);
            crate::api::compressed(gzip, crate::api::handle(&shared, parts, body).await).await
        }
        crate::lfs::STORAGE_HOST => crate::lfs::storage(&shared, &parts, body).await,
        "tunnel.test" | "other.test" => text(StatusCode::OK, format!("hello from {host}\n")),
        _ => text(
            StatusCode::MISDIRECTED_REQUEST,
            format!("unknown host {host:?}\n"),
        ),
    };
    live.set_status(resp.status().as_u16());
    resp
}

/// A GHES API request (`/api/v3/…`, `/api/graphql`) as the `api.github.com` one.
fn ghes_api(mut parts: Parts) -> Option<Parts> {
    let path_and_query = parts.uri.path_and_query()?.as_str();
    let rest = match path_and_query.strip_prefix("/api/v3") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => rest,
        _ if parts.uri.path() == "/api/graphql" => "/graphql",
        _ => return None,
    };
    let rest = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_owned()
    };
    parts.uri = rest.parse().ok()?;
    Some(parts)
}

/// `Host` header (or the URI authority), port stripped, lowercased.
fn host_of(parts: &Parts) -> String {
    let raw = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    host.to_ascii_lowercase()
}

/// A request body that counts the bytes it yields into the request log.
pub(crate) struct Counted {
    inner: Incoming,
    live: Arc<Live>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.live.add_body(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A complete response body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Number of API calls so far (for the rate-limit headers).
pub(crate) fn count_api_call(shared: &Shared) -> u64 {
    shared.api_calls.fetch_add(1, Ordering::Relaxed) + 1
}
