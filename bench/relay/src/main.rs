//! The `rustls-relay` contender of gitgate's benchmark: the least a TLS-terminating proxy
//! built on gitgate's own crates (tokio, tokio-rustls, rustls on ring, the same cipher
//! order) can cost. It terminates TLS for the upstream's name with the upstream's
//! certificate, opens one verified TLS connection to the upstream per client connection,
//! and pumps the decrypted bytes both ways with 64 KiB buffers.
//!
//! It does none of what makes gitgate a proxy: no `CONNECT`, no HTTP parsing (so no
//! credential injection: the client sends the header itself), no policy, no pool, no audit,
//! no metrics. Whatever ratio to direct it cannot reach, gitgate cannot either.
//!
//! usage: gitgate-bench-relay --listen ADDR --upstream ADDR --name HOST --cert PEM --key PEM
//! --cafile PEM

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The copy buffer per direction.
const BUFFER: usize = 64 * 1024;

struct Opts {
    listen: SocketAddr,
    upstream: SocketAddr,
    name: ServerName<'static>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

fn usage() -> ! {
    eprintln!(
        "usage: gitgate-bench-relay --listen ADDR --upstream ADDR --name HOST --cert PEM \
         --key PEM --cafile PEM"
    );
    std::process::exit(2)
}

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("gitgate-bench-relay: {what}: {error}");
    std::process::exit(1)
}

/// rustls on ring with gitgate's cipher order (AES-128-GCM first, chosen by the server).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream, mut name, mut cert, mut key, mut cafile) =
        (None, None, None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => listen = value.parse().ok(),
            "--upstream" => upstream = value.parse().ok(),
            "--name" => name = ServerName::try_from(value).ok(),
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            "--cafile" => cafile = Some(value),
            _ => usage(),
        }
    }
    let (Some(listen), Some(upstream), Some(name), Some(cert), Some(key), Some(cafile)) =
        (listen, upstream, name, cert, key, cafile)
    else {
        usage()
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(Iterator::collect)
        .unwrap_or_else(|e| fail(&cert, e));
    let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| fail(&key, e));
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .unwrap_or_else(|e| fail("server TLS", e));
    server.ignore_client_order = true;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&cafile).unwrap_or_else(|e| fail(&cafile, e)) {
        roots
            .add(ca.unwrap_or_else(|e| fail(&cafile, e)))
            .unwrap_or_else(|e| fail(&cafile, e));
    }
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| fail("client TLS", e))
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Opts {
        listen,
        upstream,
        name,
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    }
}

/// One client connection: TLS from the client, TLS to the upstream, bytes both ways.
async fn relay(opts: Arc<Opts>, tcp: TcpStream) -> io::Result<()> {
    let mut client = opts.acceptor.accept(tcp).await?;
    let upstream = TcpStream::connect(opts.upstream).await?;
    upstream.set_nodelay(true)?;
    let mut upstream = opts.connector.connect(opts.name.clone(), upstream).await?;
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER).await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let opts = Arc::new(parse());
    let listener = TcpListener::bind(opts.listen)
        .await
        .unwrap_or_else(|e| fail("listen", e));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let opts = opts.clone();
        tokio::spawn(async move {
            // A client that goes away mid-stream is the end of its relay, not an error.
            let _ = relay(opts, tcp).await;
        });
    }
}
