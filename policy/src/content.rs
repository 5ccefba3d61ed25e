//! Rules on what a push carries, decided from facts read out of its pack: force-push
//! protection and size limits.
//!
//! The proxy reads the pack ([`PackFacts`]), asks [`Policy::needs_pack`] first and
//! [`fast_forward`] for each ref whose ancestry the pack alone cannot prove, resolves the
//! rest through the GitHub API, and then gets the verdict from [`Policy::decide_content`].

use std::collections::{HashMap, HashSet, VecDeque};

use crate::byte_size::ByteSize;
use crate::decision::{Decision, PushVerdict};
use crate::object_id::ObjectId;
use crate::policy::Policy;
use crate::raw::ForcePush;
use crate::ref_update::RefUpdate;
use crate::refname::RefName;
use crate::signers::{SignatureCheck, Signers};

/// What the content rules need to know about a pushed pack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackFacts {
    /// The pack's size in bytes (header, entries and trailer).
    pub pack_bytes: u64,
    /// Every commit in the pack, with its parents.
    pub commits: HashMap<ObjectId, Vec<ObjectId>>,
    /// Every commit in the pack, with its root tree.
    pub commit_trees: HashMap<ObjectId, ObjectId>,
    /// Every annotated tag in the pack, with the object it points at.
    pub tags: HashMap<ObjectId, ObjectId>,
    /// The pack's trees (all of them when paths matter, else none).
    pub trees: HashMap<ObjectId, Vec<TreeEntry>>,
    /// Objects over the policy's `maxBlobSize`, largest first.
    pub large_objects: Vec<LargeObject>,
}

/// One entry of a git tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// The file or directory name.
    pub name: String,
    /// The git mode (`0o100644`, `0o100755`, `0o120000`, `0o040000`, `0o160000`).
    pub mode: u32,
    /// The object it names.
    pub id: ObjectId,
}

impl TreeEntry {
    /// Whether it is a directory.
    pub fn is_tree(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

impl PackFacts {
    /// `id` with the pack's annotated tags peeled off: what a ref set to `id` points at
    /// in the end (a commit, unless the tags name a tree or a blob). A chain that loops,
    /// impossible in git, stops where it would.
    pub fn peeled<'a>(&'a self, id: &'a ObjectId) -> &'a ObjectId {
        let mut id = id;
        for _ in 0..=self.tags.len() {
            match self.tags.get(id) {
                Some(target) => id = target,
                None => break,
            }
        }
        id
    }
}

/// Trees and commits read from the server (through the API) for the protected-paths
/// check: the parents' side of a diff is usually not in the pack.
#[derive(Clone, Debug, Default)]
pub struct ServerObjects {
    /// Trees by id.
    pub trees: HashMap<ObjectId, Vec<TreeEntry>>,
    /// Root trees by commit id.
    pub commit_trees: HashMap<ObjectId, ObjectId>,
    /// The commit at the tip of the default branch, when a merge is compared with it.
    pub default_tip: Option<ObjectId>,
}

/// The most tree entries one [`Policy::protected_changes`] call compares (an entry deep
/// in the tree counts for more, one more per 64 bytes of its directory's path).
const MAX_DIFF_WORK: usize = 1_000_000;
/// The deepest directory nesting compared (git's own `core.maxTreeDepth` default).
const MAX_TREE_DEPTH: usize = 4096;

/// Why [`Policy::protected_changes`] has no answer yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfinished {
    /// These must first be read from the server.
    Needs(Vec<Lookup>),
    /// The comparison is over its bounds, and why: deny.
    TooLarge(String),
}

/// Something [`Policy::protected_changes`] needs from the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lookup {
    /// A tree's entries.
    Tree(ObjectId),
    /// A commit's root tree.
    CommitTree(ObjectId),
    /// The commit at the tip of the default branch.
    DefaultTip,
}

/// A protected path that a pushed commit adds, changes or deletes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProtectedChange {
    /// The commit.
    pub commit: ObjectId,
    /// The path, from the repository root.
    pub path: String,
}

/// Everything found out about a push beyond its pack, for [`Policy::decide_content`].
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Per ref name, for each update that must be a fast-forward.
    pub ancestry: HashMap<String, RefAncestry>,
    /// Protected paths the pushed commits touch, or why that could not be found out.
    pub protected: Option<Result<Vec<ProtectedChange>, String>>,
    /// Every pushed commit's signature check and committer email (with
    /// `requireSignedCommits`).
    pub signatures: Vec<(ObjectId, SignatureCheck, String)>,
    /// With `protectedPaths` or `requireSignedCommits`: why an update would bring in
    /// commits the push does not carry (already on GitHub, but not on the ref), which
    /// the rules cannot check.
    pub unchecked: Vec<String>,
}

/// An object over `maxBlobSize`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LargeObject {
    /// Its id, when the pack let it be computed.
    pub id: Option<ObjectId>,
    /// Its size in bytes, inflated.
    pub size: u64,
    /// Where a pushed tree puts it (`assets/video.mp4`), when the pack shows that.
    pub path: Option<String>,
}

/// Whether the pack proves that `old` is an ancestor of `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FastForward {
    /// The walk from `new` through the pack's commits reached `old`.
    Proven,
    /// The walk left the pack at these commits (or `new` is not in the pack): `old` is an
    /// ancestor of `new` exactly when it is an ancestor of (or equal to) one of them, which
    /// only the server can tell.
    Ask(Vec<ObjectId>),
}

/// What was found out about one ref update's ancestry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefAncestry {
    /// `old` is an ancestor of `new`.
    FastForward,
    /// It is not: the update rewrites history.
    Rewrite,
    /// It could not be found out, and why.
    Unknown(String),
}

/// Walks parents from `new` through `commits`; see [`FastForward`]. Visits each commit
/// once, so the cost is bounded by the pack's size.
pub fn fast_forward(
    commits: &HashMap<ObjectId, Vec<ObjectId>>,
    old: &ObjectId,
    new: &ObjectId,
) -> FastForward {
    let mut seen: HashSet<&ObjectId> = HashSet::from([new]);
    let mut queue: VecDeque<&ObjectId> = VecDeque::from([new]);
    let mut boundary = Vec::new();
    while let Some(id) = queue.pop_front() {
        if id == old {
            return FastForward::Proven;
        }
        match commits.get(id) {
            Some(parents) => {
                for parent in parents {
                    if seen.insert(parent) {
                        queue.push_back(parent);
                    }
                }
            }
            None => boundary.push(id.clone()),
        }
    }
    FastForward::Ask(boundary)
}

/// Every commit that `new`'s history reaches outside the pack: `new` itself if it is not
/// in the pack, else each parent, at any depth through the pack's commits, that the pack
/// does not hold. These are commits the push does not carry, so only the server can say
/// what they are.
pub fn outside_commits(
    commits: &HashMap<ObjectId, Vec<ObjectId>>,
    new: &ObjectId,
) -> Vec<ObjectId> {
    let mut seen: HashSet<&ObjectId> = HashSet::from([new]);
    let mut queue: VecDeque<&ObjectId> = VecDeque::from([new]);
    let mut outside = Vec::new();
    while let Some(id) = queue.pop_front() {
        match commits.get(id) {
            Some(parents) => {
                for parent in parents {
                    if seen.insert(parent) {
                        queue.push_back(parent);
                    }
                }
            }
            None => outside.push(id.clone()),
        }
    }
    outside
}

impl Policy {
    /// Whether a push with these (already allowed) updates must have its pack read: a size
    /// limit is set, or some update moves an existing ref that is not exempt from
    /// `forcePush: deny`.
    pub fn needs_pack(&self, updates: &[RefUpdate]) -> bool {
        let carries_pack = updates.iter().any(|u| !u.is_delete());
        carries_pack
            && (self.max_blob_size.is_some()
                || self.max_push_size.is_some()
                || !self.protected_paths.is_empty()
                || self.signers.is_some()
                || updates.iter().any(|u| self.must_fast_forward(u)))
    }

    /// Whether `protectedPaths` is set (so the pack's trees matter).
    pub fn protects_paths(&self) -> bool {
        !self.protected_paths.is_empty()
    }

    /// `requireSignedCommits`, if set.
    pub fn signers(&self) -> Option<&Signers> {
        self.signers.as_ref()
    }

    /// The protected paths that the pack's commits add, change or delete, each commit
    /// compared with its parent (a root commit with the empty tree). A merge is compared
    /// with its first parent and with the default branch's tip: it changes a path only
    /// where it differs from both, so merging the default branch in brings its protected
    /// files as they are there now. And each of `updates` is judged by its result: the
    /// commit a ref is set to must have every protected path as the ref had it, or as the
    /// default branch's tip has it (a new ref or a tag: as the tip has it), so no history
    /// (an old first parent, an old commit of the default branch) brings back or removes
    /// a protected file. Directories
    /// no pattern can reach are not entered. [`Unfinished::Needs`] lists what must first
    /// be read from the server (trees and commits outside the pack): call again with them
    /// in `server`. The work is bounded whatever the pack holds
    /// ([`Unfinished::TooLarge`]).
    pub fn protected_changes(
        &self,
        facts: &PackFacts,
        server: &ServerObjects,
        updates: &[RefUpdate],
    ) -> Result<Vec<ProtectedChange>, Unfinished> {
        let mut diff = TreeDiff {
            policy: self,
            facts,
            server,
            missing: Vec::new(),
            changed: Vec::new(),
            work: MAX_DIFF_WORK,
        };
        let mut commits: Vec<&ObjectId> = facts.commits.keys().collect();
        commits.sort();
        for commit in commits {
            let Some(tree) = facts.commit_trees.get(commit) else {
                continue;
            };
            let parents = &facts.commits[commit];
            let compared: Vec<Option<&ObjectId>> = match parents.as_slice() {
                [] => vec![None],
                [parent] => vec![Some(parent)],
                [first, ..] => match &server.default_tip {
                    Some(tip) => vec![Some(first), Some(tip)],
                    None => {
                        diff.missing.push(Lookup::DefaultTip);
                        continue;
                    }
                },
            };
            diff.against_all(commit, tree, &compared)?;
        }
        for update in updates.iter().filter(|u| !u.is_delete()) {
            let new = facts.peeled(&update.new);
            let Some(tree) = diff.commit_tree(new) else {
                continue;
            };
            let Some(tip) = &server.default_tip else {
                diff.missing.push(Lookup::DefaultTip);
                continue;
            };
            let mut compared = vec![Some(tip)];
            if !update.is_create() && !update.is_tag() {
                compared.push(Some(&update.old));
            }
            // What a pushed commit was already found to change is said once.
            let start = diff.changed.len();
            diff.against_all(new, tree, &compared)?;
            let (earlier, found) = diff.changed.split_at(start);
            let found: Vec<ProtectedChange> = found
                .iter()
                .filter(|f| earlier.iter().all(|e| e.path != f.path))
                .cloned()
                .collect();
            diff.changed.truncate(start);
            diff.changed.extend(found);
        }
        if diff.missing.is_empty() {
            diff.changed.sort();
            diff.changed.dedup();
            Ok(diff.changed)
        } else {
            diff.missing.sort();
            diff.missing.dedup();
            Err(Unfinished::Needs(diff.missing))
        }
    }

    /// The configured `maxPushSize`.
    pub fn max_push_size(&self) -> Option<ByteSize> {
        self.max_push_size
    }

    /// The configured `maxBlobSize`.
    pub fn max_blob_size(&self) -> Option<ByteSize> {
        self.max_blob_size
    }

    /// Whether this update must be a fast-forward: it changes an existing ref, and
    /// `forcePush` is `deny` and the ref is not in `forcePushAllowedRefs`.
    pub fn must_fast_forward(&self, update: &RefUpdate) -> bool {
        if update.is_create() || update.is_delete() || self.force_push == ForcePush::Allow {
            return false;
        }
        match RefName::parse(&update.name) {
            Ok(name) => !self.force_push_refs.iter().any(|p| p.matches(&name)),
            Err(_) => true,
        }
    }

    /// The verdict on a push's content, given its pack and the findings: the ancestry of
    /// every update that [`Policy::must_fast_forward`] (one missing from it is denied as
    /// undecided) and, with `protectedPaths`, the protected changes (missing: denied as
    /// undecided). Atomic like [`Policy::decide_push_commands`].
    pub fn decide_content(
        &self,
        updates: &[RefUpdate],
        facts: &PackFacts,
        findings: &Findings,
    ) -> PushVerdict {
        let ancestry = &findings.ancestry;
        let whole = self
            .decide_pack_limits(facts)
            .or_else(|| self.decide_unchecked(&findings.unchecked))
            .or_else(|| self.decide_signatures(&findings.signatures))
            .or_else(|| self.decide_protected(findings.protected.as_ref()));
        let refs = updates
            .iter()
            .map(|update| {
                let decision = match &whole {
                    Some(denied) if !update.is_delete() => denied.clone(),
                    _ => self.decide_ancestry(update, ancestry.get(&update.name)),
                };
                (update.clone(), decision)
            })
            .collect();
        PushVerdict::atomic(refs)
    }

    /// `maxPushSize`, then `maxBlobSize`: a denial that applies to every ref the pack is for.
    fn decide_pack_limits(&self, facts: &PackFacts) -> Option<Decision> {
        if let Some(limit) = self.max_push_size.filter(|l| facts.pack_bytes > l.0) {
            return Some(Decision::deny(
                "maxPushSize",
                format!(
                    "the pushed pack is {}, over maxPushSize {limit}",
                    ByteSize(facts.pack_bytes)
                ),
            ));
        }
        let limit = self.max_blob_size?;
        let largest = facts.large_objects.iter().find(|o| o.size > limit.0)?;
        let what = match (&largest.path, &largest.id) {
            (Some(path), _) => path.clone(),
            (None, Some(id)) => format!("object {id}"),
            (None, None) => "an object".to_owned(),
        };
        let more = match facts.large_objects.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(Decision::deny(
            "maxBlobSize",
            format!(
                "{what} is {}, over maxBlobSize {limit}{more}",
                ByteSize(largest.size)
            ),
        ))
    }

    /// Whether the rules that look at every new commit apply.
    pub fn checks_each_commit(&self) -> bool {
        self.signers.is_some() || !self.protected_paths.is_empty()
    }

    /// Commits the push would bring in without carrying them: a denial, as neither
    /// `protectedPaths` nor `requireSignedCommits` could check them.
    fn decide_unchecked(&self, unchecked: &[String]) -> Option<Decision> {
        let first = unchecked.first()?;
        let rule = if self.signers.is_some() {
            "requireSignedCommits"
        } else {
            "protectedPaths"
        };
        Some(Decision::deny(rule, first.clone()))
    }

    /// `requireSignedCommits`: a denial for the whole push naming the commits whose
    /// signature is missing or not acceptable.
    fn decide_signatures(&self, checks: &[(ObjectId, SignatureCheck, String)]) -> Option<Decision> {
        let signers = self.signers.as_ref()?;
        let mut refused: Vec<String> = checks
            .iter()
            .filter_map(|(commit, check, email)| {
                let short = commit.to_string();
                signers
                    .refusal(check, email)
                    .map(|why| format!("commit {} {why}", &short[..short.len().min(12)]))
            })
            .collect();
        refused.sort();
        let first = refused.first()?;
        let more = match refused.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(Decision::deny(
            "requireSignedCommits",
            format!("{first}{more}; every new commit must be signed with an allowed SSH key"),
        ))
    }

    /// `protectedPaths`: a denial for the whole push if a pushed commit touches one.
    fn decide_protected(
        &self,
        found: Option<&Result<Vec<ProtectedChange>, String>>,
    ) -> Option<Decision> {
        if self.protected_paths.is_empty() {
            return None;
        }
        match found {
            Some(Ok(changes)) => {
                let first = changes.first()?;
                let short = first.commit.to_string();
                let more = match changes.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                Some(Decision::deny(
                    "protectedPaths",
                    format!(
                        "commit {} changes {}, which protectedPaths protects{more}",
                        &short[..short.len().min(12)],
                        first.path
                    ),
                ))
            }
            Some(Err(why)) => Some(Decision::deny(
                "protectedPaths",
                format!("cannot tell which paths this push changes ({why}); denied by policy"),
            )),
            None => Some(Decision::deny(
                "protectedPaths",
                "cannot tell which paths this push changes; denied by policy",
            )),
        }
    }

    fn decide_ancestry(&self, update: &RefUpdate, ancestry: Option<&RefAncestry>) -> Decision {
        if !self.must_fast_forward(update) {
            return Decision::allow(
                "content",
                format!("{} passes the content rules", update.name),
            );
        }
        if update.is_tag() {
            return Decision::deny(
                "forcePush",
                format!(
                    "moving the existing tag {} is a forced update (git never fast-forwards a tag); denied by policy (forcePush is deny and it is not in forcePushAllowedRefs)",
                    update.name
                ),
            );
        }
        match ancestry {
            Some(RefAncestry::FastForward) => {
                Decision::allow("forcePush", format!("{} is a fast-forward", update.name))
            }
            Some(RefAncestry::Rewrite) => {
                Decision::deny("forcePush", "non-fast-forward update denied by policy")
            }
            Some(RefAncestry::Unknown(why)) => Decision::deny(
                "forcePush",
                format!(
                    "cannot tell whether this update is a fast-forward ({why}); denied by policy, retry later"
                ),
            ),
            None => Decision::deny(
                "forcePush",
                "cannot tell whether this update is a fast-forward; denied by policy",
            ),
        }
    }
}

/// One protected-paths walk over pairs of trees.
struct TreeDiff<'a> {
    policy: &'a Policy,
    facts: &'a PackFacts,
    server: &'a ServerObjects,
    missing: Vec<Lookup>,
    changed: Vec<ProtectedChange>,
    /// Tree entries still allowed to be compared.
    work: usize,
}

impl<'a> TreeDiff<'a> {
    /// A tree's entries by name (`None`, noted as missing, when neither the pack nor
    /// the server objects have it).
    fn tree(&mut self, id: &ObjectId) -> Option<HashMap<&'a str, &'a TreeEntry>> {
        let (facts, server) = (self.facts, self.server);
        let found = facts.trees.get(id).or_else(|| server.trees.get(id));
        if found.is_none() {
            self.missing.push(Lookup::Tree(id.clone()));
        }
        found.map(|entries| entries.iter().map(|e| (e.name.as_str(), e)).collect())
    }

    /// Compares two root trees (`None`: absent), directory by directory, with an
    /// explicit stack so that no tree depth can exhaust the thread's.
    /// The root tree of `commit`, from the pack or the server; else asked for.
    fn commit_tree(&mut self, commit: &ObjectId) -> Option<&'a ObjectId> {
        let tree = self
            .facts
            .commit_trees
            .get(commit)
            .or_else(|| self.server.commit_trees.get(commit));
        if tree.is_none() {
            self.missing.push(Lookup::CommitTree(commit.clone()));
        }
        tree
    }

    /// Records the protected paths where `commit`'s `tree` differs from every one of
    /// `compared` (commits; `None` is the empty tree).
    fn against_all(
        &mut self,
        commit: &ObjectId,
        tree: &ObjectId,
        compared: &[Option<&ObjectId>],
    ) -> Result<(), Unfinished> {
        let mut common: Option<Vec<ProtectedChange>> = None;
        for against in compared {
            let against_tree = match against {
                None => None,
                Some(id) => match self.commit_tree(id) {
                    Some(tree) => Some(tree),
                    None => continue,
                },
            };
            let start = self.changed.len();
            self.walk(commit, Some(tree), against_tree)?;
            let found: Vec<ProtectedChange> = self.changed.drain(start..).collect();
            common = Some(match common {
                None => found,
                Some(earlier) => earlier
                    .into_iter()
                    .filter(|c| found.iter().any(|f| f.path == c.path))
                    .collect(),
            });
        }
        self.changed.extend(common.into_iter().flatten());
        Ok(())
    }

    fn walk(
        &mut self,
        commit: &ObjectId,
        new: Option<&ObjectId>,
        old: Option<&ObjectId>,
    ) -> Result<(), Unfinished> {
        let mut pending = vec![(new.cloned(), old.cloned(), String::new(), 0)];
        while let Some((new, old, prefix, depth)) = pending.pop() {
            if new == old {
                continue;
            }
            if depth > MAX_TREE_DEPTH {
                return Err(Unfinished::TooLarge(format!(
                    "a pushed tree is nested deeper than {MAX_TREE_DEPTH} directories"
                )));
            }
            // Both sides are looked up before giving up on either, so that one round of
            // lookups brings the server's tree a pushed thin delta may need as its base.
            let new_entries = new.as_ref().map(|id| self.tree(id));
            let old_entries = old.as_ref().map(|id| self.tree(id));
            let (Some(new_entries), Some(old_entries)) = (
                new_entries.unwrap_or_else(|| Some(HashMap::new())),
                old_entries.unwrap_or_else(|| Some(HashMap::new())),
            ) else {
                continue;
            };
            // Every entry's path is spelled out from this prefix: long prefixes cost more.
            let size = (new_entries.len() + old_entries.len()) * (1 + prefix.len() / 64);
            self.work = self.work.checked_sub(size).ok_or_else(|| {
                Unfinished::TooLarge(format!(
                    "the pushed trees are too large to compare (more than {MAX_DIFF_WORK} entries)"
                ))
            })?;
            let mut names: Vec<&str> = new_entries
                .keys()
                .chain(old_entries.keys())
                .copied()
                .collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                let a = new_entries.get(name).copied();
                let b = old_entries.get(name).copied();
                if a.map(|e| (&e.id, e.mode)) == b.map(|e| (&e.id, e.mode)) {
                    continue;
                }
                let path = format!("{prefix}{name}");
                let subtree =
                    |e: Option<&TreeEntry>| e.filter(|e| e.is_tree()).map(|e| e.id.clone());
                let (sub_new, sub_old) = (subtree(a), subtree(b));
                let protected = &self.policy.protected_paths;
                let is_dir = sub_new.is_some() || sub_old.is_some();
                if is_dir && protected.iter().any(|p| p.matches(&path)) {
                    // A pattern naming a directory protects everything in it.
                    self.changed.push(ProtectedChange {
                        commit: commit.clone(),
                        path: format!("{path}/"),
                    });
                } else if is_dir && protected.iter().any(|p| p.may_match_below(&path)) {
                    pending.push((sub_new, sub_old, format!("{path}/"), depth + 1));
                }
                let file_changed =
                    a.is_some_and(|e| !e.is_tree()) || b.is_some_and(|e| !e.is_tree());
                if file_changed
                    && protected
                        .iter()
                        .any(|p| p.matches(&path) || p.names_below(&path))
                {
                    self.changed.push(ProtectedChange {
                        commit: commit.clone(),
                        path,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::object_id::ObjectFormat;

    /// Commit `i`'s ancestors-or-self in a DAG where every parent index is smaller.
    fn closure(parents: &[Vec<usize>], i: usize) -> HashSet<usize> {
        let mut seen = HashSet::from([i]);
        let mut stack = vec![i];
        while let Some(c) = stack.pop() {
            for &p in &parents[c] {
                if seen.insert(p) {
                    stack.push(p);
                }
            }
        }
        seen
    }

    proptest! {
        /// Against the full history: `Proven` only when `old` really is an ancestor of
        /// (or equal to) `new` (a pushed pack can never prove a rewrite to be a
        /// fast-forward), and otherwise `old` is an ancestor of `new` exactly when it is
        /// one of some commit where the walk left the pack.
        #[test]
        fn the_walk_agrees_with_the_whole_history(
            raw in proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..3), 1..24),
            in_pack in proptest::collection::vec(any::<bool>(), 24),
            old in any::<prop::sample::Index>(),
            new in any::<prop::sample::Index>(),
        ) {
            let n = raw.len();
            let parents: Vec<Vec<usize>> = raw
                .iter()
                .enumerate()
                .map(|(i, ps)| if i == 0 { vec![] } else { ps.iter().map(|p| p.index(i)).collect() })
                .collect();
            let commits: HashMap<ObjectId, Vec<ObjectId>> = (0..n)
                .filter(|&i| in_pack[i])
                .map(|i| (id(i as u8), parents[i].iter().map(|&p| id(p as u8)).collect()))
                .collect();
            let (old, new) = (old.index(n), new.index(n));
            let truth = closure(&parents, new).contains(&old);
            match fast_forward(&commits, &id(old as u8), &id(new as u8)) {
                FastForward::Proven => prop_assert!(truth),
                FastForward::Ask(heads) => {
                    let via_heads = heads.iter().any(|h| {
                        let h = (0..n).find(|&i| id(i as u8) == *h).unwrap();
                        closure(&parents, h).contains(&old)
                    });
                    prop_assert_eq!(via_heads, truth);
                }
            }
        }
    }

    fn id(n: u8) -> ObjectId {
        ObjectId::parse(&format!("{n:02x}").repeat(20)).unwrap()
    }

    fn with(ancestry: HashMap<String, RefAncestry>) -> Findings {
        Findings {
            ancestry,
            protected: None,
            ..Findings::default()
        }
    }

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, &["github.com".to_owned()]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn update(old: &ObjectId, new: &ObjectId, name: &str) -> RefUpdate {
        RefUpdate {
            old: old.clone(),
            new: new.clone(),
            name: name.to_owned(),
        }
    }

    /// 1 <- 2 <- 3, and 2 <- 4 (a side branch); 5 is a merge of 3 and 9 (9 not in the pack).
    fn history() -> HashMap<ObjectId, Vec<ObjectId>> {
        HashMap::from([
            (id(2), vec![id(1)]),
            (id(3), vec![id(2)]),
            (id(4), vec![id(2)]),
            (id(5), vec![id(3), id(9)]),
        ])
    }

    #[test]
    fn walks_parents_through_the_pack() {
        let commits = history();
        assert_eq!(fast_forward(&commits, &id(2), &id(3)), FastForward::Proven);
        assert_eq!(fast_forward(&commits, &id(1), &id(5)), FastForward::Proven);
        assert_eq!(fast_forward(&commits, &id(3), &id(3)), FastForward::Proven);
        // 4 is not an ancestor of 3: the walk ends where the pack ends, at 1.
        assert_eq!(
            fast_forward(&commits, &id(4), &id(3)),
            FastForward::Ask(vec![id(1)])
        );
        // Both sides of the merge leave the pack.
        assert_eq!(
            fast_forward(&commits, &id(7), &id(5)),
            FastForward::Ask(vec![id(9), id(1)])
        );
        // `new` not in the pack at all (pushing a commit the server has).
        assert_eq!(
            fast_forward(&commits, &id(7), &id(8)),
            FastForward::Ask(vec![id(8)])
        );
    }

    #[test]
    fn a_cycle_of_parents_ends() {
        let commits = HashMap::from([(id(1), vec![id(2)]), (id(2), vec![id(1)])]);
        assert_eq!(
            fast_forward(&commits, &id(3), &id(1)),
            FastForward::Ask(vec![])
        );
    }

    #[test]
    fn tags_peel_to_what_they_name_and_never_fast_forward() {
        let facts = PackFacts {
            tags: HashMap::from([
                (id(1), id(2)),
                (id(2), id(3)),
                (id(8), id(9)),
                (id(9), id(8)),
            ]),
            ..PackFacts::default()
        };
        assert_eq!(facts.peeled(&id(1)), &id(3));
        assert_eq!(facts.peeled(&id(3)), &id(3));
        assert_eq!(facts.peeled(&id(7)), &id(7));
        // A loop (impossible in git) ends.
        assert!([id(8), id(9)].contains(facts.peeled(&id(8))));

        let p = policy("allowedRefs: ['*']\n");
        let moved = update(&id(1), &id(2), "refs/tags/v1");
        assert!(moved.is_tag() && p.must_fast_forward(&moved));
        let fast = HashMap::from([("refs/tags/v1".to_owned(), RefAncestry::FastForward)]);
        let verdict = p.decide_content(&[moved], &PackFacts::default(), &with(fast));
        assert_eq!(verdict.refs[0].1.rule, "forcePush");
        assert!(
            verdict.refs[0]
                .1
                .reason
                .starts_with("moving the existing tag refs/tags/v1 is a forced update"),
            "{verdict:?}"
        );
    }

    #[test]
    fn which_updates_must_fast_forward() {
        let zero = ObjectId::zero(ObjectFormat::Sha1);
        let deny = policy("allowedRefs: ['*']\nforcePushAllowedRefs: ['agent/*']\n");
        assert!(deny.must_fast_forward(&update(&id(1), &id(2), "refs/heads/main")));
        assert!(!deny.must_fast_forward(&update(&id(1), &id(2), "refs/heads/agent/x")));
        assert!(!deny.must_fast_forward(&update(&zero, &id(2), "refs/heads/main")));
        assert!(!deny.must_fast_forward(&update(&id(1), &zero, "refs/heads/main")));
        let allow = policy("allowedRefs: ['*']\nforcePush: allow\n");
        assert!(!allow.must_fast_forward(&update(&id(1), &id(2), "refs/heads/main")));

        // Reading the pack is needed only where some rule can apply.
        assert!(deny.needs_pack(&[update(&id(1), &id(2), "refs/heads/main")]));
        assert!(!deny.needs_pack(&[update(&id(1), &id(2), "refs/heads/agent/x")]));
        assert!(!allow.needs_pack(&[update(&id(1), &id(2), "refs/heads/main")]));
        let sized = policy("allowedRefs: ['*']\nforcePush: allow\nmaxPushSize: 1MB\n");
        assert!(sized.needs_pack(&[update(&zero, &id(2), "refs/heads/new")]));
        assert!(!sized.needs_pack(&[update(&id(1), &zero, "refs/heads/gone")]));
    }

    #[test]
    fn decides_ancestry_per_ref_atomically() {
        let p = policy("allowedRefs: ['*']\nforcePushAllowedRefs: ['agent/*']\n");
        let updates = [
            update(&id(1), &id(2), "refs/heads/main"),
            update(&id(3), &id(4), "refs/heads/agent/x"),
        ];
        let facts = PackFacts::default();
        let fast = HashMap::from([("refs/heads/main".to_owned(), RefAncestry::FastForward)]);
        let verdict = p.decide_content(&updates, &facts, &with(fast.clone()));
        assert!(verdict.allowed, "{verdict:?}");

        let rewrite = HashMap::from([("refs/heads/main".to_owned(), RefAncestry::Rewrite)]);
        let verdict = p.decide_content(&updates, &facts, &with(rewrite.clone()));
        assert!(!verdict.allowed);
        assert_eq!(verdict.refs[0].1.rule, "forcePush");
        assert_eq!(
            verdict.refs[0].1.reason,
            "non-fast-forward update denied by policy"
        );
        assert!(verdict.refs[1].1.is_atomic_rejection());

        let unknown = HashMap::from([(
            "refs/heads/main".to_owned(),
            RefAncestry::Unknown("the GitHub API did not answer".into()),
        )]);
        let verdict = p.decide_content(&updates, &facts, &with(unknown.clone()));
        assert!(
            verdict.refs[0].1.reason.contains(
                "cannot tell whether this update is a fast-forward (the GitHub API did not answer)"
            ),
            "{verdict:?}"
        );
        let verdict = p.decide_content(&updates, &facts, &Findings::default());
        assert!(!verdict.allowed);
    }

    fn entry(name: &str, mode: u32, n: u8) -> TreeEntry {
        TreeEntry {
            name: name.to_owned(),
            mode,
            id: id(n),
        }
    }

    /// Commit 10 (tree 20) on parent 11 (tree 21, from the server): `.github/workflows/ci.yml`
    /// changed (blob 31 -> 30), `src/lib.rs` unchanged, `README` changed.
    fn pushed() -> (PackFacts, ServerObjects) {
        const FILE: u32 = 0o100644;
        const DIR: u32 = 0o040000;
        let facts = PackFacts {
            commits: HashMap::from([(id(10), vec![id(11)])]),
            commit_trees: HashMap::from([(id(10), id(20))]),
            trees: HashMap::from([
                (
                    id(20),
                    vec![
                        entry(".github", DIR, 22),
                        entry("README", FILE, 40),
                        entry("src", DIR, 24),
                    ],
                ),
                (id(22), vec![entry("workflows", DIR, 23)]),
                (id(23), vec![entry("ci.yml", FILE, 30)]),
            ]),
            ..PackFacts::default()
        };
        let server = ServerObjects {
            commit_trees: HashMap::from([(id(11), id(21))]),
            trees: HashMap::from([
                (
                    id(21),
                    vec![
                        entry(".github", DIR, 25),
                        entry("README", FILE, 41),
                        entry("src", DIR, 24),
                    ],
                ),
                (id(25), vec![entry("workflows", DIR, 26)]),
                (id(26), vec![entry("ci.yml", FILE, 31)]),
            ]),
            default_tip: None,
        };
        (facts, server)
    }

    #[test]
    fn protected_paths_are_found_by_diffing_each_commit_with_its_parents() {
        let p = policy(
            "allowedRefs: ['*']\nforcePush: allow\nprotectedPaths: ['.github/workflows/**', CODEOWNERS]\n",
        );
        let (facts, server) = pushed();
        assert_eq!(
            p.protected_changes(&facts, &server, &[]),
            Ok(vec![ProtectedChange {
                commit: id(10),
                path: ".github/workflows/ci.yml".into()
            }])
        );
        // Without the server's side, it asks for exactly what it needs.
        assert_eq!(
            p.protected_changes(&facts, &ServerObjects::default(), &[]),
            Err(Unfinished::Needs(vec![Lookup::CommitTree(id(11))]))
        );
        let mut partial = server.clone();
        partial.trees.remove(&id(26));
        assert_eq!(
            p.protected_changes(&facts, &partial, &[]),
            Err(Unfinished::Needs(vec![Lookup::Tree(id(26))]))
        );
        // A pattern naming a directory protects all of it.
        let dir = policy("allowedRefs: ['*']\nprotectedPaths: [.github/workflows]\n");
        assert_eq!(
            dir.protected_changes(&facts, &server, &[]).unwrap()[0].path,
            ".github/workflows/"
        );
        // A mode change is a change; an unprotected change is none.
        let readme = policy("allowedRefs: ['*']\nprotectedPaths: ['src/**']\n");
        assert_eq!(readme.protected_changes(&facts, &server, &[]), Ok(vec![]));
        let mut exec = facts.clone();
        exec.trees.insert(
            id(20),
            vec![
                entry(".github", 0o040000, 22),
                entry("README", 0o100755, 41),
                entry("src", 0o040000, 24),
            ],
        );
        let top = policy("allowedRefs: ['*']\nprotectedPaths: [README]\n");
        assert_eq!(
            top.protected_changes(&exec, &server, &[]).unwrap()[0].path,
            "README"
        );
        // A symlink (or file, or submodule) put where a protected directory would be.
        let mut link = exec.clone();
        link.trees.insert(
            id(20),
            vec![entry(".github", 0o120000, 42), entry("src", 0o040000, 24)],
        );
        let empty = ServerObjects {
            commit_trees: HashMap::from([(id(11), id(21))]),
            trees: HashMap::from([(id(21), vec![entry("src", 0o040000, 24)])]),
            default_tip: None,
        };
        let workflows = policy("allowedRefs: ['*']\nprotectedPaths: ['.github/workflows/**']\n");
        assert_eq!(
            workflows.protected_changes(&link, &empty, &[]).unwrap()[0].path,
            ".github"
        );
        // A root commit is compared with the empty tree: every protected file is new.
        let root = PackFacts {
            commits: HashMap::from([(id(10), vec![])]),
            ..facts
        };
        assert_eq!(
            p.protected_changes(&root, &ServerObjects::default(), &[])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn deep_trees_are_walked_without_recursion_and_within_bounds() {
        const DIR: u32 = 0o040000;
        let p = policy("allowedRefs: ['*']\nprotectedPaths: ['**/x']\n");
        // Trees 1000.. nested `d/d/d/…`, `levels` deep, a file `x` at the bottom.
        let nest = |levels: u32| {
            let tid = |n: u32| ObjectId::parse(&format!("{n:040x}")).unwrap();
            let mut trees = HashMap::new();
            for level in 0..levels {
                trees.insert(
                    tid(1000 + level),
                    vec![TreeEntry {
                        name: "d".into(),
                        mode: DIR,
                        id: tid(1001 + level),
                    }],
                );
            }
            trees.insert(tid(1000 + levels), vec![entry("x", 0o100644, 30)]);
            PackFacts {
                commits: HashMap::from([(id(10), vec![])]),
                commit_trees: HashMap::from([(id(10), tid(1000))]),
                trees,
                ..PackFacts::default()
            }
        };
        let changes = p
            .protected_changes(&nest(3000), &ServerObjects::default(), &[])
            .unwrap();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].path.ends_with("d/d/x"));
        assert_eq!(
            p.protected_changes(&nest(5000), &ServerObjects::default(), &[]),
            Err(Unfinished::TooLarge(
                "a pushed tree is nested deeper than 4096 directories".into()
            ))
        );
    }

    /// Commit `commit` on the server, whose tree (35) has `.github/workflows/ci.yml` as
    /// blob `ci`.
    fn with_workflow(server: &mut ServerObjects, commit: u8, ci: u8) {
        server.commit_trees.insert(id(commit), id(35));
        server
            .trees
            .insert(id(35), vec![entry(".github", 0o040000, 36)]);
        server
            .trees
            .insert(id(36), vec![entry("workflows", 0o040000, 37)]);
        server
            .trees
            .insert(id(37), vec![entry("ci.yml", 0o100644, ci)]);
    }

    #[test]
    fn a_merge_is_compared_with_its_first_parent_and_the_default_branch_tip() {
        let p = policy("allowedRefs: ['*']\nprotectedPaths: ['.github/workflows/**']\n");
        let (mut facts, mut server) = pushed();
        // 12 merges 13 into 11 (ci.yml 31); its own tree is 20 (ci.yml 30).
        facts.commits = HashMap::from([(id(12), vec![id(11), id(13)])]);
        facts.commit_trees = HashMap::from([(id(12), id(20))]);
        server.commit_trees.insert(id(13), id(20));
        // Which protected files the default branch has now must be asked first.
        assert_eq!(
            p.protected_changes(&facts, &server, &[]),
            Err(Unfinished::Needs(vec![Lookup::DefaultTip]))
        );
        // The default branch's tip (13) has ci.yml 30 too: the merge brings it as it is
        // there, and changes nothing.
        server.default_tip = Some(id(13));
        assert_eq!(p.protected_changes(&facts, &server, &[]), Ok(vec![]));
        let changed = Ok(vec![ProtectedChange {
            commit: id(12),
            path: ".github/workflows/ci.yml".into(),
        }]);
        // The tip has moved on to ci.yml 32: 30 is neither the first parent's nor the
        // tip's, so the merge changes it (13 is still a parent: an older version).
        server.default_tip = Some(id(14));
        with_workflow(&mut server, 14, 32);
        assert_eq!(p.protected_changes(&facts, &server, &[]), changed);
        // A merge that takes an ancestor's tree without the workflow deletes it.
        facts.commit_trees.insert(id(12), id(38));
        facts
            .trees
            .insert(id(38), vec![entry("README", 0o100644, 40)]);
        server.commit_trees.insert(id(13), id(38));
        server.default_tip = Some(id(11));
        assert_eq!(p.protected_changes(&facts, &server, &[]), changed);
    }

    #[test]
    fn an_update_may_not_leave_a_protected_path_as_neither_the_ref_nor_the_tip_has_it() {
        let p = policy("allowedRefs: ['*']\nprotectedPaths: ['.github/workflows/**']\n");
        let (mut facts, mut server) = pushed();
        // main is at 14 (ci.yml 32), also the default branch's tip. 12 merges 11, an old
        // commit of main (ci.yml 31), first, and 14 second, and keeps 11's tree.
        facts.commits = HashMap::from([(id(12), vec![id(11), id(14)])]);
        facts.commit_trees = HashMap::from([(id(12), id(21))]);
        with_workflow(&mut server, 14, 32);
        server.default_tip = Some(id(14));
        let main = |old: u8| RefUpdate {
            old: id(old),
            new: id(12),
            name: "refs/heads/main".into(),
        };
        // Commit by commit nothing changes (12 is 11's tree, and its first parent is 11)...
        assert_eq!(p.protected_changes(&facts, &server, &[]), Ok(vec![]));
        // ... but main would go from ci.yml 32 back to 31.
        let rolled_back = Ok(vec![ProtectedChange {
            commit: id(12),
            path: ".github/workflows/ci.yml".into(),
        }]);
        assert_eq!(
            p.protected_changes(&facts, &server, &[main(14)]),
            rolled_back
        );
        // A ref that has 31 keeps it; a new ref must take the tip's.
        assert_eq!(
            p.protected_changes(&facts, &server, &[main(11)]),
            Ok(vec![])
        );
        let create = RefUpdate {
            old: ObjectId::zero(crate::ObjectFormat::Sha1),
            ..main(14)
        };
        assert_eq!(p.protected_changes(&facts, &server, &[create]), rolled_back);
    }

    #[test]
    fn a_protected_change_denies_the_push_naming_commit_and_path() {
        let p = policy(
            "allowedRefs: ['*']\nforcePush: allow\nprotectedPaths: ['.github/workflows/**']\n",
        );
        let updates = [update(&id(1), &id(10), "refs/heads/main")];
        let (facts, server) = pushed();
        let findings = Findings {
            ancestry: HashMap::new(),
            protected: Some(Ok(p.protected_changes(&facts, &server, &[]).unwrap())),
            ..Findings::default()
        };
        let verdict = p.decide_content(&updates, &facts, &findings);
        assert_eq!(verdict.refs[0].1.rule, "protectedPaths");
        assert_eq!(
            verdict.refs[0].1.reason,
            format!(
                "commit {} changes .github/workflows/ci.yml, which protectedPaths protects",
                &id(10).to_string()[..12]
            )
        );
        let unknown = Findings {
            ancestry: HashMap::new(),
            protected: Some(Err("the GitHub API did not answer".into())),
            ..Findings::default()
        };
        assert!(!p.decide_content(&updates, &facts, &unknown).allowed);
        assert!(
            !p.decide_content(&updates, &facts, &Findings::default())
                .allowed
        );
        let clean = Findings {
            ancestry: HashMap::new(),
            protected: Some(Ok(vec![])),
            ..Findings::default()
        };
        assert!(p.decide_content(&updates, &facts, &clean).allowed);
    }

    #[test]
    fn size_limits_name_the_object_and_the_limit() {
        let p =
            policy("allowedRefs: ['*']\nforcePush: allow\nmaxBlobSize: 50MB\nmaxPushSize: 1GB\n");
        let updates = [update(&id(1), &id(2), "refs/heads/main")];
        let mut facts = PackFacts {
            pack_bytes: 70_000_000,
            large_objects: vec![
                LargeObject {
                    id: Some(id(7)),
                    size: 62_914_560,
                    path: Some("assets/big.bin".into()),
                },
                LargeObject {
                    id: Some(id(8)),
                    size: 51_000_000,
                    path: None,
                },
            ],
            ..PackFacts::default()
        };
        let verdict = p.decide_content(&updates, &facts, &Findings::default());
        assert_eq!(verdict.refs[0].1.rule, "maxBlobSize");
        assert_eq!(
            verdict.refs[0].1.reason,
            "assets/big.bin is 62.9 MB, over maxBlobSize 50.0 MB (and 1 more)"
        );
        facts.large_objects.remove(0);
        let verdict = p.decide_content(&updates, &facts, &Findings::default());
        assert_eq!(
            verdict.refs[0].1.reason,
            format!("object {} is 51.0 MB, over maxBlobSize 50.0 MB", id(8))
        );
        facts.large_objects.clear();
        assert!(
            p.decide_content(&updates, &facts, &Findings::default())
                .allowed
        );
        facts.pack_bytes = 1_500_000_000;
        let verdict = p.decide_content(&updates, &facts, &Findings::default());
        assert_eq!(
            (
                verdict.refs[0].1.rule.as_str(),
                verdict.refs[0].1.reason.as_str()
            ),
            (
                "maxPushSize",
                "the pushed pack is 1.50 GB, over maxPushSize 1.00 GB"
            )
        );
    }
}
