//! The core proxy: interception, tunnels, host policy, Host/SNI checks, upstream
//! failures, shutdown.

use std::io::{Read, Write};
use std::time::Duration;

use gitgate_standin::Fault;

use crate::harness::{self, Gitgate, POLICY, Sandbox, app_config, raw, text};

#[test]
fn clone_and_fetch_through_the_mitm_path() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    assert!(repo.join("README.md").exists());
    sandbox.git_ok(&repo, &["fetch", "-q", "origin"]);
    let seen = standin.requests();
    assert!(
        seen.iter()
            .any(|r| r.target == "/acme/app.git/info/refs?service=git-upload-pack")
    );
    assert!(
        seen.iter()
            .any(|r| r.method == "POST" && r.target == "/acme/app.git/git-upload-pack")
    );
    assert!(
        seen.iter()
            .all(|r| r.host == "github.com" || r.host == "api.github.com")
    );
    gitgate.assert_no_secrets(&standin);
}

/// `curl ARGS` in the sandbox, trusting only the stand-in's CA (what a tunnel shows).
fn curl_trusting_upstream(
    sandbox: &Sandbox,
    standin: &gitgate_standin::StandIn,
    args: &[&str],
) -> std::process::Output {
    let ca = standin.ca_file().display().to_string();
    sandbox.curl(&[&["--cacert", ca.as_str()][..], args].concat())
}

#[test]
fn allow_listed_host_is_tunneled_with_the_upstream_certificate() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    // Trusting only the stand-in's CA works: the certificate is the upstream's own.
    let out = curl_trusting_upstream(&sandbox, &standin, &["https://tunnel.test/"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from tunnel.test\n"
    );
    // Trusting only gitgate's CA fails: nothing was intercepted.
    let out = sandbox.curl(&["https://tunnel.test/"]);
    assert!(
        !out.status.success(),
        "tunnel was intercepted: {}",
        text(&out)
    );
    let seen = standin.requests();
    assert!(seen.iter().any(|r| r.host == "tunnel.test"));
    assert!(
        seen.iter()
            .all(|r| r.headers.iter().all(|(k, _)| k != "authorization"))
    );
}

#[test]
fn a_tunnel_reaches_only_its_host_whatever_server_name_tls_asks_for() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    // The stand-in serves other.test at tunnel.test's address too, as one CDN front end
    // serves many sites: a tunnel allowed for tunnel.test must not reach other.test there.
    let out = curl_trusting_upstream(
        &sandbox,
        &standin,
        &[
            "--connect-to",
            "other.test:443:tunnel.test:443",
            "https://other.test/",
        ],
    );
    assert!(!out.status.success(), "reached: {}", text(&out));
    let record = gitgate.wait_for_record(|r| {
        r["rule"] == "allowHosts" && r["decision"] == "deny" && r["host"] == "tunnel.test"
    });
    assert!(
        record["reason"].as_str().is_some_and(|r| r.contains(
            "the TLS server name other.test in the tunnel to tunnel.test is not that host"
        )),
        "{record}"
    );
    assert!(standin.requests().iter().all(|r| r.host != "other.test"));
}

#[test]
fn other_hosts_are_refused_with_a_reason() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    for target in [
        "other.test:443",
        "127.0.0.1:443",
        "github.com:22",
        "evil.example:443",
    ] {
        let reply = raw::exchange(
            gitgate.addr,
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
        );
        assert!(reply.starts_with("HTTP/1.1 403"), "{target}: {reply}");
        let host = target.split(':').next().unwrap();
        assert!(reply.contains(host), "{target}: {reply}");
    }
    let reply = raw::exchange(
        gitgate.addr,
        b"CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n",
    );
    assert!(
        reply.contains("other.test is not in allowHosts [tunnel.test]"),
        "{reply}"
    );
    // Plain HTTP: only allow-listed hosts, never intercepted.
    let reply = raw::exchange(
        gitgate.addr,
        b"GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 403") && reply.contains("other.test"),
        "{reply}"
    );
    let reply = raw::exchange(gitgate.addr, b"GET http://github.com/acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(standin.requests().iter().all(|r| r.host != "other.test"));
}

/// A plain HTTP upstream that answers `connections` connections, one request each, with
/// the request head it received.
fn echo_upstream(connections: usize) -> (u16, std::thread::JoinHandle<()>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    server.set_nonblocking(true).unwrap();
    let echo = std::thread::spawn(move || {
        for _ in 0..connections {
            let mut accepted = None;
            wait_until(|| {
                accepted = server.accept().ok();
                accepted.is_some()
            });
            let (mut conn, _) = accepted.unwrap();
            conn.set_nonblocking(false).unwrap();
            let head = raw::read_response(&mut conn);
            let body = format!("seen:\n{head}");
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (port, echo)
}

#[test]
fn plain_http_to_an_allow_listed_host_is_forwarded_untouched() {
    let (port, echo) = echo_upstream(1);
    // gitgate holds a token (a clone minted one) that must not ride along.
    let standin = harness::standin();
    let config = app_config(
        &standin,
        &format!("{{allowedRepos: [acme/app], allowHosts: [\"plain.test:{port}\"]}}"),
    )
    .replace(
        "resolve: {",
        &format!("resolve: {{plain.test: \"127.0.0.1:{port}\", "),
    );
    let gitgate = Gitgate::start(&config);
    Sandbox::new(&gitgate).clone_repo("acme/app", "app");
    assert!(!standin.tokens().is_empty(), "the clone minted no token");
    let reply = raw::exchange(
        gitgate.addr,
        format!("GET http://plain.test:{port}/x HTTP/1.1\r\nHost: plain.test:{port}\r\nProxy-Authorization: Basic c2VjcmV0\r\nAuthorization: Bearer mine\r\n\r\n").as_bytes(),
    );
    echo.join().unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("GET /x HTTP/1.1"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("authorization: bearer mine"),
        "the client's own header must pass: {reply}"
    );
    assert!(
        !reply.to_ascii_lowercase().contains("proxy-authorization"),
        "{reply}"
    );
    let authorizations = reply
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .count();
    assert_eq!(authorizations, 1, "{reply}");
    harness::assert_no_secret(&standin, "the plain HTTP upstream", &reply);
}

#[test]
fn plain_http_goes_to_the_pinned_address_whatever_case_or_trailing_dot_the_client_writes() {
    let (port, echo) = echo_upstream(2);
    // Without the pin, plain.test resolves nowhere: only the pin can reach the echo.
    let config = format!(
        "listen: 127.0.0.1:0\nupstream:\n  resolve: {{plain.test: \"127.0.0.1:{port}\"}}\npolicy: {{allowHosts: [\"plain.test:{port}\"]}}\n"
    );
    let gitgate = Gitgate::start(&config);
    for host in ["PLAIN.Test", "plain.test."] {
        let reply = raw::exchange(
            gitgate.addr,
            format!("GET http://{host}:{port}/x HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
                .as_bytes(),
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "{host}: {reply}");
        assert!(
            reply
                .to_ascii_lowercase()
                .contains(&format!("host: plain.test:{port}")),
            "{reply}"
        );
    }
    echo.join().unwrap();
}

#[test]
fn host_header_or_sni_other_than_the_connect_target_is_refused() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    // Host header naming another host inside a github.com tunnel.
    let out = sandbox.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: tunnel.test",
        "https://github.com/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "400",
        "{}",
        text(&out)
    );
    // SNI naming another host: CONNECT github.com, ClientHello for tunnel.test.
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
    let ok = raw::read_response(&mut tls);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let out = sandbox.curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--connect-to",
        "tunnel.test:443:github.com:443",
        "https://tunnel.test/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "400",
        "{}",
        text(&out)
    );
    let upstream: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.host != "api.github.com")
        .collect();
    assert_eq!(
        upstream.len(),
        1,
        "only the well-formed request may reach upstream: {upstream:?}"
    );
}

#[test]
fn unreachable_upstream_gives_502_naming_the_host_and_gitgate_keeps_serving() {
    let standin = harness::standin();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\nupstream:\n  caFile: {ca}\n  resolve: {{github.com: \"{closed}\", tunnel.test: \"{ok}\"}}\npolicy: {POLICY}\n",
        ca = standin.ca_file().display(),
        ok = standin.addr(),
    );
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    let out = sandbox.curl(&[
        "-w",
        "\n%{http_code}",
        "https://github.com/acme/app.git/info/refs?service=git-upload-pack",
    ]);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(body.ends_with("\n502"), "{body}");
    assert!(
        body.contains("gitgate: cannot reach github.com") && body.contains(&closed.to_string()),
        "{body}"
    );
    let err = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/acme/app.git", "x"],
    );
    assert!(err.contains("gitgate: cannot reach github.com"), "{err}");
    let out = sandbox.curl(&[
        "--cacert",
        &standin.ca_file().display().to_string(),
        "https://tunnel.test/",
    ]);
    assert!(
        out.status.success(),
        "gitgate stopped serving: {}",
        text(&out)
    );
}

#[test]
fn missing_ca_is_generated_with_a_private_key() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    use std::os::unix::fs::PermissionsExt;
    let key = gitgate.dir.path().join("ca/ca-key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(gitgate.output().contains("generated a new CA"));
    assert!(
        std::fs::read_to_string(gitgate.ca_file())
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let standin = harness::standin();
    let mut gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "warm"); // token minted, so only the stall remains
    standin.clear_requests();
    standin.set_fault(Some(Fault::GitStall));
    let addr = gitgate.addr;
    let ca = gitgate.ca_file();
    let slow = std::thread::spawn(move || {
        let mut tls = raw::mitm_tls(addr, "github.com:443", "github.com", &ca);
        tls.write_all(b"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n").unwrap();
        let mut head = raw::read_response(&mut tls);
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest);
        head.push_str(&String::from_utf8_lossy(&rest));
        head
    });
    wait_until(|| !standin.requests().is_empty());
    gitgate.terminate();
    wait_until(|| std::net::TcpStream::connect(addr).is_err());
    standin.set_fault(None);
    let reply = slow.join().unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "in-flight request was cut: {reply}"
    );
    let status = gitgate.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
}

/// gitgate with `shutdownGrace: grace`, and a tunnel through it to tunnel.test, open
/// after one exchange.
fn holding_a_tunnel(
    grace: &str,
) -> (
    gitgate_standin::StandIn,
    Gitgate,
    rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
) {
    let standin = harness::standin();
    let limits = format!("{{shutdownGrace: {grace}}}");
    let gitgate = Gitgate::start(&harness::limited_config(&standin, POLICY, &limits));
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "tunnel.test:443",
        "tunnel.test",
        standin.ca_file(),
    );
    tls.write_all(b"GET / HTTP/1.1\r\nHost: tunnel.test\r\n\r\n")
        .unwrap();
    assert!(raw::read_response(&mut tls).starts_with("HTTP/1.1 200"));
    (standin, gitgate, tls)
}

/// The audit record of the tunnel to tunnel.test.
fn tunnel_record(gitgate: &Gitgate) -> serde_json::Value {
    gitgate
        .audit()
        .into_iter()
        .find(|r| r["host"] == "tunnel.test")
        .unwrap_or_else(|| panic!("no tunnel record:\n{}", gitgate.output()))
}

/// A tunnel still open when the grace period ends is closed, and its record written
/// before gitgate exits.
#[test]
fn a_tunnel_open_past_the_grace_period_is_closed_and_recorded() {
    let (_standin, mut gitgate, mut tls) = holding_a_tunnel("1s");
    gitgate.terminate();
    let status = gitgate.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    let record = tunnel_record(&gitgate);
    assert_eq!(
        record["error"],
        "cut off at shutdown (limits.shutdownGrace was over, or gitgate was asked again to stop)",
        "{record}"
    );
    assert!(record["bytes_out"].as_u64().unwrap() > 0, "{record}");
}

/// Asked again to stop, gitgate closes what is open at once instead of waiting out the
/// grace period, recording it.
#[test]
fn a_second_sigterm_closes_what_is_open_without_waiting_for_the_grace_period() {
    let (_standin, mut gitgate, _tls) = holding_a_tunnel("60s");
    gitgate.terminate();
    wait_until(|| gitgate.output().contains("send it again to stop at once"));
    let asked = std::time::Instant::now();
    gitgate.terminate();
    let status = gitgate.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    let record = tunnel_record(&gitgate);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cut off at shutdown")),
        "{record}"
    );
}

/// An audit output that takes nothing more (a pipe nobody reads) does not keep gitgate
/// from stopping: the writer gets a few seconds, then gitgate exits, saying what it lost.
#[test]
fn a_blocked_audit_output_does_not_stop_gitgate_from_exiting() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opens the pipe for reading, so gitgate can open it, and never reads.
    let mut reader = std::process::Command::new("sh")
        .args(["-c", "exec 3< \"$0\"; exec sleep 600"])
        .arg(&fifo)
        .spawn()
        .unwrap();
    let config = harness::limited_config(&standin, POLICY, "{shutdownGrace: 1s}").replace(
        "listen: 127.0.0.1:0\n",
        &format!("listen: 127.0.0.1:0\naudit: {{file: {}}}\n", fifo.display()),
    );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let mut gitgate = Gitgate::start_in(dir);
    // Well over the pipe's 64 KiB of records.
    for _ in 0..400 {
        let reply = raw::exchange(
            gitgate.addr,
            b"CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    }
    gitgate.terminate();
    let status = gitgate.wait(Duration::from_secs(20));
    let _ = reader.kill();
    let _ = reader.wait();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        gitgate.output().contains("the audit writer is blocked"),
        "{}",
        gitgate.output()
    );
}

/// Polls `condition` every 20 ms for up to 30 s.
pub fn wait_until(mut condition: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "condition not met in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_upstream_that_never_accepts_is_given_up_at_the_connect_timeout() {
    // A listener with a full accept queue: Linux drops further SYNs, so a connect hangs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (full, _queued) = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                queued.push(stream);
            }
        }
        (listener, queued)
    });
    let addr = full.local_addr().unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\nupstream:\n  resolve: {{full.test: \"{addr}\"}}\n  connectTimeout: 1s\npolicy: {{allowHosts: [full.test]}}\n"
    );
    let gitgate = Gitgate::start(&config);
    let started = std::time::Instant::now();
    let reply = raw::exchange(
        gitgate.addr,
        b"CONNECT full.test:443 HTTP/1.1\r\nHost: full.test:443\r\n\r\n",
    );
    let waited = started.elapsed();
    assert!(reply.starts_with("HTTP/1.1 50"), "{reply}");
    assert!(reply.contains("upstream.connectTimeout"), "{reply}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    gitgate.wait_for_record(|r| r["host"] == "full.test" && r["status"].as_u64() >= Some(500));
}
