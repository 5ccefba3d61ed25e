//! Running gitgate as an operator would: audit records, metrics, health, live policy
//! reload, report-only mode, and the `explain` / `env` commands.

use gitgate_standin::{Fault, StandIn};
use serde_json::Value;

use crate::core::wait_until;
use crate::harness::gitgate::cli;
use crate::harness::{self, Gitgate, POLICY, Sandbox, app_config, raw, text};

#[test]
fn every_request_gets_one_audit_record_with_its_decision_and_no_token() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "x.txt", "x\n");
    sandbox.git_fails(&repo, &["push", "origin", "HEAD:dev"]);
    sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/acme/secret.git"],
    );
    let out = sandbox.curl(&[
        "--cacert",
        &standin.ca_file().display().to_string(),
        "https://tunnel.test/",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    raw::exchange(
        gitgate.addr,
        b"CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n",
    );
    wait_until(|| {
        let records = gitgate.decisions();
        records
            .iter()
            .any(|r| r["service"] == "tunnel" && r["decision"] == "allow")
            && records.iter().any(|r| r["host"] == "other.test")
    });

    let records = gitgate.decisions();
    // One record per request that reached gitgate inside the GitHub tunnels.
    let upstream_git = standin
        .requests()
        .iter()
        .filter(|r| r.host == "github.com")
        .count();
    let allowed_git = records
        .iter()
        .filter(|r| r["host"] == "github.com" && r["decision"] == "allow")
        .count();
    assert_eq!(allowed_git, upstream_git, "{records:#?}");
    let clone = records
        .iter()
        .find(|r| r["path"] == "/acme/app.git/git-upload-pack")
        .expect("upload-pack record");
    assert_eq!(clone["service"], "upload-pack");
    assert_eq!(clone["repo"], "acme/app");
    assert_eq!(clone["upstream_status"], 200);
    assert_eq!(clone["installation"], 1001);
    assert_eq!(clone["token_scope"]["permissions"]["contents"], "write");
    assert!(clone["bytes_out"].as_u64().unwrap() > 0);
    assert!(clone["duration_ms"].as_f64().is_some());
    let push = records
        .iter()
        .find(|r| r["service"] == "receive-pack" && r["decision"] == "deny")
        .expect("denied push record");
    assert_eq!(push["refs"][0]["ref"], "refs/heads/dev");
    assert_eq!(push["refs"][0]["decision"], "deny");
    assert!(
        push["reason"]
            .as_str()
            .unwrap()
            .contains("not in allowedRefs")
    );
    let secret = records
        .iter()
        .find(|r| r["repo"] == "acme/secret")
        .expect("denied clone record");
    assert_eq!(secret["decision"], "deny");
    assert_eq!(secret["rule"], "allowedRepos");
    let denied_host = records
        .iter()
        .find(|r| r["host"] == "other.test")
        .expect("denied CONNECT record");
    assert_eq!(
        (
            denied_host["decision"].as_str(),
            denied_host["status"].as_u64()
        ),
        (Some("deny"), Some(403))
    );
    let tunnel = records
        .iter()
        .find(|r| r["host"] == "tunnel.test")
        .expect("tunnel record");
    assert!(tunnel["bytes_out"].as_u64().unwrap() > 0);
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn the_admin_listener_cuts_off_silent_connections_and_holds_only_a_few() {
    use std::io::Read;
    let standin = harness::standin();
    let with_admin = |limits: &str| {
        let config = harness::limited_config(&standin, POLICY, limits);
        Gitgate::start(&format!("admin: 127.0.0.1:0\n{config}"))
    };
    // A connection that never sends a request head is closed at headerReadTimeout.
    let gitgate = with_admin("{headerReadTimeout: 1s}");
    let mut silent = std::net::TcpStream::connect(gitgate.admin_addr()).unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let _ = silent.read_to_end(&mut Vec::new());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "not cut off: {:?}",
        started.elapsed()
    );

    // At most 64 at once: the next is closed at once, and a freed place serves again.
    let gitgate = with_admin("{}");
    let admin = gitgate.admin_addr();
    let mut held: Vec<_> = (0..64)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    let mut refused = std::net::TcpStream::connect(admin).unwrap();
    refused
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    assert_eq!(refused.read(&mut [0; 1]).unwrap(), 0, "closed unanswered");
    wait_until(|| {
        gitgate
            .output()
            .contains("admin connection closed: too many open")
    });
    held.pop();
    // Until gitgate has seen that one go, a new connection may still be closed unanswered.
    let healthy = || -> std::io::Result<bool> {
        use std::io::Write;
        let mut probe = std::net::TcpStream::connect(admin)?;
        probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        probe.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.1 200"))
    };
    wait_until(|| healthy().unwrap_or(false));
}

#[test]
fn metrics_health_and_readiness() {
    let standin = harness::standin();
    let config = app_config(&standin, POLICY).replace(
        "listen: 127.0.0.1:0\n",
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n",
    );
    let gitgate = Gitgate::start(&config);
    let admin = gitgate.admin_addr();
    assert!(raw::http_get(admin, "/healthz").starts_with("HTTP/1.1 200"));
    let url = format!("http://{admin}/healthz");
    assert!(
        cli(&["health", "--url", &url], gitgate.dir.path())
            .status
            .success()
    );
    let missing = format!("http://{admin}/nope");
    assert!(
        !cli(&["health", "--url", &missing], gitgate.dir.path())
            .status
            .success()
    );
    let ready = raw::http_get(admin, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // With no token cached yet, the first probe asked GitHub; the next ones rely on it.
    let asked = app_calls(&standin);
    assert!(asked >= 1);
    let ready = raw::http_get(admin, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert_eq!(
        app_calls(&standin),
        asked,
        "a second probe asked GitHub again"
    );
    // Nothing is cached, so nothing expires: no value rather than an alarming 0.
    let idle = raw::http_get(admin, "/metrics");
    assert!(
        idle.lines()
            .any(|l| l == "gitgate_token_expiry_seconds NaN"),
        "{idle}"
    );
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "m.txt", "m\n");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:main"]);
    sandbox.git_fails(&repo, &["push", "origin", "HEAD:dev"]);
    let metrics = raw::http_get(admin, "/metrics");
    let value = |line_start: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{metrics}"))
    };
    // Without profiles the `profile` label is empty, which Prometheus reads as absent.
    assert!(
        value("gitgate_requests_total{host_class=\"Git\",decision=\"Allow\",profile=\"\"}") >= 5.0
    );
    assert_eq!(
        value("gitgate_requests_total{host_class=\"Git\",decision=\"Deny\",profile=\"\"}"),
        1.0
    );
    assert_eq!(value("gitgate_ref_updates_total{decision=\"Allow\"}"), 1.0);
    assert_eq!(value("gitgate_ref_updates_total{decision=\"Deny\"}"), 1.0);
    assert_eq!(value("gitgate_token_mints_total{result=\"Ok\"}"), 1.0);
    assert!(value("gitgate_token_expiry_seconds") > 3000.0);
    assert!(value("gitgate_upstream_response_seconds_count") >= 5.0);
    assert!(value("gitgate_body_bytes_total{direction=\"In\"}") > 0.0);
    assert!(metrics.contains("gitgate_policy_info{hash=\""), "{metrics}");
    assert!(metrics.contains("gitgate_open_connections"), "{metrics}");

    // Not ready when GitHub refuses the App and no token is cached.
    let broken = config.replace(&format!("id: \"{}\"", standin.app_id()), "id: \"999\"");
    let gitgate = Gitgate::start(&broken);
    let ready = raw::http_get(gitgate.admin_addr(), "/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 503") && ready.contains("GitHub rejected the App JWT"),
        "{ready}"
    );
}

/// How many times GitHub was asked `GET /app` (with the App's JWT).
fn app_calls(standin: &StandIn) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.target == "/app")
        .count()
}

#[test]
fn a_scope_left_unused_past_its_tokens_expiry_does_not_pin_readiness_or_the_expiry_gauge() {
    let standin = harness::standin();
    standin.set_token_lifetime(std::time::Duration::from_secs(4));
    let config = app_config(&standin, POLICY).replace(
        "listen: 127.0.0.1:0\n",
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n",
    );
    let gitgate = Gitgate::start(&config);
    let admin = gitgate.admin_addr();
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("bob/tools", "tools");
    let repo = sandbox.clone_repo("acme/app", "app");
    // bob's token expires unused while acme's is kept fresh.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(6) {
        sandbox.git_ok(&repo, &["fetch", "-q", "origin"]);
    }
    let before = app_calls(&standin);
    let ready = raw::http_get(admin, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert_eq!(
        app_calls(&standin),
        before,
        "readiness asked GitHub despite a usable token"
    );
    let metrics = raw::http_get(admin, "/metrics");
    let expiry: f64 = metrics
        .lines()
        .find(|l| l.starts_with("gitgate_token_expiry_seconds "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no gauge in\n{metrics}"));
    assert!(expiry > 0.0, "{metrics}");
}

#[test]
fn policy_reloads_live_and_a_broken_edit_keeps_the_old_policy() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main]}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "r.txt", "r\n");
    sandbox.git_fails(&repo, &["push", "origin", "HEAD:dev"]);

    // A good edit takes effect for the next push.
    gitgate.rewrite_config(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main, dev]}",
    ));
    wait_until(|| {
        gitgate
            .audit()
            .iter()
            .any(|r| r["kind"] == "policy_reload" && r["decision"] == "allow")
    });
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:dev"]);

    // A broken edit is refused with file:line:column, and the previous policy decides.
    gitgate.rewrite_config(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main, dev], allowDeletes: maybe}",
    ));
    wait_until(|| {
        gitgate
            .audit()
            .iter()
            .any(|r| r["kind"] == "policy_reload" && r["decision"] == "deny")
    });
    let failed = gitgate
        .audit()
        .into_iter()
        .find(|r| r["kind"] == "policy_reload" && r["decision"] == "deny")
        .unwrap();
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("gitgate.yaml:") && reason.contains("policy.allowDeletes"),
        "{reason}"
    );
    sandbox.commit(&repo, "s.txt", "s\n");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:dev"]);
    sandbox.git_fails(&repo, &["push", "origin", "HEAD:other"]);

    // A truncated file is refused too, not taken as "deny everything".
    gitgate.rewrite_config("# nothing here\n");
    wait_until(|| {
        gitgate.audit().iter().any(|r| {
            r["kind"] == "policy_reload"
                && r["reason"]
                    .as_str()
                    .is_some_and(|m| m.contains("the config file is empty"))
        })
    });
    sandbox.commit(&repo, "t.txt", "t\n");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:dev"]);

    // Settings that apply only at start are named when an edit changes them.
    gitgate.rewrite_config(&format!(
        "{}limits: {{maxTunnels: 7}}\n",
        app_config(&standin, "{allowedRepos: [acme/app], allowedRefs: [main]}")
    ));
    wait_until(|| gitgate.output().contains("apply only when gitgate starts"));
    let warned = gitgate.output();
    assert!(
        warned.contains("apply only when gitgate starts; they are not applied until it restarts (the policy is) file=")
            && warned.contains(" keys=limits\n"),
        "{warned}"
    );
    assert_eq!(
        warned.matches("apply only when gitgate starts").count(),
        1,
        "{warned}"
    );
    // The policy of that edit applies: dev is no longer allowed.
    sandbox.commit(&repo, "u.txt", "u\n");
    sandbox.git_fails(&repo, &["push", "origin", "HEAD:dev"]);
}

/// An editor or a script that writes the config file in place, piece by piece, is not
/// read until it has finished: no half-written policy is applied or refused on the way.
#[test]
fn a_config_written_in_place_slowly_is_read_once_whole() {
    use std::io::Write;
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, "{allowedRepos: [acme/app]}"));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/acme/lib-core.git", "lib"],
    );
    let whole = app_config(&standin, "{allowedRepos: [acme/app, acme/lib-core]}");
    let mut file = std::fs::File::create(gitgate.dir.path().join("gitgate.yaml")).unwrap();
    // 64 pieces, 25 ms apart: longer than a poll, but never a pause as long as the one
    // (300 ms) that gitgate takes for the end of the writing.
    for piece in whole.as_bytes().chunks(whole.len().div_ceil(64)) {
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    drop(file);
    let reloads = || -> Vec<Value> {
        gitgate
            .audit()
            .into_iter()
            .filter(|r| r["kind"] == "policy_reload")
            .collect()
    };
    wait_until(|| !reloads().is_empty());
    let reloads = reloads();
    assert!(
        reloads.len() == 1 && reloads[0]["decision"] == "allow",
        "{reloads:#?}"
    );
    sandbox.clone_repo("acme/lib-core", "lib");
}

/// An edit that changes the hosts gitgate intercepts cannot apply its policy to the
/// running proxy, which the policy is checked against: it is refused, saying to restart,
/// and the policy in force keeps working. Settings that apply at start are told apart by
/// what they are: installations in another order are no change, a new App key is one.
#[test]
fn a_reload_that_changes_the_intercepted_hosts_is_refused_and_start_settings_are_told_apart() {
    let standin = harness::standin();
    let config = |policy: &str| {
        app_config(&standin, policy).replace(
            "}\nupstream:",
            ", installations: {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6}}\nupstream:",
        )
    };
    let gitgate = Gitgate::start(&config("{allowedRepos: [acme/app]}"));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "before");
    let reloads = |decision: &str| {
        gitgate
            .audit()
            .into_iter()
            .filter(|r| r["kind"] == "policy_reload" && r["decision"] == decision)
            .count()
    };
    // The same settings, read again: the installations are no change.
    gitgate.rewrite_config(&format!(
        "{}# edited\n",
        config("{allowedRepos: [acme/app]}")
    ));
    wait_until(|| reloads("allow") == 1);
    assert!(
        !gitgate.output().contains("apply only when gitgate starts"),
        "{}",
        gitgate.output()
    );
    // Another git host: refused, and github.com is still served.
    gitgate.rewrite_config(&config("{allowedRepos: [acme/app]}").replace(
        "github:\n",
        "github:\n  host: ghe.example.com\n  apiUrl: https://ghe.example.com/api/v3\n",
    ));
    wait_until(|| reloads("deny") == 1);
    let refused = gitgate
        .audit()
        .into_iter()
        .find(|r| r["kind"] == "policy_reload" && r["decision"] == "deny")
        .unwrap();
    assert!(
        refused["reason"].as_str().is_some_and(|r| r.contains(
            "the config file changes github, which the policy is checked against and which applies only when gitgate starts; restart gitgate"
        )),
        "{refused}"
    );
    sandbox.clone_repo("acme/app", "after");
    // A new App key is a change that waits for a restart, named.
    let key = gitgate.dir.path().join("new-app.pem");
    let made = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let rotated = config("{allowedRepos: [acme/app]}").replace(
        &standin.app_key_pkcs1_file().display().to_string(),
        &key.display().to_string(),
    );
    gitgate.rewrite_config(&rotated);
    wait_until(|| reloads("allow") == 2);
    wait_until(|| gitgate.output().contains("apply only when gitgate starts"));
    assert!(
        gitgate.output().contains(" keys=github\n"),
        "{}",
        gitgate.output()
    );
    // So is a CA replaced in place.
    let ca = gitgate.dir.path().join("ca");
    let fresh = tempfile::tempdir().unwrap();
    let out = cli(&["ca", "init", "--out", "ca"], fresh.path());
    assert!(out.status.success(), "{}", text(&out));
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(fresh.path().join("ca").join(file), ca.join(file)).unwrap();
    }
    gitgate.rewrite_config(&format!("{rotated}# the CA was replaced\n"));
    wait_until(|| reloads("allow") == 3);
    wait_until(|| gitgate.output().contains(" keys=github, ca\n"));
}

#[test]
fn a_push_in_flight_during_a_reload_completes_under_its_policy() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main]}",
    ));
    let sandbox = std::sync::Arc::new(Sandbox::new(&gitgate));
    let repo = sandbox.clone_repo("acme/app", "app");
    let head = sandbox.commit(&repo, "f.txt", "f\n");
    standin.set_fault(Some(Fault::PushStall));
    let pushing = {
        let (sandbox, repo) = (sandbox.clone(), repo.clone());
        std::thread::spawn(move || sandbox.git(&repo, &["push", "origin", "HEAD:main"]))
    };
    wait_until(|| {
        standin
            .requests()
            .iter()
            .any(|r| r.target.ends_with("/git-receive-pack") && r.method == "POST")
    });
    gitgate.rewrite_config(&app_config(&standin, "{allowedRepos: [acme/app]}"));
    wait_until(|| gitgate.audit().iter().any(|r| r["kind"] == "policy_reload"));
    standin.set_fault(None);
    let out = pushing.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/main")
            .as_deref(),
        Some(head.as_str())
    );
    // The next push runs under the new, read-only policy.
    sandbox.commit(&repo, "g.txt", "g\n");
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(out.contains("read-only by policy"), "{out}");
}

#[test]
fn a_kubelet_style_symlink_swap_is_picked_up() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let data = |n: &str, policy: &str| {
        let d = dir.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("gitgate.yaml"), app_config(&standin, policy)).unwrap();
    };
    data("..2026_01", "{allowedRepos: [acme/app]}");
    std::os::unix::fs::symlink("..2026_01", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/gitgate.yaml", dir.path().join("gitgate.yaml")).unwrap();
    let gitgate = Gitgate::start_in(dir);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/bob/tools.git"],
    );
    // The kubelet writes a new timestamped directory and renames a new ..data link over the old.
    let root = gitgate.dir.path();
    let d = root.join("..2026_02");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("gitgate.yaml"),
        app_config(&standin, "{allowedRepos: [acme/app, bob/tools]}"),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_02", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    wait_until(|| gitgate.audit().iter().any(|r| r["kind"] == "policy_reload"));
    sandbox.clone_repo("bob/tools", "tools");
}

#[test]
fn report_mode_lets_a_denied_push_through_and_logs_what_would_have_been_denied() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main], mode: report}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let head = sandbox.commit(&repo, "p.txt", "p\n");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:dev"]);
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/dev")
            .as_deref(),
        Some(head.as_str())
    );
    let is_push = |r: &Value| r["service"] == "receive-pack" && r["method"] == "POST";
    wait_until(|| gitgate.decisions().iter().any(is_push));
    let push = gitgate.decisions().into_iter().find(is_push).unwrap();
    assert_eq!(push["decision"], "report");
    assert_eq!(push["refs"][0]["decision"], "report");
    assert!(
        push["reason"]
            .as_str()
            .unwrap()
            .contains("refs/heads/dev is not in allowedRefs")
    );
}

#[test]
fn sighup_reopens_a_rotated_audit_file_created_for_its_owner_and_group() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let config = app_config(&standin, POLICY).replace(
        "listen: 127.0.0.1:0\n",
        &format!("listen: 127.0.0.1:0\naudit: {{file: {}}}\n", log.display()),
    );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let gitgate = Gitgate::start_in(dir);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/acme/secret.git"],
    );
    wait_until(|| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("acme/secret")
    });
    assert!(gitgate.audit().is_empty(), "records went to stdout too");
    let rotated = gitgate.dir.path().join("audit.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gitgate.hangup();
    wait_until(|| gitgate.output().contains("reopened the audit log"));
    sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/acme/other.git"],
    );
    wait_until(|| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("acme/other")
    });
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("acme/other")
    );
    // The audit file gitgate created is for its owner and group to read, nobody else
    // (0640, less what the umask removes).
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o037, 0, "{mode:o}");
}

#[test]
fn explain_prints_decisions_and_rules_without_network() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "policy: {allowedRepos: [\"acme/*\"], allowedRefs: [main, \"release/*\"]}\n",
    )
    .unwrap();
    let out = cli(
        &[
            "explain",
            "--config",
            "gitgate.yaml",
            "push",
            "acme/app",
            "main",
            "dev",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("allow push to acme/app: acme/app matches allowedRepos pattern acme/* [rule: allowedRepos[acme/*]]"), "{stdout}");
    assert!(stdout.contains("allow update refs/heads/main"), "{stdout}");
    assert!(
        stdout.contains(
            "deny  update refs/heads/dev: refs/heads/dev is not in allowedRefs [main, release/*]"
        ),
        "{stdout}"
    );
    let out = cli(
        &["explain", "--config", "gitgate.yaml", "clone", "acme/app"],
        dir.path(),
    );
    assert!(out.status.success());

    // An API call, with the refs it would change.
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "policy: {allowedRepos: [\"acme/*\"], allowedRefs: [main], api: [read, contents.write]}\n",
    )
    .unwrap();
    let out = cli(
        &[
            "explain",
            "--config",
            "gitgate.yaml",
            "api",
            "PATCH /repos/acme/app/git/refs/heads/main",
            r#"{"sha": "0123", "force": true}"#,
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("allow PATCH /repos/acme/app/git/refs/heads/main: PATCH /repos/acme/app/git/refs/heads/main is allowed by policy.api contents.write [rule: api[contents.write]]"), "{stdout}");
    assert!(stdout.contains("deny  forced update of refs/heads/main: a forced update of refs/heads/main is not allowed"), "{stdout}");
}

#[test]
fn env_prints_what_a_sandbox_needs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "listen: 0.0.0.0:3128\nca: {cert: /etc/gitgate/ca.pem, key: /etc/gitgate/ca-key.pem}\n",
    )
    .unwrap();
    let out = cli(&["env", "--config", "gitgate.yaml"], dir.path());
    let sh = String::from_utf8_lossy(&out.stdout);
    assert!(
        sh.contains("export HTTPS_PROXY='http://127.0.0.1:3128'"),
        "{sh}"
    );
    assert!(
        sh.contains("export GIT_SSL_CAINFO='/etc/gitgate/ca.pem'"),
        "{sh}"
    );
    let out = cli(
        &[
            "env",
            "--config",
            "gitgate.yaml",
            "--format",
            "k8s",
            "--proxy-url",
            "http://gitgate:3128",
        ],
        dir.path(),
    );
    let k8s = String::from_utf8_lossy(&out.stdout);
    assert!(
        k8s.contains("- name: HTTPS_PROXY\n  value: \"http://gitgate:3128\""),
        "{k8s}"
    );
    let out = cli(
        &["env", "--config", "gitgate.yaml", "--format", "dotenv"],
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REQUESTS_CA_BUNDLE=/etc/gitgate/ca.pem")
    );
    // A relative CA path is printed absolute (the sandbox's directory is not this one);
    // a port chosen at start cannot be printed.
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "listen: 127.0.0.1:0\nca: {cert: ./ca/ca.pem, key: ./ca/ca-key.pem}\n",
    )
    .unwrap();
    let out = cli(&["env", "--config", "gitgate.yaml"], dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listen has port 0"),
        "{}",
        text(&out)
    );
    let out = cli(
        &[
            "env",
            "--config",
            "gitgate.yaml",
            "--proxy-url",
            "http://gitgate:3128",
        ],
        dir.path(),
    );
    let ca = dir.path().canonicalize().unwrap().join("ca/ca.pem");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("export GIT_SSL_CAINFO='{}'", ca.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn readiness_waits_for_nothing_without_an_app() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n{}policy: {POLICY}\n",
        harness::upstream(&standin)
    ));
    let ready = raw::http_get(gitgate.admin_addr(), "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
}

#[test]
fn a_reload_drops_tokens_whose_scope_no_longer_fits() {
    let standin = harness::standin();
    // (A token for one repository of a wanted list, with its permissions, still fits and
    // is kept: the first policy may push, the second may not.)
    let narrow = "{allowedRepos: [acme/app], allowedRefs: [main]}";
    let gitgate = Gitgate::start(&app_config(&standin, narrow));
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "one");
    assert_eq!(standin.mints().len(), 1);
    let reloads = || {
        gitgate
            .audit()
            .iter()
            .filter(|r| r["kind"] == "policy_reload")
            .count()
    };
    gitgate.rewrite_config(&app_config(
        &standin,
        "{allowedRepos: [acme/app, acme/lib-core]}",
    ));
    wait_until(|| reloads() == 1);
    sandbox.clone_repo("acme/app", "two");
    let mints = standin.mints();
    assert_eq!(mints.len(), 2, "the wider scope needs its own token");
    assert_eq!(
        mints[1].repositories,
        Some(vec!["app".to_owned(), "lib-core".to_owned()])
    );
    // Back to the first policy: its old token was dropped, so a new one is minted.
    gitgate.rewrite_config(&app_config(&standin, narrow));
    wait_until(|| reloads() == 2);
    sandbox.clone_repo("acme/app", "three");
    assert_eq!(standin.mints().len(), 3);
}

#[test]
fn report_mode_also_lets_denied_repos_and_hosts_through() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], mode: report}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    // gitgate lets the clone through, but the token still covers only the policy's
    // repositories, so GitHub itself answers "not found".
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/acme/lib-core.git"],
    );
    assert!(out.contains("Repository not found"), "{out}");
    assert!(
        standin
            .requests()
            .iter()
            .any(|r| r.target.starts_with("/acme/lib-core.git/info/refs"))
    );
    assert_eq!(
        standin.mints()[0].repositories,
        Some(vec!["app".to_owned()])
    );
    // other.test's page, fetched with curl and `extra` arguments.
    let reaches_other = |extra: &[&str]| {
        let ca = standin.ca_file().display().to_string();
        let mut args = vec!["--cacert", &ca];
        args.extend_from_slice(extra);
        args.push("https://other.test/");
        let out = sandbox.curl(&args);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from other.test\n",
            "{}",
            text(&out)
        );
    };
    reaches_other(&[]);
    // A tunnel whose TLS names another host: reported, and let through.
    reaches_other(&["--connect-to", "other.test:443:tunnel.test:443"]);
    let fronted = gitgate.wait_for_record(|r| {
        r["host"] == "tunnel.test"
            && r["reason"].as_str().is_some_and(|why| {
                why.contains("other.test in the tunnel to tunnel.test is not that host")
            })
    });
    assert_eq!(fronted["decision"], "report", "{fronted}");
    wait_until(|| {
        gitgate
            .decisions()
            .iter()
            .any(|r| r["host"] == "other.test")
    });
    let records = gitgate.decisions();
    let repo = records
        .iter()
        .find(|r| r["repo"] == "acme/lib-core")
        .expect("repo record");
    assert_eq!(repo["decision"], "report");
    assert_eq!(repo["rule"], "allowedRepos");
    let host = records.iter().find(|r| r["host"] == "other.test").unwrap();
    assert_eq!(host["decision"], "report");
}
