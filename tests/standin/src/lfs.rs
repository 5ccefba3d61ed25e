//! Git LFS: the batch and locks API on `github.com` (`/{owner}/{repo}.git/info/lfs/…`,
//! installation-token Basic auth as for git: downloads need `contents: read`, uploads and
//! lock verification `contents: write`), and the storage host `lfs-storage.test`, which
//! serves and stores objects only through the signed, expiring `href`s of batch actions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use ring::hmac;
use serde_json::{Value, json};

use crate::api::json_response;
use crate::repos::{Endpoint, GitPath};
use crate::server::{Counted, RespBody, Shared, full};
use crate::tokens::{Access, Denied};

/// The storage host named in batch actions.
pub const STORAGE_HOST: &str = "lfs-storage.test";
/// How long an action's `href` works.
const ACTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest batch request and largest object stored.
const MAX_BATCH: usize = 1 << 20;
const MAX_OBJECT: usize = 256 << 20;
const LFS_JSON: &str = "application/vnd.git-lfs+json";

fn lfs_error(status: StatusCode, message: &str) -> Response<RespBody> {
    let mut resp = json_response(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/lfs"}),
    );
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(LFS_JSON));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            "lfs-authenticate",
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
    }
    resp
}

/// The batch and locks endpoints of `path`'s repository.
pub(crate) async fn handle(
    shared: &Shared,
    parts: &Parts,
    body: Counted,
    path: &GitPath,
) -> Response<RespBody> {
    let Some(token) = crate::git::basic_token(&parts.headers) else {
        return lfs_error(StatusCode::UNAUTHORIZED, "Credentials needed");
    };
    let body = match Limited::new(body, MAX_BATCH).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return lfs_error(StatusCode::PAYLOAD_TOO_LARGE, "Request too large"),
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let access = match (&parts.method, path.endpoint) {
        (&Method::POST, Endpoint::LfsBatch) => match request["operation"].as_str() {
            Some("download") => Access::Read,
            Some("upload") => Access::Write,
            _ => return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid operation"),
        },
        (&Method::GET, Endpoint::LfsLocks) => Access::Read,
        (&Method::POST, Endpoint::LfsLocks | Endpoint::LfsLocksVerify | Endpoint::LfsUnlock) => {
            Access::Write
        }
        _ => return lfs_error(StatusCode::NOT_FOUND, "Not Found"),
    };
    let exists = |o: &str, r: &str| shared.repo_exists(o, r);
    let checked = shared.tokens().check_git(
        &token,
        &path.owner,
        &path.repo,
        access,
        SystemTime::now(),
        &exists,
    );
    match checked {
        Ok(()) => {}
        Err(Denied::Unauthorized) => {
            return lfs_error(StatusCode::UNAUTHORIZED, "Credentials needed");
        }
        Err(Denied::NotFound) => return lfs_error(StatusCode::NOT_FOUND, "Repository not found"),
        Err(Denied::Forbidden(_)) => {
            return lfs_error(
                StatusCode::FORBIDDEN,
                "Write access to repository not granted",
            );
        }
    }
    // Locks are not kept: a new one is answered as git-lfs expects, and an unlock as of a
    // lock on the path the request names (or none).
    let lock = |path: &Value| {
        json!({"lock": {"id": "1", "path": path, "locked_at": "2024-01-01T00:00:00Z",
                        "owner": {"name": "gitgate-app"}}})
    };
    let answer = match (&parts.method, path.endpoint) {
        (&Method::POST, Endpoint::LfsLocks) => {
            let mut resp = json_response(StatusCode::CREATED, lock(&request["path"]));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(LFS_JSON));
            return resp;
        }
        (_, Endpoint::LfsUnlock) => lock(&request["path"]),
        (_, Endpoint::LfsLocks) => json!({"locks": []}),
        (_, Endpoint::LfsLocksVerify) => json!({"ours": [], "theirs": []}),
        _ => batch(
            shared,
            &path.owner,
            &path.repo,
            access == Access::Write,
            &request,
        ),
    };
    let mut resp = json_response(StatusCode::OK, answer);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(LFS_JSON));
    resp
}

fn batch(shared: &Shared, owner: &str, repo: &str, upload: bool, request: &Value) -> Value {
    let objects = request["objects"].as_array().cloned().unwrap_or_default();
    let answered: Vec<Value> = objects
        .iter()
        .map(|object| {
            let oid = object["oid"].as_str().unwrap_or_default();
            let size = object["size"].as_u64().unwrap_or_default();
            if !is_oid(oid) {
                return json!({"oid": oid, "size": size, "error": {"code": 422, "message": "Invalid object id"}});
            }
            let stored = object_path(shared, owner, repo, oid).exists();
            match (upload, stored) {
                (true, true) => json!({"oid": oid, "size": size}),
                (true, false) => json!({"oid": oid, "size": size, "authenticated": true,
                    "actions": {"upload": action(shared, "upload", owner, repo, oid)}}),
                (false, true) => json!({"oid": oid, "size": size, "authenticated": true,
                    "actions": {"download": action(shared, "download", owner, repo, oid)}}),
                (false, false) => json!({"oid": oid, "size": size, "error": {"code": 404, "message": "Object does not exist"}}),
            }
        })
        .collect();
    json!({"transfer": "basic", "objects": answered, "hash_algo": "sha256"})
}

/// A signed action: `https://lfs-storage.test/{owner}/{repo}/{oid}?op=…&exp=…&sig=…`.
fn action(shared: &Shared, op: &str, owner: &str, repo: &str, oid: &str) -> Value {
    let exp = (SystemTime::now() + ACTION_LIFETIME)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let sig = signature(shared, op, owner, repo, oid, exp);
    json!({"href": format!("https://{STORAGE_HOST}/{owner}/{repo}/{oid}?op={op}&exp={exp}&sig={sig}"),
           "expires_in": ACTION_LIFETIME.as_secs()})
}

fn signature(shared: &Shared, op: &str, owner: &str, repo: &str, oid: &str, exp: u64) -> String {
    let tag = hmac::sign(
        &shared.lfs_key,
        format!("{op} {owner}/{repo} {oid} {exp}").as_bytes(),
    );
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn is_oid(oid: &str) -> bool {
    oid.len() == 64
        && oid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub(crate) fn object_path(
    shared: &Shared,
    owner: &str,
    repo: &str,
    oid: &str,
) -> std::path::PathBuf {
    shared
        .home
        .join("lfs-objects")
        .join(owner)
        .join(repo)
        .join(oid)
}

/// The storage host: `GET` (download) and `PUT` (upload) of one object through a
/// signed, unexpired action `href`; an upload must hash to its oid.
pub(crate) async fn storage(shared: &Shared, parts: &Parts, body: Counted) -> Response<RespBody> {
    let segments: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let [owner, repo, oid] = segments.as_slice() else {
        return lfs_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let query: std::collections::HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let op = match parts.method {
        Method::GET => "download",
        Method::PUT => "upload",
        _ => return lfs_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    };
    let exp: u64 = query
        .get("exp")
        .and_then(|e| e.parse().ok())
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let valid = is_oid(oid)
        && query.get("op").map(String::as_str) == Some(op)
        && exp > now
        && query.get("sig") == Some(&signature(shared, op, owner, repo, oid, exp));
    if !valid {
        return lfs_error(StatusCode::FORBIDDEN, "Invalid or expired signature");
    }
    let path = object_path(shared, owner, repo, oid);
    if op == "download" {
        return match std::fs::read(&path) {
            Ok(bytes) => Response::new(full(bytes)),
            Err(_) => lfs_error(StatusCode::NOT_FOUND, "Object does not exist"),
        };
    }
    let Ok(bytes) = Limited::new(body, MAX_OBJECT)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        return lfs_error(StatusCode::PAYLOAD_TOO_LARGE, "Object too large");
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if hex != *oid {
        return lfs_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Object does not match its oid",
        );
    }
    let stored = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| std::fs::write(&path, &bytes));
    match stored {
        Ok(()) => Response::new(full(Vec::new())),
        Err(_) => lfs_error(StatusCode::INTERNAL_SERVER_ERROR, "Cannot store the object"),
    }
}
