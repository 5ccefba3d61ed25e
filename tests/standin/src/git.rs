//! `github.com`: smart HTTP with GitHub-like token auth in front of `git http-backend`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::Fault;
use crate::cgi::{self, CgiRequest};
use crate::repos::{Endpoint, parse_git_path};
use crate::server::{Counted, RespBody, Shared, text};
use crate::tokens::{Access, Denied};

/// The only Basic user name accepted, as GitHub documents for installation tokens.
const TOKEN_USER: &str = "x-access-token";

/// Handles one request for `github.com`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    parts: Parts,
    body: Counted,
) -> Response<RespBody> {
    let rpc = (parts.method == http::Method::POST)
        .then(|| parts.uri.path().rsplit('/').next())
        .flatten();
    wait_while_stalled(shared, rpc).await;
    match shared.fault() {
        Some(Fault::GitError { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return text(status, body);
        }
        Some(Fault::GitRedirect { location }) => {
            let mut response = text(StatusCode::FOUND, "Found\n");
            if let Ok(value) = header::HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
        Some(Fault::GitCutOff) => {
            return cut_off(
                b"0123456789".to_vec(),
                "application/x-git-upload-pack-advertisement",
                None,
            );
        }
        Some(Fault::RpcCutOff {
            rpc: endpoint,
            content_type,
            bytes,
        }) if rpc == Some(endpoint.as_str()) => {
            use http_body_util::BodyExt;
            let _ = body.collect().await;
            // Long enough for the head and the bytes to reach the client first.
            let flushed = std::time::Duration::from_millis(200);
            return cut_off(bytes, &content_type, Some(flushed));
        }
        Some(Fault::RpcError {
            rpc: endpoint,
            status,
            body,
        }) if rpc == Some(endpoint.as_str()) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return text(status, body);
        }
        _ => {}
    }

    let Some(path) = parse_git_path(parts.uri.path()) else {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    };
    if matches!(
        path.endpoint,
        Endpoint::LfsBatch | Endpoint::LfsLocks | Endpoint::LfsLocksVerify | Endpoint::LfsUnlock
    ) {
        return crate::lfs::handle(shared, &parts, body, &path).await;
    }
    let query = parts.uri.query().unwrap_or_default();
    let access = match (&parts.method, path.endpoint, query) {
        (&Method::GET, Endpoint::InfoRefs, "service=git-upload-pack") => Access::Read,
        (&Method::GET, Endpoint::InfoRefs, "service=git-receive-pack") => Access::Write,
        (&Method::POST, Endpoint::UploadPack, "") => Access::Read,
        (&Method::POST, Endpoint::ReceivePack, "") => Access::Write,
        _ => return text(StatusCode::NOT_FOUND, "Not Found\n"),
    };

    let Some(token) = basic_token(&parts.headers) else {
        return unauthorized();
    };
    let exists = |o: &str, r: &str| shared.repo_exists(o, r);
    let now = SystemTime::now();
    let user = shared.users().user(&token, now).map(str::to_owned);
    let checked = match user {
        // A user token reaches what both the user and the App reach; the stand-in's users
        // may write wherever the App is installed.
        Some(_) => shared.tokens().check_user(&path.owner, &path.repo, &exists),
        None => shared
            .tokens()
            .check_git(&token, &path.owner, &path.repo, access, now, &exists),
    };
    match checked {
        Ok(()) => {}
        Err(Denied::Unauthorized) => return unauthorized(),
        Err(Denied::NotFound) => return not_found(),
        Err(Denied::Forbidden(Access::Write)) => {
            return text(
                StatusCode::FORBIDDEN,
                "Write access to repository not granted.\n",
            );
        }
        Err(Denied::Forbidden(Access::Read)) => {
            return text(
                StatusCode::FORBIDDEN,
                "Read access to repository not granted.\n",
            );
        }
    }
    if !shared.repo_exists(&path.owner, &path.repo) {
        return not_found();
    }

    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let req = CgiRequest {
        path_info: path.path_info(),
        query: query.to_owned(),
        method: parts.method.as_str().to_owned(),
        content_type: header_str(header::CONTENT_TYPE),
        content_length: header_str(header::CONTENT_LENGTH),
        content_encoding: header_str(header::CONTENT_ENCODING),
        git_protocol: header_str(header::HeaderName::from_static("git-protocol")),
        remote_addr: peer.ip(),
        remote_user: TOKEN_USER,
    };
    cgi::run(shared, req, body).await
}

/// Blocks while [`Fault::GitStall`] is set, [`Fault::PushStall`] for a push or
/// [`Fault::FetchStall`] for a fetch (`rpc`: the last path segment of a POST).
async fn wait_while_stalled(shared: &Shared, rpc: Option<&str>) {
    let mut fault = shared.fault.subscribe();
    let _ = fault
        .wait_for(|f| match f {
            Some(Fault::GitStall) => false,
            Some(Fault::PushStall) => rpc != Some("git-receive-pack"),
            Some(Fault::FetchStall) => rpc != Some("git-upload-pack"),
            _ => true,
        })
        .await;
}

/// The token from `Authorization: Basic base64("x-access-token:" + token)`.
pub(crate) fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, token) = decoded.split_once(':')?;
    (user == TOKEN_USER && !token.is_empty()).then(|| token.to_owned())
}

fn unauthorized() -> Response<RespBody> {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "Invalid username or token. Password authentication is not supported for Git operations.\n",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"GitHub\""),
    );
    resp
}

fn not_found() -> Response<RespBody> {
    text(StatusCode::NOT_FOUND, "Repository not found.\n")
}

/// A 200 that promises 1000 bytes, sends 10, then breaks the connection.
/// A 200 of `content_type` promising more than `bytes`, which breaks off after them
/// (`after` they were sent, or at once, before even the head is out).
fn cut_off(
    bytes: Vec<u8>,
    content_type: &str,
    after: Option<std::time::Duration>,
) -> Response<RespBody> {
    use http_body_util::BodyExt;
    let promised = (bytes.len() + 1000).to_string();
    let mut response = Response::new(
        CutOff {
            bytes: Some(bytes::Bytes::from(bytes)),
            after: after.map(|after| Box::pin(tokio::time::sleep(after))),
        }
        .boxed_unsync(),
    );
    let headers = response.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&promised) {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Its bytes, then (after a while, if given) an error.
struct CutOff {
    bytes: Option<bytes::Bytes>,
    after: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for CutOff {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        if let Some(bytes) = self.bytes.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
        if let Some(after) = self.after.as_mut() {
            std::task::ready!(after.as_mut().poll(cx));
        }
        std::task::Poll::Ready(Some(Err(std::io::Error::other(
            "cut off by a stand-in fault",
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_token_table() {
        let enc = |s: &str| format!("Basic {}", STANDARD.encode(s));
        let cases = [
            (enc("x-access-token:ghs_abc"), Some("ghs_abc")),
            (
                format!("basic {}", STANDARD.encode("x-access-token:t")),
                Some("t"),
            ),
            (enc("x-access-token:"), None),
            (enc("someone:ghs_abc"), None),
            (enc("ghs_abc"), None),
            ("Bearer ghs_abc".to_owned(), None),
            ("Basic !!!".to_owned(), None),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(basic_token(&h).as_deref(), want, "{value}");
        }
        assert_eq!(basic_token(&HeaderMap::new()), None);
    }
}
