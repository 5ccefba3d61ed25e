//! Acting for a person: `github.user` and the device flow against the stand-in's
//! `/login/device/code` and `/login/oauth/access_token`, driven by `gitgate login`
//! and by `POST /login` from the sandbox; the token never leaves gitgate.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gitgate_standin::{Config, StandIn};

use crate::core::wait_until;
use crate::harness::gitgate::{binary, cli, collect_lines};
use crate::harness::{self, Gitgate, POLICY, Sandbox, text, upstream};

/// A stand-in that hands out 1 s polling intervals (GitHub: 5 s) so tests stay short.
fn standin() -> StandIn {
    let mut config = Config::default();
    config.device_interval = Duration::from_secs(1);
    config.slow_down_step = Duration::from_secs(1);
    StandIn::start(config).expect("start the GitHub stand-in")
}

/// gitgate acting for a user of the stand-in's App.
fn start(standin: &StandIn) -> Gitgate {
    Gitgate::start_in(config_dir(standin, &standin.client_id()))
}

/// A directory with `gitgate.yaml` for `github.user` with `client_id`.
fn config_dir(standin: &StandIn, client_id: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), standin, client_id, "");
    dir
}

/// Writes `dir/gitgate.yaml` for `github.user` with `client_id` and the `more` keys
/// (`, key: value`) in the `user` mapping.
fn write_config(dir: &std::path::Path, standin: &StandIn, client_id: &str, more: &str) {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{}\n", standin.client_secret())).unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\n\
         admin: 127.0.0.1:0\n\
         github:\n  user: {{clientId: \"{client_id}\", clientSecretFile: {secret}{more}}}\n\
         {upstream}\
         policy: {POLICY}\n",
        secret = secret.display(),
        upstream = upstream(standin),
    );
    std::fs::write(dir.join("gitgate.yaml"), config).unwrap();
}

/// A session key file (32 random bytes in base64, mode 0600) at `dir/name`.
fn session_key(dir: &std::path::Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    use base64::Engine;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Asserts that no file in the sandbox's HOME holds any token the stand-in handed out.
fn assert_sandbox_holds_no_token(sandbox: &Sandbox, standin: &StandIn) {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    files(sandbox.home.path(), &mut all);
    assert!(all.len() > 10, "{all:?}");
    assert!(!standin.tokens().is_empty());
    for file in all {
        let bytes = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        harness::assert_no_secret(standin, &file.display().to_string(), &bytes);
    }
}

/// `gitgate login` running in the background, its output collected.
struct Login {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Login {
    fn start(gitgate: &Gitgate, url: &str) -> Self {
        let config = gitgate.dir.path().join("gitgate.yaml");
        let mut child = Command::new(binary())
            .args(["login", "--config"])
            .arg(&config)
            .args(["--url", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gitgate login");
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect_lines(child.stdout.take().unwrap(), output.clone()),
            collect_lines(child.stderr.take().unwrap(), output.clone()),
        ];
        Self {
            child,
            output,
            readers,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The code `gitgate login` told the person to enter.
    fn user_code(&self) -> String {
        let mut code = None;
        wait_until(|| {
            code = user_code(&self.output());
            code.is_some()
        });
        code.unwrap()
    }

    /// Waits for the command to end; returns whether it succeeded, and its output.
    fn finish(mut self) -> (bool, String) {
        let mut status = None;
        wait_until(|| {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status.unwrap().success(), self.output())
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `XXXX-XXXX` after "enter the code ".
fn user_code(text: &str) -> Option<String> {
    let at = text.find("enter the code ")? + "enter the code ".len();
    let code = text.get(at..at + 9)?;
    (code.as_bytes()[4] == b'-').then(|| code.to_owned())
}

fn admin_url(gitgate: &Gitgate) -> String {
    format!("http://{}", gitgate.admin_addr())
}

/// `gitgate status|logout` through the admin listener, which must succeed; its output.
fn admin_ok(gitgate: &Gitgate, command: &str) -> String {
    let out = run(gitgate, command, &admin_url(gitgate));
    assert!(out.status.success(), "{command}: {}", text(&out));
    text(&out)
}

/// Asserts that GitHub refused no request to its git host (`why` says what that means).
fn assert_github_never_refused(standin: &StandIn, why: &str) {
    let refused = standin
        .requests()
        .into_iter()
        .filter(|r| r.host == "github.com" && r.status == Some(401))
        .count();
    assert_eq!(refused, 0, "{why}");
}

/// `gitgate status|logout --url URL`.
fn run(gitgate: &Gitgate, command: &str, url: &str) -> std::process::Output {
    let config = gitgate.dir.path().join("gitgate.yaml");
    cli(
        &[command, "--config", config.to_str().unwrap(), "--url", url],
        gitgate.dir.path(),
    )
}

#[test]
fn a_person_logs_in_with_the_device_flow_and_git_clones_and_pushes_as_them() {
    let standin = standin();
    let gitgate = start(&standin);
    let sandbox = Sandbox::new(&gitgate);
    let url = "https://github.com/acme/app.git";

    // Before anyone logs in, git says what to do.
    let refused = sandbox.git_fails(sandbox.home.path(), &["clone", "-q", url, "early"]);
    assert!(
        refused.contains("no GitHub user is logged in") && refused.contains("gitgate login"),
        "{refused}"
    );
    // `status` (like `login` and `logout`) reads no credential: whoever runs it need not
    // be able to read the client secret.
    let secret = gitgate.dir.path().join("client-secret");
    let away = gitgate.dir.path().join("client-secret.away");
    std::fs::rename(&secret, &away).unwrap();
    let status = run(&gitgate, "status", &admin_url(&gitgate));
    std::fs::rename(&away, &secret).unwrap();
    assert!(!status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("nobody is logged in"),
        "{}",
        text(&status)
    );

    // The operator runs `gitgate login`; it shows the URL and code and waits.
    let login = Login::start(&gitgate, &admin_url(&gitgate));
    let code = login.user_code();
    assert!(
        login
            .output()
            .contains("open https://github.com/login/device"),
        "{}",
        login.output()
    );
    // Meanwhile git tells the sandbox's user the same thing.
    let waiting = sandbox.git_fails(sandbox.home.path(), &["clone", "-q", url, "waiting"]);
    assert!(
        waiting.contains("a GitHub login is waiting") && waiting.contains(&code),
        "{waiting}"
    );
    // The person enters the code at GitHub and approves.
    assert!(standin.approve_device(&code, "octo"));
    let (ok, output) = login.finish();
    assert!(ok, "{output}");
    assert!(output.contains("logged in to GitHub as octo"), "{output}");

    // git clones and pushes with the user's token; the sandbox never holds it. Policy
    // still applies: the user may reach acme/secret at GitHub, the sandbox may not.
    let secret = sandbox.git_fails(
        sandbox.home.path(),
        &[
            "clone",
            "-q",
            "https://github.com/acme/secret.git",
            "secret",
        ],
    );
    assert!(
        secret.contains("acme/secret is not in allowedRepos"),
        "{secret}"
    );
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "as-octo.txt", "pushed as a person");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:main"]);
    let events = standin.user_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let token = &events[0].access_token;
    let git_requests: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.host == "github.com" && r.path().starts_with("/acme/app.git/"))
        .collect();
    assert!(git_requests.len() >= 4, "{git_requests:?}");
    for request in &git_requests {
        assert_eq!(
            request.header("authorization"),
            Some(gitgate_standin::basic_auth(token).as_str()),
            "{request:?}"
        );
    }
    let pushed = gitgate.wait_for_record(|r| {
        r["service"] == "receive-pack" && r["decision"] == "allow" && r["method"] == "POST"
    });
    assert_eq!(pushed["github_user"], "octo", "{pushed}");
    assert!(
        pushed.get("installation").is_none_or(|i| i.is_null()),
        "{pushed}"
    );

    // `gitgate status` says who, and until when.
    let status = admin_ok(&gitgate, "status");
    assert!(
        status.contains("default: logged in to GitHub as octo; the token expires at"),
        "{status}"
    );

    // Logout revokes the token at GitHub and forgets it; git is told to log in again.
    let logout = admin_ok(&gitgate, "logout");
    assert!(
        logout.contains("logged out octo; GitHub revoked the token"),
        "{logout}"
    );
    assert!(!standin.user_token_live(token));
    assert_eq!(standin.user_events().last().unwrap().kind, "revoke");
    let after = sandbox.git_fails(sandbox.home.path(), &["clone", "-q", url, "after"]);
    assert!(after.contains("no GitHub user is logged in"), "{after}");
    // The audit log has the session's story.
    let events: Vec<String> = gitgate
        .audit()
        .iter()
        .filter(|r| r["kind"] == "user_session")
        .map(|r| format!("{} {}", r["event"], r["github_user"]))
        .collect();
    assert_eq!(
        events,
        ["\"logged_in\" \"octo\"", "\"logged_out\" \"octo\""],
        "{events:?}"
    );

    assert_sandbox_holds_no_token(&sandbox, &standin);
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn the_sandbox_logs_in_with_post_login_on_the_proxy_port() {
    let standin = standin();
    let gitgate = start(&standin);
    let sandbox = Sandbox::new(&gitgate);
    let login = format!("http://{}/login", gitgate.addr);
    let curl = |args: &[&str]| {
        let out = sandbox.curl(&[&["--noproxy", "*"], args].concat());
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let started = curl(&["-X", "POST", &login]);
    let code = user_code(&started).unwrap_or_else(|| panic!("{started}"));
    // Recorded like any request: who asked, and the answer.
    let record = gitgate.wait_for_record(|r| r["path"] == "/login" && r["method"] == "POST");
    assert_eq!(
        (record["decision"].as_str(), record["status"].as_u64()),
        (Some("allow"), Some(200)),
        "{record}"
    );
    assert!(
        started.contains("open https://github.com/login/device"),
        "{started}"
    );
    // Asking again shows the same code rather than starting a second login.
    assert_eq!(
        user_code(&curl(&["-X", "POST", &login])),
        Some(code.clone())
    );
    let pending: serde_json::Value =
        serde_json::from_str(&curl(&["-H", "Accept: application/json", &login])).unwrap();
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["userCode"], code.as_str(), "{pending}");
    assert_eq!(pending["profile"], "default", "{pending}");

    assert!(standin.approve_device(&code, "hubot"));
    let mut state = serde_json::Value::Null;
    wait_until(|| {
        state = serde_json::from_str(&curl(&["-H", "Accept: application/json", &login])).unwrap();
        state["state"] != "pending"
    });
    assert_eq!(state["state"], "loggedIn", "{state}");
    assert_eq!(state["login"], "hubot", "{state}");
    let expires = state["expiresAt"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 20, "{state}");
    sandbox.clone_repo("bob/tools", "tools");

    // Only the one profile exists, and only the login endpoints answer.
    let other = sandbox.curl(&[
        "--noproxy",
        "*",
        "-X",
        "POST",
        &format!("{login}?profile=team-b"),
    ]);
    assert!(
        text(&other).contains("there is no profile \"team-b\""),
        "{}",
        text(&other)
    );
    let wrong = sandbox.curl(&["--noproxy", "*", "-X", "DELETE", &login]);
    assert!(
        text(&wrong).contains("POST /login starts"),
        "{}",
        text(&wrong)
    );

    let out = curl(&["-X", "POST", &format!("http://{}/logout", gitgate.addr)]);
    assert!(out.contains("logged out hubot"), "{out}");
    gitgate.assert_no_secrets(&standin);
}

/// A sandbox cannot make gitgate ask GitHub for device codes without end: logins at once
/// share one code, and a profile starts at most ten logins in a row, then one a minute
/// (429 past it).
#[test]
fn device_codes_are_asked_for_one_at_a_time_and_held_to_a_budget() {
    let standin = standin();
    let gitgate = start(&standin);
    let sandbox = std::sync::Arc::new(Sandbox::new(&gitgate));
    let login = format!("http://{}/login", gitgate.addr);
    let logout = format!("http://{}/logout", gitgate.addr);
    let codes_asked = || {
        standin
            .requests()
            .iter()
            .filter(|r| r.target == "/login/device/code")
            .count()
    };
    let post = |url: &str| {
        let out = sandbox.curl(&["--noproxy", "*", "-X", "POST", "-w", "\n%{http_code}", url]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let at_once: Vec<_> = (0..8)
        .map(|_| {
            let (sandbox, login) = (sandbox.clone(), login.clone());
            std::thread::spawn(move || {
                let out = sandbox.curl(&["--noproxy", "*", "-X", "POST", &login]);
                user_code(&String::from_utf8_lossy(&out.stdout))
            })
        })
        .collect();
    let shown: std::collections::BTreeSet<_> =
        at_once.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(shown.len(), 1, "one code for all: {shown:?}");
    assert!(shown.iter().all(Option::is_some), "{shown:?}");
    assert_eq!(codes_asked(), 1);
    // Logging out and in again asks for a new code each time, up to the budget.
    let mut refused = None;
    for round in 2..=12 {
        post(&logout);
        let answer = post(&login);
        if answer.ends_with("\n429") {
            refused = Some((round, answer));
            break;
        }
        assert!(answer.ends_with("\n200"), "{answer}");
    }
    let (round, answer) = refused.expect("never held back");
    assert_eq!(round, 11, "{answer}");
    assert!(
        answer.contains("started 10 GitHub logins in a row"),
        "{answer}"
    );
    assert_eq!(codes_asked(), 10);
}

#[test]
fn the_token_is_renewed_before_it_expires_and_git_never_sees_a_gap() {
    let standin = standin();
    // Eight-hour tokens renew 30 min ahead; these 8 s tokens renew at half-life (4 s).
    standin.set_user_token_lifetime(Duration::from_secs(8));
    let gitgate = start(&standin);
    let sandbox = Sandbox::new(&gitgate);
    let login = Login::start(&gitgate, &format!("http://{}", gitgate.addr));
    assert!(standin.approve_device(&login.user_code(), "octo"));
    let (ok, output) = login.finish();
    assert!(ok, "{output}\n{}", gitgate.output());
    let first = standin.user_events()[0].clone();
    let first_expiry = first.expires_at.unwrap();

    // The first token is replaced before it expires, and the replacement works.
    wait_until(|| standin.user_events().iter().any(|e| e.kind == "refresh"));
    let renewed = standin
        .user_events()
        .into_iter()
        .find(|e| e.kind == "refresh")
        .unwrap();
    gitgate.wait_for_record(|r| r["kind"] == "user_session" && r["event"] == "renewed");
    assert!(
        SystemTime::now() < first_expiry,
        "renewed only after the token expired"
    );
    assert!(!standin.user_token_live(&first.access_token));
    // Past the first token's expiry, git goes on working on renewed tokens.
    wait_until(|| SystemTime::now() > first_expiry + Duration::from_secs(1));
    sandbox.clone_repo("acme/app", "app");
    let used = standin
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.host == "github.com")
        .and_then(|r| r.header("authorization").map(str::to_owned))
        .unwrap();
    assert_ne!(used, gitgate_standin::basic_auth(&first.access_token));
    let live: Vec<_> = standin
        .user_events()
        .into_iter()
        .filter(|e| standin.user_token_live(&e.access_token))
        .collect();
    assert_eq!(live.len(), 1, "exactly one live token: {live:?}");
    assert!(
        renewed.expires_at.unwrap() > first_expiry,
        "{renewed:?} vs {first:?}"
    );
    assert_github_never_refused(&standin, "a git request hit an expired token");
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn every_way_a_login_can_fail_reaches_the_terminal_in_plain_words() {
    let standin = standin();
    let gitgate = start(&standin);
    let sandbox = Sandbox::new(&gitgate);
    let admin = admin_url(&gitgate);

    // The person cancels at GitHub.
    let login = Login::start(&gitgate, &admin);
    assert!(standin.deny_device(&login.user_code()));
    let (ok, output) = login.finish();
    assert!(!ok, "{output}");
    assert!(
        output.contains("login failed")
            && output.contains("was cancelled at GitHub (access denied)"),
        "{output}"
    );
    let git = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git", "denied"],
    );
    assert!(
        git.contains("the last login failed") && git.contains("access denied"),
        "{git}"
    );

    // Nobody enters the code in time.
    standin.set_device_code_lifetime(Duration::from_secs(3));
    let login = Login::start(&gitgate, &admin);
    let code = login.user_code();
    let (ok, output) = login.finish();
    assert!(!ok, "{output}");
    assert!(
        output.contains(&format!("the code {code} expired before it was entered")),
        "{output}"
    );
    standin.set_device_code_lifetime(Duration::from_secs(900));

    // GitHub asks gitgate to slow down twice: it waits longer each time, never polls
    // early (the stand-in would answer slow_down again), and still logs in.
    standin.slow_down_next(2);
    let before = standin.oauth_errors().len();
    let login = Login::start(&gitgate, &admin);
    let code = login.user_code();
    wait_until(|| {
        standin.oauth_errors()[before..]
            .iter()
            .filter(|e| **e == "slow_down")
            .count()
            == 2
    });
    assert!(standin.approve_device(&code, "octo"));
    let (ok, output) = login.finish();
    assert!(ok, "{output}");
    let answered = &standin.oauth_errors()[before..];
    assert_eq!(
        answered.iter().filter(|e| **e == "slow_down").count(),
        2,
        "{answered:?}"
    );

    // A wrong client id is named with the key to fix.
    let misconfigured = Gitgate::start_in(config_dir(&standin, "Iv1.notthisapp"));
    let config = misconfigured.dir.path().join("gitgate.yaml");
    let out = cli(
        &[
            "login",
            "--config",
            config.to_str().unwrap(),
            "--url",
            &format!("http://{}", misconfigured.addr),
        ],
        misconfigured.dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("incorrect_client_credentials")
            && text(&out).contains("github.user.clientId"),
        "{}",
        text(&out)
    );
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn a_token_github_stops_accepting_is_renewed_at_once() {
    let standin = standin();
    let gitgate = start(&standin);
    let sandbox = Sandbox::new(&gitgate);
    let login = Login::start(&gitgate, &admin_url(&gitgate));
    assert!(standin.approve_device(&login.user_code(), "octo"));
    assert!(login.finish().0);
    // Someone revokes the token at GitHub behind gitgate's back (the refresh token too):
    // git gets a plain answer, and gitgate says the session must be renewed.
    let token = standin.user_events()[0].access_token.clone();
    assert!(standin.revoke_user_token(&token));
    let url = "https://github.com/acme/app.git";
    let out = sandbox.git_fails(sandbox.home.path(), &["clone", "-q", url, "revoked"]);
    assert!(
        out.contains("refused gitgate's credential") && out.contains("gitgate login"),
        "{out}"
    );
    // gitgate tries its refresh token at once; GitHub refuses that too.
    let mut said = String::new();
    wait_until(|| {
        said = text(&run(&gitgate, "status", &admin_url(&gitgate)));
        said.contains("bad_refresh_token")
    });
    assert!(said.contains("log in again"), "{said}");
    // The refused token is not sent again: git is told to log in.
    let requests = standin.requests().len();
    let out = sandbox.git_fails(sandbox.home.path(), &["clone", "-q", url, "again"]);
    assert!(
        out.contains("is no longer valid") && out.contains("gitgate login"),
        "{out}"
    );
    assert_eq!(
        standin.requests().len(),
        requests,
        "a refused token went upstream"
    );
    gitgate.assert_no_secrets(&standin);
}

/// What gitgate logged since it was last started.
fn since_start(gitgate: &Gitgate) -> String {
    let output = gitgate.output();
    output
        .rsplit("--- started again ---")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The `user_session` events gitgate audited since it was last started.
fn session_events_since_start(gitgate: &Gitgate) -> Vec<String> {
    since_start(gitgate)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "user_session")
        .map(|r| r["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Stops gitgate and waits until the newest user token the stand-in issued has expired.
fn stop_until_the_token_expired(gitgate: &mut Gitgate, standin: &StandIn) {
    gitgate.stop();
    let newest = standin.user_events().last().unwrap().expires_at.unwrap();
    wait_until(|| SystemTime::now() > newest + Duration::from_secs(1));
}

#[test]
fn sessions_sealed_in_the_session_file_survive_restarts_until_logout() {
    use std::os::unix::fs::PermissionsExt;
    let standin = standin();
    // 12 s tokens (renewed at 6 s): gitgate is each time stopped until its newest token
    // expired, so a restarted gitgate must renew with the newest sealed refresh token
    // (single-use, as GitHub's) before git can use the session.
    standin.set_user_token_lifetime(Duration::from_secs(12));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    session_key(dir.path(), "session.key");
    let sealed = ", sessionFile: state/sessions, sessionKeyFile: session.key";
    write_config(dir.path(), &standin, &standin.client_id(), sealed);
    let mut gitgate = Gitgate::start_in(dir);
    let file = gitgate.dir.path().join("state/sessions");
    let config = gitgate.dir.path().join("gitgate.yaml");

    let login = Login::start(&gitgate, &admin_url(&gitgate));
    assert!(standin.approve_device(&login.user_code(), "octo"));
    let (ok, output) = login.finish();
    assert!(ok, "{output}");
    wait_until(|| {
        gitgate
            .output()
            .contains("sealed the GitHub user sessions sessions=1")
    });
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "before");
    stop_until_the_token_expired(&mut gitgate, &standin);

    // The file is gitgate's alone, and holds no token anyone could read.
    let bytes = std::fs::read(&file).unwrap();
    harness::assert_no_secret(
        &standin,
        "the session file",
        &String::from_utf8_lossy(&bytes),
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // `gitgate doctor` opens it with the key and says whose sessions a restart takes
    // back, without renewing them (the refresh token is single-use) or writing.
    let issued = standin.user_events().len();
    let doctor = cli(
        &["doctor", "--config", config.to_str().unwrap()],
        gitgate.dir.path(),
    );
    assert!(doctor.status.success(), "{}", text(&doctor));
    assert!(
        text(&doctor).contains("opens with github.user.sessionKeyFile; 1 saved session(s)")
            && text(&doctor).contains("default: octo with an expired token, renewable"),
        "{}",
        text(&doctor)
    );
    assert_eq!(
        standin.user_events().len(),
        issued,
        "doctor renewed a session"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "doctor wrote the file"
    );

    // Started again: the person is still logged in; gitgate renews before git uses it.
    for round in ["first", "second"] {
        gitgate.start_again();
        wait_until(|| {
            session_events_since_start(&gitgate).starts_with(&["restored".into(), "renewed".into()])
        });
        let sandbox = Sandbox::new(&gitgate);
        let repo = sandbox.clone_repo("acme/app", round);
        sandbox.commit(&repo, &format!("{round}.txt"), "pushed after a restart");
        sandbox.git_ok(&repo, &["push", "origin", "HEAD:main"]);
        let status = admin_ok(&gitgate, "status");
        assert!(
            status.contains("default: logged in to GitHub as octo"),
            "{status}"
        );
        stop_until_the_token_expired(&mut gitgate, &standin);
    }
    let events = standin.user_events();
    assert_eq!(
        events.iter().filter(|e| e.kind == "device").count(),
        1,
        "no second login: {events:?}"
    );
    assert!(
        events.iter().filter(|e| e.kind == "refresh").count() >= 2,
        "{events:?}"
    );
    assert_github_never_refused(&standin, "an expired token went upstream");

    // Logout takes the session out of the file before it answers: the next start has
    // nobody.
    gitgate.start_again();
    wait_until(|| {
        session_events_since_start(&gitgate).starts_with(&["restored".into(), "renewed".into()])
    });
    admin_ok(&gitgate, "logout");
    gitgate.stop();
    gitgate.start_again();
    let status = run(&gitgate, "status", &admin_url(&gitgate));
    assert!(
        text(&status).contains("nobody is logged in"),
        "{}",
        text(&status)
    );
    let sandbox = Sandbox::new(&gitgate);
    let after = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git", "gone"],
    );
    assert!(after.contains("no GitHub user is logged in"), "{after}");
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn a_session_waits_aside_while_its_profile_file_is_broken_and_ends_when_the_file_goes() {
    use crate::profiles::{SECRET_B, profile_file, sandbox_as};
    let standin = standin();
    let dir = tempfile::tempdir().unwrap();
    session_key(dir.path(), "session.key");
    std::fs::create_dir(dir.path().join("profiles.d")).unwrap();
    let team_b = dir.path().join("profiles.d/team-b.yaml");
    std::fs::write(&team_b, profile_file(SECRET_B, "bob/tools")).unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\n\
         admin: 127.0.0.1:0\n\
         github:\n  user: {{clientId: \"{client_id}\", sessionFile: sessions, sessionKeyFile: session.key}}\n\
         {upstream}\
         profilesDir: profiles.d\n",
        client_id = standin.client_id(),
        upstream = upstream(&standin),
    );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let mut gitgate = Gitgate::start_in(dir);
    let home = gitgate.dir.path().to_owned();
    let config = home.join("gitgate.yaml");
    let config = config.to_str().unwrap().to_owned();
    // What the session file holds, as `gitgate doctor` reads it (it neither locks nor
    // writes, so it can look while gitgate runs).
    let saved = || text(&cli(&["doctor", "--config", &config], &home));
    let status = |gitgate: &Gitgate| {
        let admin = format!("http://{}", gitgate.admin_addr());
        let args = [
            "status",
            "--config",
            &config,
            "--url",
            &admin,
            "--profile",
            "team-b",
        ];
        text(&cli(&args, &home))
    };

    // bob logs in for team-b from its sandbox.
    let b = sandbox_as(&gitgate, "team-b", SECRET_B);
    let login = format!("http://{}/login", gitgate.addr);
    let header = {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("team-b:{SECRET_B}"));
        format!("Proxy-Authorization: Basic {basic}")
    };
    let started = b.curl(&["--noproxy", "*", "-sS", "-X", "POST", "-H", &header, &login]);
    assert!(standin.approve_device(&user_code(&text(&started)).unwrap(), "bob"));
    wait_until(|| status(&gitgate).contains("team-b: logged in to GitHub as bob"));
    wait_until(|| saved().contains("team-b: bob with"));

    // gitgate restarts while team-b's file is broken: the profile is out, its session
    // waits aside, in the file, and a reload that still finds the file broken keeps it.
    gitgate.stop();
    std::fs::write(&team_b, "policy: [\n").unwrap();
    gitgate.start_again();
    assert!(
        since_start(&gitgate).contains("is kept aside"),
        "{}",
        gitgate.output()
    );
    gitgate.hangup();
    wait_until(|| since_start(&gitgate).contains("profiles reloaded"));
    assert!(saved().contains("team-b: bob with"), "{}", saved());

    // The file is fixed: the reload takes bob's session back, no new login needed.
    std::fs::write(&team_b, profile_file(SECRET_B, "bob/tools")).unwrap();
    gitgate.hangup();
    wait_until(|| status(&gitgate).contains("team-b: logged in to GitHub as bob"));
    let b = sandbox_as(&gitgate, "team-b", SECRET_B);
    b.clone_repo("bob/tools", "tools");
    assert_eq!(
        standin
            .user_events()
            .iter()
            .filter(|e| e.kind == "device")
            .count(),
        1
    );

    // Broken again across a restart, then removed: the session ends with it, in the file
    // too, so that a later team-b cannot inherit bob's session.
    gitgate.stop();
    std::fs::write(&team_b, "policy: [\n").unwrap();
    gitgate.start_again();
    std::fs::remove_file(&team_b).unwrap();
    gitgate.hangup();
    gitgate.wait_for_record(|r| {
        r["kind"] == "user_session" && r["event"] == "dropped" && r["profile"] == "team-b"
    });
    wait_until(|| saved().contains("0 saved session(s)"));
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn a_session_file_gitgate_cannot_trust_stops_it_with_what_to_do() {
    let standin = standin();
    let dir = tempfile::tempdir().unwrap();
    session_key(dir.path(), "session.key");
    let sealed = ", sessionFile: sessions, sessionKeyFile: session.key";
    write_config(dir.path(), &standin, &standin.client_id(), sealed);
    let file = dir.path().join("sessions");
    let cases: [(&[u8], &str); 2] = [
        (
            b"GGSESS1\n0123456789ab-sealed under another key or altered-",
            "cannot be opened with github.user.sessionKeyFile: it was sealed with another key, or altered; give the key it was sealed with, or delete the file to start with nobody logged in",
        ),
        (b"{\"sessions\": []}", "not a gitgate session file"),
    ];
    for (bytes, why) in cases {
        std::fs::write(&file, bytes).unwrap();
        // `check` refuses it as a config problem, before `run` would.
        for (command, code, named) in [
            ("run", 1, "github.user.sessionFile sessions: "),
            ("doctor", 1, "github.user.sessionFile sessions: "),
            ("check", 64, "gitgate.yaml:4:"),
        ] {
            let out = cli(&[command, "--config", "gitgate.yaml"], dir.path());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{command}: {}", text(&out));
            assert!(
                stderr.contains(named) && stderr.contains(why),
                "{command}: {stderr}"
            );
        }
        // Nothing was overwritten.
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
    }
}

#[test]
fn github_user_config_is_checked_and_described() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty-secret"), "\n").unwrap();
    session_key(dir.path(), "key");
    std::fs::write(dir.path().join("short-key"), "c2hvcnQ=\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("short-key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::copy(dir.path().join("key"), dir.path().join("open-key")).unwrap();
    std::fs::set_permissions(
        dir.path().join("open-key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let cases = [
        (
            "  user: {clientId: Iv1.abc}\n  token: {env: GH}\n",
            None,
            "gitgate.yaml:1:1: github: set one of github.app, github.token or github.user, not several",
        ),
        (
            "  user: {clientId: Iv1.abc, clientSecret: s}\n",
            Some("gitgate.yaml:2:"),
            "unknown field `clientSecret`",
        ),
        (
            "  user: {clientId: Iv1.abc, clientSecretFile: empty-secret}\n",
            Some("gitgate.yaml:2:"),
            "empty-secret is empty",
        ),
        (
            "  user: {clientId: \"\"}\n",
            Some("gitgate.yaml:2:"),
            "invalid App id",
        ),
        (
            "  user:\n    clientId: Iv1.abc\n    sessionFile: sessions\n",
            Some("gitgate.yaml:4:5: github.user.sessionFile: "),
            "needs github.user.sessionKeyFile, the key that seals it (make one with `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)",
        ),
        (
            "  user:\n    clientId: Iv1.abc\n    sessionKeyFile: key\n",
            Some("gitgate.yaml:4:5: github.user.sessionKeyFile: "),
            "seals github.user.sessionFile, which is not set",
        ),
        (
            "  user: {clientId: Iv1.abc, sessionFile: sessions, sessionKeyFile: open-key}\n",
            Some("gitgate.yaml:2:"),
            "open-key: readable by group or others (mode 0644); run `chmod 600",
        ),
        (
            "  user: {clientId: Iv1.abc, sessionFile: sessions, sessionKeyFile: short-key}\n",
            Some("gitgate.yaml:2:"),
            "short-key: holds 9 bytes, not a key: give 32 random bytes or their base64",
        ),
        (
            "  user: {clientId: Iv1.abc, sessionFile: no/such/dir/sessions, sessionKeyFile: key}\n",
            Some("gitgate.yaml:2:"),
            "no/such/dir does not exist; create it (writable by gitgate only)",
        ),
    ];
    for (github, location, expected) in cases {
        std::fs::write(
            dir.path().join("gitgate.yaml"),
            format!("github:\n{github}"),
        )
        .unwrap();
        let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{github}: {stderr}");
        assert!(
            location.is_none_or(|l| stderr.contains(l)) && stderr.contains(expected),
            "{github}: {stderr}"
        );
    }
    // With profiles, login/status/logout need the admin listener: the proxy port answers
    // only a sandbox, for its own profile.
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "github:\n  user: {clientId: Iv1.abc}\nprofiles:\n  x:\n    sourceCidrs: [10.0.0.0/8]\n",
    )
    .unwrap();
    let out = cli(
        &["status", "--config", "gitgate.yaml", "--profile", "x"],
        dir.path(),
    );
    assert!(
        out.status.code() == Some(64) && text(&out).contains("talk to the admin listener"),
        "{}",
        text(&out)
    );
    // `gitgate check` describes the source, and where the sessions live.
    for (user, described) in [
        (
            "{clientId: Iv1.abc, refreshMargin: 1h}",
            "GitHub user via the device flow, App client Iv1.abc (log in with `gitgate login`; renewed 3600 s before expiry; not revoked on logout: no clientSecretFile; sessions in memory only: a restart logs everyone out)",
        ),
        (
            "{clientId: Iv1.abc, sessionFile: sessions, sessionKeyFile: key}",
            "; sessions sealed in sessions under the key in key)",
        ),
    ] {
        let config = format!("github:\n  user: {user}\n");
        std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
        let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(described), "{}", text(&out));
    }
}

#[test]
fn each_profile_logs_in_its_own_person_and_a_sandbox_acts_only_for_its_own() {
    use crate::profiles::{SECRET_A, SECRET_B, sandbox_as, secret_profile};
    let standin = standin();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\n\
         admin: 127.0.0.1:0\n\
         github:\n  user: {{clientId: \"{client_id}\"}}\n\
         {upstream}\
         profiles:\n{a}{b}",
        client_id = standin.client_id(),
        upstream = upstream(&standin),
        a = secret_profile("team-a", SECRET_A, "{allowedRepos: [acme/app]}"),
        b = secret_profile("team-b", SECRET_B, "{allowedRepos: [bob/tools]}"),
    );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let gitgate = Gitgate::start_in(dir);
    let a = sandbox_as(&gitgate, "team-a", SECRET_A);
    let b = sandbox_as(&gitgate, "team-b", SECRET_B);
    // Each sandbox starts its own person's login on the proxy port.
    let login = format!("http://{}/login", gitgate.addr);
    let post = |sandbox: &Sandbox, who: &str, secret: &str, url: &str| {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{who}:{secret}"));
        let header = format!("Proxy-Authorization: Basic {basic}");
        let out = sandbox.curl(&["--noproxy", "*", "-sS", "-X", "POST", "-H", &header, url]);
        text(&out)
    };
    let code_a = user_code(&post(&a, "team-a", SECRET_A, &login)).unwrap();
    let code_b = user_code(&post(&b, "team-b", SECRET_B, &login)).unwrap();
    assert_ne!(code_a, code_b);
    assert!(standin.approve_device(&code_a, "alice"));
    assert!(standin.approve_device(&code_b, "bob"));
    let admin = format!("http://{}", gitgate.admin_addr());
    let config = gitgate.dir.path().join("gitgate.yaml");
    let config = config.to_str().unwrap();
    let status_of = |profile: &str| {
        let args = [
            "status",
            "--config",
            config,
            "--url",
            &admin,
            "--profile",
            profile,
        ];
        cli(&args, gitgate.dir.path())
    };
    wait_until(|| {
        ["team-a", "team-b"]
            .iter()
            .all(|p| status_of(p).status.success())
    });
    let status = status_of("team-a");
    assert!(
        text(&status).contains("team-a: logged in to GitHub as alice"),
        "{}",
        text(&status)
    );
    // Without a profile, the operator sees every profile's session; logging in or out
    // needs one named.
    let unnamed = |command: &str| {
        cli(
            &[command, "--config", config, "--url", &admin],
            gitgate.dir.path(),
        )
    };
    let all = unnamed("status");
    assert!(
        all.status.success()
            && text(&all).contains("team-a: logged in to GitHub as alice")
            && text(&all).contains("team-b: logged in to GitHub as bob"),
        "{}",
        text(&all)
    );
    let logout = unnamed("logout");
    assert!(
        !logout.status.success() && text(&logout).contains("name it with ?profile=NAME"),
        "{}",
        text(&logout)
    );

    // Each sandbox's git goes upstream with its own person's token.
    a.clone_repo("acme/app", "app");
    b.clone_repo("bob/tools", "tools");
    let events = standin.user_events();
    let token_of = |login: &str| {
        let event = events.iter().find(|e| e.login == login).unwrap();
        gitgate_standin::basic_auth(&event.access_token)
    };
    let carried = |path: &str| -> Vec<String> {
        standin
            .requests()
            .into_iter()
            .filter(|r| r.host == "github.com" && r.path().starts_with(path))
            .filter_map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    };
    let (app, tools) = (carried("/acme/app.git/"), carried("/bob/tools.git/"));
    assert!(!app.is_empty() && app.iter().all(|t| *t == token_of("alice")));
    assert!(!tools.is_empty() && tools.iter().all(|t| *t == token_of("bob")));

    // A sandbox cannot look at, log out or log in another profile's person.
    let logout = |query: &str| {
        let url = format!("http://{}/logout{query}", gitgate.addr);
        post(&a, "team-a", SECRET_A, &url)
    };
    let other = logout("?profile=team-b");
    assert!(other.contains("this sandbox is profile team-a"), "{other}");
    let out = logout("");
    assert!(out.contains("logged out alice"), "{out}");
    let refused = a.git_fails(
        a.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git", "again"],
    );
    assert!(refused.contains("no GitHub user is logged in"), "{refused}");
    b.clone_repo("bob/tools", "tools-again");
    // The audit log names each session's profile.
    let sessions: Vec<(String, String)> = gitgate
        .audit()
        .iter()
        .filter(|r| r["kind"] == "user_session")
        .map(|r| {
            (
                r["profile"].as_str().unwrap_or("").to_owned(),
                r["event"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for want in [
        ("team-a", "logged_in"),
        ("team-b", "logged_in"),
        ("team-a", "logged_out"),
    ] {
        assert!(
            sessions
                .iter()
                .any(|(p, e)| (p.as_str(), e.as_str()) == want),
            "{sessions:?}"
        );
    }
    gitgate.assert_no_secrets(&standin);
}

/// A new OAuth client secret in the same file is a change that waits for a restart, and a
/// reload says so, as it does for a new App key.
#[test]
fn a_new_client_secret_in_the_same_file_is_named_as_waiting_for_a_restart() {
    let standin = standin();
    let gitgate = start(&standin);
    std::fs::write(gitgate.dir.path().join("client-secret"), "rotated-secret\n").unwrap();
    let config = std::fs::read_to_string(gitgate.dir.path().join("gitgate.yaml")).unwrap();
    gitgate.rewrite_config(&format!("{config}# the client secret was rotated\n"));
    wait_until(|| gitgate.output().contains("apply only when gitgate starts"));
    assert!(
        gitgate.output().contains(" keys=github\n"),
        "{}",
        gitgate.output()
    );
}
