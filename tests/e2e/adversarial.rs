//! The sandbox is the attacker: crafted bytes at every layer. Each case checks the
//! status the client gets, that no token reaches the client or a non-GitHub host, and
//! that gitgate still serves a normal clone afterwards.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gitgate_standin::{Fault, StandIn};

use crate::harness::{self, Gitgate, POLICY, Sandbox, app_config, raw, text};

/// gitgate with the given `limits:` (a YAML flow mapping).
fn limited(standin: &StandIn, limits: &str) -> Gitgate {
    Gitgate::start(&harness::limited_config(standin, POLICY, limits))
}

/// gitgate with small limits, so each limit is reached quickly.
fn tight(standin: &StandIn) -> Gitgate {
    limited(
        standin,
        "{headerReadTimeout: 1s, bodyIdleTimeout: 2s, responseHeaderTimeout: 3s, maxConnectionsPerClient: 50, maxHeaders: 40, maxHeaderBytes: 16384, maxPushHeaderBytes: 65536, tlsHandshakeTimeout: 2s}",
    )
}

/// A normal clone still works, and nothing leaked.
fn still_serves(gitgate: &Gitgate, standin: &StandIn, name: &str) {
    let sandbox = Sandbox::new(gitgate);
    sandbox.clone_repo("acme/app", name);
    gitgate.assert_no_secrets(standin);
}

/// gitgate after a clone, so it holds a token the hostile requests could leak; and how
/// many requests had reached github.com by then.
fn holding_a_token(standin: &StandIn) -> (Gitgate, usize) {
    let gitgate = tight(standin);
    still_serves(&gitgate, standin, "before");
    assert!(!standin.tokens().is_empty(), "the clone minted no token");
    (gitgate, upstream_count(standin))
}

/// Sends `request` inside a CONNECT github.com tunnel and returns the reply, which
/// must carry no credential.
fn mitm(gitgate: &Gitgate, standin: &StandIn, request: &[u8]) -> String {
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    tls.write_all(request).unwrap();
    let reply = raw::read_response(&mut tls);
    harness::assert_no_secret(standin, "the reply", &reply);
    assert!(
        !reply.contains("x-access-token"),
        "a credential reached the client: {reply}"
    );
    reply
}

fn upstream_count(standin: &StandIn) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.host == "github.com")
        .count()
}

#[test]
fn path_tricks_are_refused_before_upstream() {
    let standin = harness::standin();
    let (gitgate, before) = holding_a_token(&standin);
    let long = format!(
        "/acme/{}/info/refs?service=git-upload-pack",
        "a".repeat(9000)
    );
    let cases: Vec<(String, &str)> = vec![
        (
            "/acme/secret%00/info/refs?service=git-upload-pack".into(),
            "400",
        ),
        (
            "/acme/app/%2e%2e/secret/info/refs?service=git-upload-pack".into(),
            "400",
        ),
        (
            "/acme/app/./info/refs?service=git-upload-pack".into(),
            "400",
        ),
        ("/acme//app/info/refs?service=git-upload-pack".into(), "400"),
        (
            "/acme/app.git/info/refs?service=git-upload-pack&x=1".into(),
            "400",
        ),
        (
            "/acme/app.git/info/refs?service=git-upload-archive".into(),
            "400",
        ),
        ("/acme/app.git/info/refs".into(), "403"),
        ("/acme/app.git/HEAD".into(), "403"),
        ("/acme/app.git/objects/info/packs".into(), "403"),
        ("/acme/app/archive/main.zip".into(), "403"),
        (
            "/acme/app;x/info/refs?service=git-upload-pack".into(),
            "400",
        ),
        (long, "400"),
    ];
    for (path, status) in cases {
        let reply = mitm(
            &gitgate,
            &standin,
            format!("GET {path} HTTP/1.1\r\nHost: github.com\r\n\r\n").as_bytes(),
        );
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {reply}"
        );
    }
    let reply = mitm(
        &gitgate,
        &standin,
        b"PROPFIND /acme/app.git/ HTTP/1.1\r\nHost: github.com\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert_eq!(upstream_count(&standin), before, "{:?}", standin.requests());
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn smuggling_shapes_and_header_floods_are_refused() {
    let standin = harness::standin();
    let (gitgate, before) = holding_a_token(&standin);
    let info = "/acme/app.git/info/refs?service=git-upload-pack";
    let cases = [
        format!("GET {info} HTTP/1.1\r\nHost: github.com\r\nHost: evil.test\r\n\r\n"),
        "POST /acme/app.git/git-upload-pack HTTP/1.1\r\nHost: github.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n0000".to_owned(),
        "POST /acme/app.git/git-upload-pack HTTP/1.1\r\nHost: github.com\r\nContent-Length: 4, 4\r\n\r\n0000".to_owned(),
        format!("GET https://evil.test{info} HTTP/1.1\r\nHost: github.com\r\n\r\n"),
        format!("GET {info} HTTP/1.1\r\nHost: github.com\r\n folded: header\r\n\r\n"),
    ];
    for request in &cases {
        let reply = mitm(&gitgate, &standin, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400"), "{request:?}\n{reply}");
    }
    assert_eq!(upstream_count(&standin), before, "{:?}", standin.requests());
    // Content-Length with Transfer-Encoding, in either order, also apart with a header
    // between them that ends like a request line, with a second request behind the
    // body: refused with 400, the connection closed, nothing upstream.
    for framing in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "transfer-encoding: chunked\r\ncontent-length: 4",
        "Content-Length: 4\r\nX-Pad: HTTP/1.1\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nUser-Agent: git HTTP/1.0\r\nContent-Length: 4",
    ] {
        let mut tls = raw::mitm_tls(
            gitgate.addr,
            "github.com:443",
            "github.com",
            &gitgate.ca_file(),
        );
        tls.write_all(format!("POST /acme/app.git/git-upload-pack HTTP/1.1\r\nHost: github.com\r\nContent-Type: application/x-git-upload-pack-request\r\n{framing}\r\n\r\n4\r\n0000\r\n0\r\n\r\nGET /acme/secret.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n").as_bytes()).unwrap();
        let reply = raw::read_response(&mut tls);
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(
            reply.contains("both Content-Length and Transfer-Encoding"),
            "{reply}"
        );
        assert!(
            reply.to_ascii_lowercase().contains("connection: close"),
            "{reply}"
        );
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            !rest.contains("HTTP/1.1"),
            "a second request was answered: {rest}"
        );
    }
    // After a refused CONNECT the connection still carries HTTP, and is still checked.
    let mut stream = TcpStream::connect(gitgate.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n")
        .unwrap();
    let refused = raw::read_response(&mut stream);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    stream.write_all(b"POST http://tunnel.test/x HTTP/1.1\r\nHost: tunnel.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").unwrap();
    let reply = raw::read_response(&mut stream);
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("both Content-Length"),
        "{reply}"
    );
    // The same on the proxy port, for plain HTTP.
    let reply = raw::exchange(
        gitgate.addr,
        b"POST http://tunnel.test/x HTTP/1.1\r\nHost: tunnel.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains("both Content-Length and Transfer-Encoding"),
        "{reply}"
    );
    assert_eq!(upstream_count(&standin), before, "{:?}", standin.requests());
    assert!(standin.requests().iter().all(|r| r.host != "tunnel.test"));
    // Header floods: too many fields, and too many bytes.
    let many: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = mitm(
        &gitgate,
        &standin,
        format!("GET {info} HTTP/1.1\r\nHost: github.com\r\n{many}\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let big = format!("X-Big: {}\r\n", "a".repeat(20000));
    let reply = raw::exchange(
        gitgate.addr,
        format!("CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n{big}\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert_eq!(upstream_count(&standin), before, "{:?}", standin.requests());
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxHeaderBytes");
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn slowloris_on_the_proxy_port_and_inside_the_tunnel_is_cut_off() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    // On the proxy port: half a request head, then nothing.
    let mut slow = TcpStream::connect(gitgate.addr).unwrap();
    slow.write_all(b"CONNECT github.com:443 HTTP/1.1\r\nHost: gi")
        .unwrap();
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = slow.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not cut off: {:?}",
        started.elapsed()
    );
    // Inside the MITM tunnel: TLS done, then a trickle.
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    tls.write_all(b"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not cut off: {:?}",
        started.elapsed()
    );
    crate::core::wait_until(|| {
        gitgate
            .audit()
            .iter()
            .filter(|r| r["rule"] == "limits.headerReadTimeout")
            .count()
            >= 2
    });
    still_serves(&gitgate, &standin, "after");
}

/// A kept-alive connection waiting for its next request is closed at `headerReadTimeout`
/// like any other, but that is no refusal and nothing is recorded; a next head begun and
/// not finished is recorded, as a first one is.
#[test]
fn an_idle_kept_alive_connection_is_closed_without_a_refusal_on_record() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let cut_off = |stream: &mut dyn Read| {
        let started = Instant::now();
        let _ = stream.read_to_end(&mut Vec::new());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not cut off: {:?}",
            started.elapsed()
        );
    };
    let info_refs =
        "GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n";
    let mitm = || {
        raw::mitm_tls(
            gitgate.addr,
            "github.com:443",
            "github.com",
            &gitgate.ca_file(),
        )
    };
    // Inside the MITM tunnel, and on the proxy port: answered, then silent.
    let mut tls = mitm();
    assert!(answered(&mut tls, info_refs).starts_with("HTTP/1.1 200"));
    cut_off(&mut tls);
    let mut plain = TcpStream::connect(gitgate.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let denied = answered(
        &mut plain,
        "GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n",
    );
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    cut_off(&mut plain);
    // Answered, then half of the next head.
    let mut tls = mitm();
    assert!(answered(&mut tls, info_refs).starts_with("HTTP/1.1 200"));
    tls.write_all(b"GET /acme/app.git/info/refs?service=git-up")
        .unwrap();
    cut_off(&mut tls);
    gitgate.wait_for_record(|r| r["rule"] == "limits.headerReadTimeout");
    let cut = gitgate
        .audit()
        .into_iter()
        .filter(|r| r["rule"] == "limits.headerReadTimeout")
        .collect::<Vec<_>>();
    assert_eq!(cut.len(), 1, "only the half head: {cut:?}");
    assert_eq!(cut[0]["host"], "github.com", "{}", cut[0]);
}

/// `request`'s answer on `stream`.
fn answered(stream: &mut (impl Read + Write), request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    raw::read_response(stream)
}

/// Opens `n` connections to `target` from another loopback address (so the proxy sees
/// another client) and returns how many were refused with a 503 and how many are held.
fn flood(source: std::net::IpAddr, target: SocketAddr, n: usize) -> (usize, usize) {
    let (refused, held) = hold(source, target, n);
    (refused, held.len())
}

/// Like [`flood`], but hands back the connections gitgate admitted, still open.
fn hold(
    source: std::net::IpAddr,
    target: SocketAddr,
    n: usize,
) -> (usize, Vec<tokio::net::TcpStream>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        use tokio::io::AsyncReadExt;
        let mut streams = Vec::new();
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(source, 0)).unwrap();
            if let Ok(stream) = socket.connect(target).await {
                streams.push(stream);
            }
        }
        let mut refused = n - streams.len();
        let mut held = Vec::new();
        // All at once: a refused connection has its 503 within the window, an admitted
        // one stays silent (gitgate waits for its request).
        let mut reads = tokio::task::JoinSet::new();
        for mut stream in streams {
            reads.spawn(async move {
                let mut buf = [0u8; 12];
                let read =
                    tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut buf))
                        .await;
                (stream, read.map(|_| buf))
            });
        }
        while let Some(done) = reads.join_next().await {
            match done.unwrap() {
                (_, Ok(answer)) => {
                    assert_eq!(&answer, b"HTTP/1.1 503", "a refusal");
                    refused += 1;
                }
                (stream, Err(_)) => held.push(stream),
            }
        }
        (refused, held)
    })
}

#[test]
fn a_client_opening_a_thousand_connections_does_not_starve_others() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{maxConnectionsPerClient: 50}");
    let (refused, held) = flood([127, 0, 0, 2].into(), gitgate.addr, 1000);
    assert_eq!(
        (refused, held),
        (950, 50),
        "(refused, admitted) from one client"
    );
    // Another client (127.0.0.1) clones while a second flood holds its 50 connections.
    let flooder = std::thread::spawn({
        let addr = gitgate.addr;
        move || flood([127, 0, 0, 3].into(), addr, 200)
    });
    still_serves(&gitgate, &standin, "after");
    assert_eq!(flooder.join().unwrap(), (150, 50));
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxConnectionsPerClient");
}

#[test]
fn a_push_body_that_stalls_midway_is_abandoned() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    let zero = "0".repeat(40);
    let line = format!("{zero} {} refs/heads/main\0 report-status", "1".repeat(40));
    let body_start = format!("{:04x}{line}", line.len() + 4);
    tls.write_all(
        format!(
            "POST /acme/app.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\nAccept: application/x-git-receive-pack-result\r\nContent-Length: 100000\r\n\r\n{}",
            &body_start[..30]
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let reply = raw::read_response(&mut tls);
    let waited = started.elapsed();
    // bodyIdleTimeout is 2 s: cut off then, not before and not much later.
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(
        reply.contains(
            "ERR gitgate: the push body stalled: nothing arrived for 2 s (limits.bodyIdleTimeout)"
        ),
        "{reply}"
    );
    let record = gitgate.wait_for_record(|r| r["rule"] == "limits.bodyIdleTimeout");
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(harness::receive_pack_posts(&standin), 0);
    still_serves(&gitgate, &standin, "after");
}

/// Request bodies held to decide on (API calls, LFS batch requests, push command lists)
/// share one memory budget, with a share per client address: a client opening bodies it
/// never finishes takes only its share, others still get theirs; past either limit,
/// requests get 503 naming it (git an `ERR` in its own shape), and a dropped body's share
/// comes back.
#[test]
fn bodies_held_to_decide_on_share_one_memory_budget() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&harness::limited_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main], api: [read]}",
        "{maxBufferedBodyBytes: 16MiB, maxBufferedBodyBytesPerClient: 8MiB}",
    ));
    let from = |client: u8| {
        raw::mitm_tls_from(
            [127, 0, 0, client].into(),
            gitgate.addr,
            "api.github.com:443",
            "api.github.com",
            &gitgate.ca_file(),
        )
    };
    let head = |length: usize| {
        format!(
            "POST /graphql HTTP/1.1\r\nHost: api.github.com\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // A GraphQL body of 1 MB announced and begun, then nothing: gitgate holds room for it.
    let stalled = |client: u8| {
        let mut tls = from(client);
        tls.write_all(head(1_048_000).as_bytes()).unwrap();
        tls.write_all(b"{\"query\": ").unwrap();
        tls.flush().unwrap();
        tls
    };
    // 10 kB: more than a full share or budget has left.
    let query = |client: u8| {
        let body = format!(
            "{{\"query\": \"{{ viewer {{ login }} }}{}\"}}",
            " ".repeat(10_000)
        );
        let mut tls = from(client);
        tls.write_all(format!("{}{body}", head(body.len())).as_bytes())
            .unwrap();
        raw::read_response(&mut tls)
    };
    assert!(query(1).starts_with("HTTP/1.1 200"));
    // Client 1 fills its share (8 of 1.048 MB), client 2 the rest of the whole.
    let mut hogs: Vec<_> = (0..8).map(|_| stalled(1)).collect();
    let mut busy = String::new();
    crate::core::wait_until(|| {
        busy = query(1);
        busy.starts_with("HTTP/1.1 503")
    });
    assert!(
        busy.contains("would take this client's request bodies held in memory past limits.maxBufferedBodyBytesPerClient 8.39 MB"),
        "{busy}"
    );
    gitgate.wait_for_record(|r| {
        r["rule"] == "limits.maxBufferedBodyBytes"
            && r["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:"))
    });
    // A push from client 1 is refused too, in git's shape; client 2 is still served.
    let zero = "0".repeat(40);
    let line = format!("{zero} {} refs/heads/main\0 report-status", "1".repeat(40));
    let push = format!("{:04x}{line}{}", line.len() + 4, " ".repeat(100_000));
    let reply = raw::post_receive_pack(
        &gitgate,
        "Accept: application/x-git-receive-pack-result\r\n",
        push.as_bytes(),
    );
    assert!(
        reply.contains("ERR gitgate: holding this push body to decide on it would take"),
        "{reply}"
    );
    // A push refused whatever it says keeps none of its bytes: it is told why, not busy.
    let reply = raw::post_receive_pack_to(
        &gitgate,
        "acme/secret",
        "Accept: application/x-git-receive-pack-result\r\n",
        push.as_bytes(),
    );
    assert!(
        reply.contains("acme/secret is not in allowedRepos") && !reply.contains("holding"),
        "{reply}"
    );
    assert!(query(2).starts_with("HTTP/1.1 200"));
    hogs.extend((0..8).map(|_| stalled(2)));
    crate::core::wait_until(|| {
        busy = query(3);
        busy.starts_with("HTTP/1.1 503")
    });
    assert!(
        busy.contains("past limits.maxBufferedBodyBytes 16.8 MB ("),
        "{busy}"
    );
    drop(hogs);
    crate::core::wait_until(|| query(3).starts_with("HTTP/1.1 200"));
    assert!(query(1).starts_with("HTTP/1.1 200"));
}

/// The gauge `name` on gitgate's metrics page.
fn gauge(gitgate: &Gitgate, name: &str) -> u64 {
    let page = raw::http_get(gitgate.admin_addr(), "/metrics");
    let line = page
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    line[name.len()..].trim().parse().expect("a whole number")
}

/// A tunnel's first bytes are held until they show where the tunnel goes, against the
/// memory budget of bodies held to decide on: a client opening tunnels whose ClientHellos
/// never finish takes only its share, is then refused, and others still get through.
#[test]
fn unfinished_client_hellos_in_tunnels_take_only_the_clients_share_of_memory() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&format!(
        "admin: 127.0.0.1:0\n{}",
        harness::limited_config(
            &standin,
            "{allowedRepos: [acme/app], allowHosts: [tunnel.test]}",
            // The unfinished hellos are held for the whole test, not cut off as slow.
            "{maxBufferedBodyBytes: 16MiB, maxBufferedBodyBytesPerClient: 8MiB, tlsHandshakeTimeout: 10m}",
        )
    ));
    // A handshake record announcing a 60 KiB ClientHello, then 48 KiB of it in three full
    // records: gitgate must hold it (64 KiB) to know the server name, which never comes.
    let mut unfinished = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xF0, 0x00];
    unfinished.resize(5 + (16 << 10), 0);
    for _ in 0..2 {
        unfinished.extend([0x16, 0x03, 0x01, 0x40, 0x00]);
        unfinished.resize(unfinished.len() + (16 << 10), 0);
    }
    // A tunnel from client 2 that has sent `hello`, or gitgate's refusal of the CONNECT.
    let open = |hello: &[u8]| {
        let mut tcp = raw::connect_from([127, 0, 0, 2].into(), gitgate.addr);
        tcp.write_all(b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
            .unwrap();
        let head = raw::read_response(&mut tcp);
        if !head.starts_with("HTTP/1.1 200") {
            return Err(head);
        }
        // gitgate may refuse it midway, leaving the rest unread.
        let _ = tcp.write_all(hello);
        tcp.set_nonblocking(true).unwrap();
        Ok(tcp)
    };
    // gitgate closed the tunnel (a reset, when it left bytes unread).
    let closed = |tcp: &TcpStream| match (&*tcp).read(&mut [0u8; 1]) {
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        Ok(n) => n == 0,
    };
    // Holds tunnels that have sent `hello` (each taking at least `takes` bytes) until one
    // is refused, at most `most`; the tunnels held and the refusal (`None`: the tunnel
    // was closed midway).
    let fill = |hello: &[u8], takes: u64, most: usize| {
        let mut held = Vec::new();
        loop {
            let before = gauge(&gitgate, "gitgate_buffered_body_bytes");
            let tunnel = match open(hello) {
                Ok(tunnel) => tunnel,
                Err(refusal) => return (held, Some(refusal)),
            };
            crate::core::wait_until(|| {
                closed(&tunnel) || gauge(&gitgate, "gitgate_buffered_body_bytes") >= before + takes
            });
            if closed(&tunnel) {
                return (held, None);
            }
            held.push(tunnel);
            assert!(
                held.len() <= most,
                "{} tunnels held with no refusal",
                held.len()
            );
        }
    };
    // Each unfinished hello held takes 52 to 70 KiB of the 8 MiB share (with its 4 KiB
    // read buffer): 118 to 157 tunnels fit.
    let (mut hogs, _) = fill(&unfinished, 53_000, 157);
    assert!(hogs.len() >= 118, "refused after {} tunnels", hogs.len());
    let record = gitgate.wait_for_record(|r| r["rule"] == "limits.maxBufferedBodyBytes");
    let busy = "holding this tunnel's first bytes to decide on it would take this client's request bodies held in memory past limits.maxBufferedBodyBytesPerClient 8.39 MB";
    assert!(
        record["reason"].as_str().is_some_and(|r| r.contains(busy)),
        "{record}"
    );
    // Once the share has no room for the read buffer, the CONNECT itself gets a 503
    // saying why.
    let (small, refusal) = fill(b"\x16", 4097, 20);
    let refusal = refusal.expect("a CONNECT refused");
    assert!(
        refusal.starts_with("HTTP/1.1 503") && refusal.contains(busy),
        "{refusal}"
    );
    hogs.extend(small);
    assert_eq!(record["host"], "tunnel.test", "{record}");
    assert!(gauge(&gitgate, "gitgate_buffered_body_bytes") <= 8 << 20);
    // Another client's tunnel still reaches the host.
    let mut tls = raw::mitm_tls_from(
        [127, 0, 0, 3].into(),
        gitgate.addr,
        "tunnel.test:443",
        "tunnel.test",
        standin.ca_file(),
    );
    tls.write_all(b"GET / HTTP/1.1\r\nHost: tunnel.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = raw::read_response(&mut tls);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Closed tunnels give their share back.
    drop(hogs);
    crate::core::wait_until(|| gauge(&gitgate, "gitgate_buffered_body_bytes") == 0);
}

/// `responseHeaderTimeout` counts from the last byte of the request upstream took: an
/// upload that keeps moving for longer than it is not cut off.
#[test]
fn a_push_that_keeps_moving_outlasts_the_response_header_timeout() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{responseHeaderTimeout: 2s}");
    let main = standin.rev_parse("acme", "app", "refs/heads/main").unwrap();
    // GitHub may answer only once it has read the whole push: so does the stand-in here.
    standin.set_fault(Some(Fault::RpcCutOff {
        rpc: "git-receive-pack".into(),
        content_type: "application/x-git-receive-pack-result".into(),
        bytes: b"0013\x01000eunpack ok\n".to_vec(),
    }));
    let zero = "0".repeat(40);
    let line = format!("{zero} {main} refs/heads/release/slow\0 report-status");
    let commands = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
    let pack = std::process::Command::new("git")
        .args(["pack-objects", "--stdout", "-q"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(pack.stdout.starts_with(b"PACK"), "{}", text(&pack));
    let mut tls = raw::receive_pack_request(
        &gitgate,
        "acme/app",
        "Accept: application/x-git-receive-pack-result\r\nContent-Type: application/x-git-receive-pack-request\r\n",
        commands.len() + pack.stdout.len(),
    );
    // The command list at once (gitgate decides on it, then forwards), then the pack over
    // about 4 s: twice the timeout, never more than 250 ms without a byte.
    tls.write_all(&commands).unwrap();
    let started = Instant::now();
    for piece in pack.stdout.chunks(2) {
        tls.write_all(piece).unwrap();
        tls.flush().unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let reply = raw::read_response(&mut tls);
    assert!(started.elapsed() > Duration::from_secs(3));
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("unpack ok"),
        "{reply}"
    );
}

#[test]
fn a_gzip_bomb_in_a_push_is_bounded() {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    let standin = harness::standin();
    let gitgate = tight(&standin);
    // Well-formed commands past limits.maxPushHeaderBytes (64 KiB here), then 256 MiB of
    // zeros: about 1 MB gzipped.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    let (zero, one) = ("0".repeat(40), "1".repeat(40));
    for i in 0..1000 {
        let caps = if i == 0 { "\0 report-status" } else { "" };
        let line = format!("{zero} {one} refs/heads/b{i}{caps}\n");
        write!(gz, "{:04x}{line}", line.len() + 4).unwrap();
    }
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let before = gitgate.peak_rss_kib();
    let reply = raw::post_receive_pack(&gitgate, "Content-Encoding: gzip\r\n", &bomb);
    assert!(
        reply.contains("push header exceeds 65536 bytes (limits.maxPushHeaderBytes)"),
        "{reply}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxPushHeaderBytes");
    // The other way round: empty stored deflate blocks, which inflate to nothing, are
    // refused once more than the limit was sent (1 MiB: a body the client can finish
    // sending before gitgate's answer, so the answer is not lost to a reset).
    let mut padding = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    padding.extend([0, 0, 0, 0xff, 0xff].repeat((1 << 20) / 5));
    let reply = raw::post_receive_pack(&gitgate, "Content-Encoding: gzip\r\n", &padding);
    assert!(
        reply.contains("push header exceeds 65536 bytes as sent (limits.maxPushHeaderBytes)"),
        "{reply}"
    );
    let growth = gitgate.peak_rss_kib().saturating_sub(before);
    assert!(growth < 16 * 1024, "RSS grew by {growth} KiB");
    assert_eq!(harness::receive_pack_posts(&standin), 0);
    still_serves(&gitgate, &standin, "after");
}

/// A client that does not trust gitgate's CA (the usual setup mistake) fails its
/// handshake; the audit log says so and what to do.
#[test]
fn a_client_that_does_not_trust_the_ca_is_recorded_with_what_to_do() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    // Trusting the stand-in's CA, not gitgate's.
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        standin.ca_file(),
    );
    let sent = tls
        .write_all(b"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n")
        .and_then(|()| tls.flush());
    assert!(sent.is_err(), "the client trusted gitgate's certificate");
    let record = gitgate.wait_for_record(|r| r["rule"] == "tls");
    assert_eq!(record["host"], "github.com", "{record}");
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["reason"].as_str().is_some_and(|r| r
            .contains("the client refused gitgate's certificate for github.com")
            && r.contains("the sandbox must trust gitgate's CA certificate")),
        "{record}"
    );
    assert_eq!(upstream_count(&standin), 0, "nothing went upstream");
}

#[test]
fn client_hello_without_sni_is_served_for_the_connect_host_and_a_wrong_sni_is_refused() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let sandbox = Sandbox::new(&gitgate);
    // curl sends no SNI for an IP-literal URL; --connect-to keeps CONNECT at github.com.
    let out = sandbox.curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--connect-to",
        "127.0.0.1:443:github.com:443",
        "-H",
        "Host: github.com",
        "https://127.0.0.1/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        text(&out)
    );
    let out = sandbox.curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--connect-to",
        "other.test:443:github.com:443",
        "https://other.test/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "400",
        "{}",
        text(&out)
    );
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn an_upstream_error_on_a_push_or_fetch_reaches_git_in_githubs_words() {
    // git shows only the status of a failed POST (and "Everything up-to-date" after a
    // push); gitgate says what GitHub said.
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "refused.txt", "r\n");
    standin.set_fault(Some(Fault::RpcError {
        rpc: "git-receive-pack".into(),
        status: 403,
        body: "Write access to repository not granted.\n".into(),
    }));
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        out.contains("remote error: gitgate: github.com answered HTTP 403 for acme/app: Write access to repository not granted.")
            && !out.contains("Everything up-to-date"),
        "{out}"
    );
    standin.set_fault(Some(Fault::RpcError {
        rpc: "git-upload-pack".into(),
        status: 500,
        body: "Internal\n  Server Error".into(),
    }));
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "https://github.com/acme/app.git",
            "v0",
        ],
    );
    assert!(
        out.contains("remote error: gitgate: github.com answered HTTP 500 for acme/app: Internal Server Error"),
        "{out}"
    );
    let record = gitgate.wait_for_record(|r| r["upstream_status"] == 500);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{record}"
    );
    standin.set_fault(None);
    still_serves(&gitgate, &standin, "after");
}

/// A request whose client goes away before gitgate answers (here while GitHub stalls)
/// is still recorded, saying so: a push GitHub applies after its client left must not go
/// unrecorded.
#[test]
fn a_request_its_client_abandons_before_the_answer_is_still_recorded() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{}");
    standin.set_fault(Some(Fault::GitStall));
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    tls.write_all(
        b"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n",
    )
    .unwrap();
    tls.flush().unwrap();
    crate::core::wait_until(|| {
        standin
            .requests()
            .iter()
            .any(|r| r.target.contains("/info/refs"))
    });
    drop(tls);
    let record = gitgate.wait_for_record(|r| {
        r["path"].as_str().is_some_and(|p| p.contains("info/refs"))
            && r["error"]
                .as_str()
                .is_some_and(|e| e.contains("ended before gitgate answered"))
    });
    assert_eq!(record["decision"], "allow", "{record}");
    standin.set_fault(None);
}

#[test]
fn an_upstream_that_stalls_or_cuts_off_gives_a_clear_error() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "warm");
    standin.set_fault(Some(Fault::GitStall));
    let started = Instant::now();
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/acme/app.git"],
    );
    assert!(
        out.contains("gitgate: github.com did not answer within 3 s"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let record = gitgate.wait_for_record(|r| r["status"] == 504);
    assert_eq!(
        record["error"], "github.com did not answer within 3 s (limits.responseHeaderTimeout)",
        "{record}"
    );
    // A push is told the same way: inside the side-band its command list asked for
    // (a bare ERR line would be "bad band" to git).
    standin.set_fault(Some(Fault::PushStall));
    let repo = sandbox.path("warm");
    sandbox.commit(&repo, "stalled.txt", "s\n");
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        out.contains("remote error: gitgate: github.com did not answer within 3 s"),
        "{out}"
    );
    // And a fetch (here a clone's), with either protocol version.
    standin.set_fault(Some(Fault::FetchStall));
    for version in ["0", "2"] {
        let protocol = format!("protocol.version={version}");
        let url = "https://github.com/acme/app.git";
        let out = sandbox.git_fails(
            sandbox.home.path(),
            &["-c", &protocol, "clone", url, &format!("v{version}")],
        );
        assert!(
            out.contains("remote error: gitgate: github.com did not answer within 3 s"),
            "protocol v{version}: {out}"
        );
    }
    standin.set_fault(Some(Fault::GitCutOff));
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/acme/app.git"],
    );
    let cut_off = "gitgate: github.com closed the connection or failed before answering";
    assert!(out.contains(cut_off), "{out}");
    let record = gitgate.wait_for_record(|r| r["status"] == 502);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(&cut_off["gitgate: ".len()..])),
        "{record}"
    );
    // An answer to a push that breaks off between two packets is ended with the reason
    // (git would print curl's error, then "Everything up-to-date").
    standin.set_fault(Some(Fault::RpcCutOff {
        rpc: "git-receive-pack".into(),
        content_type: "application/x-git-receive-pack-result".into(),
        bytes: b"0013\x01000eunpack ok\n".to_vec(),
    }));
    sandbox.commit(&repo, "cut.txt", "c\n");
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        out.contains("remote: gitgate: github.com broke off its answer to this push")
            && out.contains("run git fetch to see")
            && !out.contains("Everything up-to-date"),
        "{out}"
    );
    standin.set_fault(None);
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn a_redirect_to_another_host_is_passed_on_and_never_followed_with_the_token() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let sandbox = Sandbox::new(&gitgate);
    standin.set_fault(Some(Fault::GitRedirect {
        location: "https://tunnel.test/stolen/info/refs?service=git-upload-pack".into(),
    }));
    let out = sandbox.curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "https://github.com/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "302 https://tunnel.test/stolen/info/refs?service=git-upload-pack",
        "{}",
        text(&out)
    );
    // git follows it through gitgate (a tunnel to tunnel.test, whose certificate git can
    // check with the stand-in's CA): the tunnel host gets the request, and no token.
    let bundle = sandbox.path("both-cas.pem");
    let cas = [gitgate.ca_file(), standin.ca_file().to_owned()]
        .map(|ca| std::fs::read_to_string(ca).unwrap())
        .concat();
    std::fs::write(&bundle, cas).unwrap();
    let out = sandbox.git_with_env(
        sandbox.home.path(),
        &[
            "-c",
            "http.followRedirects=true",
            "ls-remote",
            "https://github.com/acme/app.git",
        ],
        &[("GIT_SSL_CAINFO", &bundle.display().to_string())],
    );
    standin.set_fault(None);
    let followed: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.host == "tunnel.test")
        .collect();
    assert!(
        !followed.is_empty(),
        "git did not follow the redirect: {}",
        text(&out)
    );
    for request in &followed {
        assert_eq!(request.target, "/stolen/info/refs?service=git-upload-pack");
        assert!(request.header("authorization").is_none(), "{request:?}");
    }
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn http2_offered_through_alpn_is_declined_for_http1() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let sandbox = Sandbox::new(&gitgate);
    let out = sandbox.curl(&[
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "https://github.com/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.1 200",
        "{}",
        text(&out)
    );
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_a_short_one_is_reported() {
    let standin = harness::standin();
    let config = app_config(&standin, POLICY);
    // A soft limit below what the default connection limits take, under a hard limit
    // that holds them: raised.
    let roomy = Gitgate::start_under(&config, &["prlimit", "--nofile=1024:20000", "--"]);
    assert_eq!(
        roomy.limit("Max open files"),
        ("20000".to_owned(), "20000".to_owned())
    );
    assert!(
        !roomy.output().contains("open-file limit"),
        "{}",
        roomy.output()
    );
    // A hard limit that cannot hold them: said at start, with what to change.
    let short = Gitgate::start_under(&config, &["prlimit", "--nofile=512:1024", "--"]);
    assert_eq!(
        short.limit("Max open files"),
        ("1024".to_owned(), "1024".to_owned())
    );
    let output = short.output();
    assert!(
        output.contains("the open-file limit is 1024, below the 9088 descriptors limits.maxConnections (4096) can take")
            && output.contains("raise the hard limit (systemd LimitNOFILE="),
        "{output}"
    );
    // Limits that fit it are not warned about.
    let fitting = Gitgate::start_under(
        &harness::limited_config(
            &standin,
            POLICY,
            "{maxConnections: 100, maxConnectionsPerClient: 50, maxHeldPushes: 16}",
        ),
        &["prlimit", "--nofile=512:1024", "--"],
    );
    assert!(
        !fitting.output().contains("open-file limit"),
        "{}",
        fitting.output()
    );
}

#[test]
fn intercepted_and_tunneled_sessions_count_against_the_connection_limits() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{maxConnectionsPerClient: 5}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers: Vec<String> = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut held = Vec::new();
        let mut answers = Vec::new();
        for i in 0..8 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new([127, 0, 0, 2].into(), 0))
                .unwrap();
            let mut stream = socket.connect(gitgate.addr).await.unwrap();
            let target = if i % 2 == 0 {
                "github.com:443"
            } else {
                "tunnel.test:443"
            };
            let _ = stream
                .write_all(
                    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
                )
                .await;
            let mut head = [0u8; 12];
            let answer =
                match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
                    .await
                {
                    Ok(Ok(_)) => String::from_utf8_lossy(&head).into_owned(),
                    _ => "closed".to_owned(),
                };
            answers.push(answer);
            held.push(stream);
        }
        answers
    });
    let admitted = answers
        .iter()
        .filter(|a| a.as_str() == "HTTP/1.1 200")
        .count();
    assert_eq!(admitted, 5, "{answers:?}");
    assert!(
        answers[5..].iter().all(|a| a == "HTTP/1.1 503"),
        "{answers:?}"
    );
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn an_upstream_with_an_untrusted_certificate_is_refused_and_gets_no_token() {
    let standin = harness::standin();
    // Same config, but without the stand-in's CA: its certificate does not verify.
    let config = app_config(&standin, POLICY)
        .replace(&format!("  caFile: {}\n", standin.ca_file().display()), "");
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/acme/app.git"],
    );
    assert!(out.contains("gitgate: cannot reach"), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    assert!(
        standin.requests().is_empty(),
        "a request got through: {:?}",
        standin.requests()
    );
    assert!(standin.mints().is_empty());
}

#[test]
fn a_401_from_github_is_never_passed_to_git_as_a_challenge() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    let sandbox = Sandbox::new(&gitgate);
    standin.set_fault(Some(Fault::GitError {
        status: 401,
        body: "Bad credentials\n".into(),
    }));
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/acme/app.git"],
    );
    assert!(
        out.contains("refused gitgate's credential for acme/app (HTTP 401)"),
        "{out}"
    );
    assert!(
        !out.contains("Username"),
        "git asked for credentials: {out}"
    );
    let raw = sandbox.curl(&[
        "-s",
        "-D",
        "-",
        "https://github.com/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert!(
        !String::from_utf8_lossy(&raw.stdout)
            .to_ascii_lowercase()
            .contains("www-authenticate"),
        "{}",
        text(&raw)
    );
    standin.set_fault(None);
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn max_tunnels_and_idle_tunnels_are_limited() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{maxTunnels: 2, idleTimeout: 2s}");
    let open = || {
        let mut stream = TcpStream::connect(gitgate.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
            .unwrap();
        let head = raw::read_response(&mut stream);
        (stream, head)
    };
    let (mut first, a) = open();
    let (_second, b) = open();
    let (_third, c) = open();
    assert!(
        a.starts_with("HTTP/1.1 200") && b.starts_with("HTTP/1.1 200"),
        "{a}{b}"
    );
    assert!(
        c.starts_with("HTTP/1.1 503") && c.contains("limits.maxTunnels"),
        "{c}"
    );
    // An idle tunnel is closed after idleTimeout.
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxTunnels");
    still_serves(&gitgate, &standin, "after");
}

/// One client address holds at most its share of `maxTunnels`: past it, it is refused
/// naming `limits.maxTunnelsPerClient`, and another client still gets a tunnel.
#[test]
fn one_client_holds_at_most_its_share_of_the_tunnels() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{maxTunnels: 3, maxTunnelsPerClient: 2}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let open_from = |last: u8| {
        let stream = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new([127, 0, 0, last].into(), 0))
                .unwrap();
            socket.connect(gitgate.addr).await.unwrap()
        });
        let mut stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = answered(
            &mut stream,
            "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n",
        );
        (stream, head)
    };
    let held: Vec<_> = [2, 2].map(open_from).into_iter().collect();
    for (_, head) in &held {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let (_, past_share) = open_from(2);
    assert!(
        past_share.starts_with("HTTP/1.1 503") && past_share.contains("limits.maxTunnelsPerClient"),
        "{past_share}"
    );
    let (_other, other) = open_from(3);
    assert!(other.starts_with("HTTP/1.1 200"), "another client: {other}");
    let (_, past_all) = open_from(3);
    assert!(
        past_all.starts_with("HTTP/1.1 503") && past_all.contains("limits.maxTunnels ="),
        "{past_all}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxTunnelsPerClient");
    // Closed tunnels give their slots back (once gitgate has seen them end).
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let (_stream, head) = open_from(2);
        if head.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break head;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(again.starts_with("HTTP/1.1 200"), "after closing: {again}");
}

/// A tunnel whose ClientHello trickles in a byte at a time, each in time for
/// `idleTimeout`, is ended once `tlsHandshakeTimeout` is over: it cannot hold a tunnel
/// slot without ever showing where it goes.
#[test]
fn a_trickled_client_hello_ends_the_tunnel_at_the_handshake_timeout() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{tlsHandshakeTimeout: 1s, idleTimeout: 30s}");
    let mut tcp = TcpStream::connect(gitgate.addr).unwrap();
    tcp.write_all(b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
        .unwrap();
    let head = raw::read_response(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A handshake record announcing 16 KiB, then one byte of it every 200 ms.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let closed = loop {
        match (&tcp).read(&mut [0u8; 1]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) | Err(_) => break true,
            Ok(_) => panic!("the host answered a ClientHello that never came"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
        if tcp.write_all(&[0]).is_err() {
            break true;
        }
    };
    let took = started.elapsed();
    assert!(closed && took < Duration::from_secs(5), "{took:?}");
    let record = gitgate.wait_for_record(|r| r["rule"] == "limits.tlsHandshakeTimeout");
    assert_eq!(record["host"], "tunnel.test", "{record}");
    assert_eq!(record["decision"], "deny", "{record}");
    still_serves(&gitgate, &standin, "after");
}

/// gitgate with `limits`, allowing tunnels to `host.test`, which goes to a host run by
/// `serve` on each connection it accepts; and a client connection with that tunnel open.
fn tunnel_to(standin: &StandIn, limits: &str, serve: fn(TcpStream)) -> (Gitgate, TcpStream) {
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in host.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
    let config = harness::limited_config(
        standin,
        "{allowedRepos: [acme/app], allowHosts: [host.test]}",
        limits,
    )
    .replace(
        "resolve: {",
        &format!("resolve: {{host.test: \"127.0.0.1:{port}\", "),
    );
    let gitgate = Gitgate::start(&config);
    let mut tcp = TcpStream::connect(gitgate.addr).unwrap();
    tcp.write_all(b"CONNECT host.test:443 HTTP/1.1\r\nHost: host.test:443\r\n\r\n")
        .unwrap();
    let head = raw::read_response(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    (gitgate, tcp)
}

/// The bytes a TLS client sends first, asking for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let mut conn = raw::tls_client(rustls::RootCertStore::empty(), name);
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// A ClientHello for another site in a record of an odd version, or after an alert, is
/// still read as TLS (servers such as Go's take either), so the tunnel is refused before
/// any byte reaches the host.
#[test]
fn a_client_hello_in_an_odd_record_is_still_checked() {
    let standin = harness::standin();
    let reached = |mut stream: TcpStream| {
        if stream.read(&mut [0u8; 1]).unwrap_or(0) > 0 {
            let _ = stream.write_all(b"reached");
        }
    };
    let (gitgate, first) = tunnel_to(&standin, "{}", reached);
    let mut odd_version = client_hello("other.test");
    odd_version[1..3].copy_from_slice(&[0, 1]);
    let alert_first = [
        &[0x15, 3, 1, 0, 2, 1, 0x5a][..],
        &client_hello("other.test"),
    ]
    .concat();
    let tunnel = || {
        let mut tcp = TcpStream::connect(gitgate.addr).unwrap();
        let head = answered(
            &mut tcp,
            "CONNECT host.test:443 HTTP/1.1\r\nHost: host.test:443\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        tcp
    };
    for (mut tcp, bytes) in [(first, odd_version), (tunnel(), alert_first)] {
        tcp.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got);
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    for why in ["a TLS record of version 0.1", "a TLS record of type 21"] {
        gitgate.wait_for_record(|r| {
            r["rule"] == "allowHosts"
                && r["host"] == "host.test"
                && r["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains(why))
        });
    }
}

/// A tunnel whose client closed its side, to a host that keeps its side open and says
/// nothing, ends at `idleTimeout` like any idle connection.
#[test]
fn a_half_closed_tunnel_to_a_silent_host_ends_at_the_idle_timeout() {
    let standin = harness::standin();
    // The host holds the connection, never reading, writing or closing.
    let hold = |stream: TcpStream| {
        std::thread::sleep(Duration::from_secs(60));
        drop(stream);
    };
    let (_gitgate, mut tcp) = tunnel_to(&standin, "{idleTimeout: 2s}", hold);
    tcp.write_all(b"SSH-2.0-client\r\n").unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let started = Instant::now();
    let read = (&tcp).read(&mut [0u8; 1]);
    let took = started.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)) && took < Duration::from_secs(8),
        "{read:?} after {took:?}"
    );
}

/// A client that waits for the host to speak first (SMTP, FTP) is not held to
/// `tlsHandshakeTimeout`: its time starts with its first byte.
#[test]
fn a_host_that_speaks_first_after_the_handshake_timeout_is_still_reached() {
    let standin = harness::standin();
    let greet_late = |mut stream: TcpStream| {
        std::thread::sleep(Duration::from_millis(2500));
        stream.write_all(b"220 ready\r\n").unwrap();
        let mut line = [0u8; 8];
        stream.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"EHLO x\r\n");
        stream.write_all(b"250 ok\r\n").unwrap();
        std::thread::sleep(Duration::from_secs(5));
    };
    let limits = "{tlsHandshakeTimeout: 1s, idleTimeout: 30s}";
    let (_gitgate, mut tcp) = tunnel_to(&standin, limits, greet_late);
    let mut greeting = [0u8; 11];
    tcp.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220 ready\r\n");
    tcp.write_all(b"EHLO x\r\n").unwrap();
    let mut ok = [0u8; 8];
    tcp.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"250 ok\r\n");
}

#[test]
fn the_overall_connection_cap_turns_every_client_away_with_503_and_a_record() {
    let standin = harness::standin();
    let gitgate = limited(
        &standin,
        "{maxConnections: 30, maxConnectionsPerClient: 20}",
    );
    let (refused, first) = hold([127, 0, 0, 2].into(), gitgate.addr, 25);
    assert_eq!((refused, first.len()), (5, 20), "per-client cap first");
    let (refused, second) = hold([127, 0, 0, 3].into(), gitgate.addr, 15);
    assert_eq!((refused, second.len()), (5, 10), "then the overall cap");
    let reply = raw::exchange(
        gitgate.addr,
        b"CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 503") && reply.contains("limits.maxConnections)"),
        "{reply}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxConnections" && r["status"] == 503);
    // Closed connections give their places back.
    drop((first, second));
    crate::core::wait_until(|| {
        raw::exchange(gitgate.addr, b"GET / HTTP/1.1\r\nHost: gitgate\r\n\r\n")
            .starts_with("HTTP/1.1 400")
    });
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn a_tunnel_without_a_tls_handshake_is_closed_at_the_handshake_timeout() {
    let standin = harness::standin();
    let gitgate = tight(&standin);
    // One gets 200 and sends nothing; the other sends the first bytes of a TLS record.
    for first_bytes in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00][..]] {
        let mut stream = TcpStream::connect(gitgate.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n")
            .unwrap();
        let head = raw::read_response(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream.write_all(first_bytes).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
            "closed after {waited:?}; tlsHandshakeTimeout is 2s"
        );
    }
    crate::core::wait_until(|| {
        gitgate
            .audit()
            .iter()
            .filter(|r| r["rule"] == "limits.tlsHandshakeTimeout" && r["host"] == "github.com")
            .count()
            == 2
    });
    still_serves(&gitgate, &standin, "after");
}

/// A push certificate whose header holds a `-----BEGIN` line git does not take for a
/// signature: git runs every command after the blank line, so gitgate decides them all
/// (here a branch outside `allowedRefs`, refused; upstream gets no request).
#[test]
fn commands_in_a_push_certificate_are_all_decided() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{}");
    let main = standin
        .rev_parse("acme", "app", "refs/heads/main")
        .expect("main");
    let pkt = |data: &str| format!("{:04x}{data}", data.len() + 4);
    let mut body = [
        "push-cert\0 report-status",
        "certificate version 0.1\n",
        "-----BEGIN X\n",
        "\n",
        &format!("{} {main} refs/heads/outside\n", "0".repeat(40)),
        "push-cert-end\n",
    ]
    .map(pkt)
    .concat()
    .into_bytes();
    body.extend_from_slice(b"0000");
    // An empty pack: header (version 2, no objects) and its SHA-1.
    let header = *b"PACK\0\0\0\x02\0\0\0\0";
    body.extend_from_slice(&header);
    body.extend_from_slice(
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &header).as_ref(),
    );
    let reply = raw::post_receive_pack(
        &gitgate,
        "Content-Type: application/x-git-receive-pack-request\r\n",
        &body,
    );
    assert!(
        reply.contains("ng refs/heads/outside") && reply.contains("allowedRefs"),
        "{reply}"
    );
    assert_eq!(standin.rev_parse("acme", "app", "refs/heads/outside"), None);
    assert_eq!(harness::receive_pack_posts(&standin), 0);
}

#[test]
fn a_denied_push_past_max_drain_bytes_is_cut_off_and_recorded() {
    let standin = harness::standin();
    let gitgate = limited(&standin, "{maxDrainBytes: 65536}");
    let line = format!(
        "{} {} refs/heads/not-allowed\0 report-status",
        "0".repeat(40),
        "1".repeat(40)
    );
    let mut body = format!("{:04x}{line}0000PACK", line.len() + 4).into_bytes();
    body.resize(4 << 20, b'x');
    let reply = raw::post_receive_pack(&gitgate, "", &body);
    let over = gitgate.wait_for_record(|r| r["rule"] == "limits.maxDrainBytes");
    let drained = over["bytes_in"].as_u64().unwrap();
    assert!(
        drained > 65536 && drained < 1 << 20,
        "drained {drained} bytes of 4 MiB"
    );
    // git still reads why, then the connection closes.
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("connection: close"), "{reply}");
    assert!(reply.contains("ng refs/heads/not-allowed"), "{reply}");
    assert_eq!(harness::receive_pack_posts(&standin), 0);
    still_serves(&gitgate, &standin, "after");
}

#[test]
fn a_name_that_resolves_to_loopback_is_never_dialled() {
    // `localhost` resolves through the system resolver (/etc/hosts) to 127.0.0.1, where
    // a listener waits; allow-listing the name must not open the proxy's own host.
    let inside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    inside.set_nonblocking(true).unwrap();
    let port = inside.local_addr().unwrap().port();
    let config = format!("listen: 127.0.0.1:0\npolicy: {{allowHosts: [\"localhost:{port}\"]}}\n");
    let gitgate = Gitgate::start(&config);
    let reply = raw::exchange(
        gitgate.addr,
        format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(
        reply.contains("loopback") && reply.contains("upstream.resolve"),
        "{reply}"
    );
    let reply = raw::exchange(
        gitgate.addr,
        format!("GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
            .as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(
        matches!(inside.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "gitgate connected to a loopback listener"
    );
}

#[test]
fn a_plain_http_upstream_that_never_answers_gets_504_at_the_response_header_timeout() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // Accepts, reads the request, never answers; holds the connection until the test ends.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let _ = raw::read_response(&mut conn);
        let _ = held_tx.send(conn);
    });
    let config = format!(
        "listen: 127.0.0.1:0\nupstream:\n  resolve: {{plain.test: \"127.0.0.1:{port}\"}}\npolicy: {{allowHosts: [\"plain.test:{port}\"]}}\nlimits: {{responseHeaderTimeout: 1s}}\n"
    );
    let gitgate = Gitgate::start(&config);
    let started = Instant::now();
    let reply = raw::exchange(
        gitgate.addr,
        format!("GET http://plain.test:{port}/slow HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n")
            .as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    assert!(reply.contains("responseHeaderTimeout"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    gitgate.wait_for_record(|r| r["status"] == 504 && r["host"] == format!("plain.test:{port}"));
    drop(held_rx);
}
