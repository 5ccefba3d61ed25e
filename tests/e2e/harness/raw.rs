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

/// Reads one HTTP response head and its Content-Length body.
pub fn read_response(stream: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body);
    format!("{head}{}", String::from_utf8_lossy(&body))
}

/// Opens `CONNECT host:443` to gitgate, then TLS with `sni` (trusting only `ca`),
/// and returns the TLS stream ready for HTTP.
pub fn mitm_tls(
    proxy: SocketAddr,
    connect_to: &str,
    sni: &str,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut tcp = TcpStream::connect(proxy).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        tcp,
        "CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n\r\n"
    )
    .expect("write");
    let head = read_response(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT refused: {head}");
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("ca");
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
    rustls::StreamOwned::new(conn, tcp)
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
    let mut tls = mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    let head = format!(
        "POST /acme/app.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).expect("write head");
    // A refusing proxy may close before the whole body is sent; the reply still counts.
    let _ = tls.write_all(body);
    read_response(&mut tls)
}
