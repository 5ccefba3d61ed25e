//! The compiled policy: built once from a [`RawPolicy`], shared by every connection.

use std::fmt;

use crate::byte_size::ByteSize;
use crate::host::{HostError, HostName};
use crate::host_pattern::HostPattern;
use crate::raw::{ForcePush, Mode, RawPolicy};
use crate::ref_pattern::RefPattern;
use crate::repo_pattern::RepoPattern;

/// Lists in denial reasons are cut near this many characters.
const MAX_LIST_LEN: usize = 400;

/// A compiled policy, cheap to share (`Send + Sync`). Ask it with the `decide_*` methods
/// and [`Policy::token_scope`]; `Display` gives a readable summary.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) repos: Vec<RepoPattern>,
    pub(crate) refs: Vec<RefPattern>,
    pub(crate) allow_deletes: bool,
    pub(crate) mode: Mode,
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) github_hosts: Vec<HostName>,
    pub(crate) force_push: ForcePush,
    pub(crate) force_push_refs: Vec<RefPattern>,
    pub(crate) max_blob_size: Option<ByteSize>,
    pub(crate) max_push_size: Option<ByteSize>,
    pub(crate) protected_paths: Vec<crate::path_pattern::PathPattern>,
    pub(crate) signers: Option<crate::signers::Signers>,
    /// `policy.api`, sorted and deduplicated; `None` when absent.
    pub(crate) api: Option<Vec<crate::api::Operation>>,
    /// `[acme/app, acme/lib-*]`, rendered once for denial reasons.
    pub(crate) repo_list: String,
    pub(crate) ref_list: String,
    pub(crate) host_list: String,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The YAML is malformed or an entry is invalid; the message carries line and column.
    #[error("invalid policy: {0}")]
    Yaml(serde_yaml::Error),
    /// One of the intercepted GitHub host names is not a valid host.
    #[error("invalid GitHub host \"{host}\"")]
    GithubHost {
        /// The offending host.
        host: String,
        /// Why it is invalid.
        #[source]
        source: HostError,
    },
    /// An `allowHosts` entry names a GitHub host exactly: port 443 is intercepted anyway and
    /// other ports are always denied, so the entry would be redundant or dead.
    #[error(
        "allowHosts entry \"{pattern}\" names the GitHub host {host}, which gitgate intercepts on port 443 and denies on other ports; remove the entry"
    )]
    GithubHostInAllowHosts {
        /// The entry as written.
        pattern: String,
        /// The GitHub host it names.
        host: String,
        /// Its place in `allowHosts`.
        index: usize,
    },
    /// `requireSignedCommits` is invalid.
    #[error("invalid policy: {0}")]
    Signers(String),
}

impl ConfigError {
    /// The key inside the policy that the error is about (`allowHosts[1]`), when it is
    /// found after parsing (a YAML error carries its own position).
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::GithubHostInAllowHosts { index, .. } => {
                Some(format!("allowHosts[{index}]"))
            }
            ConfigError::Signers(_) => Some("requireSignedCommits".into()),
            ConfigError::Yaml(_) | ConfigError::GithubHost { .. } => None,
        }
    }
}

impl Policy {
    /// Compiles a raw policy. `github_hosts` are the host names gitgate intercepts (e.g.
    /// `["github.com", "api.github.com"]`).
    pub fn compile(raw: &RawPolicy, github_hosts: &[String]) -> Result<Policy, ConfigError> {
        let github_hosts = github_hosts
            .iter()
            .map(|host| {
                HostName::parse(host).map_err(|source| ConfigError::GithubHost {
                    host: host.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some((index, pattern)) = raw
            .allow_hosts
            .iter()
            .enumerate()
            .find(|(_, p)| !p.is_wildcard() && github_hosts.contains(p.host()))
        {
            return Err(ConfigError::GithubHostInAllowHosts {
                pattern: pattern.to_string(),
                host: pattern.host().to_string(),
                index,
            });
        }
        Ok(Policy {
            repo_list: render_list(&raw.allowed_repos),
            ref_list: render_list(&raw.allowed_refs),
            host_list: render_list(&raw.allow_hosts),
            repos: raw.allowed_repos.clone(),
            refs: raw.allowed_refs.clone(),
            allow_deletes: raw.allow_deletes,
            mode: raw.mode,
            hosts: raw.allow_hosts.clone(),
            github_hosts,
            force_push: raw.force_push,
            force_push_refs: raw.force_push_allowed_refs.clone(),
            max_blob_size: raw.max_blob_size,
            max_push_size: raw.max_push_size,
            protected_paths: raw.protected_paths.clone(),
            signers: raw
                .require_signed_commits
                .as_ref()
                .map(crate::signers::Signers::compile)
                .transpose()
                .map_err(ConfigError::Signers)?,
            api: raw.api.clone().map(|mut ops| {
                ops.sort();
                ops.dedup();
                ops
            }),
        })
    }

    /// Parses a YAML document holding the policy mapping itself and compiles it.
    pub fn from_yaml(yaml: &str, github_hosts: &[String]) -> Result<Policy, ConfigError> {
        let raw: RawPolicy = serde_yaml::from_str(yaml).map_err(ConfigError::Yaml)?;
        Policy::compile(&raw, github_hosts)
    }

    /// `enforce` or `report`: in report mode the proxy lets denied requests through
    /// and logs what would have been denied.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `host` is one of the intercepted GitHub hosts.
    pub fn is_github_host(&self, host: &HostName) -> bool {
        self.github_hosts.contains(host)
    }
}

/// `[a, b, c]`, cut with `, …` once longer than [`MAX_LIST_LEN`].
fn render_list<T: fmt::Display>(items: &[T]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        let item = item.to_string();
        let sep = if i == 0 { "" } else { ", " };
        if out.len() + sep.len() + item.len() > MAX_LIST_LEN {
            out.push_str(if i == 0 { "…" } else { ", …" });
            break;
        }
        out.push_str(sep);
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// A readable summary for `gitgate check`.
impl Policy {
    /// Everything the policy decides with, exactly: its summary, then what the summary
    /// rounds (sizes) or only counts (signing keys). What its fingerprint is taken of.
    pub fn exact(&self) -> String {
        use fmt::Write as _;
        let mut text = self.to_string();
        // Writing to a String cannot fail.
        for (name, size) in [
            ("maxBlobSize", self.max_blob_size),
            ("maxPushSize", self.max_push_size),
        ] {
            if let Some(size) = size {
                let _ = writeln!(text, "{name} in bytes: {}", size.0);
            }
        }
        for key in self.signers.iter().flat_map(|s| s.keys()) {
            let _ = writeln!(
                text,
                "signer: {} {} {}",
                key.algorithm,
                key.blob,
                key.principals.join(",")
            );
        }
        text
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, "allowedRepos", &self.repos, "no repository is reachable")?;
        write_list(
            f,
            "allowedRefs",
            &self.refs,
            "read-only: every push is denied",
        )?;
        writeln!(f, "allowDeletes: {}", self.allow_deletes)?;
        match self.force_push {
            ForcePush::Allow => writeln!(f, "forcePush: allow")?,
            ForcePush::Deny => writeln!(
                f,
                "forcePush: deny (only fast-forwards; pushes that update a ref have their pack read)"
            )?,
        }
        if !self.force_push_refs.is_empty() {
            write_list(f, "forcePushAllowedRefs", &self.force_push_refs, "")?;
        }
        let limit = |size: Option<ByteSize>| size.map_or("none".to_owned(), |s| s.to_string());
        writeln!(f, "maxBlobSize: {}", limit(self.max_blob_size))?;
        writeln!(f, "maxPushSize: {}", limit(self.max_push_size))?;
        if !self.protected_paths.is_empty() {
            write_list(f, "protectedPaths", &self.protected_paths, "")?;
        }
        if let Some(signers) = &self.signers {
            writeln!(
                f,
                "requireSignedCommits: {} SSH key(s){}",
                signers.keys().len(),
                if signers.matches_committer() {
                    ", committer email must be a principal of the key"
                } else {
                    ""
                }
            )?;
        }
        match &self.api {
            None => writeln!(f, "api: denied (no policy.api)")?,
            Some(ops) => write_list(f, "api", ops, "denied (empty)")?,
        }
        writeln!(f, "mode: {}", self.mode.as_str())?;
        write_list(f, "allowHosts", &self.hosts, "no other host is reachable")?;
        write_list(
            f,
            "intercepted GitHub hosts (port 443)",
            &self.github_hosts,
            "none",
        )
    }
}

fn write_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    items: &[T],
    if_empty: &str,
) -> fmt::Result {
    if items.is_empty() {
        return writeln!(f, "{name}: none ({if_empty})");
    }
    writeln!(f, "{name}:")?;
    items.iter().try_for_each(|item| writeln!(f, "  - {item}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["github.com".to_owned(), "api.github.com".to_owned()]
    }

    /// What the summary rounds or only counts still tells policies apart exactly.
    #[test]
    fn the_exact_text_tells_apart_what_the_summary_rounds_or_counts() {
        let exact = |extra: &str| {
            Policy::from_yaml(&format!("{{allowedRepos: [a/b]{extra}}}"), &hosts())
                .unwrap()
                .exact()
        };
        let key = |blob: &str| format!(", requireSignedCommits: {{keys: ['ssh-ed25519 {blob}']}}");
        let one = key("AAAAC3NzaC1lZDI1NTE5AAAAIFVpK3wFtUrWpJcUuGbcl4XlBPbmA1ZqQ2Vn7nTlW5xc");
        let two = key("AAAAC3NzaC1lZDI1NTE5AAAAIGUYnYfttuL+s4v2mESBs/1jvlK0/9G9+OQxa0ybH+r8");
        for (a, b) in [
            (", maxBlobSize: 50000000", ", maxBlobSize: 50001000"),
            (one.as_str(), two.as_str()),
        ] {
            let policy = |extra| {
                Policy::from_yaml(&format!("{{allowedRepos: [a/b]{extra}}}"), &hosts()).unwrap()
            };
            assert_eq!(
                policy(a).to_string(),
                policy(b).to_string(),
                "the summaries agree"
            );
            assert_ne!(exact(a), exact(b), "{a} / {b}");
        }
    }

    #[test]
    fn is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Policy>();
    }

    #[test]
    fn renders_lists() {
        let repos: Vec<RepoPattern> = ["acme/app", "acme/lib-*"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(render_list(&repos), "[acme/app, acme/lib-*]");
        assert_eq!(render_list::<RepoPattern>(&[]), "[]");
        let many: Vec<RepoPattern> = (0..100)
            .map(|i| format!("acme/repository-{i:03}").parse().unwrap())
            .collect();
        let list = render_list(&many);
        assert!(list.ends_with(", …]"), "{list}");
        assert!(list.len() <= MAX_LIST_LEN + ", …]".len(), "{}", list.len());
        assert!(list.starts_with("[acme/repository-000, acme/repository-001, "));
        let huge: Vec<String> = vec!["x".repeat(500)];
        assert_eq!(render_list(&huge), "[…]");
    }

    #[test]
    fn compile_errors() {
        for (yaml, github, want) in [
            (
                "allowHosts: [github.com]",
                hosts(),
                "allowHosts entry \"github.com\" names the GitHub host github.com",
            ),
            (
                "allowHosts: ['API.github.com:22']",
                hosts(),
                "names the GitHub host api.github.com",
            ),
            (
                "{}",
                vec!["github.com:443".to_owned()],
                "invalid GitHub host \"github.com:443\"",
            ),
            (
                "allowedRepos: [acme]",
                hosts(),
                "invalid policy: allowedRepos[0]: invalid repo pattern \"acme\"",
            ),
            ("allowedRepos: [acme]", hosts(), "line 1 column 16"),
            ("nope: 1", hosts(), "unknown field `nope`"),
        ] {
            let err = Policy::from_yaml(yaml, &github).expect_err(yaml);
            let msg = err.to_string();
            assert!(msg.contains(want), "{yaml}: {msg}");
        }
        // A wildcard may cover GitHub subdomains that are not intercepted.
        assert!(Policy::from_yaml("allowHosts: ['*.github.com']", &hosts()).is_ok());
        // Errors found after parsing name the key, for the config to locate.
        let err = Policy::from_yaml("allowHosts: [pypi.org, github.com]", &hosts()).unwrap_err();
        assert_eq!(err.key().as_deref(), Some("allowHosts[1]"));
        let err = Policy::from_yaml("allowedRepos: [acme]", &hosts()).unwrap_err();
        assert_eq!(err.key(), None);
    }

    #[test]
    fn summary() {
        let policy = Policy::from_yaml(
            "allowedRepos: [acme/app, 'acme/lib-*']\nallowHosts: [crates.io]\n",
            &hosts(),
        )
        .unwrap();
        assert_eq!(
            policy.to_string(),
            "allowedRepos:\n  - acme/app\n  - acme/lib-*\n\
             allowedRefs: none (read-only: every push is denied)\n\
             allowDeletes: false\n\
             forcePush: deny (only fast-forwards; pushes that update a ref have their pack read)\n\
             maxBlobSize: none\n\
             maxPushSize: none\n\
             api: denied (no policy.api)\n\
             mode: enforce\n\
             allowHosts:\n  - crates.io\n\
             intercepted GitHub hosts (port 443):\n  - github.com\n  - api.github.com\n"
        );
        let policy = Policy::from_yaml(
            "forcePush: allow\nforcePushAllowedRefs: ['agent/*']\nmaxBlobSize: 50MB\nmaxPushSize: 2GiB\n",
            &hosts(),
        )
        .unwrap();
        let text = policy.to_string();
        assert!(
            text.contains("forcePush: allow\nforcePushAllowedRefs:\n  - agent/*\nmaxBlobSize: 50.0 MB\nmaxPushSize: 2.15 GB\n"),
            "{text}"
        );
    }
}
