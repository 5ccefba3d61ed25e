//! Git LFS through gitgate: which LFS endpoints are forwarded and what access they need,
//! the operation of a batch request, and the storage hosts a batch response grants.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::api::parse_strict;
use crate::decision::Decision;
use crate::host::{HostName, parse_authority};
use crate::policy::Policy;
use crate::repo::RepoPath;

/// How long a storage host stays reachable when an action gives no `expires_in`.
pub const DEFAULT_GRANT: Duration = Duration::from_secs(3600);
/// The longest a storage host stays reachable for one batch response.
pub const MAX_GRANT: Duration = Duration::from_secs(24 * 3600);
/// Most storage hosts taken from one batch response.
const MAX_HOSTS: usize = 16;

/// An LFS endpoint gitgate forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LfsCall {
    /// `POST objects/batch`: the access depends on the body's `operation`.
    Batch,
    /// `GET locks`: needs the repository readable.
    ListLocks,
    /// `POST locks`: needs the repository writable, and the lock decided
    /// ([`Policy::decide_lock_change`]).
    Lock,
    /// `POST locks/{id}/unlock`: the same.
    Unlock,
    /// `POST locks/verify`, which git-lfs sends before it uploads: needs the repository
    /// writable.
    VerifyLocks,
}

/// What a batch request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LfsOperation {
    /// Fetch objects.
    Download,
    /// Store objects.
    Upload,
}

/// Classifies `method` on `rest` (the path after `info/lfs/`, with any `?query`).
pub fn classify_lfs(method: &str, rest: &str) -> Result<LfsCall, String> {
    let (path, query) = rest
        .split_once('?')
        .map_or((rest, None), |(p, q)| (p, Some(q)));
    // gitgate decides a POST on its body; a server could read parameters from the query
    // too (git-lfs sends a query only on `GET locks`).
    if method == "POST" && query.is_some() {
        return Err(format!(
            "POST info/lfs/{path} with a query string: gitgate decides on the JSON body, so send the parameters there"
        ));
    }
    let segments: Vec<&str> = path.split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["objects", "batch"]) => Ok(LfsCall::Batch),
        ("GET", ["locks"]) => Ok(LfsCall::ListLocks),
        ("POST", ["locks"]) => Ok(LfsCall::Lock),
        ("POST", ["locks", "verify"]) => Ok(LfsCall::VerifyLocks),
        ("POST", ["locks", id, "unlock"])
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(LfsCall::Unlock)
        }
        _ => Err(format!(
            "{method} info/lfs/{path} is not an LFS endpoint gitgate forwards (the batch API and locks only)"
        )),
    }
}

/// What a batch request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRequest {
    /// Its `operation`.
    pub operation: LfsOperation,
    /// For an upload, the largest object it announces: `oid` and `size` (as git-lfs
    /// states it; the storage tunnel is opaque to gitgate).
    pub largest: Option<(String, u64)>,
}

/// Reads a batch request body: its operation, and the largest object of an upload, each
/// of whose objects must give its `size` (as git-lfs always does).
pub fn batch_request(body: &[u8]) -> Result<BatchRequest, String> {
    let request = parse_strict(body)?;
    let operation = match request.get("operation").and_then(Value::as_str) {
        Some("download") => LfsOperation::Download,
        Some("upload") => LfsOperation::Upload,
        Some(other) => {
            return Err(format!(
                "the LFS batch operation {other:?} is neither download nor upload"
            ));
        }
        None => return Err("the LFS batch request has no \"operation\"".into()),
    };
    let mut largest: Option<(String, u64)> = None;
    if operation == LfsOperation::Upload {
        let objects = request.get("objects").and_then(Value::as_array);
        for (n, object) in objects.into_iter().flatten().enumerate() {
            let Some(size) = object.get("size").and_then(Value::as_u64) else {
                return Err(format!("object {} of the LFS upload gives no size", n + 1));
            };
            if largest.as_ref().is_none_or(|(_, most)| size > *most) {
                let oid = object.get("oid").and_then(Value::as_str).unwrap_or("?");
                largest = Some((crate::text::printable(oid.as_bytes(), 80), size));
            }
        }
    }
    Ok(BatchRequest { operation, largest })
}

/// A storage host a batch response points the client at, reachable until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageGrant {
    /// The host of an action `href`.
    pub host: HostName,
    /// Its port (443 unless the `href` says otherwise).
    pub port: u16,
    /// When the action expires (`expires_in` from `now`, at most [`MAX_GRANT`]).
    pub until: SystemTime,
}

/// The HTTPS hosts of every action `href` in a batch response, each until the latest
/// expiry among its actions. Hosts in `exclude` (gitgate's own intercepted hosts) are
/// left out; an `href` that is not `https://` grants nothing.
pub fn storage_grants(
    response: &[u8],
    now: SystemTime,
    exclude: impl Fn(&HostName) -> bool,
) -> Result<Vec<StorageGrant>, String> {
    let response = parse_strict(response)?;
    let mut grants: Vec<StorageGrant> = Vec::new();
    let objects = response.get("objects").and_then(Value::as_array);
    let actions = objects
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("actions").and_then(Value::as_object))
        .flat_map(|actions| actions.values());
    for action in actions {
        let Some(href) = action.get("href").and_then(Value::as_str) else {
            continue;
        };
        let Some((host, port)) = https_authority(href) else {
            continue;
        };
        if exclude(&host) {
            continue;
        }
        let lifetime = match action.get("expires_in").and_then(Value::as_i64) {
            Some(secs) if secs > 0 => Duration::from_secs(secs.unsigned_abs()).min(MAX_GRANT),
            Some(_) => continue,
            None => DEFAULT_GRANT,
        };
        let until = now + lifetime;
        if let Some(grant) = grants.iter_mut().find(|g| g.host == host && g.port == port) {
            grant.until = grant.until.max(until);
            continue;
        }
        if grants.len() == MAX_HOSTS {
            return Err(format!(
                "the LFS batch response names more than {MAX_HOSTS} storage hosts"
            ));
        }
        grants.push(StorageGrant { host, port, until });
    }
    Ok(grants)
}

/// The host and port of an `https://` URL.
fn https_authority(href: &str) -> Option<(HostName, u16)> {
    let rest = href
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &href[8..])?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        parse_authority(authority).ok()
    } else {
        Some((HostName::parse(authority).ok()?, 443))
    }
}

impl Policy {
    /// An LFS upload, under `maxBlobSize`: the denial when its largest object is larger.
    pub fn decide_lfs_upload(&self, request: &BatchRequest) -> Option<Decision> {
        let (oid, size) = request.largest.as_ref()?;
        self.decide_blob_size(&format!("the LFS object {oid}"), *size)
    }

    /// A lock change given its JSON body (`POST locks`: `{"path", "ref"}`; an unlock:
    /// `{"force", "ref"}`). A new lock's path must be canonical and not protected: the
    /// sandbox cannot change a protected file, and its lock would hold up everyone else's
    /// pushes of it. An unlock may not be forced: that drops another person's lock. The
    /// `ref` is not decided on: GitHub's locks hold for the whole repository, and git-lfs
    /// names the branch's upstream (or `HEAD`), not what the sandbox pushes to.
    pub fn decide_lock_change(&self, call: LfsCall, body: &[u8]) -> Decision {
        let deny = |reason: String| Decision::deny("lfs", reason);
        let request = match parse_strict(body) {
            Ok(request) => request,
            Err(e) => return deny(format!("the LFS lock request cannot be read: {e}")),
        };
        match call {
            LfsCall::Lock => {
                let Some(path) = request.get("path").and_then(Value::as_str) else {
                    return deny("the LFS lock request has no path".into());
                };
                let canonical = !path.is_empty()
                    && !path.contains('\\')
                    && path.split('/').all(|s| !matches!(s, "" | "." | ".."));
                if !canonical {
                    return deny(format!(
                        "the lock path {:?} is not a plain path from the repository root",
                        crate::text::printable(path.as_bytes(), 200)
                    ));
                }
                if let Some(pattern) = self.protected_paths.iter().find(|p| p.matches(path)) {
                    return Decision::deny(
                        "protectedPaths",
                        format!(
                            "{path} matches protectedPaths pattern {pattern}: the sandbox may not change it, so it may not lock it either"
                        ),
                    );
                }
            }
            // Anything but an explicit false (a string, a number) may read as true.
            LfsCall::Unlock
                if !matches!(
                    request.get("force"),
                    None | Some(Value::Null | Value::Bool(false))
                ) =>
            {
                return deny(
                    "a forced unlock drops another person's lock; ask its owner to unlock it, or unlock it outside the sandbox".into(),
                );
            }
            _ => {}
        }
        Decision::allow(
            "lfs",
            "the lock change names no ref or path the policy refuses",
        )
    }

    /// An LFS call on `repo`: downloads and lock listings need the repository allowed;
    /// uploads and lock writes need it writable (as a push).
    pub fn decide_lfs(&self, repo: &RepoPath, write: bool) -> Decision {
        if write {
            self.decide_push(repo)
        } else {
            self.decide_repo(repo)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for (method, rest, want) in [
            ("POST", "objects/batch", Ok(LfsCall::Batch)),
            ("GET", "locks?path=a&limit=1", Ok(LfsCall::ListLocks)),
            ("POST", "locks", Ok(LfsCall::Lock)),
            ("POST", "locks/verify", Ok(LfsCall::VerifyLocks)),
            ("POST", "locks/12-ab/unlock", Ok(LfsCall::Unlock)),
        ] {
            assert_eq!(classify_lfs(method, rest), want, "{method} {rest}");
        }
        for (method, rest) in [
            ("GET", "objects/batch"),
            ("POST", "objects/abc"),
            ("PUT", "objects/abc"),
            ("POST", "locks/../unlock"),
            ("POST", "locks/1/unlock?force=true"),
            ("POST", "locks?path=.github/x"),
            ("POST", "objects/batch?operation=upload"),
            ("DELETE", "locks"),
        ] {
            assert!(classify_lfs(method, rest).is_err(), "{method} {rest}");
        }
    }

    #[test]
    fn batch_operations() {
        let operation = |body: &[u8]| batch_request(body).map(|r| r.operation);
        assert_eq!(
            operation(br#"{"operation": "download", "objects": [{"oid": "a"}]}"#),
            Ok(LfsOperation::Download)
        );
        assert_eq!(
            operation(br#"{"operation": "upload"}"#),
            Ok(LfsOperation::Upload)
        );
        for body in [
            &br#"{"operation": "delete"}"#[..],
            b"{}",
            br#"{"operation": "download", "operation": "upload"}"#,
            b"[",
            br#"{"operation": "upload", "objects": [{"oid": "a"}]}"#,
            br#"{"operation": "upload", "objects": [{"oid": "a", "size": -1}]}"#,
            br#"{"operation": "upload", "objects": [{"oid": "a", "size": "5"}]}"#,
        ] {
            assert!(
                batch_request(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn locks_are_on_unprotected_plain_paths_and_unlocks_are_never_forced() {
        let policy = Policy::from_yaml(
            "{allowedRepos: [a/b], allowedRefs: ['agent/*'], protectedPaths: ['.github/**']}",
            &["github.com".to_owned()],
        )
        .unwrap();
        let decide = |call, body: &str| policy.decide_lock_change(call, body.as_bytes());
        for (call, body) in [
            (
                LfsCall::Lock,
                r#"{"path": "assets/a.bin", "ref": {"name": "refs/heads/agent/x"}}"#,
            ),
            (LfsCall::Lock, r#"{"path": "assets/a.bin"}"#),
            // The ref is the branch's upstream as git-lfs sees it (or HEAD), whatever the
            // sandbox pushes to: not decided on.
            (
                LfsCall::Lock,
                r#"{"path": "a.bin", "ref": {"name": "refs/heads/main"}}"#,
            ),
            (
                LfsCall::Unlock,
                r#"{"force": false, "ref": {"name": "HEAD"}}"#,
            ),
            (LfsCall::Unlock, r#"{"force": null}"#),
            (LfsCall::Unlock, r#"{}"#),
        ] {
            let decision = decide(call, body);
            assert!(decision.allowed, "{body}: {}", decision.reason);
        }
        for (call, body, rule) in [
            (
                LfsCall::Lock,
                r#"{"path": ".github/workflows/ci.yml"}"#,
                "protectedPaths",
            ),
            (
                LfsCall::Lock,
                r#"{"path": "./.github/workflows/ci.yml"}"#,
                "lfs",
            ),
            (LfsCall::Lock, r#"{"path": "x//.github"}"#, "lfs"),
            (LfsCall::Lock, r#"{"path": "a\\b"}"#, "lfs"),
            (
                LfsCall::Lock,
                r#"{"ref": {"name": "refs/heads/agent/x"}}"#,
                "lfs",
            ),
            (LfsCall::Lock, r#"{"path": "a", "path": "b"}"#, "lfs"),
            (LfsCall::Unlock, r#"{"force": true}"#, "lfs"),
            (LfsCall::Unlock, r#"{"force": "true"}"#, "lfs"),
            (LfsCall::Unlock, r#"{"force": 1}"#, "lfs"),
        ] {
            let decision = decide(call, body);
            assert!(!decision.allowed, "{body}");
            assert_eq!(decision.rule, rule, "{body}: {}", decision.reason);
        }
    }

    #[test]
    fn uploads_are_held_to_max_blob_size_by_their_largest_object() {
        let request = batch_request(
            br#"{"operation": "upload", "objects": [{"oid": "small", "size": 10}, {"oid": "big", "size": 2000}, {"oid": "mid", "size": 1500}]}"#,
        )
        .unwrap();
        assert_eq!(request.largest, Some(("big".to_owned(), 2000)));
        let policy = |extra: &str| {
            Policy::from_yaml(
                &format!("{{allowedRepos: [a/b], allowedRefs: [main]{extra}}}"),
                &["github.com".to_owned()],
            )
            .unwrap()
        };
        let denial = policy(", maxBlobSize: 1KB")
            .decide_lfs_upload(&request)
            .unwrap();
        assert_eq!(denial.rule, "maxBlobSize");
        assert!(
            denial.reason.contains("the LFS object big of 2000 bytes"),
            "{}",
            denial.reason
        );
        assert_eq!(
            policy(", maxBlobSize: 2KB").decide_lfs_upload(&request),
            None
        );
        assert_eq!(policy("").decide_lfs_upload(&request), None);
    }

    #[test]
    fn grants_follow_the_actions() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let response = br#"{"objects": [
            {"oid": "a", "actions": {"download": {"href": "https://Storage.Example/a?sig=1", "expires_in": 60}}},
            {"oid": "b", "actions": {"upload": {"href": "https://storage.example/b", "expires_in": 600},
                                     "verify": {"href": "https://verify.example:8443/v"}}},
            {"oid": "c", "actions": {"download": {"href": "http://plain.example/c"}}},
            {"oid": "d", "actions": {"download": {"href": "https://github.com/x", "expires_in": 60}}},
            {"oid": "e", "actions": {"download": {"href": "https://user@evil.example/x"}}},
            {"oid": "f", "actions": {"download": {"href": "https://expired.example/x", "expires_in": 0}}},
            {"oid": "g", "error": {"code": 404, "message": "missing"}}
        ]}"#;
        let github = HostName::parse("github.com").unwrap();
        let grants = storage_grants(response, now, |h| *h == github).unwrap();
        let got: Vec<(String, u16, u64)> = grants
            .iter()
            .map(|g| {
                (
                    g.host.to_string(),
                    g.port,
                    g.until.duration_since(now).unwrap().as_secs(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("storage.example".to_owned(), 443, 600),
                ("verify.example".to_owned(), 8443, 3600)
            ]
        );
        let capped = br#"{"objects": [{"actions": {"download": {"href": "https://s.example/", "expires_in": 99999999}}}]}"#;
        assert_eq!(
            storage_grants(capped, now, |_| false).unwrap()[0].until,
            now + MAX_GRANT
        );
    }
}
