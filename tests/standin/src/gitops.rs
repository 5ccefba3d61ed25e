//! Writes to a bare repository as GitHub's API makes them: commits of one file, merges,
//! ref creation, moves and deletions. Plumbing only, with a private index.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::repos::{git, rev_parse, run};

/// A file a commit writes: its path and content (`None` deletes it).
pub(crate) type FileChange = (String, Option<Vec<u8>>);

/// One bare repository and the HOME its git commands run with.
pub(crate) struct Repo<'a> {
    pub(crate) home: &'a Path,
    pub(crate) dir: &'a Path,
}

impl Repo<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = git(self.home);
        cmd.arg("--git-dir").arg(self.dir).args(args);
        cmd
    }

    /// The commit `refname` points at.
    pub(crate) fn resolve(&self, refname: &str) -> Option<String> {
        rev_parse(self.home, self.dir, refname)
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub(crate) fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.cmd(&["merge-base", "--is-ancestor", ancestor, descendant])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A commit on top of `parent` that writes each file's content to its path (`None`
    /// deletes it).
    pub(crate) fn commit_files(
        &self,
        parent: &str,
        files: &[FileChange],
        message: &str,
    ) -> anyhow::Result<String> {
        let index = tempfile::NamedTempFile::new()?;
        let with_index = |args: &[&str]| {
            let mut cmd = self.cmd(args);
            cmd.env("GIT_INDEX_FILE", index.path());
            cmd
        };
        run(
            with_index(&["read-tree", &format!("{parent}^{{tree}}")]),
            None,
        )?;
        for (path, content) in files {
            match content {
                Some(bytes) => {
                    let blob = run(self.cmd(&["hash-object", "-w", "--stdin"]), Some(bytes))?;
                    let info = format!("100644,{blob},{path}");
                    run(
                        with_index(&["update-index", "--add", "--cacheinfo", &info]),
                        None,
                    )?;
                }
                None => {
                    run(
                        with_index(&["update-index", "--force-remove", "--", path]),
                        None,
                    )?;
                }
            }
        }
        let tree = run(with_index(&["write-tree"]), None)?;
        run(
            self.cmd(&["commit-tree", &tree, "-p", parent, "-m", message]),
            None,
        )
    }

    /// A merge commit of `head` into `base` (GitHub's merge method), or an error on
    /// conflicts.
    pub(crate) fn merge(&self, base: &str, head: &str, message: &str) -> anyhow::Result<String> {
        let tree = run(self.cmd(&["merge-tree", "--write-tree", base, head]), None)
            .context("merge conflict")?;
        let tree = tree.lines().next().unwrap_or_default().to_owned();
        run(
            self.cmd(&["commit-tree", &tree, "-p", base, "-p", head, "-m", message]),
            None,
        )
    }

    /// Sets `name` to `new`; with `old`, only if it currently is `old` (all zeros: only
    /// if it does not exist).
    pub(crate) fn update_ref(
        &self,
        name: &str,
        new: &str,
        old: Option<&str>,
    ) -> anyhow::Result<()> {
        if !name.starts_with("refs/") {
            bail!("{name} is not a full ref name");
        }
        let mut args = vec!["update-ref", name, new];
        args.extend(old);
        run(self.cmd(&args), None).map(drop)
    }

    /// Deletes `name`.
    pub(crate) fn delete_ref(&self, name: &str) -> anyhow::Result<()> {
        run(self.cmd(&["update-ref", "-d", name]), None).map(drop)
    }
}
