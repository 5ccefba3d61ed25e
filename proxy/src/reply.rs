//! Every answer gitgate writes itself, in the shape the client will show to its user.
//!
//! git only shows a message from a `text/plain` body of a non-2xx `info/refs` answer, or
//! from an `ERR` pkt-line inside a 200 answer; `gh` shows GitHub's JSON error shape.

use gitgate_policy::git::report;
use gitgate_policy::git::request::Service;
use gitgate_policy::git::sideband::SideBand;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// Which side a failure comes from; it decides the status code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The client sent something malformed (400).
    Client(String),
    /// The policy refused it (403).
    Policy(String),
    /// The client did not prove which sandbox it is (407).
    ProxyAuth(String),
    /// The upstream could not be reached or misbehaved (502).
    Upstream(String),
    /// No credential could be had (503).
    Token(String),
    /// The upstream did not answer in time (504).
    Timeout(String),
    /// A limit of gitgate's own was reached (503).
    Overloaded(String),
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::Client(_) => StatusCode::BAD_REQUEST,
            Failure::Policy(_) => StatusCode::FORBIDDEN,
            Failure::ProxyAuth(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Failure::Upstream(_) => StatusCode::BAD_GATEWAY,
            Failure::Token(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `host` sent no response head within `limits.responseHeaderTimeout`.
    pub(crate) fn no_answer(host: &str, limit: std::time::Duration) -> Self {
        Failure::Timeout(format!(
            "{host} did not answer within {} s (limits.responseHeaderTimeout)",
            limit.as_secs()
        ))
    }

    /// The message, without the `gitgate: ` prefix.
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Client(m)
            | Failure::Policy(m)
            | Failure::ProxyAuth(m)
            | Failure::Upstream(m)
            | Failure::Token(m)
            | Failure::Timeout(m)
            | Failure::Overloaded(m) => m,
        }
    }
}

/// How the client expects to be told.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// Plain text (curl, browsers, git for non-git paths).
    Text,
    /// A git ref advertisement (`info/refs`): an `ERR` pkt-line in a 200 answer.
    Advertisement(Service),
    /// A git RPC result (`git-upload-pack` / `git-receive-pack` POST): an `ERR` pkt-line.
    RpcResult(Service),
    /// A `git-receive-pack` result: an `ERR` pkt-line inside the side-band the push's
    /// command list asked for (git reads nothing else through its demultiplexer).
    PushResult(SideBand),
    /// The GitHub REST API: `{"message", "documentation_url"}`.
    Json,
}

/// `response`, after which the connection closes.
pub(crate) fn closing(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A failure other than a refusal, carried on gitgate's answer to the audit record.
#[derive(Clone)]
pub(crate) struct Failed(pub(crate) String);

/// Tells the client about `failure` in the shape it can show.
pub(crate) fn failure(shape: Shape, failure: &Failure) -> Response<ProxyBody> {
    let mut response = render(shape, failure);
    if !matches!(failure, Failure::Policy(_) | Failure::ProxyAuth(_)) {
        response
            .extensions_mut()
            .insert(Failed(failure.message().to_owned()));
    }
    response
}

fn render(shape: Shape, failure: &Failure) -> Response<ProxyBody> {
    let message = format!("gitgate: {}", failure.message());
    match shape {
        Shape::Text => text(failure.status(), &message),
        Shape::Advertisement(service) => git(
            &format!("application/x-{}-advertisement", service.as_str()),
            report::err_pkt(&message),
        ),
        Shape::RpcResult(service) => git(
            &format!("application/x-{}-result", service.as_str()),
            report::err_pkt(&message),
        ),
        Shape::PushResult(side_band) => git(
            "application/x-git-receive-pack-result",
            report::push_err(side_band, &message),
        ),
        Shape::Json => {
            let body = serde_json::json!({
                "message": message,
                "documentation_url": "https://github.com/gitgate/gitgate#policy",
            });
            build(
                failure.status(),
                "application/json; charset=utf-8",
                body.to_string().into_bytes(),
            )
        }
    }
}

/// A plain-text answer; the message gets a trailing newline.
pub(crate) fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    build(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    build(status, "application/json; charset=utf-8", body)
}

/// A 200 answer carrying git protocol bytes.
pub(crate) fn git(content_type: &str, bytes: Vec<u8>) -> Response<ProxyBody> {
    build(StatusCode::OK, content_type, bytes)
}

fn build(status: StatusCode, content_type: &str, bytes: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        headers.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gitgate\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<ProxyBody>) -> Vec<u8> {
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn advertisement_failure_is_an_err_pkt_in_a_200() {
        let r = failure(
            Shape::Advertisement(Service::UploadPack),
            &Failure::Policy("acme/secret is not in allowedRepos []".into()),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/x-git-upload-pack-advertisement"
        );
        let b = body(r).await;
        assert_eq!(
            &b[4..],
            b"ERR gitgate: acme/secret is not in allowedRepos []\n"
        );
    }

    #[tokio::test]
    async fn text_failure_keeps_its_status() {
        let r = failure(
            Shape::Text,
            &Failure::Upstream("cannot reach github.com".into()),
        );
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(body(r).await, b"gitgate: cannot reach github.com\n");
    }
}
