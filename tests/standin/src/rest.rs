//! The REST routes of `api.github.com` that read and write pull requests, comments and
//! refs, each authorized as GitHub authorizes an installation token: it must reach the
//! repository and hold the permission the route needs.
//!
//! - `GET|POST /repos/{o}/{r}/pulls`, `GET /repos/{o}/{r}/pulls/{n}`,
//!   `PUT …/pulls/{n}/merge`, `PUT …/pulls/{n}/update-branch`, `POST …/issues/{n}/comments`;
//! - `POST …/git/refs`, `PATCH|DELETE …/git/refs/{ref}`;
//! - `PUT|DELETE …/contents/{path}` (`branch`, default `main`);
//! - `POST …/merges`, `POST …/branches/{b}/rename`, `POST …/releases`,
//!   `GET|PATCH …/releases/{id}` (a draft's tag is made when it is published).

use base64::Engine as _;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde_json::{Value, json};

use crate::api::{error, json_response};
use crate::hub::{self, ApiError, ZERO, fail, with_repo};
use crate::server::{Counted, RespBody, Shared};
use crate::tokens::Level;

/// Largest body read.
const MAX_BODY: usize = 16 << 20;

/// A REST call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    ListPulls,
    GetPull(u64),
    CreatePull,
    MergePull(u64),
    EditPull(u64),
    UpdateBranch(u64),
    Comment(u64),
    CreateRef,
    UpdateRef(String),
    DeleteRef(String),
    PutContents(String),
    DeleteContents(String),
    Merge,
    Rename(String),
    Release,
    GetRelease(u64),
    EditRelease(u64),
}

/// A release made through the API; a draft's tag exists once it is published.
#[derive(Clone, Debug)]
pub(crate) struct Release {
    owner: String,
    repo: String,
    id: u64,
    tag: String,
    target: String,
    draft: bool,
}

impl Release {
    fn json(&self) -> Value {
        json!({"id": self.id, "tag_name": self.tag, "draft": self.draft, "target_commitish": self.target})
    }
}

/// The owner, repository and call of `method path`, if it is one.
pub(crate) fn route(method: &Method, path: &str) -> Option<(String, String, Call)> {
    let rest = path.strip_prefix("/repos/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let n = |s: &str| s.parse::<u64>().ok();
    let joined = |s: &[&str]| s.join("/");
    let call = match (method, &segs[2..]) {
        (&Method::GET, ["pulls"]) => Call::ListPulls,
        (&Method::GET, ["pulls", x]) => Call::GetPull(n(x)?),
        (&Method::POST, ["pulls"]) => Call::CreatePull,
        (&Method::PUT, ["pulls", x, "merge"]) => Call::MergePull(n(x)?),
        (&Method::PATCH, ["pulls", x]) => Call::EditPull(n(x)?),
        (&Method::PUT, ["pulls", x, "update-branch"]) => Call::UpdateBranch(n(x)?),
        (&Method::POST, ["issues", x, "comments"]) => Call::Comment(n(x)?),
        (&Method::POST, ["git", "refs"]) => Call::CreateRef,
        (&Method::PATCH, ["git", "refs", name @ ..]) => {
            Call::UpdateRef(format!("refs/{}", joined(name)))
        }
        (&Method::DELETE, ["git", "refs", name @ ..]) => {
            Call::DeleteRef(format!("refs/{}", joined(name)))
        }
        (&Method::PUT, ["contents", path @ ..]) => Call::PutContents(joined(path)),
        (&Method::DELETE, ["contents", path @ ..]) => Call::DeleteContents(joined(path)),
        (&Method::POST, ["merges"]) => Call::Merge,
        (&Method::POST, ["branches", branch, "rename"]) => Call::Rename((*branch).to_owned()),
        (&Method::POST, ["releases"]) => Call::Release,
        (&Method::GET, ["releases", x]) => Call::GetRelease(n(x)?),
        (&Method::PATCH, ["releases", x]) => Call::EditRelease(n(x)?),
        _ => return None,
    };
    Some((
        segs[0].to_ascii_lowercase(),
        segs.get(1)?.to_ascii_lowercase(),
        call,
    ))
}

/// What a call needs of the token: any one alternative, all permissions of it.
fn needs(call: &Call) -> &'static [&'static [(&'static str, Level)]] {
    use Level::{Read, Write};
    match call {
        Call::ListPulls | Call::GetPull(_) => &[&[("pull_requests", Read)]],
        Call::CreatePull | Call::EditPull(_) => &[&[("pull_requests", Write)]],
        Call::MergePull(_) | Call::UpdateBranch(_) => {
            &[&[("contents", Write), ("pull_requests", Write)]]
        }
        Call::Comment(_) => &[&[("issues", Write)], &[("pull_requests", Write)]],
        Call::GetRelease(_) => &[&[("contents", Read)]],
        _ => &[&[("contents", Write)]],
    }
}

pub(crate) async fn handle(
    shared: &Shared,
    parts: &Parts,
    body: Counted,
    (owner, repo, call): (String, String, Call),
) -> Response<RespBody> {
    let Some(token) = crate::repo_api::api_token(parts) else {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    if let Err(e) = hub::authorize(shared, &token, &owner, &repo, needs(&call)) {
        return error(e.status, &e.message);
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
    };
    let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    };
    match respond(shared, &owner, &repo, &call, &json) {
        Ok((status, value)) => json_response(status, value),
        Err(e) => error(e.status, &e.message),
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    body.get(key).and_then(Value::as_str).ok_or_else(|| {
        fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid request: \"{key}\" is missing"),
        )
    })
}

fn respond(
    shared: &Shared,
    owner: &str,
    repo: &str,
    call: &Call,
    body: &Value,
) -> Result<(StatusCode, Value), ApiError> {
    let ok = |v| Ok((StatusCode::OK, v));
    let created = |v| Ok((StatusCode::CREATED, v));
    match call {
        Call::ListPulls => {
            let pulls: Vec<Value> = shared
                .pulls()
                .iter()
                .filter(|p| p.owner == owner && p.repo == repo)
                .map(hub::pull_rest)
                .collect();
            ok(Value::Array(pulls))
        }
        Call::GetPull(n) => ok(hub::pull_rest(&hub::pull(shared, owner, repo, *n)?)),
        Call::CreatePull => {
            let head = str_field(body, "head")?;
            let head = head.split_once(':').map_or(head, |(_, b)| b);
            let pull = hub::create_pull(
                shared,
                owner,
                repo,
                str_field(body, "title")?,
                body.get("body").and_then(Value::as_str).unwrap_or(""),
                str_field(body, "base")?,
                head,
            )?;
            created(hub::pull_rest(&pull))
        }
        Call::EditPull(n) => {
            let pull = match body.get("base").and_then(Value::as_str) {
                Some(base) => hub::retarget_pull(shared, owner, repo, *n, base)?,
                None => hub::pull(shared, owner, repo, *n)?,
            };
            ok(hub::pull_rest(&pull))
        }
        Call::MergePull(n) => {
            let sha = hub::merge_pull(shared, owner, repo, *n)?;
            ok(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
        }
        Call::UpdateBranch(n) => {
            // The base merged into the head, as GitHub's "Update branch" button does.
            let pull = hub::pull(shared, owner, repo, *n)?;
            let message = format!("Merge branch '{}' into {}", pull.base, pull.head);
            hub::merge_branches(shared, owner, repo, &pull.head, &pull.base, &message)?;
            Ok((
                StatusCode::ACCEPTED,
                json!({"message": "Updating pull request branch."}),
            ))
        }
        Call::Comment(n) => {
            let id = hub::comment(shared, owner, repo, *n, str_field(body, "body")?)?;
            created(json!({"id": id, "body": str_field(body, "body")?}))
        }
        Call::CreateRef => {
            let name = str_field(body, "ref")?;
            let sha = str_field(body, "sha")?;
            with_repo(shared, owner, repo, |r| {
                r.update_ref(name, sha, Some(ZERO))
                    .map_err(|_| fail(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists"))
            })?;
            created(json!({"ref": name, "object": {"sha": sha, "type": "commit"}}))
        }
        Call::UpdateRef(name) => {
            let sha = str_field(body, "sha")?;
            let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
            with_repo(shared, owner, repo, |r| {
                let old = r.resolve(name).ok_or_else(|| {
                    fail(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist")
                })?;
                if !force && !r.is_ancestor(&old, sha) {
                    return Err(fail(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Update is not a fast forward",
                    ));
                }
                r.update_ref(name, sha, Some(&old))
                    .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
            })?;
            ok(json!({"ref": name, "object": {"sha": sha, "type": "commit"}}))
        }
        Call::DeleteRef(name) => {
            with_repo(shared, owner, repo, |r| {
                r.resolve(name).ok_or_else(|| {
                    fail(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist")
                })?;
                r.delete_ref(name)
                    .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
            })?;
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
        Call::PutContents(path) | Call::DeleteContents(path) => {
            let branch = body.get("branch").and_then(Value::as_str).unwrap_or("main");
            let message = str_field(body, "message")?;
            let content = match call {
                Call::PutContents(_) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(str_field(body, "content")?)
                        .map_err(|_| {
                            fail(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "content is not valid Base64",
                            )
                        })?,
                ),
                _ => None,
            };
            let files = [(path.clone(), content)];
            let sha = hub::commit_files(shared, owner, repo, branch, None, &files, message)?;
            created(json!({"content": {"path": path}, "commit": {"sha": sha}}))
        }
        Call::Merge => {
            let base = str_field(body, "base")?;
            let head = str_field(body, "head")?;
            let message = body
                .get("commit_message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("Merge {head} into {base}"), str::to_owned);
            let sha = hub::merge_branches(shared, owner, repo, base, head, &message)?;
            created(json!({"sha": sha}))
        }
        Call::Rename(branch) => {
            let new = str_field(body, "new_name")?;
            with_repo(shared, owner, repo, |r| {
                let old = format!("refs/heads/{branch}");
                let sha = r
                    .resolve(&old)
                    .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Branch not found"))?;
                r.update_ref(&format!("refs/heads/{new}"), &sha, Some(ZERO))
                    .and_then(|()| r.delete_ref(&old))
                    .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
            })?;
            created(json!({"name": new}))
        }
        Call::Release => {
            let mut releases = shared.releases();
            let release = Release {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                id: releases.len() as u64 + 1,
                tag: str_field(body, "tag_name")?.to_owned(),
                target: body
                    .get("target_commitish")
                    .and_then(Value::as_str)
                    .unwrap_or("main")
                    .to_owned(),
                draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
            };
            if !release.draft {
                publish(shared, &release)?;
            }
            releases.push(release.clone());
            created(release.json())
        }
        Call::GetRelease(id) | Call::EditRelease(id) => {
            let mut releases = shared.releases();
            let release = releases
                .iter_mut()
                .find(|r| r.id == *id && r.owner == owner && r.repo == repo)
                .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Not Found"))?;
            if let Call::EditRelease(_) = call {
                if let Some(tag) = body.get("tag_name").and_then(Value::as_str) {
                    release.tag = tag.to_owned();
                }
                if body.get("draft") == Some(&Value::Bool(false)) && release.draft {
                    publish(shared, release)?;
                    release.draft = false;
                }
            }
            ok(release.json())
        }
    }
}

/// Makes a published release's tag at its target, unless the tag exists.
fn publish(shared: &Shared, release: &Release) -> Result<(), ApiError> {
    with_repo(shared, &release.owner, &release.repo, |r| {
        let name = format!("refs/tags/{}", release.tag);
        if r.resolve(&name).is_none() {
            let sha = r.resolve(&release.target).ok_or_else(|| {
                fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "target_commitish is invalid",
                )
            })?;
            r.update_ref(&name, &sha, Some(ZERO))
                .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        }
        Ok(())
    })
}
