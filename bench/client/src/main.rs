//! Small-request latency client for gitgate's benchmark.
//!
//! Sends HTTP/1.1 GETs over TLS, either straight to the server (`--target` is the server)
//! or through an HTTP forward proxy (`--proxy`: `CONNECT host:443` first, then TLS inside
//! the tunnel, exactly like git and curl do with `HTTPS_PROXY`).
//!
//! * `--mode keepalive`: each of `--conns` threads opens one connection (not timed), then
//!   sends `--requests` sequential requests over it; every request is timed.
//! * `--mode newconn`: each thread sends `--requests` requests, each on a new TCP
//!   connection with a new CONNECT and a full TLS handshake (no session resumption);
//!   the timing covers everything from `connect()` to the last body byte.
//!
//! `--proxy-users FILE` (lines `NAME:SECRET`) sends `Proxy-Authorization: Basic` on each
//! CONNECT, connection `i` as user `i mod N`: many sandboxes, each with its own gitgate
//! profile, through one proxy.
//!
//! Prints one JSON object: counts, wall time, aggregate rate and latency percentiles.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

#[derive(Clone)]
struct Opts {
    target: SocketAddr,
    proxy: bool,
    host: String,
    path: String,
    headers: Vec<String>,
    conns: usize,
    requests: usize,
    newconn: bool,
    expect_bytes: Option<u64>,
    /// `Proxy-Authorization` values; connection `i` uses entry `i mod len`.
    proxy_auth: Arc<Vec<String>>,
    tls: Arc<ClientConfig>,
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn usage() -> ! {
    eprintln!(
        "usage: gitgate-bench-client --target HOST:PORT [--proxy] --host NAME --path PATH \
         --cafile PEM [--header 'K: V']... [--conns N] [--requests N] \
         [--mode keepalive|newconn] [--expect-bytes N] [--proxy-users FILE]"
    );
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let (mut target, mut proxy, mut host, mut path, mut cafile) =
        (None, false, "github.com".to_owned(), None, None);
    let (mut headers, mut conns, mut requests, mut newconn, mut expect_bytes) =
        (Vec::new(), 1usize, 500usize, false, None);
    let mut proxy_auth = Vec::new();
    while let Some(arg) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--target" => target = Some(val()),
            "--proxy" => proxy = true,
            "--host" => host = val(),
            "--path" => path = Some(val()),
            "--cafile" => cafile = Some(val()),
            "--header" => headers.push(val()),
            "--conns" => conns = val().parse().unwrap_or_else(|_| usage()),
            "--requests" => requests = val().parse().unwrap_or_else(|_| usage()),
            "--mode" => {
                newconn = match val().as_str() {
                    "keepalive" => false,
                    "newconn" => true,
                    _ => usage(),
                }
            }
            "--expect-bytes" => expect_bytes = Some(val().parse().unwrap_or_else(|_| usage())),
            "--proxy-users" => {
                let text = std::fs::read_to_string(val()).expect("read --proxy-users");
                proxy_auth = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("Basic {}", STANDARD.encode(l.trim())))
                    .collect();
            }
            _ => usage(),
        }
    }
    let target = target
        .and_then(|t| t.to_socket_addrs().ok()?.next())
        .unwrap_or_else(|| usage());
    let cafile = cafile.unwrap_or_else(|| usage());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cafile).expect("read --cafile") {
        roots.add(cert.expect("parse --cafile")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every new connection is a full handshake, like a new git or curl process.
    config.resumption = rustls::client::Resumption::disabled();
    Opts {
        target,
        proxy,
        host,
        path: path.unwrap_or_else(|| usage()),
        headers,
        conns,
        requests,
        newconn,
        expect_bytes,
        proxy_auth: Arc::new(proxy_auth),
        tls: Arc::new(config),
    }
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// TCP (+ CONNECT) + TLS handshake; returns a buffered TLS stream ready for requests.
/// `index` picks the connection's `--proxy-users` entry.
fn connect(o: &Opts, index: usize) -> io::Result<BufReader<Tls>> {
    let mut tcp = TcpStream::connect_timeout(&o.target, Duration::from_secs(10))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    if o.proxy {
        let auth = match o.proxy_auth.get(index % o.proxy_auth.len().max(1)) {
            Some(value) => format!("Proxy-Authorization: {value}\r\n"),
            None => String::new(),
        };
        write!(
            tcp,
            "CONNECT {h}:443 HTTP/1.1\r\nHost: {h}:443\r\n{auth}\r\n",
            h = o.host
        )?;
        // Read the proxy's answer byte by byte: nothing after it may be consumed.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte)? == 0 {
                return Err(other("proxy closed during CONNECT".into()));
            }
            head.push(byte[0]);
            if head.len() > 16384 {
                return Err(other("CONNECT answer too long".into()));
            }
        }
        let status = String::from_utf8_lossy(&head);
        if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
            return Err(other(format!(
                "CONNECT refused: {}",
                status.lines().next().unwrap_or("")
            )));
        }
    }
    let name = ServerName::try_from(o.host.clone()).map_err(|e| other(e.to_string()))?;
    let conn = ClientConnection::new(o.tls.clone(), name).map_err(|e| other(e.to_string()))?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(BufReader::with_capacity(64 * 1024, tls))
}

/// One GET; returns (body bytes, connection reusable).
fn request(o: &Opts, s: &mut BufReader<Tls>, scratch: &mut [u8]) -> io::Result<(u64, bool)> {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: git/2.47 gitgate-bench\r\nAccept: */*\r\n",
        o.path, o.host
    );
    for h in &o.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.get_mut().write_all(req.as_bytes())?;
    s.get_mut().flush()?;

    let mut line = String::new();
    if s.read_line(&mut line)? == 0 {
        return Err(other("connection closed before the response".into()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if s.read_line(&mut line)? == 0 {
            return Err(other("connection closed in the response head".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse::<u64>().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let body = if chunked {
        let mut total = 0u64;
        loop {
            line.clear();
            s.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    if s.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break total;
            }
            discard(s, size, scratch)?;
            total += size;
            line.clear();
            s.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        discard(s, n, scratch)?;
        n
    } else {
        close = true;
        let mut total = 0u64;
        loop {
            match s.read(scratch) {
                Ok(0) => break total,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break total,
                Err(e) => return Err(e),
            }
        }
    };
    if status != 200 {
        return Err(other(format!("HTTP {status}")));
    }
    if let Some(want) = o.expect_bytes {
        if body != want {
            return Err(other(format!("body is {body} bytes, expected {want}")));
        }
    }
    Ok((body, !close))
}

fn discard(s: &mut BufReader<Tls>, mut n: u64, scratch: &mut [u8]) -> io::Result<()> {
    while n > 0 {
        let want = scratch.len().min(n as usize);
        s.read_exact(&mut scratch[..want])?;
        n -= want as u64;
    }
    Ok(())
}

fn close(mut s: BufReader<Tls>) {
    let tls = s.get_mut();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    bytes: u64,
    end: Instant,
}

fn worker(o: Opts, index: usize, barrier: Arc<Barrier>) -> Outcome {
    let mut out = Outcome {
        latencies: Vec::with_capacity(o.requests),
        errors: 0,
        first_error: None,
        bytes: 0,
        end: Instant::now(),
    };
    let mut scratch = vec![0u8; 64 * 1024];
    let fail = |out: &mut Outcome, e: io::Error| {
        out.errors += 1;
        if out.first_error.is_none() {
            out.first_error = Some(e.to_string());
        }
    };
    if o.newconn {
        barrier.wait();
        for _ in 0..o.requests {
            let t0 = Instant::now();
            let result = connect(&o, index).and_then(|mut s| {
                let r = request(&o, &mut s, &mut scratch);
                close(s);
                r
            });
            match result {
                Ok((n, _)) => {
                    out.latencies.push(t0.elapsed());
                    out.bytes += n;
                }
                Err(e) => fail(&mut out, e),
            }
        }
    } else {
        let mut conn = connect(&o, index).map_err(|e| fail(&mut out, e)).ok();
        barrier.wait();
        for _ in 0..o.requests {
            let mut s = match conn.take() {
                Some(s) => s,
                None => match connect(&o, index) {
                    Ok(s) => s,
                    Err(e) => {
                        fail(&mut out, e);
                        continue;
                    }
                },
            };
            let t0 = Instant::now();
            match request(&o, &mut s, &mut scratch) {
                Ok((n, reusable)) => {
                    out.latencies.push(t0.elapsed());
                    out.bytes += n;
                    if reusable {
                        conn = Some(s);
                    }
                }
                Err(e) => fail(&mut out, e),
            }
        }
        if let Some(s) = conn {
            close(s);
        }
    }
    out.end = Instant::now();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn main() {
    let o = parse();
    let barrier = Arc::new(Barrier::new(o.conns + 1));
    let handles: Vec<_> = (0..o.conns)
        .map(|index| {
            let (o, b) = (o.clone(), barrier.clone());
            std::thread::spawn(move || worker(o, index, b))
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let outcomes: Vec<Outcome> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    let end = outcomes.iter().map(|o| o.end).max().unwrap_or(start);
    let wall = end.duration_since(start).as_secs_f64();
    let mut all: Vec<Duration> = outcomes.iter().flat_map(|o| o.latencies.clone()).collect();
    all.sort();
    let errors: usize = outcomes.iter().map(|o| o.errors).sum();
    let bytes: u64 = outcomes.iter().map(|o| o.bytes).sum();
    let first_error = outcomes
        .iter()
        .find_map(|o| o.first_error.clone())
        .unwrap_or_default();
    let mean = if all.is_empty() {
        f64::NAN
    } else {
        all.iter().map(|d| d.as_secs_f64()).sum::<f64>() / all.len() as f64 * 1e6
    };
    println!(
        "{{\"mode\":\"{}\",\"conns\":{},\"ok\":{},\"errors\":{},\"first_error\":{:?},\"bytes\":{},\
         \"wall_s\":{:.6},\"rate\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\
         \"mean_us\":{:.1},\"min_us\":{:.1},\"max_us\":{:.1}}}",
        if o.newconn { "newconn" } else { "keepalive" },
        o.conns,
        all.len(),
        errors,
        first_error,
        bytes,
        wall,
        all.len() as f64 / wall.max(1e-9),
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
        mean,
        all.first().map_or(f64::NAN, |d| d.as_secs_f64() * 1e6),
        all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e6),
    );
    if errors > 0 {
        std::process::exit(1);
    }
}
