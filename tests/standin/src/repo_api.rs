//! Repository endpoints of `api.github.com` that gitgate reads during a push, each
//! authenticated with an installation token (`Authorization: Bearer` or `token`) that must
//! reach the repository with `contents: read`, as on GitHub, and computed by git in the
//! bare repository:
//!
//! - `GET /repos/{owner}/{repo}/compare/{base}...{head}`: the ancestry `status`
//!   (`identical`, `ahead`, `behind`, `diverged`), `ahead_by` and `behind_by`;
//! - `GET /repos/{owner}/{repo}/git/trees/{sha}`: a tree's entries (`path`, `mode`,
//!   `type`, `sha`);
//! - `GET /repos/{owner}/{repo}/git/commits/{sha}`: a commit's `tree` and `parents`.
//!
//! An unknown object is a 404.

use std::time::SystemTime;

use http::request::Parts;
use http::{Response, StatusCode, header};
use serde_json::json;

use crate::api::{error, json_response};
use crate::server::{RespBody, Shared};
use crate::tokens::{Access, Denied};

/// One of the endpoints.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Repository,
    /// `base...head`, each a commit id or a ref name such as `heads/main`.
    Compare {
        base: &'a str,
        head: &'a str,
    },
    Tree(&'a str),
    Commit(&'a str),
    /// `git/ref/{ref}` (`heads/main`): where a ref points.
    Ref(&'a str),
}

/// The owner, repository and route, if `path` is one.
pub(crate) fn route(path: &str) -> Option<(&str, &str, Route<'_>)> {
    let rest = path.strip_prefix("/repos/")?;
    let (owner, rest) = rest.split_once('/')?;
    let (repo, call) = rest.split_once('/').unwrap_or((rest, ""));
    let route = match call.split_once('/') {
        None if call.is_empty() => Route::Repository,
        Some(("compare", basehead)) => {
            let (base, head) = basehead.split_once("...")?;
            Route::Compare { base, head }
        }
        Some(("git", object)) => match object.split_once('/')? {
            ("trees", sha) if !sha.contains('/') => Route::Tree(sha),
            ("commits", sha) if !sha.contains('/') => Route::Commit(sha),
            ("ref", name) => Route::Ref(name),
            _ => return None,
        },
        _ => return None,
    };
    Some((owner, repo, route))
}

pub(crate) fn handle(
    shared: &Shared,
    parts: &Parts,
    (owner, repo, route): (&str, &str, Route<'_>),
) -> Response<RespBody> {
    let Some(token) = api_token(parts) else {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let (owner, repo) = (owner.to_ascii_lowercase(), repo.to_ascii_lowercase());
    let exists = |o: &str, r: &str| shared.repo_exists(o, r);
    let checked = shared.tokens().check_git(
        &token,
        &owner,
        &repo,
        Access::Read,
        SystemTime::now(),
        &exists,
    );
    match checked {
        Ok(()) => {}
        Err(Denied::Unauthorized) => return error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        Err(Denied::NotFound) => return error(StatusCode::NOT_FOUND, "Not Found"),
        Err(Denied::Forbidden(_)) => {
            return error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            );
        }
    }
    let dir = crate::repos::repo_dir(&shared.repos, &owner, &repo);
    let (base, head) = match route {
        Route::Compare { base, head } => (base, head),
        Route::Repository => {
            return json_response(
                StatusCode::OK,
                json!({"full_name": format!("{owner}/{repo}"), "default_branch": "main"}),
            );
        }
        Route::Tree(sha) => return tree(shared, &dir, sha),
        Route::Commit(sha) => return commit(shared, &dir, sha),
        Route::Ref(name) => {
            let full = format!("refs/{name}");
            return match crate::repos::rev_parse(&shared.home, &dir, &full) {
                Some(sha) => json_response(
                    StatusCode::OK,
                    json!({"ref": full, "object": {"sha": sha, "type": "commit"}}),
                ),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
    };
    let count = |range: &str| crate::repos::count_commits(&shared.home, &dir, range);
    match (
        count(&format!("{base}..{head}")),
        count(&format!("{head}..{base}")),
    ) {
        (Some(ahead), Some(behind)) => {
            let status = match (ahead, behind) {
                (0, 0) => "identical",
                (_, 0) => "ahead",
                (0, _) => "behind",
                _ => "diverged",
            };
            json_response(
                StatusCode::OK,
                json!({"status": status, "ahead_by": ahead, "behind_by": behind, "commits": [], "files": []}),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "No common ancestor between the two commits, or one of them does not exist",
        ),
    }
}

/// `git ls-tree` as GitHub's tree JSON.
fn tree(shared: &Shared, dir: &std::path::Path, sha: &str) -> Response<RespBody> {
    let Some(listing) = crate::repos::ls_tree(&shared.home, dir, sha) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let entries: Vec<serde_json::Value> = listing
        .lines()
        .filter_map(|line| {
            let (meta, path) = line.split_once('\t')?;
            let mut meta = meta.split(' ');
            let (mode, kind, id) = (meta.next()?, meta.next()?, meta.next()?);
            Some(json!({"path": path, "mode": mode, "type": kind, "sha": id}))
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"sha": sha, "tree": entries, "truncated": false}),
    )
}

/// A commit's tree and parents as GitHub's git commit JSON.
fn commit(shared: &Shared, dir: &std::path::Path, sha: &str) -> Response<RespBody> {
    let Some(raw) = crate::repos::cat_commit(&shared.home, dir, sha) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let field = |name: &'static str| -> Vec<serde_json::Value> {
        raw.lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.strip_prefix(name))
            .map(|v| json!({"sha": v.trim()}))
            .collect()
    };
    let tree = field("tree ").into_iter().next().unwrap_or_default();
    let parents = field("parent ");
    json_response(
        StatusCode::OK,
        json!({"sha": sha, "tree": tree, "parents": parents}),
    )
}

/// The token of `Authorization: Bearer TOKEN` or `Authorization: token TOKEN`.
pub(crate) fn api_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    (known && !token.trim().is_empty()).then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/repos/acme/app/compare/a1...heads/main"),
            Some((
                "acme",
                "app",
                Route::Compare {
                    base: "a1",
                    head: "heads/main"
                }
            ))
        );
        assert_eq!(
            route("/repos/acme/app/git/trees/t1"),
            Some(("acme", "app", Route::Tree("t1")))
        );
        assert_eq!(
            route("/repos/acme/app"),
            Some(("acme", "app", Route::Repository))
        );
        assert_eq!(
            route("/repos/acme/app/git/ref/heads/main"),
            Some(("acme", "app", Route::Ref("heads/main")))
        );
        assert_eq!(route("/repos/acme/app/compare/a1..b2"), None);
        assert_eq!(route("/repos/acme/app/installation"), None);
    }
}
