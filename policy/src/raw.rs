//! The `policy:` section as written in the configuration file.

use serde::Deserialize;

use crate::api::Operation;
use crate::byte_size::ByteSize;
use crate::host_pattern::HostPattern;
use crate::path_pattern::PathPattern;
use crate::ref_pattern::RefPattern;
use crate::repo_pattern::RepoPattern;
use crate::signers::RawSigners;

/// The raw `policy:` mapping. Every pattern is validated while it is deserialized, so the
/// YAML library reports the line and column of a bad entry. Compile with
/// [`Policy::compile`](crate::Policy::compile).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    /// Repositories git may fetch from (and push to, see `allowed_refs`).
    pub allowed_repos: Vec<RepoPattern>,
    /// Refs a push may update; empty means read-only.
    pub allowed_refs: Vec<RefPattern>,
    /// Whether a push may delete a ref that matches `allowed_refs`.
    pub allow_deletes: bool,
    /// Non-GitHub hosts the sandbox may reach (tunnelled, not intercepted).
    pub allow_hosts: Vec<HostPattern>,
    /// `enforce` (the default) or `report`.
    pub mode: Mode,
    /// `deny` (the default) or `allow`: whether a push may move a ref to a commit that
    /// does not descend from the ref's current value.
    pub force_push: ForcePush,
    /// Refs where a forced update is allowed even under `forcePush: deny`.
    pub force_push_allowed_refs: Vec<RefPattern>,
    /// The largest object a push may carry.
    pub max_blob_size: Option<ByteSize>,
    /// The largest pack a push may carry.
    pub max_push_size: Option<ByteSize>,
    /// Files a push's new commits may not add, change or delete.
    pub protected_paths: Vec<PathPattern>,
    /// The SSH keys every new commit must be signed with.
    pub require_signed_commits: Option<RawSigners>,
    /// The GitHub API operations allowed, from gitgate's catalogue; absent means the
    /// API is denied.
    pub api: Option<Vec<Operation>>,
}

/// Whether non-fast-forward ref updates are allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForcePush {
    /// Only fast-forwards (and creations, and deletions where `allowDeletes` says so).
    #[default]
    Deny,
    /// Any update of an allowed ref.
    Allow,
}

/// Whether denials bite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denied requests are refused.
    #[default]
    Enforce,
    /// Every decision is computed and logged, but nothing is refused: a way to try a
    /// policy on real traffic before it bites.
    Report,
}

impl Mode {
    /// `enforce` or `report`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_fields() {
        let raw: RawPolicy = serde_yaml::from_str("{}").unwrap();
        assert_eq!(raw, RawPolicy::default());
        let raw: RawPolicy = serde_yaml::from_str(
            "allowedRepos: [acme/app]\nallowedRefs: [main]\nallowDeletes: true\nallowHosts: [crates.io]\n",
        )
        .unwrap();
        assert_eq!(raw.allowed_repos[0].as_str(), "acme/app");
        assert_eq!(raw.allowed_refs[0].as_str(), "main");
        assert!(raw.allow_deletes);
        assert_eq!(raw.allow_hosts[0].as_str(), "crates.io");
        assert_eq!(raw.mode, Mode::Enforce);
        let raw: RawPolicy = serde_yaml::from_str("mode: report").unwrap();
        assert_eq!(raw.mode, Mode::Report);
        assert!(serde_yaml::from_str::<RawPolicy>("mode: audit").is_err());
    }

    #[test]
    fn errors_name_the_place() {
        for (yaml, want) in [
            ("allowedRepo: []", "unknown field `allowedRepo`"),
            ("allowed_repos: []", "unknown field `allowed_repos`"),
            ("allowedRepos:\n  - acme/app\n  - acme\n", "line 3"),
            (
                "allowedRefs: [main, 'a..b']",
                "invalid ref pattern \"a..b\"",
            ),
            ("allowHosts: ['*']", "invalid host pattern \"*\""),
            ("allowDeletes: maybe", "allowDeletes"),
            ("allowedRepos: acme/app", "invalid type"),
        ] {
            let err = serde_yaml::from_str::<RawPolicy>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
