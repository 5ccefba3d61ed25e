//! Hand-made bytes to the proxy port, for what no well-behaved client sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Sends `request` on a fresh connection and returns everything read until the
/// server closes or goes quiet.
/// `GET path` on the admin listener at `addr`; the whole answer.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    read_response(&mut stream)
}

/// Reads one HTTP response: its head and its body (Content-Length, or chunked and
/// then decoded), leaving the stream at the next response.
pub fn read_response(stream: &mut impl Read) -> String {
    let head = read_until_blank_line(stream);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let size_line = read_line(stream);
            let size =
                usize::from_str_radix(size_line.trim().split(';').next().unwrap(), 16).unwrap_or(0);
            if size == 0 {
                // Trailer fields, if any, up to the empty line.
                while !matches!(read_line(stream).as_str(), "\r\n" | "") {}
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            if stream.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let length = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
        body.resize(length, 0);
        let _ = stream.read_exact(&mut body);
    }
    format!("{head}{}", String::from_utf8_lossy(&body))
}

/// Reads byte by byte up to and including `\r\n\r\n` (or the end of the stream).
fn read_until_blank_line(stream: &mut impl Read) -> String {
    read_until(stream, b"\r\n\r\n")
}

/// Reads byte by byte up to and including `\r\n` (or the end of the stream).
fn read_line(stream: &mut impl Read) -> String {
    read_until(stream, b"\r\n")
}

fn read_until(stream: &mut impl Read, end: &[u8]) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(end) {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Opens `CONNECT host:443` to gitgate, then TLS with `sni` (trusting only `ca`),
/// and returns the TLS stream ready for HTTP.
pub fn mitm_tls(
    proxy: SocketAddr,
    connect_to: &str,
    sni: &str,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    mitm_tls_with(proxy, "", connect_to, sni, ca)
}

/// [`mitm_tls`] with `connect_headers` (each ending in CRLF) on the CONNECT request.
pub fn mitm_tls_with(
    proxy: SocketAddr,
    connect_headers: &str,
    connect_to: &str,
    sni: &str,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(proxy).expect("connect");
    mitm_tls_on(tcp, connect_headers, connect_to, sni, ca)
}

/// [`mitm_tls`] from the local address `source` (a 127.0.0.0/8 one: another client).
pub fn mitm_tls_from(
    source: std::net::IpAddr,
    proxy: SocketAddr,
    connect_to: &str,
    sni: &str,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    mitm_tls_on(connect_from(source, proxy), "", connect_to, sni, ca)
}

/// A blocking connection to `to` from the local address `source` (a 127.0.0.0/8 one:
/// another client).
pub fn connect_from(source: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tcp = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(to).await
        })
        .and_then(|stream| stream.into_std())
        .expect("connect");
    tcp.set_nonblocking(false).expect("blocking");
    tcp
}

fn mitm_tls_on(
    mut tcp: TcpStream,
    connect_headers: &str,
    connect_to: &str,
    sni: &str,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        tcp,
        "CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n{connect_headers}\r\n"
    )
    .expect("write");
    let head = read_response(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT refused: {head}");
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("ca");
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("root");
    }
    rustls::StreamOwned::new(tls_client(roots, sni), tcp)
}

/// A TLS client (gitgate's crypto provider) trusting `roots`, for the server `sni`.
pub fn tls_client(roots: rustls::RootCertStore, sni: &str) -> rustls::ClientConnection {
    let provider = gitgate_certs::crypto_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).expect("name");
    rustls::ClientConnection::new(Arc::new(config), name).expect("tls")
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.expect("pem"))
        .collect()
}

/// POSTs `body` to acme/app's receive-pack inside a CONNECT github.com tunnel, with
/// `headers` (each ending in CRLF) besides Host and Content-Length; returns the reply.
pub fn post_receive_pack(gitgate: &super::Gitgate, headers: &str, body: &[u8]) -> String {
    post_receive_pack_to(gitgate, "acme/app", headers, body)
}

/// [`post_receive_pack`] to `repo` (`owner/name`).
pub fn post_receive_pack_to(
    gitgate: &super::Gitgate,
    repo: &str,
    headers: &str,
    body: &[u8],
) -> String {
    let mut tls = receive_pack_request(gitgate, repo, headers, body.len());
    // A refusing proxy may close before the whole body is sent; the reply still counts.
    let _ = tls.write_all(body);
    read_response(&mut tls)
}

/// A receive-pack POST to `repo` inside a CONNECT github.com tunnel, its head (with
/// `headers`, each ending in CRLF) sent for a body of `len` bytes, which the caller sends
/// as it likes.
pub fn receive_pack_request(
    gitgate: &super::Gitgate,
    repo: &str,
    headers: &str,
    len: usize,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut tls = mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    let head = format!(
        "POST /{repo}.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\n{headers}Content-Length: {len}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).expect("write head");
    tls
}
