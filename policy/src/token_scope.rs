//! The narrowest GitHub App installation token that serves an owner's allowed repositories.

use std::collections::BTreeMap;

use crate::policy::Policy;
use crate::repo::{RepoPath, is_owner};

/// A permission level of an installation token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// `read`.
    Read,
    /// `write`.
    Write,
}

impl Access {
    /// The value GitHub expects (`read`, `write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// What to request in `POST /app/installations/{id}/access_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenScope {
    /// Lowercase repository names without owner, sorted and deduplicated; `None` means the
    /// whole installation. Never `Some` of an empty list (GitHub reads `[]` as "all").
    pub repositories: Option<Vec<String>>,
    /// Permission name and level, sorted by name.
    pub permissions: Vec<(String, Access)>,
}

impl TokenScope {
    /// The same permissions on `name` alone, when this scope lists other repositories
    /// besides it: what to ask for when GitHub refuses the whole list (one of them was
    /// deleted, renamed, or is not in the installation).
    pub fn narrowed_to(&self, name: &str) -> Option<TokenScope> {
        let name = name.to_ascii_lowercase();
        let repositories = self.repositories.as_ref()?;
        (repositories.len() > 1 && repositories.contains(&name)).then(|| TokenScope {
            repositories: Some(vec![name]),
            permissions: self.permissions.clone(),
        })
    }
}

impl Policy {
    /// The token scope for `owner`: `None` if no `allowedRepos` pattern can match the owner.
    /// Repositories are the literal names of the matching patterns, or the whole
    /// installation if any matching pattern has a glob repo part. `contents` is `write` when
    /// `allowedRefs` is not empty, else `read`; `metadata` is always `read`. This is the
    /// scope of git requests; see [`Policy::api_token_scope`] for API calls.
    pub fn token_scope(&self, owner: &str) -> Option<TokenScope> {
        self.scope(owner, false)
    }

    /// The token scope for GitHub API calls on `owner`'s repositories: the
    /// [`Policy::token_scope`] plus the permissions of each operation in `policy.api`
    /// (`contents: write` only with `allowedRefs`). Git requests never carry these.
    pub fn api_token_scope(&self, owner: &str) -> Option<TokenScope> {
        self.scope(owner, true)
    }

    /// Every scope a token for `owner` may be minted for (git, and the API's when it
    /// differs), for `gitgate doctor` and for dropping tokens a reload made unused.
    pub fn token_scopes(&self, owner: &str) -> Vec<TokenScope> {
        let mut scopes: Vec<TokenScope> = [self.token_scope(owner), self.api_token_scope(owner)]
            .into_iter()
            .flatten()
            .collect();
        scopes.dedup();
        scopes
    }

    fn scope(&self, owner: &str, api: bool) -> Option<TokenScope> {
        let owner = owner.to_ascii_lowercase();
        if !is_owner(&owner) {
            return None;
        }
        let mut matching = self
            .repos
            .iter()
            .filter(|p| p.matches_owner(&owner))
            .peekable();
        matching.peek()?;
        let repositories = matching
            .map(|p| p.literal_name().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .map(|mut names| {
                names.sort();
                names.dedup();
                names
            });
        let contents = if self.refs.is_empty() {
            Access::Read
        } else {
            Access::Write
        };
        let mut permissions: BTreeMap<&str, Access> =
            [("contents", contents), ("metadata", Access::Read)].into();
        if api {
            for (name, access) in self.api_permissions() {
                let level = permissions.entry(name).or_insert(access);
                *level = (*level).max(access);
            }
        }
        Some(TokenScope {
            repositories,
            permissions: permissions
                .into_iter()
                .map(|(name, access)| (name.to_owned(), access))
                .collect(),
        })
    }

    /// Whether an `allowedRepos` pattern names `owner` itself, not through a wildcard:
    /// the operator chose it (a sandbox cannot make up more of them).
    pub fn names_owner(&self, owner: &str) -> bool {
        self.repos.iter().any(|pattern| {
            pattern
                .literal_owner()
                .is_some_and(|named| named.eq_ignore_ascii_case(owner))
        })
    }

    /// The accounts `allowedRepos` names literally, each with one repository of it to
    /// look its installation up by (a literal one when the policy has it), for
    /// `gitgate doctor`. Accounts matched only by owner globs cannot be listed.
    pub fn named_repos(&self) -> Vec<RepoPath> {
        let mut owners: Vec<(&str, Option<&str>)> = Vec::new();
        for pattern in &self.repos {
            let Some(owner) = pattern.literal_owner() else {
                continue;
            };
            match owners.iter_mut().find(|(o, _)| *o == owner) {
                Some((_, repo)) => *repo = repo.or(pattern.literal_name()),
                None => owners.push((owner, pattern.literal_name())),
            }
        }
        owners
            .into_iter()
            .filter_map(|(owner, repo)| RepoPath::from_parts(owner, repo.unwrap_or(owner)).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_named_without_a_wildcard_are_told_apart() {
        let policy = Policy::from_yaml(
            "{allowedRepos: ['*/tools', 'acme/*', Beta/app, 'gamma-*/x']}",
            &["github.com".to_owned()],
        )
        .unwrap();
        assert!(policy.names_owner("acme") && policy.names_owner("beta"));
        assert!(!policy.names_owner("zeta") && !policy.names_owner("gamma-1"));
    }

    fn scope(yaml: &str, owner: &str) -> Option<TokenScope> {
        Policy::from_yaml(yaml, &["github.com".to_owned()])
            .unwrap()
            .token_scope(owner)
    }

    #[test]
    fn a_scope_narrows_to_one_of_its_repositories_only() {
        let listed = scope(
            "{allowedRepos: [acme/app, acme/gone], allowedRefs: [main]}",
            "acme",
        )
        .unwrap();
        let narrow = listed.narrowed_to("App").unwrap();
        assert_eq!(narrow.repositories, Some(vec!["app".to_owned()]));
        assert_eq!(narrow.permissions, listed.permissions);
        // Not to a repository it does not list, nor when there is nothing to leave out.
        assert_eq!(listed.narrowed_to("other"), None);
        assert_eq!(narrow.narrowed_to("app"), None);
        let all = scope("{allowedRepos: [\"acme/*\"]}", "acme").unwrap();
        assert_eq!(all.narrowed_to("app"), None);
    }

    #[test]
    fn named_repos_lists_each_literal_owner_once_preferring_a_literal_repo() {
        let policy = Policy::from_yaml(
            "allowedRepos: [\"acme/lib-*\", acme/app, acme/other, \"bob/*\", \"*/tools\"]",
            &["github.com".to_owned()],
        )
        .unwrap();
        let repos: Vec<String> = policy
            .named_repos()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(repos, ["acme/app", "bob/bob"]);
    }

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn repositories() {
        for (yaml, owner, want) in [
            ("allowedRepos: [acme/app]", "acme", Some(names(&["app"]))),
            ("allowedRepos: [acme/app]", "ACME", Some(names(&["app"]))),
            (
                "allowedRepos: [Acme/Web, acme/app, acme/app.git, other/x]",
                "acme",
                Some(names(&["app", "web"])),
            ),
            ("allowedRepos: [acme/app, 'acme/*']", "acme", Some(None)),
            ("allowedRepos: [acme/app, 'acme/lib-*']", "acme", Some(None)),
            ("allowedRepos: ['*/*']", "anyone", Some(None)),
            (
                "allowedRepos: ['acme-*/app', acme-eu/web]",
                "acme-eu",
                Some(names(&["app", "web"])),
            ),
            ("allowedRepos: [acme/app]", "other", None),
            ("allowedRepos: ['*/*']", "not an owner", None),
            ("allowedRepos: []", "acme", None),
        ] {
            let got = scope(yaml, owner).map(|s| s.repositories);
            assert_eq!(got, want, "{yaml} / {owner}");
        }
    }

    #[test]
    fn permissions() {
        for (yaml, contents) in [
            ("allowedRepos: [acme/app]", Access::Read),
            (
                "allowedRepos: [acme/app]\nallowedRefs: [main]",
                Access::Write,
            ),
        ] {
            let got = scope(yaml, "acme").unwrap().permissions;
            assert_eq!(
                got,
                vec![
                    ("contents".to_owned(), contents),
                    ("metadata".to_owned(), Access::Read)
                ]
            );
        }
        assert_eq!(
            (Access::Read.as_str(), Access::Write.as_str()),
            ("read", "write")
        );
    }

    #[test]
    fn api_operations_grow_the_api_scope_by_exactly_their_permissions() {
        let policy = |yaml: &str| Policy::from_yaml(yaml, &["github.com".to_owned()]).unwrap();
        let perms = |yaml: &str| -> Vec<(String, &str)> {
            policy(yaml)
                .api_token_scope("acme")
                .unwrap()
                .permissions
                .into_iter()
                .map(|(n, a)| (n, a.as_str()))
                .collect()
        };
        let own = |list: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
            list.iter().map(|(n, a)| (n.to_string(), *a)).collect()
        };
        assert_eq!(
            perms(
                "{allowedRepos: [acme/app], allowedRefs: [main], api: [read, pulls.create, checks.read]}"
            ),
            own(&[
                ("checks", "read"),
                ("contents", "write"),
                ("issues", "read"),
                ("metadata", "read"),
                ("pull_requests", "write"),
                ("statuses", "read"),
            ])
        );
        // Without allowedRefs no API call may change a ref: contents stays read.
        assert_eq!(
            perms("{allowedRepos: [acme/app], api: [contents.write, pulls.merge]}"),
            own(&[
                ("contents", "read"),
                ("metadata", "read"),
                ("pull_requests", "write")
            ])
        );
        assert_eq!(
            perms("{allowedRepos: [acme/app], api: []}"),
            own(&[("contents", "read"), ("metadata", "read")])
        );
        // Git requests keep the narrow scope; the API's is a second one.
        let p = policy("{allowedRepos: [acme/app], allowedRefs: [main], api: [pulls.create]}");
        let git = p.token_scope("acme").unwrap();
        assert_eq!(git.permissions.len(), 2);
        assert_eq!(
            p.token_scopes("acme"),
            [git.clone(), p.api_token_scope("acme").unwrap()]
        );
        let p = policy("{allowedRepos: [acme/app], api: [user.read]}");
        assert_eq!(p.token_scopes("acme"), [p.token_scope("acme").unwrap()]);
        assert!(p.token_scopes("other").is_empty());
    }
}
