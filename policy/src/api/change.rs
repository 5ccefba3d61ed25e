//! Ref changes made through the API, and their decision under the push rules.

use serde_json::Value;

use crate::decision::Decision;
use crate::policy::Policy;
use crate::raw::ForcePush;
use crate::refname::RefName;

/// What a REST call does to refs, before its body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Writes git commits or tag objects and no ref.
    Objects,
    /// `POST git/blobs`: writes the body's `content` as a blob, and no ref.
    Blob,
    /// `POST git/trees`: writes a tree, and a blob for each entry with inline `content`;
    /// no ref.
    Tree,
    /// `POST git/refs`: creates the body's `ref` at its `sha`.
    CreateRef,
    /// `PATCH git/refs/…`: moves this ref (`force` in the body).
    UpdateRef(String),
    /// `DELETE git/refs/…`: deletes this ref.
    DeleteRef(String),
    /// `PUT`/`DELETE contents/{path}`: a commit on the body's `branch` (default branch
    /// when absent).
    Contents {
        /// The file's path in the repository.
        path: String,
        /// Whether the file is deleted.
        delete: bool,
    },
    /// `POST merges`: a merge commit on the body's `base`.
    Merge,
    /// `POST merge-upstream`: the fork's body `branch` catches up with upstream.
    MergeUpstream,
    /// `PUT pulls/{n}/merge`: a merge into the pull request's base branch.
    PullMerge(u64),
    /// `PUT pulls/{n}/update-branch`: a merge of the base into the pull request's head.
    PullUpdateBranch(u64),
    /// `POST pulls`: its head must be a branch of this repository (a head in another
    /// repository of the fork network could not be checked against `allowedRepos`).
    PullCreate,
    /// `PATCH pulls/{n}`: the body's `base`, when given, is where the pull request's
    /// merges will write.
    PullEdit,
    /// `POST branches/{branch}/rename`: this ref goes, the body's `new_name` comes.
    Rename(String),
    /// `POST releases` / `PATCH releases/{id}`: the body's `tag_name` is created when
    /// the tag does not exist; publishing a draft (`draft: false`) creates the draft's
    /// tag, looked up when the body does not name it.
    Release(Option<u64>),
}

/// The ref a change targets, as far as the request says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RefTarget {
    /// A full ref name (`refs/heads/main`).
    Named(String),
    /// The repository's default branch (looked up).
    DefaultBranch,
    /// The base branch of pull request number N (looked up).
    PullBase(u64),
    /// The head branch of pull request number N (looked up).
    PullHead(u64),
    /// A GraphQL `Ref` node (looked up).
    RefNode(String),
    /// The base branch of a GraphQL `PullRequest` node (looked up).
    PullNodeBase(String),
    /// The tag of release N (looked up).
    ReleaseTag(u64),
}

/// How a change moves its ref.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The ref is created.
    Create,
    /// The ref moves; `force` allows a non-fast-forward.
    Update {
        /// Whether a non-fast-forward is asked for.
        force: bool,
    },
    /// The ref is deleted.
    Delete,
    /// A pull request's base moves onto the ref, so its merges will write there.
    Retarget,
}

/// What a change puts on its ref, for the content rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Content {
    /// Nothing (a deletion).
    None,
    /// A commit GitHub writes, changing these paths; `largest` is the largest file's size.
    Files {
        /// The paths added, changed or deleted.
        paths: Vec<String>,
        /// The largest file written, in bytes.
        largest: u64,
    },
    /// A merge GitHub computes: the changed paths are not known in advance.
    Merge,
    /// An existing commit named by id or ref: its history is not known in advance.
    Existing,
}

/// One ref change an API call makes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RefChange {
    /// The ref.
    pub target: RefTarget,
    /// Create, update or delete.
    pub kind: ChangeKind,
    /// What it brings.
    pub content: Content,
}

impl RefChange {
    /// A pull request's base moving onto `name` (a full ref name).
    pub(crate) fn retarget(name: String) -> Self {
        RefChange {
            target: RefTarget::Named(name),
            kind: ChangeKind::Retarget,
            content: Content::None,
        }
    }
}

impl Effect {
    /// The ref changes the call makes, given its JSON body (`Value::Null` when it has
    /// none). `Err` says which field is missing or unusable: gitgate denies what it
    /// cannot pin down.
    pub fn changes(&self, body: &Value) -> Result<Vec<RefChange>, String> {
        let update = |target, content| RefChange {
            target,
            kind: ChangeKind::Update { force: false },
            content,
        };
        Ok(match self {
            Effect::None | Effect::Objects | Effect::Blob | Effect::Tree => Vec::new(),
            Effect::CreateRef => vec![RefChange {
                target: RefTarget::Named(full_ref(body, "ref")?),
                kind: ChangeKind::Create,
                content: Content::Existing,
            }],
            Effect::UpdateRef(name) => vec![RefChange {
                target: RefTarget::Named(name.clone()),
                kind: ChangeKind::Update {
                    force: flag(body, "force")?,
                },
                content: Content::Existing,
            }],
            Effect::DeleteRef(name) => vec![RefChange {
                target: RefTarget::Named(name.clone()),
                kind: ChangeKind::Delete,
                content: Content::None,
            }],
            Effect::Contents { path, delete } => {
                let target = match optional_str(body, "branch")? {
                    Some(branch) => RefTarget::Named(branch_ref(branch)?),
                    None => RefTarget::DefaultBranch,
                };
                let largest = if *delete {
                    0
                } else {
                    base64_len(optional_str(body, "content")?.unwrap_or(""))
                };
                vec![update(
                    target,
                    Content::Files {
                        paths: vec![path.clone()],
                        largest,
                    },
                )]
            }
            Effect::Merge => vec![update(
                RefTarget::Named(branch_ref(required_str(body, "base")?)?),
                Content::Merge,
            )],
            Effect::MergeUpstream => vec![update(
                RefTarget::Named(branch_ref(required_str(body, "branch")?)?),
                Content::Merge,
            )],
            Effect::PullMerge(n) => vec![update(RefTarget::PullBase(*n), Content::Merge)],
            Effect::PullUpdateBranch(n) => vec![update(RefTarget::PullHead(*n), Content::Merge)],
            Effect::PullCreate => {
                same_repository_head(required_str(body, "head")?)?;
                if optional_str(body, "head_repo")?.is_some() {
                    return Err(CROSS_REPOSITORY.into());
                }
                Vec::new()
            }
            Effect::PullEdit => match optional_str(body, "base")? {
                Some(base) => vec![RefChange::retarget(branch_ref(base)?)],
                None => Vec::new(),
            },
            Effect::Rename(old) => vec![
                RefChange {
                    target: RefTarget::Named(old.clone()),
                    kind: ChangeKind::Delete,
                    content: Content::None,
                },
                RefChange {
                    target: RefTarget::Named(branch_ref(required_str(body, "new_name")?)?),
                    kind: ChangeKind::Create,
                    content: Content::Existing,
                },
            ],
            Effect::Release(id) => {
                let target = match (optional_str(body, "tag_name")?, id) {
                    (Some(tag), _) => RefTarget::Named(short_ref("refs/tags/", tag)?),
                    // Publishing a draft creates the tag it was drafted with (any `draft`
                    // but `true` is taken to publish).
                    (None, Some(id))
                        if field(body, "draft").is_some_and(|d| *d != Value::Bool(true)) =>
                    {
                        RefTarget::ReleaseTag(*id)
                    }
                    (None, _) => return Ok(Vec::new()),
                };
                vec![RefChange {
                    target,
                    kind: ChangeKind::Create,
                    content: Content::Existing,
                }]
            }
        })
    }

    /// The size of the largest file the call writes without changing a ref (`Some(0)`
    /// when it writes none), given its JSON body; `None` for calls that write no blob of
    /// their own. `Err` says which field is unusable.
    fn largest_blob(&self, body: &Value) -> Result<Option<u64>, String> {
        Ok(Some(match self {
            // Any encoding but base64 is counted as text, which is never less.
            Effect::Blob => match optional_str(body, "encoding")? {
                Some("base64") => base64_len(required_str(body, "content")?),
                _ => required_str(body, "content")?.len() as u64,
            },
            Effect::Tree => {
                let Some(Value::Array(entries)) = field(body, "tree") else {
                    return Err("the body's \"tree\" is not a list of entries".into());
                };
                let mut largest = 0;
                for entry in entries {
                    if !entry.is_object() {
                        return Err("an entry of the body's \"tree\" is not an object".into());
                    }
                    let content = optional_str(entry, "content")?.unwrap_or("");
                    largest = largest.max(content.len() as u64);
                }
                largest
            }
            _ => return Ok(None),
        }))
    }
}

/// Whether `path` names a file plainly: no empty, `.` or `..` segment (so no leading,
/// trailing or doubled `/`), no backslash, no control character. Another spelling could
/// name a protected file without matching its pattern.
pub(crate) fn is_plain_path(path: &str) -> bool {
    !path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
        && !path.chars().any(|c| c == '\\' || c.is_control())
}

/// The decoded size of base64 `text`.
pub(crate) fn base64_len(text: &str) -> u64 {
    let len = text.bytes().filter(|b| !b.is_ascii_whitespace()).count() as u64;
    len / 4 * 3
}

fn field<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body.as_object()?.get(key).filter(|v| !v.is_null())
}

/// Why a pull request from another repository is refused.
pub(crate) const CROSS_REPOSITORY: &str = "a pull request whose head is in another repository (head \"owner:branch\", head_repo, headRepositoryId) cannot be checked against allowedRepos; open it from a branch of this repository, named without an owner (head \"feature\", not \"owner:feature\")";

/// A pull request head naming a branch, not `owner:branch` of another repository.
pub(crate) fn same_repository_head(head: &str) -> Result<(), String> {
    match head.contains(':') {
        true => Err(CROSS_REPOSITORY.into()),
        false => Ok(()),
    }
}

fn optional_str<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match field(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("the body's \"{key}\" is not a string")),
    }
}

fn required_str<'a>(body: &'a Value, key: &str) -> Result<&'a str, String> {
    optional_str(body, key)?.ok_or_else(|| format!("the body has no \"{key}\""))
}

fn flag(body: &Value, key: &str) -> Result<bool, String> {
    match field(body, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("the body's \"{key}\" is not true or false")),
    }
}

/// A field holding a full ref name (`refs/heads/x`).
fn full_ref(body: &Value, key: &str) -> Result<String, String> {
    let name = required_str(body, key)?;
    if !name.starts_with("refs/") {
        return Err(format!(
            "the body's \"{key}\" ({name:?}) is not a full ref name starting with refs/"
        ));
    }
    Ok(name.to_owned())
}

/// A branch name as the API takes it (unqualified) as a full ref name.
pub(crate) fn branch_ref(name: &str) -> Result<String, String> {
    short_ref("refs/heads/", name)
}

/// `prefix` + `name`; a name that already starts with `refs/` is ambiguous (GitHub may
/// read it either way) and refused.
fn short_ref(prefix: &str, name: &str) -> Result<String, String> {
    if name.starts_with("refs/") || name.is_empty() {
        return Err(format!(
            "the ref name {name:?} is ambiguous: give the short name (without refs/)"
        ));
    }
    Ok(format!("{prefix}{name}"))
}

impl Policy {
    /// The blobs a call with `effect` writes without changing a ref (`POST git/blobs`,
    /// inline contents of `POST git/trees`), given its JSON body, under `maxBlobSize`:
    /// the denial when one is larger. A ref moved onto them later only names an existing
    /// commit, so they are measured where they are written. `Err` says which field of
    /// the body is unusable.
    pub fn decide_blobs(&self, effect: &Effect, body: &Value) -> Result<Option<Decision>, String> {
        Ok(effect
            .largest_blob(body)?
            .and_then(|largest| self.decide_blob_size("a file", largest)))
    }

    /// `what`, a file of `size` bytes written without a pack (through the API or to LFS
    /// storage), under `maxBlobSize`: the denial when it is larger.
    pub(crate) fn decide_blob_size(&self, what: &str, size: u64) -> Option<Decision> {
        let max = self.max_blob_size?;
        (size > max.0).then(|| {
            Decision::deny(
                "maxBlobSize",
                format!("{what} of {size} bytes is larger than maxBlobSize ({max})"),
            )
        })
    }

    /// One ref change made through the API, under the push rules: a valid name that
    /// matches `allowedRefs`; a delete needs `allowDeletes`; a forced update needs
    /// `forcePush: allow` or `forcePushAllowedRefs`. GitHub writes API commits itself, so
    /// under `requireSignedCommits` only deletions pass, and with `protectedPaths` only
    /// changes whose paths are known and unprotected; `maxBlobSize` bounds the files. A
    /// pull request's base may move only onto a ref it could be merged into: otherwise
    /// a merge decided against the old base would write to the new one.
    pub fn decide_ref_change(&self, name: &str, kind: ChangeKind, content: &Content) -> Decision {
        let decision = self.decide_ref_name(name, kind == ChangeKind::Delete);
        if !decision.allowed {
            if kind == ChangeKind::Retarget {
                return Decision::deny(
                    decision.rule,
                    format!(
                        "a pull request's base cannot move to {name}, where its merge would write: {}; open a new pull request for {name} instead",
                        decision.reason
                    ),
                );
            }
            return decision;
        }
        let forced = kind == ChangeKind::Update { force: true };
        if forced && self.force_push == ForcePush::Deny {
            let allowed = RefName::parse(name)
                .map(|n| self.force_push_refs.iter().any(|p| p.matches(&n)))
                .unwrap_or(false);
            if !allowed {
                return Decision::deny(
                    "forcePush",
                    format!(
                        "a forced update of {name} is not allowed (forcePush is deny and {name} is not in forcePushAllowedRefs)"
                    ),
                );
            }
        }
        if *content == Content::None {
            return decision;
        }
        if self.signers.is_some() {
            return Decision::deny(
                "requireSignedCommits",
                format!(
                    "{name} cannot change through the API: requireSignedCommits needs every new commit signed by an allowed key, which GitHub's API commits are not; push signed commits with git instead"
                ),
            );
        }
        if let Content::Files { largest, .. } = content
            && let Some(denial) = self.decide_blob_size("a file", *largest)
        {
            return denial;
        }
        if !self.protected_paths.is_empty() {
            let Content::Files { paths, .. } = content else {
                return Decision::deny(
                    "protectedPaths",
                    format!(
                        "{name} cannot change through the API while protectedPaths is set: gitgate cannot tell which files a merge or an existing commit changes; push with git instead"
                    ),
                );
            };
            if let Some((path, pattern)) = paths.iter().find_map(|path| {
                // As for pushes: a file put where a protected directory is, or that
                // directory deleted, stands for the protected files below it.
                self.protected_paths
                    .iter()
                    .find(|p| p.matches(path) || p.names_below(path))
                    .map(|p| (path, p))
            }) {
                return Decision::deny(
                    format!("protectedPaths[{pattern}]"),
                    format!("{path} is protected by protectedPaths pattern {pattern}"),
                );
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, &["github.com".to_owned()]).unwrap()
    }

    #[test]
    fn effects_read_their_fields() {
        let named = |s: &str| RefTarget::Named(s.to_owned());
        let changes = Effect::CreateRef
            .changes(&json!({"ref": "refs/heads/x", "sha": "a"}))
            .unwrap();
        assert_eq!(changes[0].target, named("refs/heads/x"));
        assert_eq!(changes[0].kind, ChangeKind::Create);
        let changes = Effect::UpdateRef("refs/heads/main".into())
            .changes(&json!({"sha": "a", "force": true}))
            .unwrap();
        assert_eq!(changes[0].kind, ChangeKind::Update { force: true });
        let contents = Effect::Contents {
            path: "a.txt".into(),
            delete: false,
        };
        let changes = contents.changes(&json!({"content": "aGVsbG8h"})).unwrap();
        assert_eq!(changes[0].target, RefTarget::DefaultBranch);
        assert_eq!(
            changes[0].content,
            Content::Files {
                paths: vec!["a.txt".into()],
                largest: 6
            }
        );
        let changes = contents.changes(&json!({"branch": "dev"})).unwrap();
        assert_eq!(changes[0].target, named("refs/heads/dev"));
        let changes = Effect::Rename("refs/heads/old".into())
            .changes(&json!({"new_name": "new"}))
            .unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].kind, ChangeKind::Delete);
        assert_eq!(changes[1].target, named("refs/heads/new"));
        assert!(
            Effect::PullEdit
                .changes(&json!({"title": "t"}))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            Effect::PullEdit.changes(&json!({"base": "main"})).unwrap(),
            [RefChange::retarget("refs/heads/main".into())]
        );
        assert!(
            Effect::Release(None)
                .changes(&json!({}))
                .unwrap()
                .is_empty()
        );
        assert!(
            Effect::Release(Some(7))
                .changes(&json!({"name": "n"}))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            Effect::Release(Some(7))
                .changes(&json!({"draft": false, "tag_name": "v2"}))
                .unwrap()[0]
                .target,
            named("refs/tags/v2")
        );
        assert_eq!(
            Effect::Release(Some(7))
                .changes(&json!({"draft": "no"}))
                .unwrap()[0]
                .target,
            RefTarget::ReleaseTag(7)
        );
        assert!(
            Effect::Release(Some(7))
                .changes(&json!({"draft": true}))
                .unwrap()
                .is_empty()
        );
        // Publishing a draft makes its tag: looked up.
        assert_eq!(
            Effect::Release(Some(7))
                .changes(&json!({"draft": false}))
                .unwrap()[0]
                .target,
            RefTarget::ReleaseTag(7)
        );
        assert!(
            Effect::PullCreate
                .changes(&json!({"head": "feature", "base": "main"}))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            Effect::Release(None)
                .changes(&json!({"tag_name": "v1"}))
                .unwrap()[0]
                .target,
            named("refs/tags/v1")
        );
        for (effect, body, want) in [
            (Effect::CreateRef, json!({}), "no \"ref\""),
            (
                Effect::CreateRef,
                json!({"ref": "heads/x"}),
                "full ref name",
            ),
            (Effect::Merge, json!({"base": 1}), "not a string"),
            (
                Effect::Merge,
                json!({"base": "refs/heads/main"}),
                "ambiguous",
            ),
            (
                Effect::UpdateRef("refs/heads/a".into()),
                json!({"force": "yes"}),
                "true or false",
            ),
            (contents.clone(), json!({"branch": ""}), "ambiguous"),
            (
                Effect::PullEdit,
                json!({"base": "refs/heads/x"}),
                "ambiguous",
            ),
            (Effect::PullEdit, json!({"base": 1}), "not a string"),
            (
                Effect::PullCreate,
                json!({"head": "other:feature", "base": "main"}),
                "head is in another repository",
            ),
            (
                Effect::PullCreate,
                json!({"head": "feature", "head_repo": "secret-fork", "base": "main"}),
                "head is in another repository",
            ),
            (Effect::PullCreate, json!({"base": "main"}), "no \"head\""),
        ] {
            let err = effect.changes(&body).unwrap_err();
            assert!(err.contains(want), "{effect:?}: {err}");
        }
    }

    #[test]
    fn ref_changes_follow_the_push_rules() {
        let update = ChangeKind::Update { force: false };
        let files = |p: &str, largest| Content::Files {
            paths: vec![p.to_owned()],
            largest,
        };
        let p = policy("{allowedRepos: [acme/app], allowedRefs: [main, 'feature/*']}");
        assert!(
            p.decide_ref_change("refs/heads/main", update, &Content::Merge)
                .allowed
        );
        let d = p.decide_ref_change("refs/heads/release", update, &Content::Merge);
        assert_eq!((d.allowed, d.rule.as_str()), (false, "allowedRefs"));
        let d = p.decide_ref_change("refs/heads/release", ChangeKind::Retarget, &Content::None);
        assert_eq!((d.allowed, d.rule.as_str()), (false, "allowedRefs"));
        assert!(
            d.reason
                .starts_with("a pull request's base cannot move to refs/heads/release")
                && d.reason.contains("open a new pull request"),
            "{}",
            d.reason
        );
        let d = p.decide_ref_change("refs/heads/feature/x", ChangeKind::Delete, &Content::None);
        assert_eq!(d.rule, "allowDeletes");
        let d = p.decide_ref_change(
            "refs/heads/main",
            ChangeKind::Update { force: true },
            &Content::Existing,
        );
        assert_eq!(d.rule, "forcePush");

        let p = policy(
            "{allowedRepos: [acme/app], allowedRefs: ['**'], forcePushAllowedRefs: ['feature/*'], protectedPaths: ['.github/**'], maxBlobSize: 10B}",
        );
        let force = ChangeKind::Update { force: true };
        assert!(
            p.decide_ref_change("refs/heads/feature/x", force, &files("a", 1))
                .allowed
        );
        let d = p.decide_ref_change(
            "refs/heads/main",
            update,
            &files(".github/workflows/ci.yml", 1),
        );
        assert_eq!(d.rule, "protectedPaths[.github/**]");
        // The protected directory itself: a file put there, or the directory deleted.
        let p2 = policy(
            "{allowedRepos: [acme/app], allowedRefs: ['**'], protectedPaths: ['.github/workflows/**']}",
        );
        for dir in [".github", ".github/workflows"] {
            let d = p2.decide_ref_change("refs/heads/main", update, &files(dir, 1));
            assert_eq!(d.rule, "protectedPaths[.github/workflows/**]", "{dir}");
        }
        assert!(
            p2.decide_ref_change("refs/heads/main", update, &files(".github/other.yml", 1))
                .allowed
        );
        let d = p.decide_ref_change("refs/heads/main", update, &Content::Merge);
        assert_eq!(d.rule, "protectedPaths");
        // A pull request's base may move onto any ref it may merge into, whatever the
        // content rules (the merge is decided when it is made).
        assert!(
            p.decide_ref_change("refs/heads/main", ChangeKind::Retarget, &Content::None)
                .allowed
        );
        let d = p.decide_ref_change("refs/heads/main", update, &files("a", 11));
        assert_eq!(d.rule, "maxBlobSize");

        let p = policy(
            "{allowedRepos: [acme/app], allowedRefs: [main], allowDeletes: true, requireSignedCommits: {keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFVpK3wFtUrWpJcUuGbcl4XlBPbmA1ZqQ2Vn7nTlW5xc']}}",
        );
        let d = p.decide_ref_change("refs/heads/main", update, &files("a", 1));
        assert_eq!(d.rule, "requireSignedCommits");
        assert!(
            p.decide_ref_change("refs/heads/main", ChangeKind::Delete, &Content::None)
                .allowed
        );
    }

    #[test]
    fn blobs_and_inline_tree_contents_are_measured() {
        let blob = |body| Effect::Blob.largest_blob(&body);
        assert_eq!(blob(json!({"content": "hello"})), Ok(Some(5)));
        assert_eq!(
            blob(json!({"content": "hello", "encoding": "utf-8"})),
            Ok(Some(5))
        );
        assert_eq!(
            blob(json!({"content": "aGVsbG8h", "encoding": "base64"})),
            Ok(Some(6))
        );
        // Anything GitHub might read as other than base64 counts as text.
        assert_eq!(
            blob(json!({"content": "aGVsbG8h", "encoding": "Base64"})),
            Ok(Some(8))
        );
        assert!(blob(json!({"encoding": "utf-8"})).is_err());
        assert!(blob(json!({"content": 5})).is_err());
        let tree = |body| Effect::Tree.largest_blob(&body);
        let entries = json!({"base_tree": "a", "tree": [
            {"path": "a", "mode": "100644", "type": "blob", "content": "12345678901"},
            {"path": "b", "mode": "100644", "type": "blob", "sha": "b"},
            {"path": "c", "mode": "100644", "type": "blob", "content": null, "sha": "c"},
        ]});
        assert_eq!(tree(entries), Ok(Some(11)));
        assert_eq!(tree(json!({"tree": []})), Ok(Some(0)));
        assert!(tree(json!({"tree": "abc"})).is_err());
        assert!(tree(json!({})).is_err());
        assert!(tree(json!({"tree": [1]})).is_err());
        assert!(tree(json!({"tree": [{"path": "a", "content": []}]})).is_err());
        let commit = json!({"message": "m", "tree": "a", "content": "x"});
        assert_eq!(Effect::Objects.largest_blob(&commit), Ok(None));
        assert_eq!(Effect::None.largest_blob(&Value::Null), Ok(None));
    }

    #[test]
    fn max_blob_size_bounds_blobs_written_without_a_ref() {
        let p = policy("{allowedRepos: [acme/app], allowedRefs: ['**'], maxBlobSize: 10B}");
        assert_eq!(p.decide_blob_size("a file", 10), None);
        let d = p.decide_blob_size("a file", 11).unwrap();
        assert_eq!((d.allowed, d.rule.as_str()), (false, "maxBlobSize"));
        assert!(d.reason.contains("11 bytes"), "{}", d.reason);
        let big = json!({"content": "12345678901"});
        let d = p.decide_blobs(&Effect::Blob, &big).unwrap().unwrap();
        assert_eq!(d.rule, "maxBlobSize");
        assert_eq!(p.decide_blobs(&Effect::Objects, &big), Ok(None));
        assert!(p.decide_blobs(&Effect::Tree, &big).is_err());
        let p = policy("{allowedRepos: [acme/app], allowedRefs: ['**']}");
        assert_eq!(p.decide_blob_size("a file", u64::MAX), None);
    }
}
