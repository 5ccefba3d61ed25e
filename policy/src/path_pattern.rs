//! `protectedPaths` entries: globs over file paths from the repository root
//! (`.github/workflows/**`, `CODEOWNERS`, `**/CODEOWNERS`).

use std::str::FromStr;

use globset::GlobMatcher;

use crate::pattern::{
    PatternError, PatternKind, compile_glob, glob_matches, has_glob, pattern_traits,
};

/// A validated `protectedPaths` entry: a glob matched against the whole path of a file
/// from the repository root; `*` and `?` do not cross `/`, `**` does.
#[derive(Clone)]
pub struct PathPattern {
    text: String,
    glob: GlobMatcher,
    /// The components before the first one with glob syntax.
    literal: Vec<String>,
    /// The number of components (`**` counts as any number, see `deep`).
    len: usize,
    /// Whether a `**` component lets the pattern reach any depth.
    deep: bool,
}

pattern_traits!(
    PathPattern,
    "a path pattern such as \".github/workflows/**\""
);

impl PathPattern {
    /// Whether the file at `path` (`dir/file`, no leading slash) matches.
    pub fn matches(&self, path: &str) -> bool {
        glob_matches(&self.glob, path)
    }

    /// Whether some file below the directory `dir` could match: lets a tree walk skip
    /// directories that no pattern reaches.
    pub fn may_match_below(&self, dir: &str) -> bool {
        let parts: Vec<&str> = dir.split('/').collect();
        if !self.deep && parts.len() >= self.len {
            return false;
        }
        parts
            .iter()
            .zip(&self.literal)
            .all(|(part, literal)| part == literal)
    }

    /// Whether the pattern spells `path` out as a directory it protects files in: each of
    /// `path`'s components is one of its literal components, and it goes deeper. A
    /// file, symlink or submodule put at such a path stands where protected files would.
    pub fn names_below(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        parts.len() < self.len
            && parts.len() <= self.literal.len()
            && parts
                .iter()
                .zip(&self.literal)
                .all(|(part, literal)| part == literal)
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<PathPattern, PatternError> {
        let error = |reason: &str| PatternError::new(PatternKind::Path, text, reason);
        if text.is_empty() || text.starts_with('/') || text.ends_with('/') {
            return Err(error(
                "expected a file path glob from the repository root without a leading or trailing slash, such as \".github/workflows/**\" or \"CODEOWNERS\"",
            ));
        }
        let parts: Vec<&str> = text.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(error(
                "empty, \".\" or \"..\" path components never match a file",
            ));
        }
        let literal = parts
            .iter()
            .take_while(|p| !has_glob(p))
            .map(|p| (*p).to_owned())
            .collect();
        Ok(PathPattern {
            glob: compile_glob(PatternKind::Path, text, text)?,
            literal,
            len: parts.len(),
            deep: parts.iter().any(|p| p.contains("**")),
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> PathPattern {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn matches_whole_paths() {
        let workflows = p(".github/workflows/**");
        assert!(workflows.matches(".github/workflows/ci.yml"));
        assert!(workflows.matches(".github/workflows/sub/x.yml"));
        assert!(!workflows.matches(".github/dependabot.yml"));
        assert!(!workflows.matches("src/.github/workflows/ci.yml"));
        let owners = p("CODEOWNERS");
        assert!(owners.matches("CODEOWNERS"));
        assert!(!owners.matches("docs/CODEOWNERS"));
        assert!(p("**/CODEOWNERS").matches("docs/CODEOWNERS"));
        assert!(p("**/CODEOWNERS").matches("CODEOWNERS"));
        assert!(p("*.lock").matches("Cargo.lock"));
        assert!(!p("*.lock").matches("sub/Cargo.lock"));
    }

    #[test]
    fn prunes_directories_no_match_can_be_below() {
        let workflows = p(".github/workflows/**");
        assert!(workflows.may_match_below(".github"));
        assert!(workflows.may_match_below(".github/workflows"));
        assert!(workflows.may_match_below(".github/workflows/deep"));
        assert!(!workflows.may_match_below("src"));
        assert!(!workflows.may_match_below(".github/ISSUE_TEMPLATE"));
        assert!(!p("CODEOWNERS").may_match_below("docs"));
        assert!(p("**/CODEOWNERS").may_match_below("docs/deep"));
        assert!(p("docs/*.md").may_match_below("docs"));
        assert!(!p("docs/*.md").may_match_below("docs/sub"));
        assert!(p("*/x").may_match_below("any"));
    }

    #[test]
    fn names_the_directories_it_protects_files_in() {
        let workflows = p(".github/workflows/**");
        assert!(workflows.names_below(".github"));
        assert!(workflows.names_below(".github/workflows"));
        assert!(!workflows.names_below(".github/workflows/ci.yml"));
        assert!(!workflows.names_below(".github/dependabot.yml"));
        assert!(p("docs/*.md").names_below("docs"));
        assert!(!p("CODEOWNERS").names_below("CODEOWNERS"));
        assert!(!p("**/CODEOWNERS").names_below("docs"));
        assert!(!p("*/x").names_below("any"));
    }

    #[test]
    fn rejects() {
        for bad in ["", "/abs", "dir/", "a//b", "a/../b", "./a", "a/[b"] {
            let error = bad.parse::<PathPattern>().unwrap_err();
            assert_eq!(error.kind, PatternKind::Path, "{bad}");
        }
    }
}
