//! Many sandboxes through one gitgate: identity by proxy secret, source address and
//! client certificate; per-profile policies, tokens, audit and metrics; live profile files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gitgate_standin::StandIn;

use crate::core::wait_until;
use crate::harness::gitgate::cli;
use crate::harness::relay::Relay;
use crate::harness::{self, Gitgate, Sandbox, raw, text, upstream};

pub(crate) const SECRET_A: &str = "pa-9c1e7d5b2a4c6e8f0a1b2c3d4e5f6071";
pub(crate) const SECRET_B: &str = "pb-1f2e3d4c5b6a79880716253443526170";
const SECRET_C: &str = "pc-5a4b3c2d1e0f9e8d7c6b5a4938271605";

/// `printf %s SECRET | sha256sum`, as an operator computes `secretSha256`.
fn sha256_hex(secret: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(secret.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// A GitHub App config with an admin listener and `rest` (profiles and the like).
fn config(standin: &StandIn, rest: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\ngithub:\n  app: {{id: \"{id}\", privateKeyFile: {key}}}\n{upstream}{rest}",
        id = standin.app_id(),
        key = standin.app_key_pkcs1_file().display(),
        upstream = upstream(standin),
    )
}

/// A profile entry (indented for `profiles:`) identified by `secret`.
pub(crate) fn secret_profile(name: &str, secret: &str, policy: &str) -> String {
    format!(
        "  {name}:\n    secretSha256: \"{}\"\n    policy: {policy}\n",
        sha256_hex(secret)
    )
}

/// A `profilesDir` file body: identified by `secret`, allowed `repos` (YAML list items).
pub(crate) fn profile_file(secret: &str, repos: &str) -> String {
    format!(
        "secretSha256: \"{}\"\npolicy: {{allowedRepos: [{repos}]}}\n",
        sha256_hex(secret)
    )
}

/// Replaces `dir/name` atomically (write aside, rename), as a ConfigMap update does.
fn replace_file(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// A profile file identified by `secret` and by the address range `cidrs`.
fn claiming(secret: &str, repos: &str, cidrs: &str) -> String {
    format!(
        "secretSha256: \"{}\"\nsourceCidrs: [{cidrs}]\npolicy: {{allowedRepos: [{repos}]}}\n",
        sha256_hex(secret)
    )
}

/// gitgate with `profilesDir: profiles.d` holding `files` (name, body); and that directory.
fn with_profile_files(standin: &StandIn, files: &[(&str, String)]) -> (Gitgate, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.d");
    std::fs::create_dir(&profiles).unwrap();
    for (name, body) in files {
        replace_file(&profiles, name, body);
    }
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        config(standin, "profilesDir: profiles.d\n"),
    )
    .unwrap();
    let gitgate = Gitgate::start_in(dir);
    let profiles = gitgate.dir.path().join("profiles.d");
    (gitgate, profiles)
}

pub(crate) fn sandbox_as(gitgate: &Gitgate, profile: &str, secret: &str) -> Sandbox {
    Sandbox::with_proxy(
        gitgate,
        format!("http://{profile}:{secret}@{}", gitgate.addr),
    )
}

#[test]
fn each_profile_pushes_only_where_it_may_and_same_scopes_share_a_token() {
    let standin = harness::standin();
    let app = "{allowedRepos: [acme/app], allowedRefs: [main]}";
    let lib = "{allowedRepos: [acme/lib-core], allowedRefs: [main]}";
    let gitgate = Gitgate::start(&config(
        &standin,
        &format!(
            "profiles:\n{}{}{}",
            secret_profile("agent-a", SECRET_A, app),
            secret_profile("agent-b", SECRET_B, lib),
            secret_profile("agent-c", SECRET_C, app),
        ),
    ));
    let a = sandbox_as(&gitgate, "agent-a", SECRET_A);
    let b = sandbox_as(&gitgate, "agent-b", SECRET_B);

    let repo = a.clone_repo("acme/app", "app");
    a.commit(&repo, "a.txt", "from a\n");
    a.git_ok(&repo, &["push", "-q", "origin", "main"]);
    let denied = a.git_fails(
        a.home.path(),
        &["clone", "-q", "https://github.com/acme/lib-core.git"],
    );
    assert!(
        denied.contains("acme/lib-core is not in allowedRepos [acme/app]"),
        "{denied}"
    );

    let repo = b.clone_repo("acme/lib-core", "lib");
    b.commit(&repo, "b.txt", "from b\n");
    b.git_ok(&repo, &["push", "-q", "origin", "main"]);
    let denied = b.git_fails(
        b.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git"],
    );
    assert!(
        denied.contains("acme/app is not in allowedRepos [acme/lib-core]"),
        "{denied}"
    );

    // Each profile's token covers its own repository and nothing another profile added.
    let mints = standin.mints();
    assert!(!mints.is_empty());
    for mint in &mints {
        let repos = mint.repositories.clone().unwrap_or_default();
        assert!(repos == ["app"] || repos == ["lib-core"], "{repos:?}");
    }
    // agent-c asks for exactly agent-a's scope: it is served agent-a's token.
    let before = standin.mints().len();
    let c = sandbox_as(&gitgate, "agent-c", SECRET_C);
    c.clone_repo("acme/app", "app");
    assert_eq!(
        standin.mints().len(),
        before,
        "agent-c minted a token of its own"
    );

    // Audit records and metrics name the profile.
    for (profile, repo) in [("agent-a", "acme/app"), ("agent-b", "acme/lib-core")] {
        gitgate.wait_for_record(|r| {
            r["profile"] == profile
                && r["repo"] == repo
                && r["service"] == "receive-pack"
                && r["decision"] == "allow"
        });
    }
    gitgate.wait_for_record(|r| r["profile"] == "agent-c");
    let metrics = raw::http_get(gitgate.admin_addr(), "/metrics");
    assert!(metrics.contains("profile=\"agent-a\""), "{metrics}");
    let remaining: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gitgate_github_rate_limit_remaining "))
        .expect("rate limit gauge")
        .trim()
        .parse()
        .unwrap();
    // The stand-in counts down from 5000 with every API call, as GitHub does.
    assert!((1..5000).contains(&remaining), "{remaining}");
    gitgate.assert_no_secrets(&standin);
    let output = gitgate.output();
    for secret in [SECRET_A, SECRET_B, SECRET_C] {
        assert!(!output.contains(secret), "gitgate printed a proxy secret");
    }
}

#[test]
fn a_missing_or_wrong_proxy_secret_gets_407_and_nothing_reaches_upstream() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&config(
        &standin,
        &format!(
            "profiles:\n{}",
            secret_profile("agent-a", SECRET_A, harness::POLICY)
        ),
    ));
    standin.clear_requests();
    let connect = |auth: &str| {
        raw::exchange(
            gitgate.addr,
            format!("CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n{auth}\r\n")
                .as_bytes(),
        )
    };
    let basic = |user: &str, secret: &str| {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        format!("Proxy-Authorization: Basic {encoded}\r\n")
    };
    for (auth, why) in [
        (String::new(), "did not identify itself"),
        (
            basic("agent-a", "wrong"),
            "wrong secret for profile agent-a",
        ),
        (basic("nobody", SECRET_A), "no profile nobody"),
        (
            "Proxy-Authorization: Bearer x\r\n".to_owned(),
            "is not Basic",
        ),
    ] {
        let answer = connect(&auth);
        assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("proxy-authenticate: basic realm=\"gitgate\""),
            "{answer}"
        );
        assert!(answer.contains(why), "{answer}");
    }
    let plain = raw::exchange(
        gitgate.addr,
        b"GET http://tunnel.test/ HTTP/1.1\r\nHost: tunnel.test\r\n\r\n",
    );
    assert!(plain.starts_with("HTTP/1.1 407"), "{plain}");
    // Only an identified sandbox may log the person in or out on the proxy port.
    let login = raw::exchange(
        gitgate.addr,
        b"POST /logout HTTP/1.1\r\nHost: gitgate\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(login.starts_with("HTTP/1.1 407"), "{login}");

    let wrong = sandbox_as(&gitgate, "agent-a", "not-the-secret");
    let failed = wrong.git_fails(
        wrong.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git"],
    );
    assert!(failed.contains("407"), "{failed}");
    let anonymous = Sandbox::new(&gitgate);
    let out =
        anonymous.curl(&["https://github.com/acme/app.git/info/refs?service=git-upload-pack"]);
    assert!(
        !out.status.success() && text(&out).contains("407"),
        "{}",
        text(&out)
    );

    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    assert!(standin.mints().is_empty());
    let records = gitgate.decisions();
    assert!(
        records
            .iter()
            .any(|r| r["rule"] == "identity" && r["status"] == 407 && r["decision"] == "deny")
    );
    // The right secret still works.
    sandbox_as(&gitgate, "agent-a", SECRET_A).clone_repo("acme/app", "app");
}

#[test]
fn source_addresses_choose_the_profile() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&config(
        &standin,
        "profiles:\n  from-two:\n    sourceCidrs: [127.0.0.2]\n    policy: {allowedRepos: [acme/app]}\n  from-three:\n    sourceCidrs: [127.0.0.3/32]\n    policy: {allowedRepos: [acme/lib-core]}\n",
    ));
    let two = Relay::start("127.0.0.2".parse().unwrap(), gitgate.addr);
    let three = Relay::start("127.0.0.3".parse().unwrap(), gitgate.addr);
    let sandbox_two = Sandbox::with_proxy(&gitgate, format!("http://{}", two.addr));
    let sandbox_three = Sandbox::with_proxy(&gitgate, format!("http://{}", three.addr));

    sandbox_two.clone_repo("acme/app", "app");
    let denied = sandbox_two.git_fails(
        sandbox_two.home.path(),
        &["clone", "-q", "https://github.com/acme/lib-core.git"],
    );
    assert!(
        denied.contains("not in allowedRepos [acme/app]"),
        "{denied}"
    );
    sandbox_three.clone_repo("acme/lib-core", "lib");
    let denied = sandbox_three.git_fails(
        sandbox_three.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git"],
    );
    assert!(
        denied.contains("not in allowedRepos [acme/lib-core]"),
        "{denied}"
    );

    // 127.0.0.1 matches no profile.
    let answer = raw::exchange(
        gitgate.addr,
        b"CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    let records = gitgate.decisions();
    assert!(
        records.iter().any(|r| r["profile"] == "from-two"
            && r["client"].as_str().unwrap().starts_with("127.0.0.2:"))
    );
    assert!(
        records.iter().any(|r| r["profile"] == "from-three"
            && r["client"].as_str().unwrap().starts_with("127.0.0.3:"))
    );
}

/// A CA and a client certificate for `cn` signed by it, as PEM files in `dir`.
fn client_pki(
    dir: &Path,
    ca_name: &str,
    cn: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, cn);
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join(format!("{ca_name}.pem")),
        dir.join(format!("{cn}.pem")),
        dir.join(format!("{cn}-key.pem")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn a_client_certificate_on_the_https_proxy_listener_names_the_profile() {
    let standin = harness::standin();
    let pki = tempfile::tempdir().unwrap();
    let (client_ca, cert, key) = client_pki(pki.path(), "sandbox-ca", "agent-m");
    let (_, rogue_cert, rogue_key) = client_pki(pki.path(), "rogue-ca", "agent-m-rogue");
    let gitgate = Gitgate::start(&config(
        &standin,
        &format!(
            "listenTls: 127.0.0.1:0\nclientCa: {}\nlimits: {{tlsHandshakeTimeout: 1s}}\nprofiles:\n  agent-m:\n    clientCertSubjects: [CN=agent-m]\n    policy: {{allowedRepos: [acme/app], allowedRefs: [main]}}\n",
            client_ca.display()
        ),
    ));
    let proxy = format!("https://127.0.0.1:{}", gitgate.tls_addr().port());
    let with_cert = |cert: &Path, key: &Path| {
        let sandbox = Sandbox::with_proxy(&gitgate, proxy.clone());
        sandbox.append_gitconfig(&format!(
            "[http]\n\tproxy = {proxy}\n\tproxySSLCert = {}\n\tproxySSLKey = {}\n\tproxySSLCAInfo = {}\n",
            cert.display(),
            key.display(),
            gitgate.ca_file().display()
        ));
        sandbox
    };
    let sandbox = with_cert(&cert, &key);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "m.txt", "over mTLS\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "main"]);
    let denied = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "-q", "https://github.com/acme/lib-core.git"],
    );
    assert!(
        denied.contains("not in allowedRepos [acme/app]"),
        "{denied}"
    );
    gitgate.wait_for_record(|r| {
        r["profile"] == "agent-m" && r["service"] == "receive-pack" && r["decision"] == "allow"
    });

    // A certificate from another CA does not get through the handshake.
    let rogue = with_cert(&rogue_cert, &rogue_key);
    rogue.git_fails(
        rogue.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git"],
    );
    // No certificate at all: TLS to gitgate works, but there is no identity.
    let anonymous = Sandbox::with_proxy(&gitgate, proxy.clone());
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "--proxy",
            &proxy,
            "--proxy-cacert",
        ])
        .arg(gitgate.ca_file())
        .args(["--cacert"])
        .arg(gitgate.ca_file())
        .arg("https://github.com/acme/app.git/info/refs?service=git-upload-pack")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", anonymous.home.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "407",
        "{}",
        text(&out)
    );
    // A client that never finishes its TLS handshake is cut off and recorded.
    let _silent = std::net::TcpStream::connect(gitgate.tls_addr()).unwrap();
    gitgate.wait_for_record(|r| r["rule"] == "limits.tlsHandshakeTimeout" && r["status"] == 408);
}

#[test]
fn a_profile_file_edited_live_changes_only_that_profile() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.d");
    std::fs::create_dir(&profiles).unwrap();
    let write = |name: &str, body: &str| replace_file(&profiles, name, body);
    let profile = profile_file;
    write("agent-a.yaml", &profile(SECRET_A, "acme/app"));
    write("agent-b.yaml", &profile(SECRET_B, "acme/lib-core"));
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        config(&standin, "profilesDir: profiles.d\n"),
    )
    .unwrap();
    let gitgate = Gitgate::start_in(dir);
    let a = sandbox_as(&gitgate, "agent-a", SECRET_A);
    let b = sandbox_as(&gitgate, "agent-b", SECRET_B);
    let lib = ["clone", "-q", "https://github.com/acme/lib-core.git"];
    a.git_fails(a.home.path(), &lib);

    let reloaded = |file: &str, decision: &str| {
        let file = file.to_owned();
        let decision = decision.to_owned();
        gitgate.wait_for_record(move |r| {
            r["kind"] == "policy_reload"
                && r["decision"] == decision.as_str()
                && r["file"].as_str().is_some_and(|f| f.ends_with(&file))
        })
    };
    write(
        "agent-a.yaml",
        &profile(SECRET_A, "acme/app, acme/lib-core"),
    );
    reloaded("agent-a.yaml", "allow");
    a.git_ok(a.home.path(), &lib);
    // agent-b is untouched.
    b.git_fails(
        b.home.path(),
        &["clone", "-q", "https://github.com/acme/app.git"],
    );
    b.clone_repo("acme/lib-core", "lib");

    // A broken edit is refused and agent-b keeps its profile.
    write("agent-b.yaml", "secretSha256: [\npolicy: {}\n");
    let refused = reloaded("agent-b.yaml", "deny");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("agent-b.yaml:"),
        "{refused}"
    );
    b.clone_repo("acme/lib-core", "lib-again");

    // A new file adds a profile; removing it removes the profile.
    write("agent-c.yaml", &profile(SECRET_C, "acme/app"));
    reloaded("agent-c.yaml", "allow");
    let c = sandbox_as(&gitgate, "agent-c", SECRET_C);
    c.clone_repo("acme/app", "app");
    std::fs::remove_file(gitgate.dir.path().join("profiles.d/agent-c.yaml")).unwrap();
    wait_until(|| {
        let out = c.git(
            c.home.path(),
            &["ls-remote", "https://github.com/acme/app.git"],
        );
        !out.status.success() && text(&out).contains("407")
    });
}

/// A new or edited profile file that claims what a working profile claims is the one
/// refused, whichever sorts first, on a file change and on a full reload (SIGHUP) alike.
#[test]
fn a_profile_file_that_clashes_with_one_in_force_is_refused_and_the_working_one_stays() {
    let standin = harness::standin();
    // Both claim 10.9.0.0/16; agent-a sorts first.
    let (gitgate, profiles) = with_profile_files(
        &standin,
        &[(
            "agent-b.yaml",
            claiming(SECRET_B, "acme/lib-core", "10.9.0.0/16"),
        )],
    );
    let a = sandbox_as(&gitgate, "agent-a", SECRET_A);
    let b = sandbox_as(&gitgate, "agent-b", SECRET_B);
    b.clone_repo("acme/lib-core", "lib");
    let refusals = || {
        gitgate
            .audit()
            .into_iter()
            .filter(|r| {
                r["kind"] == "policy_reload"
                    && r["decision"] == "deny"
                    && r["file"]
                        .as_str()
                        .is_some_and(|f| f.ends_with("agent-a.yaml"))
            })
            .collect::<Vec<_>>()
    };

    replace_file(
        &profiles,
        "agent-a.yaml",
        &claiming(SECRET_A, "acme/app", "10.9.0.0/16"),
    );
    wait_until(|| !refusals().is_empty());
    let reason = refusals()[0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains(
            "source range 10.9.0.0/16 is claimed by both profile agent-b and profile agent-a"
        ),
        "{reason}"
    );
    b.clone_repo("acme/lib-core", "lib-after-new-file");
    let out = a.git_fails(
        a.home.path(),
        &["ls-remote", "https://github.com/acme/app.git"],
    );
    assert!(out.contains("407"), "{out}");

    // A full reload reads every file again and decides the same way.
    gitgate.hangup();
    wait_until(|| refusals().len() >= 2);
    b.clone_repo("acme/lib-core", "lib-after-reload");

    // Fixed, agent-a comes in beside agent-b.
    replace_file(
        &profiles,
        "agent-a.yaml",
        &profile_file(SECRET_A, "acme/app"),
    );
    let app = ["ls-remote", "https://github.com/acme/app.git"];
    wait_until(|| a.git(a.home.path(), &app).status.success());
    b.clone_repo("acme/lib-core", "lib-with-both");

    // An edit of the working agent-a that clashes is refused, and stays refused when a
    // full reload reads the file again: agent-a keeps its old profile, agent-b its own.
    replace_file(
        &profiles,
        "agent-a.yaml",
        &claiming(SECRET_A, "acme/app, acme/lib-core", "10.9.0.0/16"),
    );
    wait_until(|| refusals().len() >= 3);
    gitgate.hangup();
    wait_until(|| refusals().len() >= 4);
    b.clone_repo("acme/lib-core", "lib-after-a-refused-edit");
    a.git_ok(a.home.path(), &app);
    a.git_fails(
        a.home.path(),
        &["ls-remote", "https://github.com/acme/lib-core.git"],
    );
}

/// A profile file left out at start for a clash is on record, and does not stand in the
/// way of edits to the profile that is working.
#[test]
fn a_profile_left_out_at_start_does_not_block_edits_of_the_working_one() {
    let standin = harness::standin();
    // agent-a sorts first and is in force; agent-b clashes and is left out.
    let cidrs = "10.9.0.0/16";
    let (gitgate, profiles) = with_profile_files(
        &standin,
        &[
            ("agent-a.yaml", claiming(SECRET_A, "acme/app", cidrs)),
            ("agent-b.yaml", claiming(SECRET_B, "acme/lib-core", cidrs)),
        ],
    );
    // The left-out file is on record, as a refused reload would be.
    let refused = || -> Vec<_> {
        gitgate
            .audit()
            .into_iter()
            .filter(|r| r["kind"] == "policy_reload" && r["decision"] == "deny")
            .collect()
    };
    wait_until(|| !refused().is_empty());
    let refused = refused();
    assert!(
        refused.len() == 1
            && refused[0]["file"]
                .as_str()
                .unwrap()
                .ends_with("agent-b.yaml"),
        "{refused:#?}"
    );
    let a = sandbox_as(&gitgate, "agent-a", SECRET_A);
    let lib = ["ls-remote", "https://github.com/acme/lib-core.git"];
    a.git_fails(a.home.path(), &lib);
    replace_file(
        &profiles,
        "agent-a.yaml",
        &claiming(SECRET_A, "acme/app, acme/lib-core", cidrs),
    );
    wait_until(|| a.git(a.home.path(), &lib).status.success());
}

/// Every request inside a tunnel is decided under the profile bound at CONNECT, as that
/// profile stands now: a live edit applies to the open tunnel, and a removed profile's
/// tunnel gets 403 telling the client to reconnect.
#[test]
fn an_open_tunnel_follows_its_profile_live_and_ends_when_its_secret_changes_or_it_is_removed() {
    use std::io::Write;
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.d");
    std::fs::create_dir(&profiles).unwrap();
    replace_file(
        &profiles,
        "agent-a.yaml",
        &profile_file(SECRET_A, "acme/app"),
    );
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        config(&standin, "profilesDir: profiles.d\n"),
    )
    .unwrap();
    let gitgate = Gitgate::start_in(dir);
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("agent-a:{SECRET_A}"),
    );
    let mut tls = raw::mitm_tls_with(
        gitgate.addr,
        &format!("Proxy-Authorization: Basic {basic}\r\n"),
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    let mut refs = || {
        tls.write_all(
            b"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\nUser-Agent: git/2.47\r\n\r\n",
        )
        .expect("write");
        raw::read_response(&mut tls)
    };
    let first = refs();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    replace_file(
        &profiles,
        "agent-a.yaml",
        &profile_file(SECRET_A, "acme/lib-core"),
    );
    // git shows a denied ref advertisement as `remote error:`, from an ERR pkt-line.
    let mut answer = String::new();
    wait_until(|| {
        answer = refs();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer.contains("ERR gitgate: acme/app is not in allowedRepos [acme/lib-core]")
    });

    // A rotated secret shuts the old one out of connections opened with it, too.
    replace_file(
        &profiles,
        "agent-a.yaml",
        &profile_file(SECRET_C, "acme/app"),
    );
    wait_until(|| {
        answer = refs();
        assert!(!answer.is_empty(), "the tunnel closed");
        !answer.contains("allowedRepos")
    });
    assert!(
        answer.starts_with("HTTP/1.1 407")
            && answer.contains("the proxy credentials are wrong: wrong secret for profile agent-a"),
        "{answer}"
    );
    gitgate.wait_for_record(|r| {
        r["profile"] == "agent-a" && r["status"] == 407 && r["rule"] == "identity"
    });

    std::fs::remove_file(profiles.join("agent-a.yaml")).unwrap();
    wait_until(|| {
        answer = refs();
        assert!(!answer.is_empty(), "the tunnel closed");
        !answer.contains("wrong secret")
    });
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains(
            "gitgate: profile agent-a was removed from gitgate's configuration; reconnect"
        ),
        "{answer}"
    );
    gitgate.wait_for_record(|r| {
        r["profile"] == "agent-a" && r["status"] == 403 && r["rule"] == "identity"
    });
}

#[test]
fn check_and_explain_cover_profiles_and_errors_name_the_place() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gitgate.yaml");
    std::fs::write(
        &path,
        config(
            &standin,
            &format!(
                "profiles:\n{}  by-address:\n    sourceCidrs: [10.0.3.0/24]\n    policy: {{allowedRepos: [acme/lib-core]}}\n",
                secret_profile("agent-a", SECRET_A, "{allowedRepos: [acme/app], allowedRefs: [main]}")
            ),
        ),
    )
    .unwrap();
    let config_arg = path.to_str().unwrap();
    let out = cli(&["check", "--config", config_arg], dir.path());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("profiles: 2"), "{shown}");
    assert!(
        shown.contains("profile agent-a: proxy secret (user agent-a)"),
        "{shown}"
    );
    assert!(
        shown.contains("profile by-address: source 10.0.3.0/24"),
        "{shown}"
    );

    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "--config", config_arg];
        all.extend_from_slice(args);
        cli(&all, dir.path())
    };
    let out = explain(&["--profile", "agent-a", "push", "acme/app", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = explain(&["--profile", "by-address", "push", "acme/lib-core", "main"]);
    assert!(
        out.status.code() == Some(1) && text(&out).contains("read-only"),
        "{}",
        text(&out)
    );
    // A mistake in the arguments is not a denial: exit 64, not 1.
    let out = explain(&["clone", "acme/app"]);
    assert!(
        out.status.code() == Some(64)
            && text(&out).contains("name one with --profile (profiles: agent-a, by-address)"),
        "{}",
        text(&out)
    );
    let out = explain(&["--profile", "nope", "clone", "acme/app"]);
    assert!(
        out.status.code() == Some(64) && text(&out).contains("no profile nope"),
        "{}",
        text(&out)
    );
    let out = explain(&["--profile", "agent-a", "clone", "acme//app"]);
    assert!(
        out.status.code() == Some(64) && text(&out).contains("is not OWNER/REPO"),
        "{}",
        text(&out)
    );

    for (rest, want) in [
        (
            "profiles:\n  x:\n    policy: {}\n",
            "profiles.x: profile x has no identity",
        ),
        (
            "profiles:\n  x:\n    clientCertSubjects: [CN=x]\n",
            "profiles.x.clientCertSubjects: client certificates are only seen on listenTls with clientCa",
        ),
        (
            "profiles:\n  x:\n    sourceCidrs: [10.0.3.5/24]\n",
            "gitgate.yaml:10:19: profiles.x.sourceCidrs[0]: invalid address range \"10.0.3.5/24\": the address has bits set past the prefix; did you mean 10.0.3.0/24?",
        ),
        (
            "profiles:\n  x:\n    sourceCidrs: [10.0.0.0/8]\n  y:\n    sourceCidrs: [10.0.0.0/8]\n",
            "gitgate.yaml:12:5: profiles.y.sourceCidrs[0]: source range 10.0.0.0/8 is claimed by both profile x and profile y",
        ),
        (
            "profiles:\n  bad/name:\n    sourceCidrs: [10.0.0.0/8]\n",
            "invalid profile name \"bad/name\"",
        ),
        (
            "clientCa: /nonexistent.pem\n",
            "cannot read /nonexistent.pem",
        ),
        (
            "profiles:\n  x:\n    sourceCidrs: [10.0.0.0/8]\n    policy:\n      allowHosts:\n        - pypi.org\n        - github.com\n",
            "gitgate.yaml:14:9: profiles.x.policy.allowHosts[1]: profile x: allowHosts entry \"github.com\" names the GitHub host",
        ),
    ] {
        std::fs::write(&path, config(&standin, rest)).unwrap();
        let out = cli(&["check", "--config", config_arg], dir.path());
        assert_eq!(out.status.code(), Some(64), "{rest}: {}", text(&out));
        assert!(text(&out).contains(want), "{rest}: {}", text(&out));
    }
    // A profile file's error names its place in that file, a clash with another
    // profile's claim too.
    std::fs::create_dir(dir.path().join("pd")).unwrap();
    std::fs::write(
        dir.path().join("pd/w.yaml"),
        "sourceCidrs: [10.1.0.0/16]\nclientCertSubjects: []\n",
    )
    .unwrap();
    std::fs::write(
        &path,
        config(
            &standin,
            "profilesDir: pd\nprofiles:\n  v:\n    sourceCidrs: [10.1.0.0/16]\n",
        ),
    )
    .unwrap();
    let out = cli(&["check", "--config", config_arg], dir.path());
    assert!(
        text(&out).contains("w.yaml:1:1: sourceCidrs[0]: source range 10.1.0.0/16 is claimed by both profile v and profile w"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(dir.path().join("pd/w.yaml")).unwrap();
    std::fs::write(
        dir.path().join("pd/x.yaml"),
        "sourceCidrs: [10.0.0.0/8]\npolicy:\n  allowHosts:\n    - pypi.org\n    - api.github.com\n",
    )
    .unwrap();
    std::fs::write(&path, config(&standin, "profilesDir: pd\n")).unwrap();
    let out = cli(&["check", "--config", config_arg], dir.path());
    assert!(
        out.status.code() == Some(64)
            && text(&out).contains(
                "x.yaml:5:5: policy.allowHosts[1]: profile x: allowHosts entry \"api.github.com\""
            ),
        "{}",
        text(&out)
    );
}

#[test]
fn doctor_checks_every_profiles_owners() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let body = config(
        &standin,
        &format!(
            "profiles:\n{}{}",
            secret_profile(
                "agent-a",
                SECRET_A,
                "{allowedRepos: [acme/app], allowedRefs: [main]}"
            ),
            secret_profile("agent-b", SECRET_B, "{allowedRepos: [bob/tools]}"),
        ),
    );
    std::fs::write(dir.path().join("gitgate.yaml"), body).unwrap();
    let out = cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    for (owner, installation) in [("acme", "1001"), ("bob", "2002")] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(owner))
            .unwrap_or_else(|| panic!("no row for {owner}:\n{stdout}"));
        assert!(row.contains(installation), "{row}");
    }
    assert_eq!(standin.mints().len(), 2, "{stdout}");
}
