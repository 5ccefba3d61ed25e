//! Connections to upstreams: name resolution (with `upstream.resolve` overrides),
//! verified TLS, and a keep-alive pool for HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::ProxyBody;
use crate::read_ahead::ReadAhead;
use crate::resolve::Resolver;

/// How upstream connections are made.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Host names dialled at a fixed address instead of through DNS.
    pub resolve: HashMap<String, SocketAddr>,
    /// Extra trust anchors besides the webpki roots (`upstream.caFile`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error(
        "{host} resolves to {addr}, a loopback, link-local or unspecified address; gitgate does not dial those through DNS (map the host in upstream.resolve if this is intended)"
    )]
    Forbidden { host: String, addr: IpAddr },
    #[error("cannot connect to {host} ({addr}): {source}")]
    Connect {
        host: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("connecting to {host} ({addr}) timed out after {secs} s (upstream.connectTimeout)")]
    Timeout {
        host: String,
        addr: SocketAddr,
        secs: u64,
    },
    #[error("TLS handshake with {host} ({addr}) failed: {source}")]
    Tls {
        host: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("{0} is not a valid upstream URI")]
    BadUri(String),
}

/// Dials upstreams; shared by the HTTP pool, tunnels and the token client.
#[derive(Clone)]
pub(crate) struct Dialer {
    resolve: Arc<HashMap<String, SocketAddr>>,
    resolver: Arc<Resolver>,
    tls: TlsConnector,
    tls_config: Arc<ClientConfig>,
    connect_timeout: Duration,
}

impl Dialer {
    pub(crate) fn new(settings: &UpstreamSettings) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &settings.extra_roots {
            roots.add(cert.clone())?;
        }
        let provider = gitgate_certs::crypto_provider();
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls_config = Arc::new(config);
        Ok(Self {
            resolve: Arc::new(settings.resolve.clone()),
            resolver: Resolver::system(),
            tls: TlsConnector::from(tls_config.clone()),
            tls_config,
            connect_timeout: settings.connect_timeout,
        })
    }

    /// The verified TLS client configuration (also used for the GitHub API client).
    pub(crate) fn tls_config(&self) -> Arc<ClientConfig> {
        self.tls_config.clone()
    }

    /// The `upstream.resolve` overrides.
    pub(crate) fn overrides(&self) -> &HashMap<String, SocketAddr> {
        &self.resolve
    }

    /// The addresses to try for `host:port`.
    async fn addresses(
        &self,
        host: &str,
        port: u16,
        client: Option<IpAddr>,
    ) -> Result<Arc<[SocketAddr]>, ConnectError> {
        if let Some(addr) = self.resolve.get(host) {
            return Ok(Arc::new([*addr]));
        }
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if let Ok(ip) = literal.unwrap_or(host).parse::<IpAddr>() {
            if forbidden(ip) {
                return Err(ConnectError::Forbidden {
                    host: host.to_owned(),
                    addr: ip,
                });
            }
            return Ok(Arc::new([SocketAddr::new(ip, port)]));
        }
        let resolve_err = |source| ConnectError::Resolve {
            host: host.to_owned(),
            source,
        };
        let addrs = self
            .resolver
            .lookup(host, port, self.connect_timeout, client)
            .await
            .map_err(resolve_err)?;
        if let Some(bad) = addrs.iter().find(|a| forbidden(a.ip())) {
            return Err(ConnectError::Forbidden {
                host: host.to_owned(),
                addr: bad.ip(),
            });
        }
        if addrs.is_empty() {
            return Err(resolve_err(io::Error::other("no addresses")));
        }
        Ok(addrs)
    }

    /// A TCP connection to `host:port`, trying each address in turn; a name lookup it
    /// starts counts against `client`'s share of them.
    pub(crate) async fn tcp(
        &self,
        host: &str,
        port: u16,
        client: Option<IpAddr>,
    ) -> Result<(TcpStream, SocketAddr), ConnectError> {
        let mut last = None;
        for &addr in self.addresses(host, port, client).await?.iter() {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(source)) => {
                    last = Some(ConnectError::Connect {
                        host: host.to_owned(),
                        addr,
                        source,
                    })
                }
                Err(_) => {
                    last = Some(ConnectError::Timeout {
                        host: host.to_owned(),
                        addr,
                        secs: self.connect_timeout.as_secs(),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::BadUri(host.to_owned())))
    }

    async fn connect_uri(self, uri: Uri) -> Result<Conn, ConnectError> {
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::BadUri(uri.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let (tcp, addr) = self.tcp(&host, port, None).await?;
        if !tls {
            return Ok(Conn::Plain(TokioIo::new(tcp)));
        }
        let name =
            ServerName::try_from(host.clone()).map_err(|_| ConnectError::BadUri(host.clone()))?;
        let stream = self
            .tls
            .connect(name, ReadAhead::new(tcp))
            .await
            .map_err(|source| ConnectError::Tls { host, addr, source })?;
        Ok(Conn::Tls(Box::new(TokioIo::new(stream))))
    }
}

/// The IPv6 addresses of cloud instance metadata services (AWS, Google Cloud); the IPv4
/// one, 169.254.169.254, is link-local.
const METADATA_V6: [std::net::Ipv6Addr; 2] = [
    std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    std::net::Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254),
];

/// Addresses never dialled on the strength of DNS alone: this host, link-local ones,
/// "this network" (0.0.0.0/8), broadcast, cloud metadata services, and any of these
/// inside an IPv4-mapped or NAT64 (64:ff9b::/96) address.
fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 0 || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                nat64.then(|| {
                    let [.., a, b, c, d] = v6.octets();
                    std::net::Ipv4Addr::new(a, b, c, d)
                })
            });
            v6.is_loopback()
                || v6.is_unspecified()
                || (segments[0] & 0xffc0) == 0xfe80
                || METADATA_V6.contains(&v6)
                || embedded.is_some_and(|v4| forbidden(IpAddr::V4(v4)))
        }
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect_uri(uri))
    }
}

/// An upstream connection, plain or TLS.
pub(crate) enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<ReadAhead<TcpStream>>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The most idle connections the pool keeps to one upstream host: enough for bursts of
/// concurrent clones, while an idle connection's descriptor and buffers stay bounded.
pub(crate) const MAX_IDLE_PER_HOST: usize = 256;

/// The pooled HTTP client for upstream requests.
#[derive(Clone)]
pub(crate) struct Upstream {
    dialer: Dialer,
    client: Client<Dialer, ProxyBody>,
}

impl Upstream {
    pub(crate) fn new(settings: &UpstreamSettings) -> Result<Self, rustls::Error> {
        let dialer = Dialer::new(settings)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .set_host(false)
            .build(dialer.clone());
        Ok(Self { dialer, client })
    }

    pub(crate) fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Sends `request` upstream and returns the response head with a streaming body.
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendError> {
        self.client.request(request).await.map_err(|e| SendError {
            connect: e.is_connect(),
            detail: describe(&e),
        })
    }
}

/// Why an upstream request got no response.
pub(crate) struct SendError {
    /// No connection could be made (as opposed to one failing during the exchange).
    connect: bool,
    detail: String,
}

impl SendError {
    /// What to tell the client about the request to `host`.
    pub(crate) fn describe(&self, host: &str) -> String {
        if self.connect {
            format!("cannot reach {host}: {}", self.detail)
        } else {
            format!(
                "{host} closed the connection or failed before answering: {}",
                self.detail
            )
        }
    }
}

/// The most specific message in an error chain: our own connect error if there is one.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut messages = Vec::new();
    while let Some(e) = current {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return connect.to_string();
        }
        messages.push(e.to_string());
        current = e.source();
    }
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_pointing_inside_are_refused() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.1.2.3",
            "255.255.255.255",
            "fd00:ec2::254",
            "fd20:ce::254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "140.82.112.3",
            "10.1.2.3",
            "2606:50c0:8000::153",
            "64:ff9b::8c52:7003",
            "fd00:ec2::253",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn ip_literals_are_dialled_as_written_bracketed_or_not() {
        let dialer = Dialer::new(&UpstreamSettings {
            resolve: HashMap::new(),
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(1),
        })
        .unwrap();
        for (host, want) in [
            ("[2606:50c0:8000::153]", "[2606:50c0:8000::153]:443"),
            ("2606:50c0:8000::153", "[2606:50c0:8000::153]:443"),
            ("140.82.112.3", "140.82.112.3:443"),
        ] {
            let addrs = dialer.addresses(host, 443, None).await.unwrap();
            assert_eq!(&*addrs, [want.parse().unwrap()], "{host}");
        }
        for host in ["[::1]", "127.0.0.1", "169.254.169.254"] {
            let refused = dialer.addresses(host, 443, None).await.unwrap_err();
            assert!(matches!(refused, ConnectError::Forbidden { .. }), "{host}");
        }
    }
}
