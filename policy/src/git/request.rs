//! Classifying a request to a GitHub host as git smart HTTP (or not), and canonicalising it.
//!
//! Only these shapes pass, with `/OWNER/REPO` or `/OWNER/REPO.git` in front and at most one
//! trailing slash:
//!
//! | method | suffix | query |
//! |---|---|---|
//! | GET | `/info/refs` | exactly `service=git-upload-pack` or `service=git-receive-pack` |
//! | POST | `/git-upload-pack`, `/git-receive-pack` | none |
//! | GET, POST | `/info/lfs/…` | any |
//!
//! The raw request target is checked byte by byte: no `%`, `\`, `;`, `#`, control or
//! non-ASCII bytes, no empty or dot segments. Nothing is decoded or normalised, so what is
//! checked is what would be forwarded.

use crate::repo::RepoPath;
use crate::text::printable;

/// Longest request target accepted.
pub const MAX_TARGET_LEN: usize = 8192;

/// How much of a bad target is echoed in an error.
const SHOW: usize = 200;

const NOT_PROXIED: &str = "(web pages, dumb HTTP and archives are not proxied)";

/// A git service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Fetch, clone, ls-remote.
    UploadPack,
    /// Push.
    ReceivePack,
}

impl Service {
    /// `git-upload-pack` or `git-receive-pack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    fn from_name(name: &str) -> Option<Service> {
        [Service::UploadPack, Service::ReceivePack]
            .into_iter()
            .find(|service| service.as_str() == name)
    }
}

/// What a git request is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GitKind {
    /// `GET …/info/refs?service=…`: the ref advertisement.
    InfoRefs(Service),
    /// `POST …/git-upload-pack` or `…/git-receive-pack`.
    Rpc(Service),
    /// `GET|POST …/info/lfs/<rest>`; `rest` includes `?query` if there was one.
    Lfs {
        /// The path after `info/lfs/`, plus `?query`.
        rest: String,
    },
}

/// A classified git smart-HTTP request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GitRequest {
    /// The canonical repository.
    pub repo: RepoPath,
    /// What is requested.
    pub kind: GitKind,
}

impl GitRequest {
    /// The target to send upstream: `/owner/name.git/…`, lowercase, with exactly the allowed
    /// suffix and query.
    pub fn canonical_target(&self) -> String {
        let (middle, tail) = match &self.kind {
            GitKind::InfoRefs(service) => ("/info/refs?service=", service.as_str()),
            GitKind::Rpc(service) => ("/", service.as_str()),
            GitKind::Lfs { rest } => ("/info/lfs/", rest.as_str()),
        };
        let (owner, name) = (self.repo.owner(), self.repo.name());
        let mut target =
            String::with_capacity(owner.len() + name.len() + middle.len() + tail.len() + 6);
        for part in ["/", owner, "/", name, ".git", middle, tail] {
            target.push_str(part);
        }
        target
    }
}

/// Why a request is not proxied as git.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The target is malformed or hostile (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// A well-formed request that is not git smart HTTP (HTTP 403).
    #[error("{0}")]
    NotGit(String),
}

impl RequestError {
    /// The HTTP status to answer with: 400 or 403.
    pub fn http_status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::NotGit(_) => 403,
        }
    }
}

/// Classifies a request by method and raw origin-form target (path and optional query,
/// exactly as received).
pub fn classify(method: &str, target: &str) -> Result<GitRequest, RequestError> {
    let shown = printable(target.as_bytes(), SHOW);
    let malformed = |why: &str| RequestError::Malformed(format!("path {shown} rejected: {why}"));
    let not_git = || {
        RequestError::NotGit(format!(
            "path {shown} is not a git smart-HTTP request {NOT_PROXIED}"
        ))
    };
    let wrong_method = |allowed: &str| {
        RequestError::NotGit(format!(
            "method {} is not allowed for path {shown}: git smart HTTP uses {allowed} here",
            printable(method.as_bytes(), 20)
        ))
    };

    if target.len() > MAX_TARGET_LEN {
        return Err(RequestError::Malformed(format!(
            "request target of {} bytes rejected: longer than {MAX_TARGET_LEN}",
            target.len()
        )));
    }
    if let Some(why) = bad_byte(target) {
        return Err(malformed(why));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let Some(path) = path.strip_prefix('/') else {
        return Err(malformed("not an origin-form target (must start with /)"));
    };
    if let Some(why) = bad_path_byte(path) {
        return Err(malformed(why));
    }
    if path.is_empty() {
        return Err(not_git());
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(malformed("empty segment"));
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(malformed("dot segment"));
    }
    let [owner, repo, suffix @ ..] = segments.as_slice() else {
        return Err(not_git());
    };
    let kind = match (suffix, query) {
        (["info", "refs"], _) if method != "GET" => return Err(wrong_method("GET")),
        (["info", "refs"], None) => {
            return Err(RequestError::NotGit(format!(
                "path {shown} is a dumb-HTTP request (no ?service=) {NOT_PROXIED}"
            )));
        }
        (["info", "refs"], Some(query)) => {
            match query.strip_prefix("service=").and_then(Service::from_name) {
                Some(service) => GitKind::InfoRefs(service),
                None => {
                    return Err(malformed(
                        "the query must be exactly service=git-upload-pack or service=git-receive-pack",
                    ));
                }
            }
        }
        ([name], _) if Service::from_name(name).is_some() && method != "POST" => {
            return Err(wrong_method("POST"));
        }
        ([name], Some(_)) if Service::from_name(name).is_some() => {
            return Err(malformed("no query is allowed on a git RPC"));
        }
        ([name], None) if let Some(service) = Service::from_name(name) => GitKind::Rpc(service),
        (["info", "lfs", rest @ ..], _) if !rest.is_empty() => {
            if method != "GET" && method != "POST" {
                return Err(wrong_method("GET or POST"));
            }
            let mut rest = rest.join("/");
            if let Some(query) = query {
                rest = format!("{rest}?{query}");
            }
            GitKind::Lfs { rest }
        }
        (_, Some(_)) => {
            return Err(malformed(
                "a query is only allowed on info/refs and LFS requests",
            ));
        }
        (_, None) => return Err(not_git()),
    };
    let repo = RepoPath::from_parts(owner, repo).map_err(|e| malformed(&e.to_string()))?;
    Ok(GitRequest { repo, kind })
}

/// Bytes refused anywhere in the target.
fn bad_byte(target: &str) -> Option<&'static str> {
    target.bytes().find_map(|b| match b {
        b'#' => Some("fragment (#)"),
        b if b.is_ascii_graphic() => None,
        _ => Some("control, space or non-ASCII byte"),
    })
}

/// Bytes refused in the path (the query may carry LFS filters).
fn bad_path_byte(path: &str) -> Option<&'static str> {
    path.bytes().find_map(|b| match b {
        b'%' => Some("percent-encoding (%)"),
        b'\\' => Some("backslash"),
        b';' => Some("semicolon (;)"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_git_requests() {
        for (method, target, canonical) in [
            (
                "GET",
                "/acme/app.git/info/refs?service=git-upload-pack",
                "/acme/app.git/info/refs?service=git-upload-pack",
            ),
            (
                "GET",
                "/Acme/App/info/refs?service=git-receive-pack",
                "/acme/app.git/info/refs?service=git-receive-pack",
            ),
            (
                "GET",
                "/acme/app.git/info/refs/?service=git-upload-pack",
                "/acme/app.git/info/refs?service=git-upload-pack",
            ),
            (
                "POST",
                "/acme/app.git/git-upload-pack",
                "/acme/app.git/git-upload-pack",
            ),
            (
                "POST",
                "/acme/app/git-receive-pack/",
                "/acme/app.git/git-receive-pack",
            ),
            (
                "POST",
                "/acme/app.git.git/git-receive-pack",
                "/acme/app.git.git/git-receive-pack",
            ),
            (
                "POST",
                "/acme/app.git/info/lfs/objects/batch",
                "/acme/app.git/info/lfs/objects/batch",
            ),
            (
                "POST",
                "/acme/app/info/lfs/locks/verify",
                "/acme/app.git/info/lfs/locks/verify",
            ),
            (
                "GET",
                "/acme/app.git/info/lfs/locks?path=a%2Fb&limit=10",
                "/acme/app.git/info/lfs/locks?path=a%2Fb&limit=10",
            ),
            (
                "POST",
                "/acme/app.git/info/lfs/locks/12/unlock",
                "/acme/app.git/info/lfs/locks/12/unlock",
            ),
            (
                "POST",
                "/a_b-c/x.y_z/git-upload-pack",
                "/a_b-c/x.y_z.git/git-upload-pack",
            ),
        ] {
            let req = classify(method, target).unwrap_or_else(|e| panic!("{method} {target}: {e}"));
            assert_eq!(req.canonical_target(), canonical, "{target}");
            assert_eq!(classify(method, canonical), Ok(req), "{canonical}");
        }
        let req = classify("POST", "/Acme/App.git/git-receive-pack").unwrap();
        assert_eq!(req.repo.to_string(), "acme/app");
        assert_eq!(req.kind, GitKind::Rpc(Service::ReceivePack));
        let req = classify("GET", "/acme/app/info/lfs/locks?x=1").unwrap();
        assert_eq!(
            req.kind,
            GitKind::Lfs {
                rest: "locks?x=1".into()
            }
        );
    }

    #[test]
    fn rejects_malformed() {
        let long = format!("/acme/app.git/info/lfs/{}", "a/".repeat(5000));
        for (method, target, why) in [
            (
                "GET",
                "/acme/app/../secret/info/refs?service=git-upload-pack",
                "path /acme/app/../secret/info/refs?service=git-upload-pack rejected: dot segment",
            ),
            (
                "GET",
                "/acme/./app/info/refs?service=git-upload-pack",
                "dot segment",
            ),
            ("POST", "/acme/app.git/info/lfs/../../x/y", "dot segment"),
            (
                "POST",
                "/acme/%61pp.git/git-upload-pack",
                "percent-encoding (%)",
            ),
            (
                "POST",
                "/acme/app%2f..%2fsecret/git-upload-pack",
                "percent-encoding (%)",
            ),
            ("POST", "/acme//app.git/git-upload-pack", "empty segment"),
            ("POST", "//acme/app.git/git-upload-pack", "empty segment"),
            ("POST", "/acme/app.git/git-upload-pack//", "empty segment"),
            ("POST", "/acme\\app.git/git-upload-pack", "backslash"),
            ("POST", "/acme/app.git;x/git-upload-pack", "semicolon (;)"),
            ("POST", "/acme/app.git/git-upload-pack#x", "fragment (#)"),
            (
                "POST",
                "/acme/app .git/git-upload-pack",
                "control, space or non-ASCII byte",
            ),
            (
                "POST",
                "/acme/app\x00/git-upload-pack",
                "path /acme/app\\x00/git-upload-pack rejected: control",
            ),
            ("POST", "/acme/caf\u{e9}/git-upload-pack", "non-ASCII"),
            (
                "POST",
                "acme/app.git/git-upload-pack",
                "not an origin-form target",
            ),
            (
                "POST",
                "http://github.com/acme/app.git/git-upload-pack",
                "not an origin-form target",
            ),
            ("POST", "*", "not an origin-form target"),
            (
                "POST",
                "/ac.me/app.git/git-upload-pack",
                "repository owner \"ac.me\" is invalid",
            ),
            (
                "POST",
                "/acme/a+b/git-upload-pack",
                "repository name \"a+b\" is invalid",
            ),
            (
                "POST",
                "/acme/.git/git-upload-pack",
                "repository name \".git\" is invalid",
            ),
            (
                "GET",
                "/acme/app.git/info/refs?service=git-upload-archive",
                "the query must be exactly service=git-upload-pack",
            ),
            (
                "GET",
                "/acme/app.git/info/refs?service=git-upload-pack&x=1",
                "the query must be exactly",
            ),
            (
                "GET",
                "/acme/app.git/info/refs?",
                "the query must be exactly",
            ),
            (
                "GET",
                "/acme/app.git?foo=bar/info/refs&service=git-upload-pack",
                "a query is only allowed on info/refs and LFS",
            ),
            (
                "POST",
                "/acme/app.git/git-upload-pack?x",
                "no query is allowed on a git RPC",
            ),
            ("GET", "/acme/app/pulls?q=1", "a query is only allowed"),
            (
                "GET",
                &long,
                "request target of 10023 bytes rejected: longer than 8192",
            ),
        ] {
            match classify(method, target) {
                Err(err @ RequestError::Malformed(_)) => {
                    assert!(err.to_string().contains(why), "{target}: {err}");
                    assert_eq!(err.http_status(), 400);
                }
                other => panic!("{method} {target}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_non_git() {
        for (method, target, why) in [
            (
                "GET",
                "/acme/app/pulls",
                "path /acme/app/pulls is not a git smart-HTTP request (web pages, dumb HTTP and archives are not proxied)",
            ),
            ("GET", "/acme/app", "not a git smart-HTTP request"),
            ("GET", "/acme", "not a git smart-HTTP request"),
            ("GET", "/", "not a git smart-HTTP request"),
            ("GET", "/login/device", "not a git smart-HTTP request"),
            (
                "GET",
                "/acme/app.git/info/refs",
                "is a dumb-HTTP request (no ?service=)",
            ),
            ("GET", "/acme/app.git/HEAD", "not a git smart-HTTP request"),
            (
                "GET",
                "/acme/app.git/objects/info/packs",
                "not a git smart-HTTP request",
            ),
            (
                "GET",
                "/acme/app.git/objects/00/0000000000000000000000000000000000000",
                "not a git",
            ),
            ("GET", "/acme/app/archive/refs/heads/main.zip", "not a git"),
            ("POST", "/acme/app.git/git-upload-archive", "not a git"),
            ("GET", "/acme/app.git/info/lfs", "not a git"),
            (
                "POST",
                "/acme/app.git/info/refs?service=git-upload-pack",
                "method POST is not allowed for path /acme/app.git/info/refs?service=git-upload-pack: git smart HTTP uses GET here",
            ),
            (
                "GET",
                "/acme/app.git/git-receive-pack",
                "method GET is not allowed",
            ),
            (
                "PROPFIND",
                "/acme/app.git/git-receive-pack",
                "uses POST here",
            ),
            (
                "PUT",
                "/acme/app.git/info/lfs/objects/x",
                "uses GET or POST here",
            ),
            ("MKCOL", "/acme/app.git/objects/00/", "not a git"),
            ("GET", "/ac.me/app/pulls", "not a git"),
        ] {
            match classify(method, target) {
                Err(err @ RequestError::NotGit(_)) => {
                    assert!(err.to_string().contains(why), "{method} {target}: {err}");
                    assert_eq!(err.http_status(), 403);
                }
                other => panic!("{method} {target}: {other:?}"),
            }
        }
    }

    /// Mostly plausible segments, sometimes hostile ones.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop_oneof![Just("acme"), Just("App.git"), Just("x-1"), Just("a_b.c")].prop_map(String::from),
            2 => hostile(),
        ]
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just(String::new()),
            Just("%2e%2e".to_owned()),
            Just("a;b".to_owned()),
            Just("a\\b".to_owned()),
            "[ -~]{0,6}",
            any::<String>(),
        ]
    }

    /// A git suffix, or something else.
    fn suffix() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            3 => prop_oneof![
                Just(vec!["info", "refs"]),
                Just(vec!["git-upload-pack"]),
                Just(vec!["git-receive-pack"]),
                Just(vec!["info", "lfs", "objects", "batch"]),
                Just(vec!["info", "lfs", "locks"]),
                Just(vec!["HEAD"]),
            ]
            .prop_map(|v| v.into_iter().map(String::from).collect()),
            1 => proptest::collection::vec(segment(), 0..3),
        ]
    }

    fn target() -> impl Strategy<Value = String> {
        (
            segment(),
            segment(),
            suffix(),
            proptest::option::of((any::<prop::sample::Index>(), hostile())),
            proptest::option::of(prop_oneof![
                Just("service=git-upload-pack".to_owned()),
                Just("service=git-receive-pack".to_owned()),
                "[ -~]{0,12}",
            ]),
            any::<bool>(),
        )
            .prop_map(|(owner, repo, suffix, extra, query, slash)| {
                let mut segments = vec![owner, repo];
                segments.extend(suffix);
                if let Some((at, segment)) = extra {
                    segments.insert(at.index(segments.len() + 1), segment);
                }
                let mut t = format!("/{}", segments.join("/"));
                if slash {
                    t.push('/');
                }
                if let Some(q) = query {
                    t = format!("{t}?{q}");
                }
                t
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn never_panics_and_accepts_only_clean_paths(
            method in prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), Just("PUT".to_owned()), "[A-Z]{1,8}"],
            target in target(),
        ) {
            match classify(&method, &target) {
                Ok(req) => {
                    let path = target.split('?').next().unwrap_or_default();
                    prop_assert!(!path.contains('%') && !path.contains("//") && !path.contains(';') && !path.contains('\\'));
                    prop_assert!(!path.split('/').any(|s| s == "." || s == ".."));
                    prop_assert!(target.is_ascii() && !target.contains('#'));
                    let canonical = req.canonical_target();
                    let base = format!("/{}/{}.git/", req.repo.owner(), req.repo.name());
                    prop_assert!(canonical.starts_with(&base));
                    prop_assert_eq!(classify(&method, &canonical), Ok(req));
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }

        #[test]
        fn arbitrary_input_never_panics(method in any::<String>(), target in any::<String>()) {
            let _ = classify(&method, &target);
        }
    }
}
