//! The fixed catalogue of GitHub API operations `policy.api` can allow, and the token
//! permissions each needs.

use std::fmt;

use serde::Deserialize;

use crate::decision::Decision;
use crate::policy::Policy;
use crate::token_scope::Access;

/// One catalogued operation, named in `policy.api` as its [`Operation::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Operation {
    /// `GET`/`HEAD` on `/repos/{allowed repo}/…`, and GraphQL queries of allowed repositories.
    #[serde(rename = "read")]
    Read,
    /// Open pull requests (`POST …/pulls`, GraphQL `createPullRequest`).
    #[serde(rename = "pulls.create")]
    PullsCreate,
    /// Comment on and review pull requests.
    #[serde(rename = "pulls.comment")]
    PullsComment,
    /// Edit, close and reopen pull requests, and request reviewers.
    #[serde(rename = "pulls.update")]
    PullsUpdate,
    /// Merge pull requests whose base ref `allowedRefs` allows.
    #[serde(rename = "pulls.merge")]
    PullsMerge,
    /// Open, edit, label and comment on issues.
    #[serde(rename = "issues.write")]
    IssuesWrite,
    /// Read GitHub Actions runs, jobs, logs and artifacts.
    #[serde(rename = "actions.read")]
    ActionsRead,
    /// Read check runs, check suites and commit statuses.
    #[serde(rename = "checks.read")]
    ChecksRead,
    /// Change refs and files through the API (git refs, contents, merges, branch renames,
    /// releases), each target ref checked like a push.
    #[serde(rename = "contents.write")]
    ContentsWrite,
    /// `GET /user`, `/rate_limit`, `/meta`: endpoints without a repository.
    #[serde(rename = "user.read")]
    UserRead,
    /// `GET /search/…`: results are limited to what the token reaches.
    #[serde(rename = "search.read")]
    SearchRead,
}

impl Operation {
    /// Every operation, in catalogue order.
    pub const ALL: [Operation; 11] = [
        Operation::Read,
        Operation::PullsCreate,
        Operation::PullsComment,
        Operation::PullsUpdate,
        Operation::PullsMerge,
        Operation::IssuesWrite,
        Operation::ActionsRead,
        Operation::ChecksRead,
        Operation::ContentsWrite,
        Operation::UserRead,
        Operation::SearchRead,
    ];

    /// The name used in `policy.api`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::PullsCreate => "pulls.create",
            Operation::PullsComment => "pulls.comment",
            Operation::PullsUpdate => "pulls.update",
            Operation::PullsMerge => "pulls.merge",
            Operation::IssuesWrite => "issues.write",
            Operation::ActionsRead => "actions.read",
            Operation::ChecksRead => "checks.read",
            Operation::ContentsWrite => "contents.write",
            Operation::UserRead => "user.read",
            Operation::SearchRead => "search.read",
        }
    }

    /// The installation token permissions the operation needs, beyond `metadata: read`.
    /// `contents: write` is only granted when `allowedRefs` is not empty (see
    /// [`Policy::token_scope`](crate::Policy::token_scope)).
    pub fn permissions(self) -> &'static [(&'static str, Access)] {
        use Access::{Read, Write};
        match self {
            Operation::Read => &[
                ("contents", Read),
                ("issues", Read),
                ("pull_requests", Read),
            ],
            Operation::PullsCreate | Operation::PullsComment | Operation::PullsUpdate => {
                &[("pull_requests", Write)]
            }
            Operation::PullsMerge => &[("contents", Write), ("pull_requests", Write)],
            Operation::IssuesWrite => &[("issues", Write)],
            Operation::ActionsRead => &[("actions", Read)],
            Operation::ChecksRead => &[("checks", Read), ("statuses", Read)],
            Operation::ContentsWrite => &[("contents", Write)],
            Operation::UserRead | Operation::SearchRead => &[],
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Policy {
    /// Whether `policy.api` allows one of `operations` (the ones that cover `what`, e.g.
    /// `POST /repos/acme/app/pulls`).
    pub fn decide_operation(&self, operations: &[Operation], what: &str) -> Decision {
        let Some(allowed) = &self.api else {
            return Decision::deny(
                "api",
                format!(
                    "{what} denied: the GitHub API is not enabled for this sandbox (policy.api is absent; only git over HTTPS is)"
                ),
            );
        };
        if let Some(op) = operations.iter().find(|op| allowed.contains(op)) {
            return Decision::allow(
                format!("api[{op}]"),
                format!("{what} is allowed by policy.api {op}"),
            );
        }
        let needed: Vec<&str> = operations.iter().map(|op| op.name()).collect();
        let have: Vec<&str> = allowed.iter().map(|op| op.name()).collect();
        Decision::deny(
            "api",
            format!(
                "{what} needs {} in policy.api, which allows [{}]",
                needed.join(" or "),
                have.join(", ")
            ),
        )
    }

    /// The permissions `policy.api` adds to the token scope.
    pub(crate) fn api_permissions(&self) -> impl Iterator<Item = (&'static str, Access)> + '_ {
        let writable = !self.refs.is_empty();
        self.api
            .iter()
            .flatten()
            .flat_map(|op| op.permissions().iter().copied())
            .map(move |(name, access)| match (name, access) {
                ("contents", Access::Write) if !writable => (name, Access::Read),
                other => other,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_yaml() {
        for op in Operation::ALL {
            let parsed: Operation = serde_yaml::from_str(op.name()).unwrap();
            assert_eq!(parsed, op);
            assert_eq!(op.to_string(), op.name());
        }
        let err = serde_yaml::from_str::<Operation>("pulls.delete")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `pulls.delete`"), "{err}");
        assert!(err.contains("pulls.create"), "{err}");
    }

    #[test]
    fn operations_are_decided_against_policy_api() {
        let hosts = ["github.com".to_owned()];
        let absent = Policy::from_yaml("{allowedRepos: [acme/app]}", &hosts).unwrap();
        let d = absent.decide_operation(&[Operation::Read], "GET /user");
        assert!(!d.allowed);
        assert!(d.reason.contains("policy.api is absent"), "{}", d.reason);
        let p = Policy::from_yaml(
            "{allowedRepos: [acme/app], api: [read, pulls.create, read]}",
            &hosts,
        )
        .unwrap();
        let d = p.decide_operation(&[Operation::IssuesWrite, Operation::PullsComment], "POST x");
        assert_eq!(
            (d.allowed, d.reason.as_str()),
            (
                false,
                "POST x needs issues.write or pulls.comment in policy.api, which allows [read, pulls.create]"
            )
        );
        let d = p.decide_operation(&[Operation::Read, Operation::ActionsRead], "GET y");
        assert_eq!((d.allowed, d.rule.as_str()), (true, "api[read]"));
    }
}
