//! A dependency-free HTTP/1.1 client for gitgate's own plain-HTTP endpoints: the admin
//! probe (`gitgate health`) and the login endpoints (`gitgate login/status/logout`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Answers larger than this are cut (gitgate's own answers are a few hundred bytes).
const MAX_ANSWER: u64 = 1 << 20;

/// GETs `url` (plain `http://HOST:PORT/PATH`) and succeeds on a 200.
pub(crate) fn probe(url: &str) -> Result<(), String> {
    match call("GET", url, false)? {
        (200, _) => Ok(()),
        (status, _) => Err(format!("{url}: HTTP {status}")),
    }
}

/// Sends `method url` with an empty body and returns the status and the body; asks for
/// JSON when `json`.
pub(crate) fn call(method: &str, url: &str, json: bool) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs (gitgate's own ports) are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let fail = |e: std::io::Error| format!("{url}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(fail)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
    let accept = if json {
        "application/json"
    } else {
        "text/plain"
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: {accept}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(fail)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    Ok((status, body.to_owned()))
}
