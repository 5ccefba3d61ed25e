//! The stand-in driven directly by curl and the real git client (no proxy in between).

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, SystemTime};

use common::{Git, api, app_jwt, curl, git_get, mint_via_api, now, sign_jwt};
use gitgate_standin::{Config, Fault, StandIn};
use ring::signature::KeyPair as _;
use serde_json::json;

fn start() -> StandIn {
    StandIn::start(Config::default()).expect("stand-in starts")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (a) Find the installation and mint a token with a JWT signed here, then clone and push.
#[test]
fn clone_and_push_with_api_minted_token() {
    let s = start();
    let jwt = app_jwt(&s);
    let inst = api(&s, "GET", "/repos/acme/app/installation", Some(&jwt), None);
    assert_eq!(inst.status, 200, "{}", inst.body);
    let id = inst.json()["id"].as_u64().unwrap();
    assert_eq!(id, 1001);

    let minted = mint_via_api(
        &s,
        id,
        &json!({"repositories": ["app"], "permissions": {"contents": "write", "metadata": "read"}}),
    );
    let token = minted["token"].as_str().unwrap();
    assert_eq!(minted["repository_selection"], "selected");
    assert_eq!(minted["repositories"][0]["full_name"], "acme/app");
    assert_eq!(s.mints().len(), 1);
    assert_eq!(s.mints()[0].repositories, Some(vec!["app".to_owned()]));
    assert_eq!(s.tokens(), vec![token.to_owned()]);

    let git = Git::new(&s, token);
    let work = git.clone(&s, "acme", "app");
    assert!(work.join("README.md").is_file());
    assert_eq!(
        git.ok(Some(&work), &["rev-parse", "HEAD"]),
        s.rev_parse("acme", "app", "refs/heads/main").unwrap()
    );

    std::fs::write(work.join("change.txt"), "hello\n").unwrap();
    git.ok(Some(&work), &["add", "change.txt"]);
    git.ok(Some(&work), &["commit", "--quiet", "-m", "change"]);
    git.ok(
        Some(&work),
        &[
            "push",
            "--quiet",
            "origin",
            "HEAD:main",
            "HEAD:refs/heads/feature/x",
        ],
    );
    let head = git.ok(Some(&work), &["rev-parse", "HEAD"]);
    assert_eq!(
        s.rev_parse("acme", "app", "main").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(
        s.rev_parse("acme", "app", "feature/x").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(s.rev_parse("acme", "app", "nope"), None);

    let reqs = s.requests();
    let git_reqs: Vec<_> = reqs.iter().filter(|r| r.host == "github.com").collect();
    assert!(
        git_reqs.iter().all(|r| r.status == Some(200)),
        "{git_reqs:#?}"
    );
    let post = git_reqs
        .iter()
        .find(|r| r.method == "POST" && r.path() == "/acme/app.git/git-receive-pack")
        .expect("receive-pack POST recorded");
    assert!(post.body_bytes > 0);
    assert!(post.header("authorization").unwrap().starts_with("Basic "));
    let adv = git_reqs
        .iter()
        .find(|r| r.target == "/acme/app.git/info/refs?service=git-upload-pack")
        .expect("advertisement recorded");
    assert_eq!(adv.header("git-protocol"), Some("version=2"));
}

/// (b) Expired, unknown and missing tokens get GitHub's 401 challenge.
#[test]
fn expired_unknown_and_missing_tokens_are_401() {
    let s = start();
    s.set_token_lifetime(Duration::ZERO);
    let minted = mint_via_api(&s, 1001, &json!({}));
    let token = minted["token"].as_str().unwrap();
    assert!(s.mints()[0].expires_at <= SystemTime::now());
    let path = "/acme/app.git/info/refs?service=git-upload-pack";
    for token in [
        Some(token),
        Some("ghs_000000000000000000000000000000000000"),
        None,
    ] {
        let resp = git_get(&s, path, token);
        assert_eq!(resp.status, 401, "{token:?}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"GitHub\"")
        );
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
    }
    let out = Git::new(&s, token).run(None, &["ls-remote", &s.git_url("acme", "app")]);
    assert!(!out.status.success());

    s.set_token_lifetime(Duration::from_secs(60));
    let fresh = s.issue_token(1001, None, None).unwrap();
    assert_eq!(git_get(&s, path, Some(&fresh.token)).status, 200);
}

/// (c) A `contents: read` token clones but cannot push.
#[test]
fn read_token_cannot_push() {
    let s = start();
    let minted = mint_via_api(
        &s,
        1001,
        &json!({"repositories": ["app"], "permissions": {"contents": "read"}}),
    );
    let token = minted["token"].as_str().unwrap();
    assert_eq!(minted["permissions"], json!({"contents": "read"}));

    let resp = git_get(
        &s,
        "/acme/app.git/info/refs?service=git-receive-pack",
        Some(token),
    );
    assert_eq!(resp.status, 403);
    assert_eq!(resp.body, "Write access to repository not granted.\n");

    let git = Git::new(&s, token);
    let work = git.clone(&s, "acme", "app");
    let before = s.rev_parse("acme", "app", "main");
    std::fs::write(work.join("x"), "x").unwrap();
    git.ok(Some(&work), &["add", "x"]);
    git.ok(Some(&work), &["commit", "--quiet", "-m", "x"]);
    let out = git.run(Some(&work), &["push", "origin", "HEAD:main"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Write access to repository not granted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.rev_parse("acme", "app", "main"), before);
}

/// (d) JWTs GitHub would refuse are refused with its 401 messages.
#[test]
fn bad_jwts_are_401() {
    let s = start();
    let key = common::load_pkcs8(s.app_key_pkcs8_file());
    let other = common::other_key(s.root());
    let t = now();
    let iss = s.app_id().to_owned();
    let cases = [
        (
            sign_jwt(&other, &json!({"iss": iss, "iat": t - 60, "exp": t + 540})),
            "A JSON web token could not be decoded",
        ),
        (
            sign_jwt(&key, &json!({"iss": iss, "iat": t - 60, "exp": t + 900})),
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            sign_jwt(&key, &json!({"iss": "999", "iat": t - 60, "exp": t + 540})),
            "Integration not found",
        ),
        (
            sign_jwt(&key, &json!({"iss": iss, "iat": t - 700, "exp": t - 100})),
            "'Expiration time' claim ('exp') must be a numeric value",
        ),
        (
            "not.a.jwt".to_owned(),
            "A JSON web token could not be decoded",
        ),
    ];
    for (jwt, message) in &cases {
        for (method, path) in [
            ("GET", "/app"),
            ("POST", "/app/installations/1001/access_tokens"),
        ] {
            let resp = api(&s, method, path, Some(jwt), None);
            assert_eq!(resp.status, 401, "{message}: {}", resp.body);
            let body = resp.json();
            assert!(
                body["message"].as_str().unwrap().starts_with(message),
                "{body}"
            );
            assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
        }
    }
    let resp = api(&s, "GET", "/app", None, None);
    assert_eq!(resp.status, 401);
    // Numeric `iss` is accepted too.
    let numeric = sign_jwt(&key, &json!({"iss": 123456, "iat": t - 60, "exp": t + 600}));
    let resp = api(&s, "GET", "/app", Some(&numeric), None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.json(),
        json!({"id": 123456, "slug": "gitgate-test", "name": "gitgate test app"})
    );
    assert!(s.mints().is_empty());
}

/// (e) `"repositories": []` grants every repository of the installation, as on GitHub.
#[test]
fn empty_repository_list_means_all() {
    let s = start();
    let minted = mint_via_api(
        &s,
        1001,
        &json!({"repositories": [], "permissions": {"contents": "read"}}),
    );
    let token = minted["token"].as_str().unwrap();
    let names: Vec<&str> = minted["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "lib-core", "secret"]);
    assert_eq!(s.mints()[0].repositories, Some(vec![]));
    for repo in ["app", "lib-core", "secret"] {
        let resp = git_get(
            &s,
            &format!("/acme/{repo}.git/info/refs?service=git-upload-pack"),
            Some(token),
        );
        assert_eq!(resp.status, 200, "{repo}");
    }
    let resp = git_get(
        &s,
        "/bob/tools.git/info/refs?service=git-upload-pack",
        Some(token),
    );
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (404, "Repository not found.\n")
    );
}

/// (f) A 50 MB incompressible push goes through (chunked request, streamed to receive-pack).
#[test]
fn large_push_streams() {
    let s = start();
    let mint = s.issue_token(1001, Some(&["lib-core"]), None).unwrap();
    let git = Git::new(&s, &mint.token);
    let work = git.clone(&s, "acme", "lib-core");
    let mut file = std::fs::File::create(work.join("blob.bin")).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..50 {
        ring::rand::SecureRandom::fill(&rng, &mut chunk).unwrap();
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    git.ok(Some(&work), &["add", "blob.bin"]);
    git.ok(Some(&work), &["commit", "--quiet", "-m", "big"]);
    git.ok(Some(&work), &["push", "--quiet", "origin", "HEAD:main"]);
    let head = git.ok(Some(&work), &["rev-parse", "HEAD"]);
    assert_eq!(s.rev_parse("acme", "lib-core", "main"), Some(head));
    // git probes with `0000` (Content-Length: 4), then sends the pack chunked.
    let posts: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/acme/lib-core.git/git-receive-pack")
        .collect();
    assert!(
        posts
            .iter()
            .any(|r| r.body_bytes == 4 && r.header("content-length") == Some("4"))
    );
    let big = posts.iter().max_by_key(|r| r.body_bytes).unwrap();
    assert!(big.body_bytes > 50 << 20, "{big:?}");
    assert_eq!(big.header("transfer-encoding"), Some("chunked"));
    assert_eq!(big.status, Some(200));
    // And back: the pack is streamed out of upload-pack.
    let again = git.path("again");
    git.ok(
        None,
        &[
            "clone",
            "--quiet",
            &s.git_url("acme", "lib-core"),
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::metadata(again.join("blob.bin")).unwrap().len(),
        50 << 20
    );
    // Nothing held 50 MB at once: the test process (server included) peaked well below.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        hwm_kb < 48 * 1024,
        "peak RSS {hwm_kb} kB: a body was buffered?"
    );
}

/// Token scope, case-insensitive paths, `.git`-less URLs, non-smart paths.
#[test]
fn git_scope_and_paths() {
    let s = start();
    let mint = s
        .issue_token(1001, Some(&["App"]), Some(&[("contents", "write")]))
        .unwrap();
    let t = Some(mint.token.as_str());
    let cases = [
        ("/acme/app.git/info/refs?service=git-upload-pack", 200, None),
        ("/ACME/App/info/refs?service=git-upload-pack", 200, None),
        ("/acme/app/info/refs?service=git-receive-pack", 200, None),
        (
            "/acme/lib-core.git/info/refs?service=git-upload-pack",
            404,
            Some("Repository not found.\n"),
        ),
        (
            "/bob/tools.git/info/refs?service=git-upload-pack",
            404,
            Some("Repository not found.\n"),
        ),
        ("/acme/app.git/info/refs", 404, None),
        ("/acme/app.git/HEAD", 404, None),
        (
            "/acme/app.git/info/refs?service=git-upload-archive",
            404,
            None,
        ),
    ];
    for (path, status, body) in cases {
        let resp = git_get(&s, path, t);
        assert_eq!(resp.status, status, "{path}: {}", resp.body);
        if let Some(body) = body {
            assert_eq!(resp.body, body, "{path}");
        }
        if status == 200 {
            let ct = resp.header("content-type").unwrap();
            assert!(
                ct.starts_with("application/x-git-") && ct.ends_with("-advertisement"),
                "{ct}"
            );
        }
    }
    // Installation 2002 has all of bob's repositories, including ones created later.
    s.create_repo_sha256("bob", "Hashy").unwrap();
    let bob = s
        .issue_token(2002, None, Some(&[("contents", "read")]))
        .unwrap();
    let git = Git::new(&s, &bob.token);
    let work = git.clone(&s, "bob", "hashy");
    assert_eq!(git.ok(Some(&work), &["rev-parse", "HEAD"]).len(), 64);
    assert!(s.repo_dir("Bob", "HASHY").ends_with("repos/bob/hashy.git"));
    assert!(s.create_repo("bob", "hashy").is_err());
}

/// Installation lookups and the token endpoint's validation.
#[test]
fn api_routes_and_validation() {
    let s = start();
    let jwt = app_jwt(&s);
    let get = |path: &str| api(&s, "GET", path, Some(&jwt), None);
    for (path, status, id) in [
        ("/repos/acme/app/installation", 200, Some(1001)),
        ("/repos/ACME/Secret/installation", 200, Some(1001)),
        ("/repos/acme/nope/installation", 404, None),
        ("/repos/bob/tools/installation", 200, Some(2002)),
        ("/repos/nobody/x/installation", 404, None),
        ("/orgs/acme/installation", 200, Some(1001)),
        ("/users/acme/installation", 404, None),
        ("/users/bob/installation", 200, Some(2002)),
        ("/orgs/bob/installation", 404, None),
        ("/users/nobody/installation", 404, None),
        ("/app/installations/2002", 200, Some(2002)),
        ("/nothing", 404, None),
    ] {
        let resp = get(path);
        assert_eq!(resp.status, status, "{path}: {}", resp.body);
        assert_eq!(resp.json()["id"].as_u64(), id, "{path}");
        assert_eq!(resp.header("x-ratelimit-limit"), Some("5000"));
        assert!(resp.header("x-ratelimit-remaining").is_some());
    }
    let inst = get("/orgs/acme/installation").json();
    assert_eq!(inst["account"]["login"], "acme");
    assert_eq!(inst["account"]["type"], "Organization");
    assert_eq!(inst["repository_selection"], "selected");
    assert_eq!(
        inst["permissions"],
        json!({"actions": "read", "checks": "read", "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "read"})
    );
    assert_eq!(
        get("/users/bob/installation").json()["repository_selection"],
        "all"
    );

    let repo_err = "There is at least one repository that does not exist or is not accessible to the parent installation.";
    let perm_err = "The permissions requested are not granted to this installation.";
    let post = |id: u64, body: serde_json::Value| {
        api(
            &s,
            "POST",
            &format!("/app/installations/{id}/access_tokens"),
            Some(&jwt),
            Some(&body),
        )
    };
    for (id, body, status, message) in [
        (1001, json!({"repositories": ["acme/app"]}), 422, repo_err),
        (
            1001,
            json!({"repositories": ["app", "tools"]}),
            422,
            repo_err,
        ),
        (
            1001,
            json!({"permissions": {"administration": "write"}}),
            422,
            perm_err,
        ),
        (
            1001,
            json!({"permissions": {"metadata": "write"}}),
            422,
            perm_err,
        ),
        (9999, json!({}), 404, "Not Found"),
        (
            1001,
            json!({"repositories": "app"}),
            422,
            "Invalid request.",
        ),
    ] {
        let resp = post(id, body.clone());
        assert_eq!(resp.status, status, "{body}: {}", resp.body);
        assert_eq!(resp.json()["message"], message, "{body}");
    }
    assert!(s.mints().is_empty());

    // Omitted permissions: the installation's; an `all` installation's token lists its repos.
    let resp = post(2002, json!({}));
    assert_eq!(resp.status, 201);
    let minted = resp.json();
    assert_eq!(
        minted["permissions"],
        json!({"actions": "read", "checks": "read", "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "read"})
    );
    assert_eq!(minted["repository_selection"], "all");
    assert_eq!(minted["repositories"][0]["full_name"], "bob/tools");
    let token = minted["token"].as_str().unwrap();
    assert!(token.starts_with("ghs_") && token.len() == 40);
    let mints = s.mints();
    assert_eq!(
        (
            mints.len(),
            mints[0].installation_id,
            mints[0].repositories.clone()
        ),
        (1, 2002, None)
    );
    let expires = time::OffsetDateTime::from(mints[0].expires_at);
    let printed = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(minted["expires_at"], printed.as_str());
    assert!(printed.ends_with('Z'), "{printed}");
    let left = expires.unix_timestamp() - now();
    assert!((3590..=3600).contains(&left), "{left}");
}

#[test]
fn faults() {
    let s = start();
    let jwt = app_jwt(&s);
    let path = "/app/installations/1001/access_tokens";

    s.set_fault(Some(Fault::TokenEndpoint {
        status: 500,
        body: "{\"message\":\"boom\"}".into(),
    }));
    let resp = api(&s, "POST", path, Some(&jwt), Some(&json!({})));
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (500, "{\"message\":\"boom\"}")
    );
    assert_eq!(api(&s, "GET", "/app", Some(&jwt), None).status, 200);

    s.set_fault(Some(Fault::ApiUnavailable));
    assert_eq!(api(&s, "GET", "/app", Some(&jwt), None).status, 503);
    assert_eq!(
        api(&s, "POST", path, Some(&jwt), Some(&json!({}))).status,
        503
    );

    s.set_fault(None);
    let token = mint_via_api(&s, 1001, &json!({}))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refs = "/acme/app.git/info/refs?service=git-upload-pack";

    s.set_fault(Some(Fault::GitError {
        status: 502,
        body: "upstream sad\n".into(),
    }));
    let resp = git_get(&s, refs, Some(&token));
    assert_eq!((resp.status, resp.body.as_str()), (502, "upstream sad\n"));

    s.set_fault(Some(Fault::GitStall));
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "1", "--cacert"])
        .arg(s.ca_file())
        .arg("--resolve")
        .arg(format!("github.com:{}:127.0.0.1", s.port()))
        .arg(format!("https://github.com:{}{refs}", s.port()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(28),
        "curl should time out: {}",
        stderr(&out)
    );

    // A stalled request resumes when the fault is lifted.
    let url = format!("https://github.com:{}{refs}", s.port());
    let auth = format!("Authorization: {}", gitgate_standin::basic_auth(&token));
    let stalled = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "--cacert",
        ])
        .arg(s.ca_file())
        .arg("--resolve")
        .arg(format!("github.com:{}:127.0.0.1", s.port()))
        .args(["-H", &auth, &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s
        .requests()
        .iter()
        .filter(|r| r.host == "github.com")
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled request never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.set_fault(None);
    let out = stalled.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

#[test]
fn other_hosts_and_recording() {
    let s = start();
    for host in ["tunnel.test", "other.test"] {
        let resp = curl(&s, "GET", host, "/any?x=1", &["-H", "X-Probe: yes"]);
        assert_eq!(
            (resp.status, resp.body.clone()),
            (200, format!("hello from {host}\n"))
        );
    }
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].host, "tunnel.test");
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].target, "/any?x=1");
    assert_eq!(reqs[0].header("x-probe"), Some("yes"));
    assert_eq!(
        reqs[0].header("Host"),
        Some(format!("tunnel.test:{}", s.port()).as_str())
    );
    assert_eq!(reqs[0].status, Some(200));

    let resp = curl(
        &s,
        "POST",
        "github.com",
        "/x",
        &["-H", "Host: elsewhere.test", "--data-binary", "12345"],
    );
    assert_eq!(resp.status, 421);
    s.clear_requests();
    assert!(s.requests().is_empty());
    let resp = curl(&s, "POST", "tunnel.test", "/", &["--data-binary", "12345"]);
    assert_eq!(resp.status, 200);
    assert_eq!(s.requests()[0].header("content-length"), Some("5"));
}

#[test]
fn files_keys_and_shutdown() {
    let s = start();
    let pkcs1 = std::fs::read_to_string(s.app_key_pkcs1_file()).unwrap();
    let pkcs8 = std::fs::read_to_string(s.app_key_pkcs8_file()).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
    for f in [s.app_key_pkcs1_file(), s.app_key_pkcs8_file()] {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let from1 =
        ring::signature::RsaKeyPair::from_der(&common::pem_der(s.app_key_pkcs1_file())).unwrap();
    let from8 = common::load_pkcs8(s.app_key_pkcs8_file());
    assert_eq!(from1.public_key().as_ref(), from8.public_key().as_ref());
    assert_eq!(std::fs::read_to_string(s.ca_file()).unwrap(), s.ca_pem());
    assert!(s.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    let root = s.root().to_owned();
    let addr = s.addr();
    assert!(root.join("repos/acme/secret.git/HEAD").is_file());
    s.shutdown();
    assert!(!root.exists());
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// An external signer's public key replaces the generated one.
#[test]
fn external_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let other = common::other_key(dir.path());
    let mut config = Config::default();
    config.app_public_key_der = Some(other.public_key().as_ref().to_vec());
    config.app_id = "Iv23test".into();
    config.seed_repos = false;
    let s = StandIn::start(config).unwrap();
    let t = now();
    let claims = json!({"iss": "Iv23test", "iat": t - 60, "exp": t + 540});
    let ours = sign_jwt(&other, &claims);
    let generated = sign_jwt(&common::load_pkcs8(s.app_key_pkcs8_file()), &claims);
    assert_eq!(api(&s, "GET", "/app", Some(&ours), None).status, 200);
    assert_eq!(api(&s, "GET", "/app", Some(&generated), None).status, 401);
    assert!(!s.repo_dir("acme", "app").exists());
}

/// Processes whose working directory lies under `root` (the CGI children of a stand-in).
fn processes_under(root: &std::path::Path) -> Vec<u32> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.to_string_lossy().starts_with(&root).then_some(pid)
        })
        .collect()
}

/// Shutdown kills a CGI child that is still reading a never-ending push, and returns promptly.
#[test]
fn shutdown_kills_running_children() {
    let s = start();
    let mint = s.issue_token(1001, Some(&["app"]), None).unwrap();
    let auth = format!(
        "Authorization: {}",
        gitgate_standin::basic_auth(&mint.token)
    );
    let mut curl = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "60",
            "-X",
            "POST",
            "-T",
            "-",
            "--cacert",
        ])
        .arg(s.ca_file())
        .arg("--resolve")
        .arg(format!("github.com:{}:127.0.0.1", s.port()))
        .args([
            "-H",
            &auth,
            "-H",
            "Content-Type: application/x-git-receive-pack-request",
        ])
        .arg(format!(
            "https://github.com:{}/acme/app.git/git-receive-pack",
            s.port()
        ))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = curl.stdin.take().unwrap();
    stdin.write_all(b"00").unwrap();
    stdin.flush().unwrap();

    let root = s.root().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while processes_under(&root).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no CGI child appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    s.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(processes_under(&root).is_empty(), "children left behind");
    drop(stdin);
    let _ = curl.kill();
    let _ = curl.wait();
}

/// gzip request bodies reach http-backend with `HTTP_CONTENT_ENCODING`.
#[test]
fn gzip_upload_pack_request() {
    let s = start();
    let mint = s
        .issue_token(1001, Some(&["app"]), Some(&[("contents", "read")]))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pkt = |line: &str| format!("{:04x}{line}", line.len() + 4);
    let body = [
        pkt("command=ls-refs\n"),
        pkt("agent=git/2.47.3"),
        pkt("object-format=sha1"),
        "0001".to_owned(),
        pkt("peel\n"),
        pkt("symrefs\n"),
        pkt("ref-prefix refs/heads/\n"),
        "0000".to_owned(),
    ]
    .concat();
    let mut gz = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gz.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let gzipped = gz.wait_with_output().unwrap().stdout;
    let file = dir.path().join("body.gz");
    std::fs::write(&file, gzipped).unwrap();
    let auth = format!(
        "Authorization: {}",
        gitgate_standin::basic_auth(&mint.token)
    );
    let data = format!("@{}", file.display());
    let resp = curl(
        &s,
        "POST",
        "github.com",
        "/acme/app.git/git-upload-pack",
        &[
            "-H",
            &auth,
            "-H",
            "Git-Protocol: version=2",
            "-H",
            "Content-Type: application/x-git-upload-pack-request",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("application/x-git-upload-pack-result")
    );
    let main = s.rev_parse("acme", "app", "main").unwrap();
    assert!(
        resp.body.contains(&format!("{main} refs/heads/main")),
        "{}",
        resp.body
    );
}
