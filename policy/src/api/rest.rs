//! REST request classification: which catalogued operations a method and path belong to,
//! the repository they name (canonicalised as for git paths), and the refs they may change.

use crate::api::catalogue::Operation;
use crate::api::change::{Effect, is_plain_path};
use crate::repo::RepoPath;

/// The operations of calls that change a repository's refs or objects.
const CONTENTS_WRITE: &[Operation] = &[Operation::ContentsWrite];
/// Longest path accepted.
const MAX_PATH_LEN: usize = 4096;

/// A classified REST call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestCall {
    /// The repository of `/repos/{owner}/{repo}/…`, canonical.
    pub repo: Option<RepoPath>,
    /// The call is allowed if any of these operations is.
    pub operations: &'static [Operation],
    /// What the call does to refs, to be checked like a push.
    pub effect: Effect,
    /// The path to send upstream: the repository canonical, the rest as received.
    pub target: String,
}

impl RestCall {
    /// Whether the call writes to its repository as a push does (contents, or a merge):
    /// decided like a push before its body is read. A call that otherwise moves a ref
    /// (a pull request's base) is decided like a push once its body shows it does.
    pub fn writes_contents(&self) -> bool {
        self.operations
            .iter()
            .any(|op| matches!(op, Operation::ContentsWrite | Operation::PullsMerge))
    }
}

/// Classifies `method path` (the path after any GHES `/api/v3` prefix, without the query).
/// `Err` says why the call is not in the catalogue or is malformed.
pub fn classify(method: &str, path: &str) -> Result<RestCall, String> {
    if path.len() > MAX_PATH_LEN {
        return Err(format!("the path is longer than {MAX_PATH_LEN} bytes"));
    }
    if let Some(bad) = path.bytes().find(|b| !b.is_ascii_graphic() || *b == b'\\') {
        return Err(format!(
            "the path contains the byte 0x{bad:02x}, which gitgate does not forward"
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("the path does not start with /".into());
    };
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(format!(
            "{path} has an empty, . or .. segment; gitgate forwards only canonical paths"
        ));
    }
    // GitHub may decode the path before routing it: what it would see must be canonical
    // too.
    if !segments.is_empty() && decode_path(&segments).is_none() {
        return Err(format!(
            "{path} decodes to a path with an empty, . or .. segment, a \\ or a control character, or has a malformed %-escape; gitgate forwards only canonical paths"
        ));
    }
    let read = matches!(method, "GET" | "HEAD");
    match segments.as_slice() {
        ["repos", owner, name, tail @ ..] => {
            let repo = RepoPath::from_parts(owner, name).map_err(|e| e.to_string())?;
            let (operations, effect) = repo_route(method, read, tail)
                .ok_or_else(|| not_catalogued(method, &format!("/repos/{repo}"), tail))?;
            let mut target = format!("/repos/{}/{}", repo.owner(), repo.name());
            for segment in tail {
                target.push('/');
                target.push_str(segment);
            }
            Ok(RestCall {
                repo: Some(repo),
                operations,
                effect,
                target,
            })
        }
        _ => {
            let operations = global_route(read, &segments)
                .ok_or_else(|| not_catalogued(method, "", &segments))?;
            Ok(RestCall {
                repo: None,
                operations,
                effect: Effect::None,
                target: path.to_owned(),
            })
        }
    }
}

fn not_catalogued(method: &str, prefix: &str, tail: &[&str]) -> String {
    let mut path = prefix.to_owned();
    for segment in tail {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    format!("{method} {path} is not an operation in gitgate's API catalogue")
}

/// Endpoints without a repository.
fn global_route(read: bool, segments: &[&str]) -> Option<&'static [Operation]> {
    if !read {
        return None;
    }
    match segments {
        [] | ["user"] | ["rate_limit"] | ["meta"] => Some(&[Operation::UserRead]),
        ["search", _] => Some(&[Operation::SearchRead]),
        _ => None,
    }
}

/// Endpoints below `/repos/{owner}/{repo}`.
fn repo_route(method: &str, read: bool, tail: &[&str]) -> Option<(&'static [Operation], Effect)> {
    use Operation as Op;
    if read {
        let operations: &'static [Operation] = match tail {
            ["actions", ..] => &[Op::Read, Op::ActionsRead],
            ["check-runs", ..] | ["check-suites", ..] | ["statuses", ..] => {
                &[Op::Read, Op::ChecksRead]
            }
            [
                "commits",
                _,
                "check-runs" | "check-suites" | "status" | "statuses",
            ] => &[Op::Read, Op::ChecksRead],
            _ => &[Op::Read],
        };
        return Some((operations, Effect::None));
    }
    let none = |ops: &'static [Operation]| Some((ops, Effect::None));
    match (method, tail) {
        ("POST", ["pulls"]) => Some((&[Op::PullsCreate], Effect::PullCreate)),
        ("PATCH", ["pulls", n]) if is_number(n) => Some((&[Op::PullsUpdate], Effect::PullEdit)),
        ("POST" | "DELETE", ["pulls", n, "requested_reviewers"]) if is_number(n) => {
            none(&[Op::PullsUpdate])
        }
        ("POST", ["pulls", n, "comments" | "reviews"]) if is_number(n) => none(&[Op::PullsComment]),
        ("POST", ["pulls", n, "comments", c, "replies"]) if is_number(n) && is_number(c) => {
            none(&[Op::PullsComment])
        }
        ("POST", ["pulls", n, "reviews", r, "events"]) if is_number(n) && is_number(r) => {
            none(&[Op::PullsComment])
        }
        ("PATCH" | "DELETE", ["pulls", "comments", c]) if is_number(c) => none(&[Op::PullsComment]),
        ("PUT", ["pulls", n, "merge"]) => {
            number(n).map(|n| (&[Op::PullsMerge][..], Effect::PullMerge(n)))
        }
        ("PUT", ["pulls", n, "update-branch"]) => {
            number(n).map(|n| (&[Op::PullsUpdate][..], Effect::PullUpdateBranch(n)))
        }
        // Comments on an issue or a pull request's conversation.
        ("POST", ["issues", n, "comments"]) if is_number(n) => {
            none(&[Op::IssuesWrite, Op::PullsComment])
        }
        ("PATCH" | "DELETE", ["issues", "comments", c]) if is_number(c) => {
            none(&[Op::IssuesWrite, Op::PullsComment])
        }
        ("POST", ["issues"]) => none(&[Op::IssuesWrite]),
        ("PATCH", ["issues", n]) if is_number(n) => none(&[Op::IssuesWrite]),
        ("POST" | "PUT" | "DELETE", ["issues", n, "labels" | "assignees", ..]) if is_number(n) => {
            none(&[Op::IssuesWrite])
        }
        (
            "POST" | "DELETE",
            ["issues", n, "reactions", ..] | ["issues", "comments", n, "reactions", ..],
        ) if is_number(n) => none(&[Op::IssuesWrite, Op::PullsComment]),
        ("POST", ["git", "blobs"]) => Some((CONTENTS_WRITE, Effect::Blob)),
        ("POST", ["git", "trees"]) => Some((CONTENTS_WRITE, Effect::Tree)),
        ("POST", ["git", "commits" | "tags"]) => Some((CONTENTS_WRITE, Effect::Objects)),
        ("POST", ["git", "refs"]) => Some((CONTENTS_WRITE, Effect::CreateRef)),
        ("PATCH", ["git", "refs", name @ ..]) if !name.is_empty() => {
            Some((CONTENTS_WRITE, Effect::UpdateRef(ref_from_path(name)?)))
        }
        ("DELETE", ["git", "refs", name @ ..]) if !name.is_empty() => {
            Some((CONTENTS_WRITE, Effect::DeleteRef(ref_from_path(name)?)))
        }
        ("PUT" | "DELETE", ["contents", path @ ..]) if !path.is_empty() => Some((
            CONTENTS_WRITE,
            Effect::Contents {
                path: decode_path(path)?,
                delete: method == "DELETE",
            },
        )),
        ("POST", ["merges"]) => Some((CONTENTS_WRITE, Effect::Merge)),
        ("POST", ["merge-upstream"]) => Some((CONTENTS_WRITE, Effect::MergeUpstream)),
        ("POST", ["branches", branch, "rename"]) => Some((
            CONTENTS_WRITE,
            Effect::Rename(format!("refs/heads/{}", decode_path(&[branch])?)),
        )),
        ("POST", ["releases"]) => Some((CONTENTS_WRITE, Effect::Release(None))),
        ("PATCH", ["releases", id]) => {
            number(id).map(|id| (CONTENTS_WRITE, Effect::Release(Some(id))))
        }
        _ => None,
    }
}

fn is_number(s: &str) -> bool {
    number(s).is_some()
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `heads/main` (segments after `git/refs/`) as `refs/heads/main`.
fn ref_from_path(segments: &[&str]) -> Option<String> {
    let decoded = decode_path(segments)?;
    Some(format!("refs/{decoded}"))
}

/// The segments percent-decoded and joined with `/`; `None` if any is malformed or the
/// result has an empty, `.` or `..` component, a `\\` or a control character (each would
/// let the path mean something else upstream than here). An encoded `/` (`%2F`, as
/// clients send branch names) is one more separator.
fn decode_path(segments: &[&str]) -> Option<String> {
    let parts = segments
        .iter()
        .map(|s| percent_decode(s))
        .collect::<Option<Vec<String>>>()?;
    let path = parts.join("/");
    is_plain_path(&path).then_some(path)
}

/// Percent-decodes one segment; `None` if it is malformed or not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation as Op;

    fn ok(method: &str, path: &str) -> RestCall {
        classify(method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    #[test]
    fn catalogue_table() {
        for (method, path, operations, effect) in [
            ("GET", "/repos/Acme/App.git", &[Op::Read][..], Effect::None),
            ("GET", "/repos/acme/app/pulls/3", &[Op::Read], Effect::None),
            ("HEAD", "/repos/acme/app", &[Op::Read], Effect::None),
            (
                "GET",
                "/repos/acme/app/actions/runs",
                &[Op::Read, Op::ActionsRead],
                Effect::None,
            ),
            (
                "GET",
                "/repos/acme/app/commits/main/check-runs",
                &[Op::Read, Op::ChecksRead],
                Effect::None,
            ),
            (
                "POST",
                "/repos/acme/app/pulls",
                &[Op::PullsCreate],
                Effect::PullCreate,
            ),
            (
                "POST",
                "/repos/acme/app/pulls/3/reviews",
                &[Op::PullsComment],
                Effect::None,
            ),
            (
                "POST",
                "/repos/acme/app/issues/3/comments",
                &[Op::IssuesWrite, Op::PullsComment],
                Effect::None,
            ),
            (
                "POST",
                "/repos/acme/app/issues",
                &[Op::IssuesWrite],
                Effect::None,
            ),
            (
                "PUT",
                "/repos/acme/app/pulls/3/merge",
                &[Op::PullsMerge],
                Effect::PullMerge(3),
            ),
            (
                "PATCH",
                "/repos/acme/app/pulls/3",
                &[Op::PullsUpdate],
                Effect::PullEdit,
            ),
            (
                "PUT",
                "/repos/acme/app/pulls/3/update-branch",
                &[Op::PullsUpdate],
                Effect::PullUpdateBranch(3),
            ),
            (
                "POST",
                "/repos/acme/app/git/refs",
                &[Op::ContentsWrite],
                Effect::CreateRef,
            ),
            (
                "POST",
                "/repos/acme/app/git/commits",
                &[Op::ContentsWrite],
                Effect::Objects,
            ),
            (
                "POST",
                "/repos/acme/app/git/blobs",
                &[Op::ContentsWrite],
                Effect::Blob,
            ),
            (
                "POST",
                "/repos/acme/app/git/trees",
                &[Op::ContentsWrite],
                Effect::Tree,
            ),
            (
                "PATCH",
                "/repos/acme/app/git/refs/heads/feature/x",
                &[Op::ContentsWrite],
                Effect::UpdateRef("refs/heads/feature/x".into()),
            ),
            (
                "DELETE",
                "/repos/acme/app/git/refs/tags/v1",
                &[Op::ContentsWrite],
                Effect::DeleteRef("refs/tags/v1".into()),
            ),
            (
                "PUT",
                "/repos/acme/app/contents/docs/a%20b.md",
                &[Op::ContentsWrite],
                Effect::Contents {
                    path: "docs/a b.md".into(),
                    delete: false,
                },
            ),
            (
                "DELETE",
                "/repos/acme/app/contents/x",
                &[Op::ContentsWrite],
                Effect::Contents {
                    path: "x".into(),
                    delete: true,
                },
            ),
            (
                "POST",
                "/repos/acme/app/merges",
                &[Op::ContentsWrite],
                Effect::Merge,
            ),
            (
                "POST",
                "/repos/acme/app/branches/old/rename",
                &[Op::ContentsWrite],
                Effect::Rename("refs/heads/old".into()),
            ),
            (
                "POST",
                "/repos/acme/app/branches/agent%2Fx/rename",
                &[Op::ContentsWrite],
                Effect::Rename("refs/heads/agent/x".into()),
            ),
            (
                "PATCH",
                "/repos/acme/app/git/refs/heads%2Fmain",
                &[Op::ContentsWrite],
                Effect::UpdateRef("refs/heads/main".into()),
            ),
            (
                "POST",
                "/repos/acme/app/releases",
                &[Op::ContentsWrite],
                Effect::Release(None),
            ),
            ("GET", "/user", &[Op::UserRead], Effect::None),
            ("GET", "/search/issues", &[Op::SearchRead], Effect::None),
        ] {
            let call = ok(method, path);
            assert_eq!(call.operations, operations, "{method} {path}");
            assert_eq!(call.effect, effect, "{method} {path}");
        }
        assert_eq!(
            ok("GET", "/repos/Acme/App.git/pulls").target,
            "/repos/acme/app/pulls"
        );
        assert_eq!(
            ok("GET", "/repos/Acme/App.git/pulls")
                .repo
                .unwrap()
                .to_string(),
            "acme/app"
        );
    }

    #[test]
    fn uncatalogued_and_hostile_paths_are_refused() {
        for (method, path, want) in [
            ("PATCH", "/repos/acme/app", "not an operation"),
            ("POST", "/repos/acme/app/forks", "not an operation"),
            ("DELETE", "/repos/acme/app", "not an operation"),
            ("POST", "/repos/acme/app/dispatches", "not an operation"),
            (
                "PATCH",
                "/repos/acme/app/Git/Refs/heads/main",
                "not an operation",
            ),
            ("GET", "/orgs/acme/repos", "not an operation"),
            ("POST", "/user/repos", "not an operation"),
            ("GET", "/repos/acme/app/../secret/pulls", "canonical"),
            ("GET", "/repos/acme//app", "canonical"),
            ("GET", "/repos/acme/app%2Fx/pulls", "invalid"),
            ("GET", "/repos/acme/a\\b", "0x5c"),
            (
                "PATCH",
                "/repos/acme/app/git/refs/heads/a%2F..%2Fb",
                "decodes to a path",
            ),
            (
                "PUT",
                "/repos/acme/app/contents/a%2F%2Fb",
                "decodes to a path",
            ),
            ("PUT", "/repos/acme/app/contents/a%5Cb", "decodes to a path"),
            (
                "PATCH",
                "/repos/acme/app/git/refs/heads/%2e%2e",
                "decodes to a path",
            ),
            ("PUT", "/repos/acme/app/contents/a%ZZ", "decodes to a path"),
        ] {
            let err = classify(method, path).expect_err(path);
            assert!(err.contains(want), "{method} {path}: {err}");
        }
    }

    #[test]
    fn encoded_dots_slashes_and_backslashes_are_refused() {
        for path in [
            "/repos/acme/app/%2e%2e/%2e%2e/repos/acme/secret/contents/x",
            "/repos/acme/app/contents/a%2F..%2Fb",
            "/repos/acme/app/contents/%2E",
            "/repos/acme/app/contents/a%5cb",
            "/repos/acme/app/contents/a%2F%2Fb",
            "/repos/acme/app/contents/a%0a",
            "/repos/acme/app/contents/a%zz",
            "/search/%2e%2e",
        ] {
            let refused = classify("GET", path).unwrap_err();
            assert!(refused.contains("decodes to a path"), "{path}: {refused}");
        }
        // Encoded characters that are not separators stay allowed, as written.
        let call = ok("GET", "/repos/acme/app/contents/my%20file.txt");
        assert_eq!(call.target, "/repos/acme/app/contents/my%20file.txt");
        ok("GET", "/repos/acme/app/branches/feature%2Fx");
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics_and_targets_are_canonical(
            method in "(GET|POST|PUT|PATCH|DELETE)",
            path in "/[a-zA-Z0-9%./_-]{0,80}",
        ) {
            if let Ok(call) = classify(&method, &path) {
                proptest::prop_assert!(!call.target.contains("//"));
                proptest::prop_assert!(!call.target.split('/').any(|s| s == ".."));
                if call.target != "/" {
                    let segments: Vec<&str> = call.target[1..].split('/').collect();
                    proptest::prop_assert!(decode_path(&segments).is_some(), "{}", call.target);
                }
            }
        }
    }
}
