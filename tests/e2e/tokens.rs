//! GitHub App installation tokens: minted, scoped, cached, refreshed and injected, with
//! no credential anywhere on the sandbox side.

use std::collections::BTreeSet;
use std::time::Duration;

use gitgate_standin::Fault;

use crate::harness::{self, Gitgate, POLICY, Sandbox, app_config, text, upstream};

/// Every file under `dir`, as text.
fn all_files(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in walk(dir) {
        if let Ok(bytes) = std::fs::read(&entry) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn clone_and_push_with_no_credential_on_the_client_side() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let head = sandbox.commit(&repo, "feature.txt", "hello\n");
    let trace = sandbox.path("curl-trace.txt");
    let trace_env = [
        ("GIT_TRACE_CURL", trace.to_str().unwrap()),
        ("GIT_TRACE_REDACT", "0"),
    ];
    let out = sandbox.git_with_env(&repo, &["push", "origin", "HEAD:main"], &trace_env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/main")
            .as_deref(),
        Some(head.as_str())
    );
    let out = sandbox.git_with_env(&repo, &["fetch", "origin"], &trace_env);
    assert!(out.status.success(), "{}", text(&out));
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(
        traced.contains("git-receive-pack"),
        "the trace did not capture the push"
    );

    let tokens = standin.tokens();
    assert!(!tokens.is_empty(), "no token was minted");
    // HOME (with the trace, .gitconfig and the clone's .git/config), the client's
    // environment and its output hold none of them.
    let mut haystacks = vec![all_files(sandbox.home.path()), text(&out)];
    haystacks.push(format!("{:?}", sandbox.environment()));
    for hay in &haystacks {
        harness::assert_no_secret(&standin, "the sandbox", hay);
    }
    // Upstream saw gitgate's token on every git request.
    for request in standin.requests().iter().filter(|r| r.host == "github.com") {
        let auth = request
            .header("authorization")
            .unwrap_or_else(|| panic!("no Authorization on {}", request.target));
        assert!(
            tokens
                .iter()
                .any(|t| auth == gitgate_standin::basic_auth(t)),
            "{auth}"
        );
    }
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn a_client_supplied_authorization_is_replaced() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let bogus = "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX3N0b2xlbg==";
    sandbox.git_ok(
        sandbox.home.path(),
        &[
            "-c",
            &format!("http.extraHeader={bogus}"),
            "clone",
            "-q",
            "https://github.com/acme/app.git",
            "app",
        ],
    );
    let git_requests: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.host == "github.com")
        .collect();
    assert!(!git_requests.is_empty());
    for request in git_requests {
        let auths: Vec<_> = request
            .headers
            .iter()
            .filter(|(k, _)| k == "authorization")
            .collect();
        assert_eq!(auths.len(), 1, "{:?}", request.headers);
        assert!(
            !auths[0].1.contains("eC1hY2Nlc3MtdG9rZW46Z2hzX3N0b2xlbg"),
            "client credential forwarded"
        );
    }
}

#[test]
fn two_owners_get_their_own_installations_tokens_scoped_to_the_policy() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app, bob/tools], allowedRefs: [main]}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "app");
    sandbox.clone_repo("bob/tools", "tools");
    let mints = standin.mints();
    let by_installation: BTreeSet<u64> = mints.iter().map(|m| m.installation_id).collect();
    assert_eq!(by_installation, BTreeSet::from([1001, 2002]));
    let acme = mints.iter().find(|m| m.installation_id == 1001).unwrap();
    assert_eq!(acme.repositories.as_deref(), Some(&["app".to_owned()][..]));
    assert_eq!(
        acme.permissions.get("contents").map(String::as_str),
        Some("write")
    );
    assert_eq!(
        acme.permissions.get("metadata").map(String::as_str),
        Some("read")
    );
    // acme/secret is in the installation but not in the policy: the token minted for the
    // policy cannot read it at GitHub (asked directly, not through gitgate), acme/app it can.
    let status = |repo: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(standin.ca_file())
            .args([
                "--resolve",
                &format!("github.com:{}:127.0.0.1", standin.port()),
                "-H",
                &format!(
                    "Authorization: {}",
                    gitgate_standin::basic_auth(&acme.token)
                ),
                &format!(
                    "https://github.com:{}/{repo}.git/info/refs?service=git-upload-pack",
                    standin.port()
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("acme/app"), "200");
    assert!(
        ["403", "404"].contains(&status("acme/secret").as_str()),
        "{}",
        status("acme/secret")
    );
}

#[test]
fn read_only_policy_mints_read_only_tokens_and_wildcards_omit_the_repository_list() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, "{allowedRepos: [\"acme/*\"]}"));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/lib-core", "lib");
    let mints = standin.mints();
    assert_eq!(mints.len(), 1);
    assert_eq!(mints[0].repositories, None);
    assert_eq!(
        mints[0].permissions.get("contents").map(String::as_str),
        Some("read")
    );
}

#[test]
fn a_repository_github_will_not_grant_leaves_the_others_usable() {
    // acme/gone is in the policy but not at GitHub (deleted, renamed, or never installed):
    // GitHub refuses any token that lists it.
    let standin = harness::standin();
    let config = app_config(
        &standin,
        "{allowedRepos: [acme/app, acme/gone], allowedRefs: [main]}",
    );
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "n.txt", "n\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    let mints = standin.mints();
    assert!(
        !mints.is_empty()
            && mints
                .iter()
                .all(|m| m.repositories.as_deref() == Some(&["app".to_owned()][..])),
        "{mints:?}"
    );
    assert!(
        gitgate
            .output()
            .contains("using a token for this repository alone"),
        "the operator is told"
    );
    // A reload keeps that token: it still serves a wanted scope.
    let minted = standin.mints().len();
    gitgate.hangup();
    crate::core::wait_until(|| gitgate.output().contains("policy reloaded"));
    sandbox.clone_repo("acme/app", "again");
    assert_eq!(standin.mints().len(), minted, "minted again after a reload");
    // `doctor` names the list GitHub refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
    let out = harness::gitgate::cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("on app, gone; grant the GitHub App"),
        "{stderr}"
    );
}

#[test]
fn a_token_expiring_mid_session_is_refreshed_without_a_client_visible_failure() {
    let standin = harness::standin();
    standin.set_token_lifetime(Duration::from_secs(4));
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let start = std::time::Instant::now();
    // Keep fetching across several token lifetimes; every fetch must succeed.
    while start.elapsed() < Duration::from_secs(10) {
        sandbox.git_ok(&repo, &["fetch", "-q", "origin"]);
    }
    assert!(
        standin.mints().len() >= 3,
        "tokens were not refreshed: {} mints",
        standin.mints().len()
    );
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn fifty_concurrent_clones_mint_one_token_per_scope() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = std::sync::Arc::new(Sandbox::new(&gitgate));
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let sandbox = sandbox.clone();
            std::thread::spawn(move || {
                let out = sandbox.git(
                    sandbox.home.path(),
                    &[
                        "clone",
                        "-q",
                        "https://github.com/acme/app.git",
                        &format!("c{i}"),
                    ],
                );
                assert!(out.status.success(), "clone {i}: {}", text(&out));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        standin.mints().len(),
        1,
        "{:?}",
        standin
            .mints()
            .iter()
            .map(|m| m.installation_id)
            .collect::<Vec<_>>()
    );
}

/// Starts gitgate on `config`, clones `owner_repo` through it, and asserts that git
/// fails and prints `expected`.
fn clone_fails_with(config: &str, owner_repo: &str, expected: &str) {
    let gitgate = Gitgate::start(config);
    let sandbox = Sandbox::new(&gitgate);
    let url = format!("https://github.com/{owner_repo}.git");
    let out = sandbox.git_fails(sandbox.home.path(), &["clone", &url]);
    assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    // The audit record says what went wrong, not just that the request was allowed.
    let cause = expected.trim_start_matches("remote error: gitgate: ");
    let record = gitgate.wait_for_record(|r| r["service"] == "upload-pack");
    assert!(
        record["error"].as_str().is_some_and(|e| e.contains(cause)),
        "{record}"
    );
}

#[test]
fn mint_failures_reach_git_output_with_their_cause() {
    let standin = harness::standin();
    // The account has no installation.
    clone_fails_with(
        &app_config(&standin, "{allowedRepos: [\"nobody/*\"]}"),
        "nobody/x",
        "remote error: gitgate: GitHub App is not installed on account nobody",
    );
    // The JWT is refused: wrong App id.
    let wrong_id = app_config(&standin, POLICY)
        .replace(&format!("id: \"{}\"", standin.app_id()), "id: \"999\"");
    clone_fails_with(
        &wrong_id,
        "acme/app",
        "remote error: gitgate: GitHub rejected the App JWT (check github.app.id, the key, and this machine's clock",
    );
    // The API is unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = app_config(&standin, POLICY).replace(
        &format!("api.github.com: \"{}\"", standin.addr()),
        &format!("api.github.com: \"{closed}\""),
    );
    clone_fails_with(
        &unreachable,
        "acme/app",
        "remote error: gitgate: cannot reach api.github.com",
    );
    // GitHub refuses the token request itself.
    standin.set_fault(Some(Fault::TokenEndpoint {
        status: 422,
        body: r#"{"message":"The permissions requested are not granted to this installation."}"#
            .into(),
    }));
    clone_fails_with(
        &app_config(&standin, POLICY),
        "acme/app",
        "The permissions requested are not granted to this installation.",
    );
}

#[test]
fn static_token_file_is_re_read_when_rewritten() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let first = standin
        .issue_token(1001, None, Some(&[("contents", "read")]))
        .unwrap();
    std::fs::write(&token_file, format!("{}\n", first.token)).unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\ngithub:\n  token: {{file: {}}}\n{}policy: {POLICY}\n",
        token_file.display(),
        upstream(&standin)
    );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let gitgate = Gitgate::start_in(dir);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "one");
    let second = standin
        .issue_token(1001, None, Some(&[("contents", "read")]))
        .unwrap();
    std::fs::write(&token_file, format!("{}\n", second.token)).unwrap();
    // The file is looked at once a second: wait until a request carries the new token.
    let expected = gitgate_standin::basic_auth(&second.token);
    crate::core::wait_until(|| {
        let _ = sandbox.git(
            sandbox.home.path(),
            &["ls-remote", "https://github.com/acme/app.git"],
        );
        standin
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(expected.as_str()))
    });
    standin.clear_requests();
    sandbox.clone_repo("acme/app", "two");
    let git_requests: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.host == "github.com")
        .collect();
    assert!(!git_requests.is_empty());
    for request in git_requests {
        assert!(
            request
                .headers
                .iter()
                .any(|(k, v)| k == "authorization" && *v == expected),
            "{}",
            request.target
        );
    }
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn configured_installations_skip_the_lookup() {
    let standin = harness::standin();
    let config = app_config(&standin, POLICY).replace(
        "privateKeyFile:",
        "installations: {acme: 1001}, privateKeyFile:",
    );
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "app");
    let lookups: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.target.ends_with("/installation"))
        .collect();
    assert!(lookups.is_empty(), "{lookups:?}");
    assert_eq!(standin.mints()[0].installation_id, 1001);
}

#[test]
fn static_token_from_the_environment() {
    let standin = harness::standin();
    let token = standin
        .issue_token(1001, None, Some(&[("contents", "read")]))
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\ngithub:\n  token: {{env: BENCH_TOKEN}}\n{}policy: {POLICY}\n",
        upstream(&standin)
    );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let gitgate = Gitgate::start_with_env(dir, &[("BENCH_TOKEN", &token)]);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "app");
    let expected = gitgate_standin::basic_auth(&token);
    assert!(
        standin
            .requests()
            .iter()
            .filter(|r| r.host == "github.com")
            .all(|r| r.header("authorization") == Some(expected.as_str()))
    );
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn no_credential_source_is_announced_at_start() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&format!(
        "listen: 127.0.0.1:0\n{}policy: {POLICY}\n",
        upstream(&standin)
    ));
    assert!(
        gitgate
            .output()
            .contains("no github.app or github.token configured"),
        "{}",
        gitgate.output()
    );
}

#[test]
fn a_failed_installation_lookup_is_not_repeated_at_once() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, "{allowedRepos: [\"nobody/*\"]}"));
    let sandbox = Sandbox::new(&gitgate);
    for _ in 0..3 {
        let out = sandbox.git_fails(
            sandbox.home.path(),
            &["ls-remote", "https://github.com/nobody/x.git"],
        );
        assert!(
            out.contains("GitHub App is not installed on account nobody"),
            "{out}"
        );
    }
    let lookups = standin
        .requests()
        .iter()
        .filter(|r| r.target.ends_with("/installation"))
        .count();
    assert_eq!(
        lookups, 3,
        "one lookup (repo, org, user), not one per request"
    );
}

#[test]
fn a_failed_mint_is_not_retried_at_once_and_recovers_after_the_backoff() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let url = "https://github.com/acme/app.git";
    standin.set_fault(Some(Fault::TokenEndpoint {
        status: 503,
        body: r#"{"message":"Service unavailable"}"#.into(),
    }));
    let mints = || {
        standin
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.target.ends_with("/access_tokens"))
            .count()
    };
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let out = sandbox.git_fails(sandbox.home.path(), &["ls-remote", url]);
        assert!(out.contains("Service unavailable"), "{out}");
    }
    // Backoff windows open at 0, 1, 3, 7, 15 s (1 s, doubling): at most one mint each.
    let elapsed = started.elapsed();
    let windows = [0, 1, 3, 7, 15, 31]
        .iter()
        .filter(|&&s| Duration::from_secs(s) <= elapsed)
        .count();
    assert!(
        mints() <= windows,
        "{} mints for 5 requests in {elapsed:?}",
        mints()
    );
    standin.set_fault(None);
    crate::core::wait_until(|| {
        sandbox
            .git(sandbox.home.path(), &["ls-remote", url])
            .status
            .success()
    });
    assert!(mints() >= 2);
}

#[test]
fn a_reinstalled_app_is_found_again_without_a_restart() {
    // Uninstalling and reinstalling the App gives the account a new installation id and
    // revokes the old tokens; gitgate looked the old id up and must not keep it forever.
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "before");
    assert!(standin.reinstall("acme", 1003));
    // The first request after it meets the revoked token (git is told to retry); from
    // then on, clones work with a token of the new installation.
    let url = "https://github.com/acme/app.git";
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "-q", url, "meets-the-revoked-token"],
    );
    assert!(
        out.contains("refused gitgate's credential for acme/app (HTTP 401); gitgate dropped that token and mints a new one; retry"),
        "{out}"
    );
    sandbox.clone_repo("acme/app", "after");
    let last = standin.mints().pop().expect("a mint");
    assert_eq!(last.installation_id, 1003);
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn a_slow_installation_lookup_for_one_owner_holds_up_no_other() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = std::sync::Arc::new(Sandbox::new(&gitgate));
    sandbox.clone_repo("bob/tools", "warm");
    standin.set_fault(Some(Fault::LookupStall {
        owner: "acme".into(),
    }));
    let stalled = {
        let sandbox = sandbox.clone();
        std::thread::spawn(move || {
            let url = "https://github.com/acme/app.git";
            sandbox.git(sandbox.home.path(), &["clone", "-q", url, "stalled"])
        })
    };
    crate::core::wait_until(|| {
        standin
            .requests()
            .iter()
            .any(|r| r.target.ends_with("/repos/acme/app/installation"))
    });
    // bob's installation is known: its clone does not wait for acme's lookup.
    let started = std::time::Instant::now();
    sandbox.clone_repo("bob/tools", "meanwhile");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bob's clone waited {:?} for acme's installation lookup",
        started.elapsed()
    );
    standin.set_fault(None);
    let out = stalled.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// An owner wildcard lets a sandbox name any account: each unknown one costs GitHub App
/// calls on the rate limit every mint shares, so gitgate looks up at most 30 such
/// accounts a minute (one more every 2 s) and says so past that; owners the policy names,
/// and owners already known, are never held back.
#[test]
fn installation_lookups_of_unknown_owners_are_held_to_a_budget() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: ['*/app', acme/lib-core, named/app]}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    let started = std::time::Instant::now();
    sandbox.clone_repo("acme/lib-core", "known");
    let lookups = || {
        let requests = standin.requests();
        let mut owners: Vec<String> = requests
            .iter()
            .filter(|r| r.path().ends_with("/installation"))
            .filter_map(|r| r.path().split('/').nth(2).map(str::to_owned))
            .collect();
        owners.dedup();
        owners.len()
    };
    let answer = |owner: &str| {
        let url = format!("https://github.com/{owner}/app.git/info/refs?service=git-upload-pack");
        text(&sandbox.curl(&["-sS", &url]))
    };
    let held = (1..=100).find_map(|n| {
        let answer = answer(&format!("nobody{n}"));
        match answer.contains("not installed") {
            true => None,
            false => Some((n, answer)),
        }
    });
    let (n, held) = held.expect("100 unknown accounts were all looked up");
    assert!(
        held.contains("installations of 30 accounts in the last minute")
            && held.contains("retry in a minute"),
        "{n}: {held}"
    );
    // acme, at most the budget, and what came back while the requests ran.
    let refilled = started.elapsed().as_secs() as usize / 2 + 1;
    let looked_up = lookups();
    assert!(looked_up <= 1 + 30 + refilled, "{looked_up} lookups");
    assert!(
        !standin
            .requests()
            .iter()
            .any(|r| r.path().contains(&format!("/nobody{n}/"))),
        "a held-back lookup reached GitHub"
    );
    // An owner the policy names is looked up all the same; one already known needs none.
    assert!(
        answer("named").contains("not installed"),
        "{}",
        answer("named")
    );
    sandbox.clone_repo("acme/lib-core", "again");
}
