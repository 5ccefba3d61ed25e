//! allowedRepos and allowedRefs inside git smart HTTP, with denials shown by git itself.

use std::io::Write;

use crate::harness::{self, Gitgate, POLICY, Sandbox, app_config, raw, receive_pack_posts, text};

#[test]
fn clone_fetch_and_ls_remote_with_protocol_v0_and_v2() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    for version in ["0", "2"] {
        let protocol = format!("protocol.version={version}");
        let dir = format!("v{version}");
        sandbox.git_ok(
            sandbox.home.path(),
            &[
                "-c",
                &protocol,
                "clone",
                "-q",
                "https://github.com/acme/app",
                &dir,
            ],
        );
        let repo = sandbox.path(&dir);
        sandbox.git_ok(&repo, &["-c", &protocol, "fetch", "-q", "origin"]);
        let out = sandbox.git(&repo, &["-c", &protocol, "ls-remote", "origin"]);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("refs/heads/main"),
            "{}",
            text(&out)
        );
    }
    let v2 = standin
        .requests()
        .iter()
        .filter(|r| r.header("git-protocol") == Some("version=2"))
        .count();
    assert!(v2 > 0, "Git-Protocol was not passed through");
}

#[test]
fn denied_repo_fails_in_git_with_the_reason_and_never_reaches_upstream() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/acme/secret.git"],
    );
    assert!(out.contains("remote error: gitgate: acme/secret is not in allowedRepos [acme/app, acme/lib-*, bob/tools]"), "{out}");
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["ls-remote", "https://github.com/ACME/Secret"],
    );
    assert!(out.contains("acme/secret is not in allowedRepos"), "{out}");
    assert!(
        standin
            .requests()
            .iter()
            .all(|r| !r.target.contains("secret")),
        "{:?}",
        standin.requests()
    );
}

#[test]
fn pushes_obey_allowed_refs_and_denials_read_as_remote_rejected() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let main_before = standin.rev_parse("acme", "app", "refs/heads/main").unwrap();
    let head = sandbox.commit(&repo, "a.txt", "a\n");

    // Allowed: main, a new release/* branch, a v* tag.
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:main", "HEAD:release/1.0"]);
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/main")
            .as_deref(),
        Some(head.as_str())
    );
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/release/1.0")
            .as_deref(),
        Some(head.as_str())
    );
    sandbox.git_ok(&repo, &["tag", "v1.0"]);
    sandbox.git_ok(&repo, &["push", "origin", "v1.0"]);
    assert!(standin.rev_parse("acme", "app", "refs/tags/v1.0").is_some());
    assert_ne!(main_before, head);

    // Denied: another branch; a tag outside refs/tags/v*; release/a/b (one level only).
    standin.clear_requests();
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:dev"]);
    assert!(out.contains("! [remote rejected] HEAD -> dev (gitgate: refs/heads/dev is not in allowedRefs [main, release/*, refs/tags/v*])"), "{out}");
    sandbox.git_ok(&repo, &["tag", "nightly"]);
    let out = sandbox.git_fails(&repo, &["push", "origin", "nightly"]);
    assert!(
        out.contains(
            "[remote rejected] nightly -> nightly (gitgate: refs/tags/nightly is not in allowedRefs"
        ),
        "{out}"
    );
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:release/a/b"]);
    assert!(
        out.contains("refs/heads/release/a/b is not in allowedRefs"),
        "{out}"
    );
    assert_eq!(
        receive_pack_posts(&standin),
        0,
        "a denied push reached upstream"
    );
    assert_eq!(standin.rev_parse("acme", "app", "refs/heads/dev"), None);

    // Mixed: one allowed and one denied ref: nothing is updated.
    let next = sandbox.commit(&repo, "b.txt", "b\n");
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main", "HEAD:dev"]);
    assert!(
        out.contains(
            "! [remote rejected] HEAD -> main (atomic push rejected: another ref was denied)"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "! [remote rejected] HEAD -> dev (gitgate: refs/heads/dev is not in allowedRefs"
        ),
        "{out}"
    );
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/main")
            .as_deref(),
        Some(head.as_str())
    );
    assert_ne!(next, head);
    assert_eq!(receive_pack_posts(&standin), 0);
}

#[test]
fn deletes_need_allow_deletes() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:release/old"]);
    let out = sandbox.git_fails(&repo, &["push", "origin", ":release/old"]);
    assert!(
        out.contains(
            "deleting refs/heads/release/old is not allowed by policy (allowDeletes is false)"
        ),
        "{out}"
    );
    assert!(
        standin
            .rev_parse("acme", "app", "refs/heads/release/old")
            .is_some()
    );
    drop(gitgate);

    let policy = "{allowedRepos: [acme/app], allowedRefs: [\"release/*\"], allowDeletes: true}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.git_ok(&repo, &["push", "origin", ":release/old"]);
    assert_eq!(
        standin.rev_parse("acme", "app", "refs/heads/release/old"),
        None
    );
    // allowDeletes does not widen allowedRefs.
    let out = sandbox.git_fails(&repo, &["push", "origin", ":main"]);
    assert!(
        out.contains("refs/heads/main is not in allowedRefs"),
        "{out}"
    );
}

#[test]
fn read_only_policy_refuses_the_push_advertisement() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, "{allowedRepos: [acme/app]}"));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "c.txt", "c\n");
    let out = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        out.contains(
            "remote error: gitgate: acme/app is read-only by policy (allowedRefs is empty)"
        ),
        "{out}"
    );
    assert!(
        standin
            .requests()
            .iter()
            .all(|r| !r.target.contains("receive-pack"))
    );
}

#[test]
fn a_50_mb_push_streams_through_in_bounded_memory() {
    let standin = harness::standin();
    // No content rule applies (forcePush: allow, no size limits): the pure streaming path.
    let policy = POLICY.replace('}', ", forcePush: allow}");
    let gitgate = Gitgate::start(&app_config(&standin, &policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let before = gitgate.peak_rss_kib();
    harness::write_noise(&repo.join("big.bin"), 50);
    let head = {
        sandbox.git_ok(&repo, &["add", "big.bin"]);
        sandbox.git_ok(&repo, &["commit", "-q", "-m", "big"]);
        String::from_utf8(sandbox.git(&repo, &["rev-parse", "HEAD"]).stdout)
            .unwrap()
            .trim()
            .to_owned()
    };
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:main"]);
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/main")
            .as_deref(),
        Some(head.as_str())
    );
    let pushed = harness::largest_receive_pack_body(&standin);
    assert!(pushed > 50 << 20, "pack was {pushed} bytes");
    let growth = gitgate.peak_rss_kib().saturating_sub(before);
    assert!(
        growth < 16 * 1024,
        "gitgate's peak RSS grew by {growth} KiB during a 50 MB push"
    );
    // And back: a clone of the 50 MB history streams too.
    sandbox.clone_repo("acme/app", "again");
    assert_eq!(
        std::fs::metadata(sandbox.path("again/big.bin"))
            .unwrap()
            .len(),
        50 << 20
    );
    let growth = gitgate.peak_rss_kib().saturating_sub(before);
    assert!(
        growth < 16 * 1024,
        "gitgate's peak RSS grew by {growth} KiB during a 50 MB clone"
    );
}

#[test]
fn gzip_encoded_pushes_are_decoded_and_checked() {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let main = standin.rev_parse("acme", "app", "refs/heads/main").unwrap();
    let zero = "0".repeat(40);
    let command = format!("{zero} {main} refs/heads/dev\0 report-status side-band-64k agent=test");
    let body = format!("{:04x}{command}0000", command.len() + 4);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    gz.write_all(b"PACK\0\0\0\x02\0\0\0\0").unwrap();
    let gz = gz.finish().unwrap();
    let reply = raw::post_receive_pack(
        &gitgate,
        "Content-Type: application/x-git-receive-pack-request\r\nContent-Encoding: gzip\r\n",
        &gz,
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("ng refs/heads/dev gitgate: refs/heads/dev is not in allowedRefs"),
        "{reply}"
    );
    assert_eq!(receive_pack_posts(&standin), 0);
    // Other encodings are refused rather than forwarded unchecked.
    let mut tls = raw::mitm_tls(
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    tls.write_all(b"POST /acme/app.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\nAccept: application/x-git-receive-pack-result\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n0000").unwrap();
    let reply = raw::read_response(&mut tls);
    assert!(
        reply.contains("ERR gitgate: Content-Encoding \"br\" is not supported"),
        "{reply}"
    );
    // One encoding, once: a second header could name another.
    let reply = raw::post_receive_pack(
        &gitgate,
        "Content-Encoding: gzip\r\nContent-Encoding: identity\r\n",
        &gz,
    );
    assert!(
        reply.contains("gitgate: a push may carry one Content-Encoding header"),
        "{reply}"
    );
    // A client that did not ask for a receive-pack result is told in plain text.
    let reply = raw::post_receive_pack(&gitgate, "Content-Encoding: br\r\n", b"0000");
    assert!(
        reply.starts_with("HTTP/1.1 400")
            && reply.contains("\r\n\r\ngitgate: Content-Encoding \"br\" is not supported"),
        "{reply}"
    );
    assert_eq!(receive_pack_posts(&standin), 0);
}

#[test]
fn path_tricks_never_reach_a_denied_repo() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let suffix = "info/refs?service=git-upload-pack";
    let cases = [
        ("/ACME/SECRET.git/", "200"),
        ("/acme/app/../secret/", "400"),
        ("/acme/%73ecret/", "400"),
        ("//acme/secret/", "400"),
        ("/acme/app%2F..%2Fsecret/", "400"),
        ("/acme/./secret/", "400"),
        ("/acme\\secret/", "400"),
        ("/acme/secret.git.git/", "200"),
    ];
    for (path, status) in cases {
        let url = format!("https://github.com{path}{suffix}");
        let out = sandbox.curl(&[
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            status,
            "{path}: {}",
            text(&out)
        );
    }
    let leaked: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.target.to_ascii_lowercase().contains("secret"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[test]
fn malformed_receive_pack_bodies_get_4xx_and_the_next_clone_works() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let zero = "0".repeat(40);
    let id = "1".repeat(40);
    let endless: String = (0..2000)
        .map(|i| {
            let line = format!("{zero} {id} refs/heads/b{i}\n");
            format!("{:04x}{line}", line.len() + 4)
        })
        .collect();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("bad hex", b"zzzz".to_vec()),
        ("length 1", b"0001".to_vec()),
        ("length 3", b"0003".to_vec()),
        ("over 65520", b"fff5aaaa".to_vec()),
        (
            "truncated",
            format!("00af{zero} {id} refs/heads/main").into_bytes(),
        ),
        (
            "bad id",
            format!("0064{} {id} refs/heads/main\n", "g".repeat(40)).into_bytes(),
        ),
    ];
    for (what, body) in bodies {
        let reply = raw::post_receive_pack(
            &gitgate,
            "Content-Type: application/x-git-receive-pack-request\r\n",
            &body,
        );
        assert!(reply.starts_with("HTTP/1.1 4"), "{what}: {reply}");
    }
    // A command list past limits.maxPushCommands names the limit, to the client and in
    // the audit record.
    let reply = raw::post_receive_pack(
        &gitgate,
        "Content-Type: application/x-git-receive-pack-request\r\n",
        endless.as_bytes(),
    );
    assert!(
        reply.starts_with("HTTP/1.1 400")
            && reply.contains("more than 1000 commands (limits.maxPushCommands)"),
        "{reply}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxPushCommands");
    assert_eq!(receive_pack_posts(&standin), 0);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "after");
}

#[test]
fn a_push_refused_before_it_is_read_is_told_in_its_side_band_once_its_body_is_drained() {
    // A receive-pack POST to a repository the policy does not allow (its advertisement
    // passed under an earlier policy, or the client skipped it).
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let line = format!(
        "{} {} refs/heads/main\0report-status side-band-64k\n",
        "0".repeat(40),
        "1".repeat(40)
    );
    let mut body = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
    body.resize(body.len() + (8 << 20), b'P');
    let git = "Content-Type: application/x-git-receive-pack-request\r\nAccept: application/x-git-receive-pack-result\r\n";
    let reply = raw::post_receive_pack_to(&gitgate, "acme/secret", git, &body);
    let reason = "ERR gitgate: acme/secret is not in allowedRepos";
    // Band 1 holds the ERR pkt-line: <len>\x01<len>ERR …
    let band = reply.find('\u{1}').map(|at| &reply[at + 5..]);
    assert!(
        reply.starts_with("HTTP/1.1 200") && band.is_some_and(|b| b.starts_with(reason)),
        "{reply}"
    );
    // A client that did not ask for a receive-pack result gets plain text, unread.
    let reply = raw::post_receive_pack_to(&gitgate, "acme/secret", "", &body);
    assert!(
        reply.starts_with("HTTP/1.1 403") && reply.contains("gitgate: acme/secret is not"),
        "{reply}"
    );
    assert_eq!(receive_pack_posts(&standin), 0);
}

#[test]
fn a_real_push_past_a_push_limit_is_told_the_limit_in_gits_output() {
    // A real git client can reach these limits (a mirror push of many refs, a huge
    // command list): its pack follows the command list, and git must still read why.
    let standin = harness::standin();
    let gitgate = Gitgate::start(&harness::limited_config(
        &standin,
        POLICY,
        "{maxPushCommands: 3}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    harness::write_noise(&repo.join("noise.bin"), 8);
    sandbox.git_ok(&repo, &["add", "noise.bin"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "noise"]);
    let refspecs: Vec<String> = (1..=4).map(|i| format!("HEAD:release/{i}")).collect();
    let mut args = vec!["push", "origin"];
    args.extend(refspecs.iter().map(String::as_str));
    let out = sandbox.git_fails(&repo, &args);
    assert!(
        out.contains("remote error: gitgate: ")
            && out.contains("more than 3 commands (limits.maxPushCommands)"),
        "{out}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxPushCommands");
    // Only git's empty probe (sent before a body over http.postBuffer) went upstream.
    assert_eq!(harness::largest_receive_pack_body(&standin), 4);
    assert_eq!(
        standin.rev_parse("acme", "app", "refs/heads/release/1"),
        None
    );
}

#[test]
fn the_api_without_policy_api_and_lfs_outside_allowed_repos_are_denied_with_reasons() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let out = sandbox.curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "https://api.github.com/repos/acme/app/pulls",
    ]);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(body.ends_with("\n403"), "{body}");
    let json: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .starts_with("gitgate: GET /repos/acme/app/pulls denied"),
        "{json}"
    );
    let out = sandbox.curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/vnd.git-lfs+json",
        "-d",
        "{\"operation\":\"download\",\"objects\":[]}",
        "https://github.com/acme/secret.git/info/lfs/objects/batch",
    ]);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        body.ends_with("\n403")
            && body.contains(
                "gitgate: Git LFS for acme/secret denied: acme/secret is not in allowedRepos"
            ),
        "{body}"
    );
    assert!(
        standin.requests().iter().all(|r| r.host == "api.github.com"
            && r.target.contains("installation")
            || r.host == "github.com" && !r.target.contains("lfs")),
        "{:?}",
        standin.requests()
    );
}
