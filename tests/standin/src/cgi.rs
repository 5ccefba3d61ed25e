//! Runs `git http-backend` as a CGI, streaming the request body in and the response out.

use std::io;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::channel::{Channel, Sender};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::OwnedSemaphorePermit;

use crate::server::{ChildGuard, Counted, RespBody, Shared, text};

/// Largest CGI header block accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long the child may take to print its headers.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// A child still running after this is killed.
const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// Read size for the response body.
const CHUNK: usize = 64 * 1024;
/// Response chunks buffered between the child and the connection.
const CHANNEL_DEPTH: usize = 4;
/// stderr kept for the log line of a failed child.
const MAX_STDERR: usize = 8 * 1024;

/// The CGI meta-variables of one request.
#[derive(Debug)]
pub(crate) struct CgiRequest {
    pub(crate) path_info: String,
    pub(crate) query: String,
    pub(crate) method: String,
    pub(crate) content_type: Option<String>,
    /// Set only when the request carried `Content-Length` (unset for chunked bodies).
    pub(crate) content_length: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) git_protocol: Option<String>,
    pub(crate) remote_addr: IpAddr,
    pub(crate) remote_user: &'static str,
}

/// Runs one request through `git http-backend`.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    req: CgiRequest,
    body: Counted,
) -> Response<RespBody> {
    let Ok(permit) = Arc::clone(&shared.cgi_slots).acquire_owned().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.repos)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "gitgate-standin")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path_info)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_ADDR", req.remote_addr.to_string())
        .env("REMOTE_USER", req.remote_user)
        .current_dir(&shared.repos)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let optional = [
        ("CONTENT_TYPE", &req.content_type),
        ("CONTENT_LENGTH", &req.content_length),
        ("HTTP_CONTENT_ENCODING", &req.content_encoding),
        ("HTTP_GIT_PROTOCOL", &req.git_protocol),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot run git http-backend: {e}\n"),
            );
        }
    };
    let guard = shared.child_guard();
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    tokio::spawn(pump_request(body, stdin));
    tokio::spawn(reap(Arc::clone(shared), child, guard, permit));

    let Some(mut stdout) = stdout else {
        return text(StatusCode::BAD_GATEWAY, "no CGI output\n");
    };
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stdout)).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return text(StatusCode::BAD_GATEWAY, format!("bad CGI response: {e}\n")),
        Err(_) => return text(StatusCode::GATEWAY_TIMEOUT, "CGI header timeout\n"),
    };
    let (tx, body) = Channel::<Bytes, io::Error>::new(CHANNEL_DEPTH);
    tokio::spawn(pump_response(stdout, head.rest, tx));

    let mut resp = Response::new(body.boxed_unsync());
    *resp.status_mut() = head.status;
    for (name, value) in head.headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

/// Copies the request body into the child's stdin, then closes it (EOF for http-backend).
async fn pump_request(mut body: Counted, stdin: Option<ChildStdin>) {
    let Some(mut stdin) = stdin else { return };
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data()
            && stdin.write_all(&data).await.is_err()
        {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Streams the child's stdout after the CGI head into the response body.
async fn pump_response(mut stdout: ChildStdout, first: Bytes, mut tx: Sender<Bytes, io::Error>) {
    if !first.is_empty() && tx.send_data(first).await.is_err() {
        return;
    }
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match stdout.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                if tx.send_data(buf.split().freeze()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tx.abort(e);
                return;
            }
        }
    }
}

/// Waits for the child (killing its process group on shutdown or after [`MAX_LIFETIME`]),
/// and logs the stderr of a failed one.
async fn reap(
    shared: Arc<Shared>,
    mut child: Child,
    guard: ChildGuard,
    permit: OwnedSemaphorePermit,
) {
    let stderr = child.stderr.take().map(|e| tokio::spawn(read_bounded(e)));
    let mut shutdown = shared.shutdown.subscribe();
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = shutdown.wait_for(|stop| *stop) => None,
        () = tokio::time::sleep(MAX_LIFETIME) => None,
    };
    if status.is_none() {
        kill_group(&mut child).await;
    }
    drop(permit);
    let errors = match stderr {
        Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    };
    if let Some(status) = status.filter(|s| !s.success()) {
        eprintln!(
            "gitgate-standin: git http-backend {status}: {}",
            errors.trim()
        );
    }
    drop(guard);
}

/// SIGKILLs the child's process group (it and its upload-pack/receive-pack), then reaps it.
async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}

/// Reads a pipe to EOF, keeping the first [`MAX_STDERR`] bytes.
async fn read_bounded(mut pipe: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = MAX_STDERR.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The CGI response head and whatever body bytes were read with it.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    rest: Bytes,
}

async fn read_head(stdout: &mut ChildStdout) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((end, sep)) = head_end(&buf) {
            let mut head = parse_head(&buf[..end])?;
            head.rest = Bytes::copy_from_slice(&buf[end + sep..]);
            return Ok(head);
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("CGI header block too large"));
        }
        match stdout.read(&mut chunk).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Offset and length of the blank line ending the head (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"status") {
            let code = value.get(..3).unwrap_or_default();
            status = StatusCode::from_bytes(code)
                .map_err(|_| io::Error::other("bad CGI Status header"))?;
        } else if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.push((n, v));
        }
    }
    Ok(Head {
        status,
        headers,
        rest: Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        let raw = b"Status: 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\n\r\nbody";
        let (end, sep) = head_end(raw).unwrap();
        assert_eq!(&raw[end + sep..], b"body");
        let head = parse_head(&raw[..end]).unwrap();
        assert_eq!(head.status, StatusCode::FORBIDDEN);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers[0].0, http::header::CONTENT_TYPE);

        let raw = b"Content-Type: application/x-git-upload-pack-advertisement\n\n0000";
        let (end, sep) = head_end(raw).unwrap();
        assert_eq!((end, sep), (raw.len() - 6, 2));
        assert_eq!(parse_head(&raw[..end]).unwrap().status, StatusCode::OK);
        assert!(head_end(b"Status: 200 OK\r\n").is_none());
        assert!(parse_head(b"Status: abc").is_err());
    }
}
