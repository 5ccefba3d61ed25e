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
    /// `POST locks`, `locks/{id}/unlock`: need the repository writable.
    WriteLocks,
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
    let path = rest.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["objects", "batch"]) => Ok(LfsCall::Batch),
        ("GET", ["locks"]) => Ok(LfsCall::ListLocks),
        ("POST", ["locks"]) => Ok(LfsCall::WriteLocks),
        ("POST", ["locks", "verify"]) => Ok(LfsCall::VerifyLocks),
        ("POST", ["locks", id, "unlock"])
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(LfsCall::WriteLocks)
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
            ("POST", "locks", Ok(LfsCall::WriteLocks)),
            ("POST", "locks/verify", Ok(LfsCall::VerifyLocks)),
            ("POST", "locks/12-ab/unlock", Ok(LfsCall::WriteLocks)),
        ] {
            assert_eq!(classify_lfs(method, rest), want, "{method} {rest}");
        }
        for (method, rest) in [
            ("GET", "objects/batch"),
            ("POST", "objects/abc"),
            ("PUT", "objects/abc"),
            ("POST", "locks/../unlock"),
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
