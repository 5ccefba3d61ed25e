//! What GitHub's API writes beside git: pull requests and their comments, and the
//! repository changes the API makes (merges, file commits, ref moves). Shared by the
//! REST routes and the GraphQL endpoint.

use http::StatusCode;
use serde_json::{Value, json};

use crate::gitops::Repo;
use crate::server::Shared;

/// An all-zero object id (SHA-1).
pub(crate) const ZERO: &str = "0000000000000000000000000000000000000000";

/// A pull request.
#[derive(Clone, Debug, Default)]
pub struct Pull {
    /// Its number in the repository.
    pub number: u64,
    /// The repository's owner.
    pub owner: String,
    /// The repository's name.
    pub repo: String,
    /// Title.
    pub title: String,
    /// Description.
    pub body: String,
    /// The branch it merges into.
    pub base: String,
    /// The branch it merges from.
    pub head: String,
    /// Open or merged.
    pub state: PullState,
    /// Comment bodies, in order.
    pub comments: Vec<String>,
}

/// Open or merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullState {
    /// Open.
    #[default]
    Open,
    /// Merged.
    Merged,
}

impl PullState {
    fn graphql(self) -> &'static str {
        match self {
            PullState::Open => "OPEN",
            PullState::Merged => "MERGED",
        }
    }
}

/// An API error: status and GitHub's message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

pub(crate) fn fail(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    fail(StatusCode::UNPROCESSABLE_ENTITY, message)
}

impl Shared {
    /// The bare repository `owner/repo` for writes.
    pub(crate) fn repo<'a>(&'a self, dir: &'a std::path::Path) -> Repo<'a> {
        Repo {
            home: &self.home,
            dir,
        }
    }
}

/// Checks that installation token `token` reaches `owner/repo` with every permission of
/// one of `alternatives` (none: only `metadata`), as GitHub does.
pub(crate) fn authorize(
    shared: &Shared,
    token: &str,
    owner: &str,
    repo: &str,
    alternatives: &[&[(&str, crate::tokens::Level)]],
) -> Result<(), ApiError> {
    let exists = |o: &str, r: &str| shared.repo_exists(o, r);
    let now = std::time::SystemTime::now();
    let checked = shared
        .tokens()
        .check(token, owner, repo, alternatives, now, &exists);
    checked.map_err(|denied| match denied {
        crate::tokens::Denied::Unauthorized => fail(StatusCode::UNAUTHORIZED, "Bad credentials"),
        crate::tokens::Denied::NotFound => fail(StatusCode::NOT_FOUND, "Not Found"),
        crate::tokens::Denied::Forbidden(_) => fail(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ),
    })
}

/// Runs `f` on `owner/repo`'s bare repository.
pub(crate) fn with_repo<T>(
    shared: &Shared,
    owner: &str,
    repo: &str,
    f: impl FnOnce(&Repo<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    if !shared.repo_exists(owner, repo) {
        return Err(fail(StatusCode::NOT_FOUND, "Not Found"));
    }
    let dir = crate::repos::repo_dir(&shared.repos, owner, repo);
    f(&shared.repo(&dir))
}

/// Opens a pull request from `head` into `base`, both branches of `owner/repo`.
pub(crate) fn create_pull(
    shared: &Shared,
    owner: &str,
    repo: &str,
    title: &str,
    body: &str,
    base: &str,
    head: &str,
) -> Result<Pull, ApiError> {
    with_repo(shared, owner, repo, |r| {
        for branch in [base, head] {
            r.resolve(&format!("refs/heads/{branch}"))
                .ok_or_else(|| unprocessable(format!("Validation Failed: no branch {branch}")))?;
        }
        Ok(())
    })?;
    if base == head || title.is_empty() {
        return Err(unprocessable("Validation Failed"));
    }
    let mut pulls = shared.pulls();
    if pulls
        .iter()
        .any(|p| p.owner == owner && p.repo == repo && p.head == head && p.state == PullState::Open)
    {
        return Err(unprocessable(format!(
            "A pull request already exists for {owner}:{head}."
        )));
    }
    let pull = Pull {
        number: pulls.len() as u64 + 1,
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        title: title.to_owned(),
        body: body.to_owned(),
        base: base.to_owned(),
        head: head.to_owned(),
        state: PullState::Open,
        comments: Vec::new(),
    };
    pulls.push(pull.clone());
    Ok(pull)
}

/// Pull request `number` of `owner/repo`.
pub(crate) fn pull(
    shared: &Shared,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<Pull, ApiError> {
    shared
        .pulls()
        .iter()
        .find(|p| p.owner == owner && p.repo == repo && p.number == number)
        .cloned()
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Not Found"))
}

/// Moves an open pull request's base onto branch `base`, as GitHub's edit does.
pub(crate) fn retarget_pull(
    shared: &Shared,
    owner: &str,
    repo: &str,
    number: u64,
    base: &str,
) -> Result<Pull, ApiError> {
    let pull = pull(shared, owner, repo, number)?;
    with_repo(shared, owner, repo, |r| {
        r.resolve(&format!("refs/heads/{base}"))
            .map(|_| ())
            .ok_or_else(|| unprocessable(format!("Validation Failed: no branch {base}")))
    })?;
    if pull.state != PullState::Open || pull.head == base {
        return Err(unprocessable("Validation Failed"));
    }
    let mut pulls = shared.pulls();
    let p = pulls
        .iter_mut()
        .find(|p| p.owner == owner && p.repo == repo && p.number == number)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Not Found"))?;
    p.base = base.to_owned();
    Ok(p.clone())
}

/// Merges an open pull request with a merge commit on its base; the new base commit.
pub(crate) fn merge_pull(
    shared: &Shared,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<String, ApiError> {
    let pull = pull(shared, owner, repo, number)?;
    if pull.state != PullState::Open {
        return Err(fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
        ));
    }
    let message = format!("Merge pull request #{number} from {owner}/{}", pull.head);
    let sha = merge_branches(shared, owner, repo, &pull.base, &pull.head, &message)?;
    if let Some(p) = shared
        .pulls()
        .iter_mut()
        .find(|p| p.owner == owner && p.repo == repo && p.number == number)
    {
        p.state = PullState::Merged;
    }
    Ok(sha)
}

/// Merges branch `head` into branch `base` (a merge commit, or nothing when `base`
/// already contains it); the new `base` commit.
pub(crate) fn merge_branches(
    shared: &Shared,
    owner: &str,
    repo: &str,
    base: &str,
    head: &str,
    message: &str,
) -> Result<String, ApiError> {
    with_repo(shared, owner, repo, |r| {
        let base_ref = format!("refs/heads/{base}");
        let tip = r
            .resolve(&base_ref)
            .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Base does not exist"))?;
        let other = r
            .resolve(&format!("refs/heads/{head}"))
            .or_else(|| r.resolve(head))
            .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Head does not exist"))?;
        if r.is_ancestor(&other, &tip) {
            return Ok(tip);
        }
        let merged = r
            .merge(&tip, &other, message)
            .map_err(|_| fail(StatusCode::CONFLICT, "Merge conflict"))?;
        r.update_ref(&base_ref, &merged, Some(&tip))
            .map_err(|e| fail(StatusCode::CONFLICT, e.to_string()))?;
        Ok(merged)
    })
}

/// Adds a comment to pull request `number`; its id.
pub(crate) fn comment(
    shared: &Shared,
    owner: &str,
    repo: &str,
    number: u64,
    body: &str,
) -> Result<u64, ApiError> {
    let mut pulls = shared.pulls();
    let pull = pulls
        .iter_mut()
        .find(|p| p.owner == owner && p.repo == repo && p.number == number)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Not Found"))?;
    pull.comments.push(body.to_owned());
    Ok(number * 1000 + pull.comments.len() as u64)
}

/// Commits `files` (a `None` content deletes) on `branch`, which must be at `expected`
/// when given; the new commit.
pub(crate) fn commit_files(
    shared: &Shared,
    owner: &str,
    repo: &str,
    branch: &str,
    expected: Option<&str>,
    files: &[crate::gitops::FileChange],
    message: &str,
) -> Result<String, ApiError> {
    with_repo(shared, owner, repo, |r| {
        let name = format!("refs/heads/{branch}");
        let tip = r
            .resolve(&name)
            .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("Branch {branch} not found")))?;
        if expected.is_some_and(|e| e != tip) {
            return Err(unprocessable(format!(
                "Expected branch to point to {} but it did not",
                expected.unwrap_or_default()
            )));
        }
        let commit = r
            .commit_files(&tip, files, message)
            .map_err(|e| unprocessable(e.to_string()))?;
        r.update_ref(&name, &commit, Some(&tip))
            .map_err(|e| fail(StatusCode::CONFLICT, e.to_string()))?;
        Ok(commit)
    })
}

/// Node ids: `R:owner/repo`, `REF:owner/repo:refs/…`, `PR:owner/repo:N`.
pub(crate) fn repo_id(owner: &str, repo: &str) -> String {
    format!("R:{owner}/{repo}")
}

pub(crate) fn ref_id(owner: &str, repo: &str, name: &str) -> String {
    format!("REF:{owner}/{repo}:{name}")
}

pub(crate) fn pull_id(pull: &Pull) -> String {
    format!("PR:{}/{}:{}", pull.owner, pull.repo, pull.number)
}

/// A node id decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NodeId {
    Repo(String, String),
    Ref(String, String, String),
    Pull(String, String, u64),
}

pub(crate) fn parse_id(id: &str) -> Option<NodeId> {
    let (kind, rest) = id.split_once(':')?;
    let split_repo = |s: &str| -> Option<(String, String)> {
        let (o, r) = s.split_once('/')?;
        Some((o.to_owned(), r.to_owned()))
    };
    match kind {
        "R" => split_repo(rest).map(|(o, r)| NodeId::Repo(o, r)),
        "REF" => {
            let (repo, name) = rest.split_once(':')?;
            split_repo(repo).map(|(o, r)| NodeId::Ref(o, r, name.to_owned()))
        }
        "PR" => {
            let (repo, n) = rest.split_once(':')?;
            let (o, r) = split_repo(repo)?;
            Some(NodeId::Pull(o, r, n.parse().ok()?))
        }
        _ => None,
    }
}

/// A pull request as REST JSON.
pub(crate) fn pull_rest(pull: &Pull) -> Value {
    let full = format!("{}/{}", pull.owner, pull.repo);
    json!({
        "id": pull.number, "node_id": pull_id(pull), "number": pull.number,
        "state": if pull.state == PullState::Open { "open" } else { "closed" },
        "merged": pull.state == PullState::Merged,
        "title": pull.title, "body": pull.body,
        "html_url": format!("https://github.com/{full}/pull/{}", pull.number),
        "base": {"ref": pull.base, "repo": {"full_name": full}},
        "head": {"ref": pull.head, "repo": {"full_name": full}},
    })
}

/// A pull request as a GraphQL object (its repository without further nesting).
pub(crate) fn pull_node(pull: &Pull) -> Value {
    json!({
        "__typename": "PullRequest", "id": pull_id(pull), "number": pull.number,
        "title": pull.title, "body": pull.body, "state": pull.state.graphql(),
        "url": format!("https://github.com/{}/{}/pull/{}", pull.owner, pull.repo, pull.number),
        "baseRefName": pull.base, "headRefName": pull.head, "isDraft": false,
        "isCrossRepository": false, "merged": pull.state == PullState::Merged,
        "headRepositoryOwner": {"login": pull.owner},
        "repository": repo_node_shallow(&pull.owner, &pull.repo),
        "headRepository": repo_node_shallow(&pull.owner, &pull.repo),
        "comments": {"totalCount": pull.comments.len()},
    })
}

/// A repository as a GraphQL object without its pull requests.
pub(crate) fn repo_node_shallow(owner: &str, repo: &str) -> Value {
    json!({
        "__typename": "Repository", "id": repo_id(owner, repo), "name": repo,
        "nameWithOwner": format!("{owner}/{repo}"),
        "owner": {"__typename": "Organization", "login": owner, "id": format!("O:{owner}")},
        "url": format!("https://github.com/{owner}/{repo}"),
        "defaultBranchRef": {"name": "main"},
        "viewerPermission": "WRITE", "hasIssuesEnabled": true, "isPrivate": true,
        "description": "", "hasWikiEnabled": false, "isFork": false, "parent": null,
    })
}
