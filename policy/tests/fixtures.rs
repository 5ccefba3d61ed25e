//! Policies from `tests/fixtures/*.yaml`, valid and broken, as the configuration loader
//! sees them.

use gitgate_policy::{ConnectDecision, HostName, ObjectId, Policy, RefUpdate, RepoPath};

const GITHUB: &[&str] = &["github.com", "api.github.com"];

fn load(yaml: &str) -> Result<Policy, String> {
    let hosts: Vec<String> = GITHUB.iter().map(|h| h.to_string()).collect();
    Policy::from_yaml(yaml, &hosts).map_err(|e| e.to_string())
}

fn repo(s: &str) -> RepoPath {
    RepoPath::parse(s).unwrap()
}

fn update(name: &str, delete: bool) -> RefUpdate {
    let id = ObjectId::parse(&"a".repeat(40)).unwrap();
    let zero = ObjectId::parse(&"0".repeat(40)).unwrap();
    RefUpdate {
        old: id.clone(),
        new: if delete { zero } else { id },
        name: name.to_owned(),
    }
}

fn connect(policy: &Policy, host: &str, port: u16) -> &'static str {
    match policy.decide_connect(&HostName::parse(host).unwrap(), port) {
        ConnectDecision::Intercept => "intercept",
        ConnectDecision::Tunnel(_) => "tunnel",
        ConnectDecision::Deny(_) => "deny",
    }
}

#[test]
fn full() {
    let p = load(include_str!("fixtures/full.yaml")).unwrap();
    for (name, allowed) in [
        ("acme/app", true),
        ("ACME/lib-core.git", true),
        ("tools/cli", true),
        ("acme/secret", false),
        ("evil/app", false),
    ] {
        assert_eq!(p.decide_repo(&repo(name)).allowed, allowed, "{name}");
        assert_eq!(p.decide_push(&repo(name)).allowed, allowed, "{name}");
    }
    for (name, delete, allowed) in [
        ("refs/heads/main", false, true),
        ("refs/heads/main", true, true),
        ("refs/heads/release/1.0", false, true),
        ("refs/heads/release/1.0/hotfix", false, false),
        ("refs/heads/feature/a/b/c", false, true),
        ("refs/tags/v2", false, true),
        ("refs/tags/nightly", false, false),
        ("refs/heads/Main", false, false),
    ] {
        assert_eq!(
            p.decide_ref_update(&update(name, delete)).allowed,
            allowed,
            "{name}"
        );
    }
    for (host, port, want) in [
        ("github.com", 443, "intercept"),
        ("api.github.com", 443, "intercept"),
        ("github.com", 22, "deny"),
        ("crates.io", 443, "tunnel"),
        ("index.crates.io", 443, "tunnel"),
        ("crates.io", 80, "deny"),
        ("example.com", 8443, "tunnel"),
        ("example.com", 443, "deny"),
        ("10.1.2.3", 443, "tunnel"),
        ("10.1.2.4", 443, "deny"),
        ("fd00::1", 8080, "tunnel"),
        ("evil.example", 443, "deny"),
    ] {
        assert_eq!(connect(&p, host, port), want, "{host}:{port}");
    }
    assert!(p.allows_any_push());
    let scope = p.token_scope("acme").unwrap();
    assert_eq!(scope.repositories, None, "acme/lib-* is a glob");
    let scope = p.token_scope("tools").unwrap();
    assert_eq!(scope.repositories, Some(vec!["cli".to_owned()]));
    assert_eq!(p.token_scope("evil"), None);
    let summary = p.to_string();
    assert!(summary.contains("  - Acme/Lib-*\n"), "{summary}");
    assert!(summary.contains("allowDeletes: true\n"), "{summary}");
}

#[test]
fn read_only() {
    let p = load(include_str!("fixtures/read-only.yaml")).unwrap();
    assert!(p.decide_repo(&repo("acme/docs")).allowed);
    let push = p.decide_push(&repo("acme/docs"));
    assert_eq!(
        push.reason,
        "acme/docs is read-only by policy (allowedRefs is empty)"
    );
    assert!(!p.allows_any_push());
    assert_eq!(connect(&p, "crates.io", 443), "deny");
    let scope = p.token_scope("acme").unwrap();
    assert_eq!(
        scope.repositories,
        Some(vec!["app".to_owned(), "docs".to_owned()])
    );
    assert_eq!(scope.permissions[0].1.as_str(), "read");
}

#[test]
fn empty() {
    let p = load(include_str!("fixtures/empty.yaml")).unwrap();
    assert_eq!(
        p.decide_repo(&repo("acme/app")).reason,
        "acme/app is not in allowedRepos []"
    );
    assert_eq!(connect(&p, "github.com", 443), "intercept");
    assert_eq!(p.token_scope("acme"), None);
}

#[test]
fn broken() {
    for (yaml, want) in [
        (
            include_str!("fixtures/bad-repo-shape.yaml"),
            "invalid policy: allowedRepos[1]: invalid repo pattern \"acme\": expected OWNER/REPO, e.g. \"acme/app\" or \"acme/*\" at line 3 column 5",
        ),
        (
            include_str!("fixtures/bad-ref-glob.yaml"),
            "allowedRefs[1]: invalid ref pattern \"release/[0-9\": unclosed character class; missing ']' at line 2 column 21",
        ),
        (
            include_str!("fixtures/bad-ref-name.yaml"),
            "allowedRefs[0]: invalid ref pattern \"feature..x\": refs/heads/feature..x contains \"..\" at line 2 column 5",
        ),
        (
            include_str!("fixtures/bad-host.yaml"),
            "allowHosts[1]: invalid host pattern \"*\": only a leading \"*.\" wildcard is supported",
        ),
        (
            include_str!("fixtures/bad-host-port.yaml"),
            "invalid host pattern \"example.com:70000\": invalid port \"70000\"; expected 1..65535",
        ),
        (
            include_str!("fixtures/unknown-field.yaml"),
            "unknown field `allowedBranches`, expected one of `allowedRepos`, `allowedRefs`, `allowDeletes`, `allowHosts`, `mode`, `forcePush`, `forcePushAllowedRefs`, `maxBlobSize`, `maxPushSize`, `protectedPaths`, `requireSignedCommits`, `api` at line 2 column 1",
        ),
        (
            include_str!("fixtures/github-in-allow-hosts.yaml"),
            "allowHosts entry \"GitHub.com\" names the GitHub host github.com",
        ),
    ] {
        let err = load(yaml).expect_err(yaml);
        assert!(err.contains(want), "{yaml}\n got: {err}\nwant: {want}");
    }
}
