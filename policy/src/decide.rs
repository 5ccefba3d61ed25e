//! The decisions of a compiled [`Policy`].

use crate::decision::{ConnectDecision, Decision, PushVerdict};
use crate::host::HostName;
use crate::policy::Policy;
use crate::ref_update::RefUpdate;
use crate::refname::RefName;
use crate::repo::RepoPath;

/// The only port intercepted on GitHub hosts, and the default CONNECT port of `allowHosts`.
const HTTPS_PORT: u16 = 443;
/// The default plain-HTTP port of `allowHosts`.
const HTTP_PORT: u16 = 80;

impl Policy {
    /// `CONNECT host:port`: intercept a GitHub host on 443, deny it on any other port, tunnel
    /// an `allowHosts` match, deny the rest.
    pub fn decide_connect(&self, host: &HostName, port: u16) -> ConnectDecision {
        if self.is_github_host(host) {
            return if port == HTTPS_PORT {
                ConnectDecision::Intercept
            } else {
                ConnectDecision::Deny(github_port_denied(host, port))
            };
        }
        let decision = self.decide_host(host, port, HTTPS_PORT);
        if decision.allowed {
            ConnectDecision::Tunnel(decision)
        } else {
            ConnectDecision::Deny(decision)
        }
    }

    /// An absolute-form `http://host:port/…` request: never intercepted, so a GitHub host is
    /// denied; otherwise only `allowHosts` (entries without a port mean port 80).
    pub fn decide_plain_http(&self, host: &HostName, port: u16) -> Decision {
        if self.is_github_host(host) {
            return github_port_denied(host, port);
        }
        self.decide_host(host, port, HTTP_PORT)
    }

    fn decide_host(&self, host: &HostName, port: u16, default_port: u16) -> Decision {
        if let Some(pattern) = self
            .hosts
            .iter()
            .find(|p| p.matches(host, port, default_port))
        {
            return Decision::allow(
                format!("allowHosts[{pattern}]"),
                format!("{host}:{port} matches allowHosts pattern {pattern}"),
            );
        }
        let list = &self.host_list;
        let reason = if self.hosts.iter().any(|p| p.matches_host(host)) {
            format!(
                "{host}:{port} is not in allowHosts {list} (an entry without :PORT allows only port {default_port})"
            )
        } else if host.is_ip() {
            format!("{host} is an IP address and not in allowHosts {list}")
        } else {
            format!("{host} is not in allowHosts {list}")
        };
        Decision::deny("allowHosts", reason)
    }

    /// Whether git may read (and, subject to the other checks, write) this repository.
    pub fn decide_repo(&self, repo: &RepoPath) -> Decision {
        match self.repos.iter().find(|p| p.matches(repo)) {
            Some(pattern) => Decision::allow(
                format!("allowedRepos[{pattern}]"),
                format!("{repo} matches allowedRepos pattern {pattern}"),
            ),
            None => Decision::deny(
                "allowedRepos",
                format!("{repo} is not in allowedRepos {}", self.repo_list),
            ),
        }
    }

    /// Whether a push to this repository may start at all: the repository is allowed and
    /// `allowedRefs` is not empty.
    pub fn decide_push(&self, repo: &RepoPath) -> Decision {
        let decision = self.decide_repo(repo);
        if decision.allowed && self.refs.is_empty() {
            return Decision::deny(
                "allowedRefs",
                format!("{repo} is read-only by policy (allowedRefs is empty)"),
            );
        }
        decision
    }

    /// One push command: a valid ref name that matches `allowedRefs`; a delete also needs
    /// `allowDeletes`.
    pub fn decide_ref_update(&self, update: &RefUpdate) -> Decision {
        self.decide_ref_name(&update.name, update.is_delete())
    }

    /// A ref name that matches `allowedRefs`; a delete also needs `allowDeletes`.
    pub(crate) fn decide_ref_name(&self, name: &str, delete: bool) -> Decision {
        let name = match RefName::parse(name) {
            Ok(name) => name,
            Err(e) => return Decision::deny("refName", e.to_string()),
        };
        let Some(pattern) = self.refs.iter().find(|p| p.matches(&name)) else {
            return Decision::deny(
                "allowedRefs",
                format!("{name} is not in allowedRefs {}", self.ref_list),
            );
        };
        let rule = format!("allowedRefs[{pattern}]");
        match (delete, self.allow_deletes) {
            (false, _) => Decision::allow(
                rule,
                format!("{name} matches allowedRefs pattern {pattern}"),
            ),
            (true, true) => Decision::allow(
                rule,
                format!(
                    "deleting {name} is allowed: it matches allowedRefs pattern {pattern} and allowDeletes is true"
                ),
            ),
            (true, false) => Decision::deny(
                "allowDeletes",
                format!("deleting {name} is not allowed by policy (allowDeletes is false)"),
            ),
        }
    }

    /// All commands of one push, atomically: if any is denied, the otherwise allowed ones
    /// are denied too (rule `atomic`).
    pub fn decide_push_commands(&self, updates: &[RefUpdate]) -> PushVerdict {
        PushVerdict::atomic(
            updates
                .iter()
                .map(|update| (update.clone(), self.decide_ref_update(update)))
                .collect(),
        )
    }

    /// Whether any push can ever be allowed (some repository and some ref are listed).
    pub fn allows_any_push(&self) -> bool {
        !self.repos.is_empty() && !self.refs.is_empty()
    }
}

fn github_port_denied(host: &HostName, port: u16) -> Decision {
    Decision::deny(
        "githubHost",
        format!(
            "{host}:{port} is not allowed: gitgate only intercepts port 443 of the GitHub hosts"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_id::ObjectId;

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(
            yaml,
            &["github.com".to_owned(), "api.github.com".to_owned()],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const POLICY: &str = "
allowedRepos: [acme/app, 'acme/lib-*']
allowedRefs: [main, 'release/*', 'refs/tags/v*']
allowHosts: [crates.io, '*.crates.io', 'example.com:8443', 10.0.0.1, '[::1]:8080']
";

    fn update(old: char, new: char, name: &str) -> RefUpdate {
        RefUpdate {
            old: ObjectId::parse(&old.to_string().repeat(40)).unwrap(),
            new: ObjectId::parse(&new.to_string().repeat(40)).unwrap(),
            name: name.to_owned(),
        }
    }

    fn host(s: &str) -> HostName {
        HostName::parse(s).unwrap()
    }

    #[test]
    fn repos() {
        let p = policy(POLICY);
        for (repo, allowed, rule, reason) in [
            (
                "acme/app",
                true,
                "allowedRepos[acme/app]",
                "acme/app matches allowedRepos pattern acme/app",
            ),
            (
                "Acme/Lib-Core.git",
                true,
                "allowedRepos[acme/lib-*]",
                "acme/lib-core matches allowedRepos pattern acme/lib-*",
            ),
            (
                "acme/secret",
                false,
                "allowedRepos",
                "acme/secret is not in allowedRepos [acme/app, acme/lib-*]",
            ),
        ] {
            let d = p.decide_repo(&RepoPath::parse(repo).unwrap());
            assert_eq!(
                (d.allowed, d.rule.as_str(), d.reason.as_str()),
                (allowed, rule, reason)
            );
        }
        let d = policy("{}").decide_repo(&RepoPath::parse("acme/secret").unwrap());
        assert_eq!(d.reason, "acme/secret is not in allowedRepos []");
    }

    #[test]
    fn push_needs_refs() {
        let repo = RepoPath::parse("acme/app").unwrap();
        let read_only = policy("allowedRepos: ['acme/*']");
        let d = read_only.decide_push(&repo);
        assert_eq!(
            (d.allowed, d.rule.as_str(), d.reason.as_str()),
            (
                false,
                "allowedRefs",
                "acme/app is read-only by policy (allowedRefs is empty)"
            )
        );
        assert!(!read_only.allows_any_push());
        let p = policy(POLICY);
        assert!(p.decide_push(&repo).allowed);
        assert!(p.allows_any_push());
        let d = p.decide_push(&RepoPath::parse("acme/secret").unwrap());
        assert_eq!((d.allowed, d.rule.as_str()), (false, "allowedRepos"));
        assert!(!policy("allowedRefs: [main]").allows_any_push());
    }

    #[test]
    fn ref_updates() {
        let p = policy(POLICY);
        let deletes = policy("allowedRepos: [a/b]\nallowedRefs: [main]\nallowDeletes: true");
        for (policy, update, allowed, rule, reason) in [
            (
                &p,
                update('1', '2', "refs/heads/main"),
                true,
                "allowedRefs[main]",
                "refs/heads/main matches allowedRefs pattern main",
            ),
            (
                &p,
                update('0', '2', "refs/heads/release/1.0"),
                true,
                "allowedRefs[release/*]",
                "refs/heads/release/1.0 matches allowedRefs pattern release/*",
            ),
            (
                &p,
                update('0', '2', "refs/tags/v1"),
                true,
                "allowedRefs[refs/tags/v*]",
                "refs/tags/v1 matches allowedRefs pattern refs/tags/v*",
            ),
            (
                &p,
                update('1', '2', "refs/heads/dev"),
                false,
                "allowedRefs",
                "refs/heads/dev is not in allowedRefs [main, release/*, refs/tags/v*]",
            ),
            (
                &p,
                update('1', '2', "refs/heads/release/a/b"),
                false,
                "allowedRefs",
                "refs/heads/release/a/b is not in allowedRefs [main, release/*, refs/tags/v*]",
            ),
            (
                &p,
                update('1', '0', "refs/heads/main"),
                false,
                "allowDeletes",
                "deleting refs/heads/main is not allowed by policy (allowDeletes is false)",
            ),
            (
                &p,
                update('1', '0', "refs/heads/x"),
                false,
                "allowedRefs",
                "refs/heads/x is not in allowedRefs [main, release/*, refs/tags/v*]",
            ),
            (
                &p,
                update('1', '2', "refs/heads/a..b"),
                false,
                "refName",
                "refs/heads/a..b is not a valid ref name (contains \"..\")",
            ),
            (
                &p,
                update('1', '2', "main"),
                false,
                "refName",
                "main is not a valid ref name (does not start with \"refs/\")",
            ),
            (
                &deletes,
                update('1', '0', "refs/heads/main"),
                true,
                "allowedRefs[main]",
                "deleting refs/heads/main is allowed: it matches allowedRefs pattern main and allowDeletes is true",
            ),
        ] {
            let d = policy.decide_ref_update(&update);
            assert_eq!(
                (d.allowed, d.rule.as_str(), d.reason.as_str()),
                (allowed, rule, reason),
                "{}",
                update.name
            );
        }
    }

    #[test]
    fn push_commands_are_atomic() {
        let p = policy(POLICY);
        let ok = update('1', '2', "refs/heads/main");
        let bad = update('1', '2', "refs/heads/dev");
        let verdict = p.decide_push_commands(&[ok.clone(), bad.clone(), ok.clone()]);
        assert!(!verdict.allowed);
        assert_eq!(verdict.refs.len(), 3);
        assert_eq!(verdict.refs[1].0, bad);
        assert_eq!(verdict.refs[1].1.rule, "allowedRefs");
        for i in [0, 2] {
            let d = &verdict.refs[i].1;
            assert_eq!(
                (d.allowed, d.rule.as_str(), d.reason.as_str()),
                (
                    false,
                    "atomic",
                    "atomic push rejected: another ref was denied"
                )
            );
            assert!(d.is_atomic_rejection());
        }
        assert_eq!(
            verdict.first_denied().map(|(u, _)| &u.name),
            Some(&bad.name)
        );

        let verdict = p.decide_push_commands(&[ok.clone(), ok]);
        assert!(verdict.allowed);
        assert!(
            verdict
                .refs
                .iter()
                .all(|(_, d)| d.allowed && d.rule == "allowedRefs[main]")
        );
        assert!(verdict.first_denied().is_none());
        assert!(p.decide_push_commands(&[]).allowed);
    }

    #[test]
    fn connect() {
        let p = policy(POLICY);
        let list = "[crates.io, *.crates.io, example.com:8443, 10.0.0.1, [::1]:8080]";
        assert_eq!(
            p.decide_connect(&host("github.com"), 443),
            ConnectDecision::Intercept
        );
        assert_eq!(
            p.decide_connect(&host("API.GitHub.com."), 443),
            ConnectDecision::Intercept
        );
        for (h, port, tunnel, rule, reason) in [
            ("github.com", 22, false, "githubHost", "github.com:22 is not allowed: gitgate only intercepts port 443 of the GitHub hosts".to_owned()),
            ("crates.io", 443, true, "allowHosts[crates.io]", "crates.io:443 matches allowHosts pattern crates.io".to_owned()),
            ("static.crates.io", 443, true, "allowHosts[*.crates.io]", "static.crates.io:443 matches allowHosts pattern *.crates.io".to_owned()),
            ("example.com", 8443, true, "allowHosts[example.com:8443]", "example.com:8443 matches allowHosts pattern example.com:8443".to_owned()),
            ("10.0.0.1", 443, true, "allowHosts[10.0.0.1]", "10.0.0.1:443 matches allowHosts pattern 10.0.0.1".to_owned()),
            ("::1", 8080, true, "allowHosts[[::1]:8080]", "[::1]:8080 matches allowHosts pattern [::1]:8080".to_owned()),
            ("evil.example", 443, false, "allowHosts", format!("evil.example is not in allowHosts {list}")),
            ("gist.github.com", 443, false, "allowHosts", format!("gist.github.com is not in allowHosts {list}")),
            ("10.0.0.2", 443, false, "allowHosts", format!("10.0.0.2 is an IP address and not in allowHosts {list}")),
            ("crates.io", 8443, false, "allowHosts", format!("crates.io:8443 is not in allowHosts {list} (an entry without :PORT allows only port 443)")),
            ("example.com", 443, false, "allowHosts", format!("example.com:443 is not in allowHosts {list} (an entry without :PORT allows only port 443)")),
        ] {
            let (got_tunnel, d) = match p.decide_connect(&host(h), port) {
                ConnectDecision::Tunnel(d) => (true, d),
                ConnectDecision::Deny(d) => (false, d),
                ConnectDecision::Intercept => panic!("{h}:{port} intercepted"),
            };
            assert_eq!((got_tunnel, d.allowed, d.rule.as_str(), d.reason.as_str()), (tunnel, tunnel, rule, reason.as_str()), "{h}:{port}");
        }
    }

    #[test]
    fn plain_http() {
        let p = policy(POLICY);
        for (h, port, allowed, rule) in [
            ("crates.io", 80, true, "allowHosts[crates.io]"),
            ("crates.io", 443, false, "allowHosts"),
            ("example.com", 8443, true, "allowHosts[example.com:8443]"),
            ("github.com", 80, false, "githubHost"),
            ("github.com", 443, false, "githubHost"),
            ("evil.example", 80, false, "allowHosts"),
        ] {
            let d = p.decide_plain_http(&host(h), port);
            assert_eq!((d.allowed, d.rule.as_str()), (allowed, rule), "{h}:{port}");
        }
        assert_eq!(
            p.decide_plain_http(&host("github.com"), 80).reason,
            "github.com:80 is not allowed: gitgate only intercepts port 443 of the GitHub hosts"
        );
    }
}
