//! Bare repositories on disk and the git request paths that name them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail, ensure};

/// Fixed identity and date, so seeded commits are reproducible.
const IDENTITY: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "Stand In"),
    ("GIT_AUTHOR_EMAIL", "standin@example.test"),
    ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z"),
    ("GIT_COMMITTER_NAME", "Stand In"),
    ("GIT_COMMITTER_EMAIL", "standin@example.test"),
    ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"),
];

/// What a smart HTTP request path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    InfoRefs,
    UploadPack,
    ReceivePack,
    LfsBatch,
    LfsLocks,
    LfsLocksVerify,
    LfsUnlock,
}

/// `/<owner>/<repo>[.git]/<endpoint>`, owner and repo lowercased, `.git` stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GitPath {
    pub(crate) owner: String,
    pub(crate) repo: String,
    pub(crate) endpoint: Endpoint,
}

impl GitPath {
    /// The `PATH_INFO` handed to `git http-backend`.
    pub(crate) fn path_info(&self) -> String {
        let tail = match self.endpoint {
            Endpoint::InfoRefs => "info/refs",
            Endpoint::UploadPack => "git-upload-pack",
            Endpoint::ReceivePack => "git-receive-pack",
            Endpoint::LfsBatch => "info/lfs/objects/batch",
            Endpoint::LfsLocks => "info/lfs/locks",
            Endpoint::LfsLocksVerify => "info/lfs/locks/verify",
            Endpoint::LfsUnlock => "info/lfs/locks/ID/unlock",
        };
        format!("/{}/{}.git/{tail}", self.owner, self.repo)
    }
}

/// Parses a raw request path; anything but the three smart HTTP shapes is `None`.
pub(crate) fn parse_git_path(path: &str) -> Option<GitPath> {
    let rest = path.strip_prefix('/')?;
    let mut segs = rest.splitn(3, '/');
    let owner = segs.next()?;
    let repo = segs.next()?;
    let endpoint = match segs.next()? {
        "info/refs" => Endpoint::InfoRefs,
        "git-upload-pack" => Endpoint::UploadPack,
        "git-receive-pack" => Endpoint::ReceivePack,
        "info/lfs/objects/batch" => Endpoint::LfsBatch,
        "info/lfs/locks" => Endpoint::LfsLocks,
        "info/lfs/locks/verify" => Endpoint::LfsLocksVerify,
        unlock
            if unlock
                .strip_prefix("info/lfs/locks/")
                .and_then(|r| r.strip_suffix("/unlock"))
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Endpoint::LfsUnlock
        }
        _ => return None,
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    (valid_owner(owner) && valid_repo(repo)).then(|| GitPath {
        owner: owner.to_ascii_lowercase(),
        repo: repo.to_ascii_lowercase(),
        endpoint,
    })
}

fn valid_owner(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_repo(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `<repos>/<owner>/<name>.git`, lowercased.
pub(crate) fn repo_dir(repos: &Path, owner: &str, name: &str) -> PathBuf {
    repos
        .join(owner.to_ascii_lowercase())
        .join(format!("{}.git", name.to_ascii_lowercase()))
}

/// Whether `owner/name` exists as a bare repository.
pub(crate) fn exists(repos: &Path, owner: &str, name: &str) -> bool {
    valid_owner(owner) && valid_repo(name) && repo_dir(repos, owner, name).join("HEAD").is_file()
}

/// Names of the repositories of `owner` on disk, sorted.
pub(crate) fn list(repos: &Path, owner: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(repos.join(owner.to_ascii_lowercase())) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".git")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// A `git` command with a clean environment: no system or user config, fixed identity.
pub(crate) fn git(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .envs(IDENTITY.iter().copied())
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn run(mut cmd: Command, input: Option<&[u8]>) -> anyhow::Result<String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(data)?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Creates `owner/name` as a bare repository whose `main` has one commit adding `README.md`.
pub(crate) fn create(
    repos: &Path,
    home: &Path,
    owner: &str,
    name: &str,
    sha256: bool,
) -> anyhow::Result<PathBuf> {
    ensure!(valid_owner(owner), "invalid owner {owner:?}");
    ensure!(valid_repo(name), "invalid repository name {name:?}");
    let dir = repo_dir(repos, owner, name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let format = if sha256 { "sha256" } else { "sha1" };
    let mut init = git(home);
    init.args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(format!("--object-format={format}"))
        .arg(&dir);
    run(init, None)?;

    // Plumbing instead of a work tree: blob, tree, commit, ref.
    let in_repo = |args: &[&str]| {
        let mut cmd = git(home);
        cmd.arg("--git-dir").arg(&dir).args(args);
        cmd
    };
    let readme = format!("# {owner}/{name}\n\nSeeded by gitgate-standin.\n");
    let blob = run(
        in_repo(&["hash-object", "-w", "--stdin"]),
        Some(readme.as_bytes()),
    )?;
    let tree = run(
        in_repo(&["mktree"]),
        Some(format!("100644 blob {blob}\tREADME.md\n").as_bytes()),
    )?;
    let commit = run(
        in_repo(&["commit-tree", &tree, "-m", "Initial commit"]),
        None,
    )?;
    run(in_repo(&["update-ref", "refs/heads/main", &commit]), None)?;
    Ok(dir)
}

/// `git ls-tree <sha>` (a tree id) in the bare repository; `None` if it is no tree.
pub(crate) fn ls_tree(home: &Path, dir: &Path, sha: &str) -> Option<String> {
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut cmd = git(home);
    cmd.arg("--git-dir").arg(dir).args([
        "ls-tree",
        "--full-tree",
        "--end-of-options",
        &format!("{sha}^{{tree}}"),
    ]);
    // Only a tree id itself, not a commit that has one.
    let kind = {
        let mut check = git(home);
        check
            .arg("--git-dir")
            .arg(dir)
            .args(["cat-file", "-t", sha]);
        run(check, None).ok()?
    };
    (kind == "tree").then(|| run(cmd, None).ok()).flatten()
}

/// `git cat-file commit <sha>` in the bare repository.
pub(crate) fn cat_commit(home: &Path, dir: &Path, sha: &str) -> Option<String> {
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut cmd = git(home);
    cmd.arg("--git-dir")
        .arg(dir)
        .args(["cat-file", "commit", sha]);
    run(cmd, None).ok()
}

/// `git rev-list --count <range>` in the bare repository; `None` if a commit is unknown.
pub(crate) fn count_commits(home: &Path, dir: &Path, range: &str) -> Option<u64> {
    let mut cmd = git(home);
    cmd.arg("--git-dir")
        .arg(dir)
        .args(["rev-list", "--count", "--end-of-options", range]);
    run(cmd, None).ok()?.parse().ok()
}

/// `git rev-parse --verify -q <refname>` in the bare repository.
pub(crate) fn rev_parse(home: &Path, dir: &Path, refname: &str) -> Option<String> {
    let mut cmd = git(home);
    cmd.arg("--git-dir").arg(dir).args([
        "rev-parse",
        "--verify",
        "-q",
        "--end-of-options",
        refname,
    ]);
    run(cmd, None).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        let ok = |o: &str, r: &str, e| {
            Some(GitPath {
                owner: o.into(),
                repo: r.into(),
                endpoint: e,
            })
        };
        let cases = [
            (
                "/acme/app.git/info/refs",
                ok("acme", "app", Endpoint::InfoRefs),
            ),
            ("/ACME/App/info/refs", ok("acme", "app", Endpoint::InfoRefs)),
            (
                "/acme/app.git/git-upload-pack",
                ok("acme", "app", Endpoint::UploadPack),
            ),
            (
                "/acme/app/git-receive-pack",
                ok("acme", "app", Endpoint::ReceivePack),
            ),
            (
                "/acme/a.b.git.git/info/refs",
                ok("acme", "a.b.git", Endpoint::InfoRefs),
            ),
            ("/acme/app.git/HEAD", None),
            ("/acme/app.git/objects/info/packs", None),
            ("/acme/../info/refs", None),
            ("/acme/%61pp/info/refs", None),
            ("/acme//info/refs", None),
            ("/acme/.git/info/refs", None),
            ("//app/info/refs", None),
            ("/acme/app.git/info/refs/", None),
            ("acme/app/info/refs", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse_git_path(path), want, "{path}");
        }
        let p = parse_git_path("/Acme/App/git-upload-pack").unwrap();
        assert_eq!(p.path_info(), "/acme/app.git/git-upload-pack");
    }
}
