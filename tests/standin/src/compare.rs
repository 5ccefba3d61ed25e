//! `GET /repos/{owner}/{repo}/compare/{base}...{head}` on `api.github.com`, authenticated
//! with an installation token (`Authorization: Bearer` or `token`) that must reach the
//! repository with `contents: read`, as on GitHub. Answers the ancestry `status`
//! (`identical`, `ahead`, `behind`, `diverged`) and `ahead_by`/`behind_by`, computed by git
//! in the bare repository; an unknown commit is a 404.

use std::time::SystemTime;

use http::request::Parts;
use http::{Response, StatusCode, header};
use serde_json::json;

use crate::api::{error, json_response};
use crate::server::{RespBody, Shared};
use crate::tokens::{Access, Denied};

/// The route, if `segments` (the path split at `/`) is a compare call.
pub(crate) fn route<'a>(segments: &[&'a str]) -> Option<(&'a str, &'a str, &'a str, &'a str)> {
    match segments {
        ["repos", owner, repo, "compare", basehead] => {
            let (base, head) = basehead.split_once("...")?;
            Some((owner, repo, base, head))
        }
        _ => None,
    }
}

pub(crate) fn handle(
    shared: &Shared,
    parts: &Parts,
    (owner, repo, base, head): (&str, &str, &str, &str),
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

/// The token of `Authorization: Bearer TOKEN` or `Authorization: token TOKEN`.
fn api_token(parts: &Parts) -> Option<String> {
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
            route(&["repos", "acme", "app", "compare", "a1...b2"]),
            Some(("acme", "app", "a1", "b2"))
        );
        assert_eq!(route(&["repos", "acme", "app", "compare", "a1..b2"]), None);
        assert_eq!(route(&["repos", "acme", "app", "installation"]), None);
    }
}
