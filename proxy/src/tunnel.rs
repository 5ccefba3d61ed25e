//! Opaque TCP tunnels to allow-listed hosts: bytes pass untouched, nothing is injected. A
//! tunnel reaches only the host it was allowed for: when the client speaks TLS, the server
//! name in its ClientHello must be that host, so a shared front end (a CDN, a cloud load
//! balancer) cannot be asked for another site behind an allowed name.

use std::sync::Arc;

use gitgate_policy::{Decision, HostName, Policy};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::audit::Record;
use crate::connect::Target;
use crate::git::enforce;
use crate::state::{ConnCtx, State};
use crate::tap::{Tap, TapIo};

/// The most bytes of a ClientHello read before deciding (TLS allows a handshake message
/// of up to 64 KiB here, as rustls does).
const MAX_HELLO: usize = 64 << 10;

/// Copies both ways until both sides close, then writes the tunnel's audit record. The
/// client's first bytes are checked before any reaches the host; the host may speak
/// first meanwhile. Shutdown does not cut tunnels short; the grace period bounds them.
pub(crate) async fn run(
    state: &State,
    ctx: ConnCtx,
    (policy, target): (Arc<Policy>, Target),
    mut record: Record,
    client: Upgraded,
    upstream: TcpStream,
) {
    let _lifecycle = ctx.lifecycle;
    let _open = state.observer.metrics.tunnel_opened();
    let client = TapIo::new(TokioIo::new(client), Counter::default());
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let pumped = pump(
        (&mut client_read, &mut client_write),
        upstream,
        &target.host,
    )
    .await;
    match pumped {
        Ok(Some(reason)) => {
            tracing::info!(host = %target.host, %reason, "tunnel refused");
            enforce(&policy, &mut record, &Decision::deny("allowHosts", reason));
        }
        Ok(None) => {}
        Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
    }
    let client = client_read.unsplit(client_write);
    record.bytes_in = client.tap.read;
    record.bytes_out = client.tap.written;
    state.observer.emit(record);
}

/// Copies both ways, the client's first bytes checked before any reach `host`; returns
/// why the tunnel was refused, if it was.
async fn pump<R, W>(
    (client_read, client_write): (&mut R, &mut W),
    upstream: TcpStream,
    host: &HostName,
) -> std::io::Result<Option<String>>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let down = async {
        tokio::io::copy(&mut upstream_read, client_write).await?;
        client_write.shutdown().await
    };
    let up = async {
        let (hello, first) = read_hello(client_read).await?;
        if let Some(reason) = refusal(&hello, host) {
            return Ok(Some(reason));
        }
        upstream_write.write_all(&first).await?;
        tokio::io::copy(client_read, &mut upstream_write).await?;
        upstream_write.shutdown().await?;
        Ok(None)
    };
    tokio::pin!(down, up);
    // A refusal ends both directions at once; otherwise both run to their end.
    tokio::select! {
        up = &mut up => {
            if up.as_ref().is_ok_and(Option::is_none) {
                down.await?;
            }
            up
        }
        down = &mut down => {
            down?;
            up.await
        }
    }
}

/// Reads the client's first bytes, as far as it takes to know what they are.
async fn read_hello(
    client: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(Hello, Vec<u8>)> {
    let mut reader = HelloReader::default();
    let mut first = Vec::with_capacity(4096);
    loop {
        let start = first.len();
        first.resize(start + 4096, 0);
        let n = client.read(&mut first[start..]).await?;
        first.truncate(start + n);
        if n == 0 {
            // The client closed before saying anything (more): nothing to forward.
            return Ok((Hello::NotTls, first));
        }
        if let Some(hello) = reader.feed(&first[start..]) {
            return Ok((hello, first));
        }
    }
}

/// What the first bytes a client sends into a tunnel say of where it goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    /// Not a TLS handshake: nothing to check.
    NotTls,
    /// A TLS ClientHello, and the server name it asks for, if any.
    Tls(Option<String>),
    /// A TLS handshake that is no readable ClientHello.
    Unreadable(String),
}

/// Reads a ClientHello's server name out of a client's first bytes as they come
/// (rustls parses it), reading at most [`MAX_HELLO`] bytes.
#[derive(Default)]
pub(crate) struct HelloReader {
    acceptor: rustls::server::Acceptor,
    read: usize,
}

impl HelloReader {
    /// Takes the next `bytes`; `None` until it knows what they are.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Option<Hello> {
        const HANDSHAKE: u8 = 0x16;
        if self.read == 0 && *bytes.first()? != HANDSHAKE {
            return Some(Hello::NotTls);
        }
        self.read += bytes.len();
        while !bytes.is_empty() {
            match self.acceptor.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => return Some(Hello::Unreadable(error.to_string())),
            }
        }
        match self.acceptor.accept() {
            Ok(Some(accepted)) => Some(Hello::Tls(
                accepted.client_hello().server_name().map(str::to_owned),
            )),
            Ok(None) if self.read > MAX_HELLO => Some(Hello::Unreadable(format!(
                "no ClientHello in its first {} KiB",
                MAX_HELLO >> 10
            ))),
            Ok(None) => None,
            Err((error, _)) => Some(Hello::Unreadable(error.to_string())),
        }
    }
}

/// Why a tunnel to `host` is refused, given what the client first sent.
pub(crate) fn refusal(hello: &Hello, host: &HostName) -> Option<String> {
    match hello {
        Hello::NotTls | Hello::Tls(None) => None,
        Hello::Tls(Some(name))
            if name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(host.as_str()) =>
        {
            None
        }
        Hello::Tls(Some(name)) => Some(format!(
            "the TLS server name {name} in the tunnel to {host} is not that host: a tunnel reaches only the host allowHosts allowed; CONNECT to {name} instead"
        )),
        Hello::Unreadable(why) => Some(format!(
            "the TLS handshake in the tunnel to {host} has no readable ClientHello ({why}), so its server name cannot be checked"
        )),
    }
}

/// Counts what passes, so the totals survive a tunnel that ends in an error.
#[derive(Default)]
struct Counter {
    read: u64,
    written: u64,
}

impl Tap for Counter {
    fn read(&mut self, bytes: &[u8]) {
        self.read += bytes.len() as u64;
    }

    fn written(&mut self, n: usize) {
        self.written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a rustls client sends first, asking for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(gitgate_certs::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    fn host(name: &str) -> HostName {
        HostName::parse(name).unwrap()
    }

    #[test]
    fn a_client_hello_for_another_host_is_refused() {
        let hello = client_hello("evil.example");
        assert_eq!(
            HelloReader::default().feed(&hello),
            Some(Hello::Tls(Some("evil.example".into())))
        );
        let reason = refusal(
            &Hello::Tls(Some("evil.example".into())),
            &host("ok.example"),
        );
        assert!(reason.unwrap().contains("is not that host"));
        for same in ["ok.example", "OK.Example", "ok.example."] {
            assert_eq!(
                refusal(&Hello::Tls(Some(same.into())), &host("ok.example")),
                None
            );
        }
        assert_eq!(refusal(&Hello::Tls(None), &host("ok.example")), None);
        assert_eq!(refusal(&Hello::NotTls, &host("ok.example")), None);
        assert!(refusal(&Hello::Unreadable("x".into()), &host("ok.example")).is_some());
    }

    #[test]
    fn other_protocols_pass_and_garbage_in_a_handshake_record_is_unreadable() {
        assert_eq!(
            HelloReader::default().feed(b"SSH-2.0-x\r\n"),
            Some(Hello::NotTls)
        );
        assert_eq!(HelloReader::default().feed(b""), None);
        let garbage = [0x16, 3, 1, 0, 4, 0xff, 0, 0, 0];
        assert!(matches!(
            HelloReader::default().feed(&garbage),
            Some(Hello::Unreadable(_))
        ));
        // A handshake that never completes is given up after MAX_HELLO bytes.
        let mut reader = HelloReader::default();
        let mut open = vec![0x16, 3, 1, 0x40, 0x00, 1, 0x00, 0x3f, 0xfc];
        open.resize(4096, 0);
        let mut answer = reader.feed(&open);
        while answer.is_none() {
            answer = reader.feed(&[0; 4096]);
        }
        assert!(matches!(answer, Some(Hello::Unreadable(_))), "{answer:?}");
    }

    proptest::proptest! {
        #[test]
        fn a_client_hello_reads_the_same_however_it_is_split(
            cuts in proptest::collection::vec(1usize..64, 0..40),
        ) {
            let hello = client_hello("tunnel.example");
            let mut reader = HelloReader::default();
            let mut rest = &hello[..];
            let mut answer = None;
            for cut in cuts.into_iter().chain(std::iter::repeat(usize::MAX)) {
                let (piece, more) = rest.split_at(cut.min(rest.len()));
                rest = more;
                answer = reader.feed(piece);
                if answer.is_some() || rest.is_empty() {
                    break;
                }
            }
            proptest::prop_assert_eq!(answer, Some(Hello::Tls(Some("tunnel.example".into()))));
        }

        #[test]
        fn any_bytes_are_read_without_panicking(
            pieces in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..8),
        ) {
            let mut reader = HelloReader::default();
            for piece in &pieces {
                if reader.feed(piece).is_some() {
                    break;
                }
            }
        }
    }
}
