//! One request to a GitHub host upstream: the client's headers sanitized, `Host` and
//! gitgate's credential set, the response head awaited within the limits.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::audit::Record;
use crate::body::{BoxError, ProxyBody, empty, stream};
use crate::headers::{sanitize_request, strip_hop_by_hop};
use crate::reply::Failure;
use crate::state::State;

/// Removes from an upstream answer's head what must not reach the sandbox: hop-by-hop
/// headers and credential challenges (git and git-lfs would prompt for a password).
pub(crate) fn clean_head(parts: &mut http::response::Parts) {
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::WWW_AUTHENTICATE);
    parts.headers.remove("lfs-authenticate");
}

/// `https://host` with `path_and_query`, or why it is not a URI.
pub(crate) fn https_uri(host: &str, path_and_query: &str) -> Result<Uri, Failure> {
    Uri::builder()
        .scheme(http::uri::Scheme::HTTPS)
        .authority(host)
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Failure::Client(format!("cannot forward to https://{host}{path_and_query}")))
}

/// An upstream answer passed on, streamed, its head cleaned.
pub(crate) fn relay(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    clean_head(&mut parts);
    let body = if parts.status == StatusCode::NO_CONTENT {
        empty()
    } else {
        stream(body)
    };
    Response::from_parts(parts, body)
}

/// Sends `parts` with `body` to `uri` on `host`, with `authorization` if any, and notes
/// the upstream status in `record`.
pub(crate) async fn upstream(
    state: &State,
    host: &str,
    uri: Uri,
    parts: http::request::Parts,
    body: ProxyBody,
    authorization: Option<HeaderValue>,
    record: &mut Record,
) -> Result<Response<Incoming>, Failure> {
    let mut headers = parts.headers;
    sanitize_request(&mut headers);
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, value);
    }
    if let Some(authorization) = authorization {
        headers.insert(header::AUTHORIZATION, authorization);
    }
    let started = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    let body = Sending {
        body,
        started,
        moved: Arc::clone(&moved),
    };
    let mut request = Request::new(body.boxed_unsync());
    *request.method_mut() = parts.method;
    *request.headers_mut() = headers;
    *request.uri_mut() = uri;
    let limits = &state.settings.limits;
    let sent = tokio::select! {
        sent = state.upstream.send(request) => Ok(sent),
        () = quiet(&moved, started, limits.response_header_timeout) => Err(()),
    };
    state.observer.metrics.upstream_latency(started.elapsed());
    match sent {
        Ok(Ok(response)) => {
            record.upstream_status = Some(response.status().as_u16());
            Ok(response)
        }
        Ok(Err(error)) => {
            let message = error.describe(host);
            tracing::warn!(error = %message, "upstream request failed");
            Err(Failure::Upstream(message))
        }
        Err(_) => Err(Failure::no_answer(host, limits.response_header_timeout)),
    }
}

/// A request body on its way upstream, noting when hyper last took a frame of it (or
/// found its end), in nanoseconds after `started`.
struct Sending {
    body: ProxyBody,
    started: Instant,
    moved: Arc<AtomicU64>,
}

impl Body for Sending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)) | None)) {
            let since = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.moved.store(since, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Ends once the request body has not moved for `timeout` (from `started` if it never
/// did): `responseHeaderTimeout` counts from the last byte upstream took, so an upload
/// that keeps moving is never cut off and one upstream stops reading is.
async fn quiet(moved: &AtomicU64, started: Instant, timeout: Duration) {
    loop {
        let due = started + Duration::from_nanos(moved.load(Ordering::Relaxed)) + timeout;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}
