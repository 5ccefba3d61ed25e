//! The GitHub API calls gitgate makes while it decides a push, with the push's own
//! installation token: whether one commit is an ancestor of another
//! (`GET /repos/{owner}/{repo}/compare/{base}...{head}`), a tree's entries
//! (`GET …/git/trees/{sha}`) and a commit's root tree (`GET …/git/commits/{sha}`). Objects
//! never change, so every definite answer is cached.

use std::collections::HashMap;
use std::sync::Mutex;

use gitgate_policy::{ObjectId, RepoPath, TreeEntry};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::settings::Settings;
use crate::token::{Credential, TokenError};
use crate::upstream::Dialer;

/// Cached answers of each kind kept before that cache is emptied and starts over.
const CACHE_ENTRIES: usize = 4096;
/// Bytes the cached answers of each kind may hold before that cache is emptied and
/// starts over: a tree answer can hold megabytes, and a sandbox can make gitgate fetch
/// trees of its choosing (the bases of a crafted thin pack).
const CACHE_BYTES: usize = 32 << 20;
/// The largest answer read.
const MAX_ANSWER: usize = 8 << 20;

/// A tree as gitgate uses it: its entries, and its exact bytes in git's format (the base
/// a thin pack's delta may need).
#[derive(Clone, Debug)]
pub(crate) struct ServerTree {
    pub(crate) entries: Vec<TreeEntry>,
    pub(crate) raw: Vec<u8>,
}

impl ServerTree {
    /// The memory it holds, about.
    pub(crate) fn bytes(&self) -> u64 {
        self.weight() as u64
    }
}

/// The API client and its caches.
pub(crate) struct RepoApi {
    http: reqwest::Client,
    api: String,
    graphql: String,
    ancestry: Cache<(String, String, String), bool>,
    trees: Cache<(String, ObjectId), ServerTree>,
    commit_trees: Cache<(String, ObjectId), ObjectId>,
}

#[derive(Deserialize)]
struct Comparison {
    status: String,
}

#[derive(Deserialize)]
struct ApiRepo {
    default_branch: String,
}

#[derive(Deserialize)]
struct ApiPull {
    base: ApiBranch,
    head: ApiBranch,
}

#[derive(Deserialize)]
struct ApiBranch {
    #[serde(rename = "ref")]
    name: String,
    repo: Option<ApiFullName>,
}

#[derive(Deserialize)]
struct ApiFullName {
    full_name: String,
}

/// A pull request's base and head branches, as full ref names.
#[derive(Clone, Debug)]
pub(crate) struct PullRefs {
    pub(crate) base: String,
    pub(crate) head: String,
}

/// What gitgate needs to know about a GraphQL node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    pub(crate) typename: String,
    /// The repository it belongs to (or is).
    pub(crate) repo: Option<RepoPath>,
    /// A `Ref`'s full name.
    pub(crate) ref_name: Option<String>,
    /// A `PullRequest`'s base branch, as a full ref name.
    pub(crate) base_ref: Option<String>,
}

/// The node lookup: one query that answers for every node type gitgate decides on.
const NODE_QUERY: &str = "query gitgateNode($id: ID!) { node(id: $id) { __typename \
... on Repository { nameWithOwner } \
... on Ref { prefix name repository { nameWithOwner } } \
... on PullRequest { baseRefName repository { nameWithOwner } } \
... on Issue { repository { nameWithOwner } } } }";

#[derive(Deserialize)]
struct NodeAnswer {
    data: Option<NodeData>,
}

#[derive(Deserialize)]
struct NodeData {
    node: Option<ApiNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiNode {
    #[serde(rename = "__typename")]
    typename: String,
    name_with_owner: Option<String>,
    prefix: Option<String>,
    name: Option<String>,
    base_ref_name: Option<String>,
    repository: Option<ApiNameWithOwner>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiNameWithOwner {
    name_with_owner: String,
}

#[derive(Deserialize)]
struct ApiTree {
    tree: Vec<ApiEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct ApiEntry {
    path: String,
    mode: String,
    sha: String,
}

#[derive(Deserialize)]
struct ApiCommit {
    tree: ApiSha,
}

/// `GET releases/{id}`.
#[derive(Deserialize)]
struct ApiRelease {
    tag_name: String,
}

/// `GET git/ref/{ref}`.
#[derive(Deserialize)]
struct ApiRef {
    object: ApiSha,
}

#[derive(Deserialize)]
struct ApiSha {
    sha: String,
}

impl RepoApi {
    pub(crate) fn new(settings: &Settings, dialer: &Dialer) -> Result<Self, TokenError> {
        Ok(Self {
            http: crate::token::api_client(dialer).map_err(|e| TokenError::Unreachable {
                host: settings.api_host.clone(),
                detail: e.to_string(),
            })?,
            api: settings.api_url.clone(),
            graphql: crate::api::graphql_url(&settings.api_url),
            ancestry: Cache::default(),
            trees: Cache::default(),
            commit_trees: Cache::default(),
        })
    }

    /// Whether `old` is `head` or one of its ancestors in `repo`; an error says why the
    /// API could not tell.
    pub(crate) async fn is_ancestor(
        &self,
        repo: &RepoPath,
        old: &ObjectId,
        head: &ObjectId,
        credential: Option<&Credential>,
    ) -> Result<bool, String> {
        let key = (repo.to_string(), old.to_string(), head.to_string());
        if let Some(known) = self.ancestry.get(&key) {
            return Ok(known);
        }
        let answer = self.compare(repo, &key.1, &key.2, credential).await?;
        self.ancestry.put(key, answer);
        Ok(answer)
    }

    /// Whether `commit` is on `repo`'s default branch (an ancestor of its tip or the tip
    /// itself), now; not cached, as branches move.
    pub(crate) async fn on_default_branch(
        &self,
        repo: &RepoPath,
        commit: &ObjectId,
        credential: Option<&Credential>,
    ) -> Result<bool, String> {
        let branch = format!("heads/{}", self.default_branch(repo, credential).await?);
        self.compare(repo, &commit.to_string(), &branch, credential)
            .await
    }

    /// `repo`'s default branch name, now.
    pub(crate) async fn default_branch(
        &self,
        repo: &RepoPath,
        credential: Option<&Credential>,
    ) -> Result<String, String> {
        let about: ApiRepo = self
            .get(repo, "repository", "", credential)
            .await?
            .ok_or_else(|| format!("the GitHub API does not know {repo}"))?;
        Ok(about.default_branch)
    }

    /// The tag of release `id` of `repo`, now.
    pub(crate) async fn release_tag(
        &self,
        repo: &RepoPath,
        id: u64,
        credential: Option<&Credential>,
    ) -> Result<String, String> {
        let release: ApiRelease = self
            .get(repo, "release", &format!("releases/{id}"), credential)
            .await?
            .ok_or_else(|| format!("{repo} has no release {id}"))?;
        Ok(release.tag_name)
    }

    /// The commit at the tip of `repo`'s default branch, now; not cached, as it moves.
    pub(crate) async fn default_tip(
        &self,
        repo: &RepoPath,
        credential: Option<&Credential>,
    ) -> Result<ObjectId, String> {
        let branch = self.default_branch(repo, credential).await?;
        let found: ApiRef = self
            .get(repo, "ref", &format!("git/ref/heads/{branch}"), credential)
            .await?
            .ok_or_else(|| format!("{repo} has no default branch {branch} on GitHub"))?;
        ObjectId::parse(&found.object.sha).map_err(|e| {
            format!("the GitHub API names a bad commit for {repo}'s default branch: {e}")
        })
    }

    /// Pull request `number`'s base and head refs, now; its head must be in `repo`
    /// itself (gitgate does not decide on refs of other repositories' forks).
    pub(crate) async fn pull_refs(
        &self,
        repo: &RepoPath,
        number: u64,
        credential: Option<&Credential>,
    ) -> Result<PullRefs, String> {
        let pull: ApiPull = self
            .get(repo, "pull request", &format!("pulls/{number}"), credential)
            .await?
            .ok_or_else(|| format!("{repo} has no pull request #{number}"))?;
        let same = |b: &ApiBranch| {
            b.repo
                .as_ref()
                .and_then(|r| RepoPath::parse(&r.full_name).ok())
                .is_some_and(|r| &r == repo)
        };
        if !same(&pull.head) || !same(&pull.base) {
            return Err(format!(
                "pull request #{number} of {repo} has its head in another repository"
            ));
        }
        Ok(PullRefs {
            base: format!("refs/heads/{}", pull.base.name),
            head: format!("refs/heads/{}", pull.head.name),
        })
    }

    /// The GraphQL node `id`, now; `None` if GitHub does not show it to the token. Not
    /// cached across requests: a repository can be renamed or transferred, an issue moved
    /// and a pull request's base edited while the id stays, and a stale answer would
    /// decide on the wrong repository or ref.
    pub(crate) async fn node(
        &self,
        id: &str,
        credential: Option<&Credential>,
    ) -> Result<Option<Node>, String> {
        let query = serde_json::json!({"query": NODE_QUERY, "variables": {"id": id}});
        let what = format!("GraphQL lookup of node {id}");
        let answer: NodeAnswer = self
            .send(
                self.http
                    .post(&self.graphql)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(query.to_string()),
                &what,
                credential,
            )
            .await?
            .ok_or_else(|| format!("the {what} failed: HTTP 404"))?;
        let Some(api) = answer.data.and_then(|d| d.node) else {
            return Ok(None);
        };
        let repo_name = api
            .name_with_owner
            .or(api.repository.map(|r| r.name_with_owner));
        Ok(Some(Node {
            repo: repo_name.and_then(|n| RepoPath::parse(&n).ok()),
            ref_name: match (&api.prefix, &api.name) {
                (Some(prefix), Some(name)) if api.typename == "Ref" => {
                    Some(format!("{prefix}{name}"))
                }
                _ => None,
            },
            base_ref: api.base_ref_name.map(|b| format!("refs/heads/{b}")),
            typename: api.typename,
        }))
    }

    /// `GET …/compare/{base}...{head}`: whether `base` is an ancestor of (or is) `head`.
    async fn compare(
        &self,
        repo: &RepoPath,
        base: &str,
        head: &str,
        credential: Option<&Credential>,
    ) -> Result<bool, String> {
        let path = format!("compare/{base}...{head}?per_page=1");
        let comparison: Comparison = self
            .get(repo, "compare", &path, credential)
            .await?
            .ok_or_else(|| format!("the GitHub API compare of {repo} failed: HTTP 404"))?;
        match comparison.status.as_str() {
            "identical" | "ahead" => Ok(true),
            "behind" | "diverged" => Ok(false),
            other => Err(format!(
                "the GitHub API compare of {repo} answered an unknown status {other:?}"
            )),
        }
    }

    /// The tree `id` of `repo`, checked against its id; `None` if GitHub has no such
    /// tree.
    pub(crate) async fn tree(
        &self,
        repo: &RepoPath,
        id: &ObjectId,
        credential: Option<&Credential>,
    ) -> Result<Option<ServerTree>, String> {
        let key = (repo.to_string(), id.clone());
        if let Some(known) = self.trees.get(&key) {
            return Ok(Some(known));
        }
        let Some(api) = self
            .get::<ApiTree>(repo, "tree", &format!("git/trees/{id}"), credential)
            .await?
        else {
            return Ok(None);
        };
        let tree = server_tree(api, id)
            .map_err(|why| format!("the GitHub API tree {id} of {repo} {why}"))?;
        self.trees.put(key, tree.clone());
        Ok(Some(tree))
    }

    /// The root tree of commit `id` in `repo`.
    pub(crate) async fn commit_tree(
        &self,
        repo: &RepoPath,
        id: &ObjectId,
        credential: Option<&Credential>,
    ) -> Result<ObjectId, String> {
        let key = (repo.to_string(), id.clone());
        if let Some(known) = self.commit_trees.get(&key) {
            return Ok(known);
        }
        let api: ApiCommit = self
            .get(repo, "commit", &format!("git/commits/{id}"), credential)
            .await?
            .ok_or_else(|| {
                format!("commit {id} is neither in the pushed pack nor in {repo} on GitHub")
            })?;
        let tree = ObjectId::parse(&api.tree.sha)
            .map_err(|e| format!("the GitHub API commit {id} of {repo} names a bad tree: {e}"))?;
        self.commit_trees.put(key, tree.clone());
        Ok(tree)
    }

    /// `GET {api}/repos/{repo}/{path}` as JSON, `None` on 404; `what` names the call in
    /// errors.
    async fn get<T: DeserializeOwned>(
        &self,
        repo: &RepoPath,
        what: &str,
        path: &str,
        credential: Option<&Credential>,
    ) -> Result<Option<T>, String> {
        let url = match path {
            "" => format!("{}/repos/{repo}", self.api),
            path => format!("{}/repos/{repo}/{path}", self.api),
        };
        self.send(
            self.http.get(&url),
            &format!("{what} of {repo}"),
            credential,
        )
        .await
    }

    /// Sends `request` as JSON, `None` on 404 and 422; `what` names the call in errors.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        credential: Option<&Credential>,
    ) -> Result<Option<T>, String> {
        let mut request = request
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(credential) = credential {
            request = request.header(http::header::AUTHORIZATION, credential.bearer());
        }
        let failed = |detail: String| format!("the GitHub API {what} failed: {detail}");
        let mut response = request
            .send()
            .await
            .map_err(|e| failed(crate::token::error_chain(&e)))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(crate::token::error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(failed(format!("answer over {MAX_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        // 422: GitHub's answer for an id that names another kind of object.
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
        {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {}", status.as_u16())));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| failed(format!("unreadable answer: {e}")))
    }
}

/// The API's tree as entries and as git's bytes (entries in git's order: by name, a
/// directory sorting as if its name ended in `/`), which must hash to `id`.
fn server_tree(api: ApiTree, id: &ObjectId) -> Result<ServerTree, String> {
    if api.truncated {
        return Err("is truncated".into());
    }
    let mut entries = api
        .tree
        .into_iter()
        .map(|e| {
            let mode = u32::from_str_radix(&e.mode, 8)
                .map_err(|_| format!("has a bad mode {:?}", e.mode))?;
            let oid = ObjectId::parse(&e.sha).map_err(|err| format!("has a bad id: {err}"))?;
            Ok(TreeEntry {
                name: e.path,
                mode,
                id: oid,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let sort_key = |e: &TreeEntry| {
        let mut key = e.name.as_bytes().to_vec();
        if e.is_tree() {
            key.push(b'/');
        }
        key
    };
    entries.sort_by_key(sort_key);
    let mut raw = Vec::new();
    for e in &entries {
        raw.extend_from_slice(format!("{:o} {}\0", e.mode, e.name).as_bytes());
        let id = crate::pack::raw_id(&e.id).map_err(|err| err.to_string())?;
        raw.extend_from_slice(id.as_bytes());
    }
    let hash = crate::pack::hash_kind(id.format());
    let actual =
        crate::pack::object_id(hash, gix_object::Kind::Tree, &raw).map_err(|e| e.to_string())?;
    if &actual != id {
        return Err(format!("does not hash to its id (got {actual})"));
    }
    Ok(ServerTree { entries, raw })
}

/// Roughly the bytes a cached answer holds beyond its own size (its keys are a
/// repository name and object ids: a few hundred bytes at most).
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for bool {
    fn weight(&self) -> usize {
        0
    }
}

impl Weight for ObjectId {
    fn weight(&self) -> usize {
        self.as_str().len()
    }
}

impl Weight for ServerTree {
    fn weight(&self) -> usize {
        let entries = self
            .entries
            .iter()
            .map(|e| std::mem::size_of::<TreeEntry>() + e.name.len() + e.id.weight());
        self.raw.len() + entries.sum::<usize>()
    }
}

/// A map of definite answers, bounded in count and in bytes.
struct Cache<K, V>(Mutex<Held<K, V>>);

struct Held<K, V> {
    map: HashMap<K, V>,
    bytes: usize,
}

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Self(Mutex::new(Held {
            map: HashMap::new(),
            bytes: 0,
        }))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone + Weight> Cache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.lock().map.get(key).cloned()
    }

    /// Keeps `value`, unless it alone would take more than a quarter of the bytes.
    fn put(&self, key: K, value: V) {
        let weight = |v: &V| std::mem::size_of::<(K, V)>() + v.weight();
        let adds = weight(&value);
        if adds > CACHE_BYTES / 4 {
            return;
        }
        let mut held = self.lock();
        if held.map.len() >= CACHE_ENTRIES || held.bytes + adds > CACHE_BYTES {
            held.map.clear();
            held.bytes = 0;
        }
        held.bytes += adds;
        if let Some(old) = held.map.insert(key, value) {
            held.bytes -= weight(&old);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held<K, V>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `git mktree --missing` on `ls-tree` lines: git's own id for the tree.
    fn git_tree_id(listing: &str) -> ObjectId {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str], input: Option<&str>| {
            let mut child = std::process::Command::new("git")
                .current_dir(dir.path())
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", dir.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            if let Some(input) = input {
                std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
            }
            drop(stdin);
            String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
        };
        git(&["init", "-q"], None);
        ObjectId::parse(git(&["mktree", "--missing"], Some(listing)).trim()).unwrap()
    }

    #[test]
    fn api_trees_become_git_trees_in_git_order() {
        let (blob, tree) = ("a".repeat(40), "b".repeat(40));
        // The API's order, which sorts the directory `a` before `a.txt`; git sorts it as
        // `a/`, after `a.txt`.
        let entries = [
            ("a", "040000", &tree),
            ("a.txt", "100644", &blob),
            ("run", "100755", &blob),
            ("link", "120000", &blob),
        ];
        let listing: String = entries
            .iter()
            .map(|(path, mode, sha)| {
                let kind = if *mode == "040000" { "tree" } else { "blob" };
                format!("{mode} {kind} {sha}\t{path}\n")
            })
            .collect();
        let id = git_tree_id(&listing);
        let api = ApiTree {
            tree: entries
                .iter()
                .map(|(path, mode, sha)| ApiEntry {
                    path: (*path).to_owned(),
                    mode: (*mode).to_owned(),
                    sha: (*sha).clone(),
                })
                .collect(),
            truncated: false,
        };
        let tree = server_tree(api, &id).unwrap();
        assert_eq!(tree.entries.len(), 4);
        assert!(tree.entries.iter().any(|e| e.name == "a" && e.is_tree()));
        // Any other id is refused.
        let api = ApiTree {
            tree: vec![],
            truncated: false,
        };
        let error = server_tree(api, &id).unwrap_err();
        assert!(error.starts_with("does not hash to its id"), "{error}");
    }

    fn tree_of(bytes: usize) -> ServerTree {
        ServerTree {
            entries: Vec::new(),
            raw: vec![0; bytes],
        }
    }

    #[test]
    fn the_caches_hold_a_bounded_number_of_bytes() {
        let cache = Cache::<u32, ServerTree>::default();
        // Trees of 1 MiB each: far fewer than CACHE_ENTRIES of them fill the bytes.
        for key in 0..200 {
            cache.put(key, tree_of(1 << 20));
            assert!(cache.lock().bytes <= CACHE_BYTES, "after {key}");
        }
        let held = cache.lock();
        assert!(held.map.len() < 32, "{}", held.map.len());
        let counted: usize = held.map.values().map(|t| t.raw.len()).sum();
        assert!(held.bytes >= counted, "{} < {counted}", held.bytes);
        drop(held);
        // A tree too large to keep is answered but not kept.
        cache.put(1000, tree_of(CACHE_BYTES / 4));
        assert!(cache.get(&1000).is_none());
        // Putting the same key again does not count it twice.
        let cache = Cache::<u32, ServerTree>::default();
        cache.put(1, tree_of(1000));
        let once = cache.lock().bytes;
        cache.put(1, tree_of(1000));
        assert_eq!(cache.lock().bytes, once);
    }
}
