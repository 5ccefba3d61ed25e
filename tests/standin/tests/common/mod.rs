//! Helpers for driving the stand-in directly: an independent JWT signer, curl and git.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gitgate_standin::{StandIn, basic_auth};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Decodes the first PEM block of a file (kept independent of the crate under test).
pub fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

pub fn load_pkcs8(path: &Path) -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(&pem_der(path)).unwrap()
}

/// A fresh RSA key unrelated to the stand-in's (PKCS#8 PEM in `dir`).
pub fn other_key(dir: &Path) -> RsaKeyPair {
    let file = dir.join("other.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    load_pkcs8(&file)
}

/// Signs `claims` as an RS256 JWT.
pub fn sign_jwt(key: &RsaKeyPair, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A valid App JWT for `standin`, the way GitHub recommends (`iat` 60 s back, 9 min life).
pub fn app_jwt(standin: &StandIn) -> String {
    let key = load_pkcs8(standin.app_key_pkcs8_file());
    let now = now();
    sign_jwt(
        &key,
        &json!({"iss": standin.app_id(), "iat": now - 60, "exp": now + 540}),
    )
}

/// An HTTP response as curl saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `curl` against `https://<host>:<port><path>`, resolved to the stand-in, trusting its CA.
pub fn curl(standin: &StandIn, method: &str, host: &str, path: &str, extra: &[&str]) -> Resp {
    let port = standin.port();
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "30", "-X", method])
        .arg("--cacert")
        .arg(standin.ca_file())
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_curl(&String::from_utf8_lossy(&out.stdout))
}

fn parse_curl(raw: &str) -> Resp {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An API call with an App JWT (`jwt` = `None`: no `Authorization`).
pub fn api(
    standin: &StandIn,
    method: &str,
    path: &str,
    jwt: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let auth = jwt.map(|j| format!("Authorization: Bearer {j}"));
    let data = body.map(Value::to_string);
    let mut extra = vec![
        "-H",
        "Accept: application/vnd.github+json",
        "-H",
        "X-GitHub-Api-Version: 2022-11-28",
    ];
    if let Some(auth) = &auth {
        extra.extend(["-H", auth]);
    }
    if let Some(data) = &data {
        extra.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            data,
        ]);
    }
    curl(standin, method, "api.github.com", path, &extra)
}

/// Mints a token through `POST /app/installations/{id}/access_tokens`; panics unless 201.
pub fn mint_via_api(standin: &StandIn, installation: u64, body: &Value) -> Value {
    let jwt = app_jwt(standin);
    let path = format!("/app/installations/{installation}/access_tokens");
    let resp = api(standin, "POST", &path, Some(&jwt), Some(body));
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.json()
}

/// A git smart HTTP GET with `token` (if any) via curl.
pub fn git_get(standin: &StandIn, path: &str, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Authorization: {}", basic_auth(t)));
    let mut extra = vec!["-H", "Git-Protocol: version=2"];
    if let Some(auth) = &auth {
        extra.extend(["-H", auth]);
    }
    curl(standin, "GET", "github.com", path, &extra)
}

/// Runs the real `git` against the stand-in with a clean environment and a private HOME.
pub struct Git {
    pub home: tempfile::TempDir,
    config: Vec<String>,
}

impl Git {
    pub fn new(standin: &StandIn, token: &str) -> Self {
        let home = tempfile::tempdir().unwrap();
        let config = vec![
            format!("http.sslCAInfo={}", standin.ca_file().display()),
            format!("http.extraHeader=Authorization: {}", basic_auth(token)),
            format!(
                "http.curloptResolve=github.com:{}:127.0.0.1",
                standin.port()
            ),
            "protocol.version=2".to_owned(),
        ];
        Self { home, config }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// `git <args>` in `dir` (or HOME); returns the output whatever the exit status.
    pub fn run(&self, dir: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Tester")
            .env("GIT_AUTHOR_EMAIL", "tester@example.test")
            .env("GIT_COMMITTER_NAME", "Tester")
            .env("GIT_COMMITTER_EMAIL", "tester@example.test")
            .current_dir(dir.unwrap_or(self.home.path()))
            .stdin(Stdio::null());
        for c in &self.config {
            cmd.arg("-c").arg(c);
        }
        cmd.args(args).output().unwrap()
    }

    /// Like [`run`](Self::run), asserting success; returns trimmed stdout.
    pub fn ok(&self, dir: Option<&Path>, args: &[&str]) -> String {
        let out = self.run(dir, args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Clones `owner/name` into `HOME/<name>` and returns the work tree.
    pub fn clone(&self, standin: &StandIn, owner: &str, name: &str) -> PathBuf {
        let dir = self.path(name);
        let url = standin.git_url(owner, name);
        self.ok(None, &["clone", "--quiet", &url, dir.to_str().unwrap()]);
        dir
    }
}
