//! `allowedRepos` entries: `OWNER/REPO` where either part may be a glob.

use std::str::FromStr;

use globset::GlobMatcher;

use crate::pattern::{
    GLOB_CHARS, PatternError, PatternKind, compile_glob, glob_matches, has_glob, pattern_traits,
};
use crate::repo::{RepoPath, is_name, is_name_byte, is_owner, is_owner_byte};

const EXPECTED: &str = "expected OWNER/REPO, e.g. \"acme/app\" or \"acme/*\"";

/// A validated `allowedRepos` entry such as `acme/app`, `acme/lib-*` or `*/*`. Matched
/// case-insensitively against canonical [`RepoPath`]s; one trailing `.git` of the repo part
/// is ignored, like in request paths.
#[derive(Clone)]
pub struct RepoPattern {
    text: String,
    owner: Part,
    name: Part,
}

/// One side of the `/`.
#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Glob(GlobMatcher),
}

impl Part {
    fn is_match(&self, text: &str) -> bool {
        match self {
            Part::Literal(literal) => literal == text,
            Part::Glob(glob) => glob_matches(glob, text),
        }
    }
}

pattern_traits!(RepoPattern, "a repository pattern such as \"acme/app\"");

impl RepoPattern {
    /// Whether the repository matches.
    pub fn matches(&self, repo: &RepoPath) -> bool {
        self.owner.is_match(repo.owner()) && self.name.is_match(repo.name())
    }

    /// Whether the owner part matches `owner` (already lowercase).
    pub(crate) fn matches_owner(&self, owner: &str) -> bool {
        self.owner.is_match(owner)
    }

    /// The owner if the owner part is literal (no glob).
    pub(crate) fn literal_owner(&self) -> Option<&str> {
        match &self.owner {
            Part::Literal(owner) => Some(owner),
            Part::Glob(_) => None,
        }
    }

    /// The repository name if the repo part is literal (no glob).
    pub(crate) fn literal_name(&self) -> Option<&str> {
        match &self.name {
            Part::Literal(name) => Some(name),
            Part::Glob(_) => None,
        }
    }
}

impl FromStr for RepoPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<RepoPattern, PatternError> {
        let error = |reason: String| PatternError::new(PatternKind::Repo, text, reason);
        let lower = text.to_ascii_lowercase();
        let (owner, name) = match lower.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                (owner, name)
            }
            _ => return Err(error(EXPECTED.to_owned())),
        };
        let name = name.strip_suffix(".git").unwrap_or(name);
        let owner = compile_part(text, "owner", owner, is_owner_byte, is_owner).map_err(error)?;
        let name = compile_part(text, "repo", name, is_name_byte, is_name).map_err(error)?;
        Ok(RepoPattern {
            text: text.to_owned(),
            owner,
            name,
        })
    }
}

/// Validates one lowercase part: allowed bytes, and for a literal the full name rule.
fn compile_part(
    original: &str,
    what: &str,
    part: &str,
    allowed: fn(u8) -> bool,
    valid_literal: fn(&str) -> bool,
) -> Result<Part, String> {
    if let Some(bad) = part
        .chars()
        .find(|c| u8::try_from(*c).map_or(true, |b| !allowed(b) && !GLOB_CHARS.contains(&b)))
    {
        let chars = if what == "owner" {
            "a-z 0-9 _ -"
        } else {
            "a-z 0-9 . _ -"
        };
        return Err(format!(
            "{bad:?} is not allowed in the {what} part; expected {chars} and the glob characters * ? [ ] {{ }} , !"
        ));
    }
    if has_glob(part) {
        return compile_glob(PatternKind::Repo, original, part)
            .map(Part::Glob)
            .map_err(|e| e.reason);
    }
    if !valid_literal(part) {
        let rule = if what == "owner" {
            "1 to 39 characters, not starting with -"
        } else {
            "1 to 100 characters, not . or .."
        };
        return Err(format!(
            "{what} \"{part}\" is not a valid GitHub name ({rule})"
        ));
    }
    Ok(Part::Literal(part.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoPath {
        RepoPath::parse(s).unwrap()
    }

    #[test]
    fn matching() {
        for (pattern, path, want) in [
            ("acme/app", "acme/app", true),
            ("acme/app", "Acme/App.git", true),
            ("ACME/App", "acme/app", true),
            ("acme/app.git", "acme/app", true),
            ("acme/app", "acme/app2", false),
            ("acme/app", "other/app", false),
            ("acme/*", "acme/anything.x", true),
            ("acme/*", "acmex/app", false),
            ("acme/lib-*", "acme/lib-core", true),
            ("acme/lib-*", "acme/app", false),
            ("*/*", "x/y", true),
            ("acme-*/app", "acme-eu/app", true),
            ("acme/{app,lib}", "acme/lib", true),
            ("acme/{app,lib}", "acme/web", false),
            ("acme/ap?", "acme/apx", true),
            ("acme/[ab]pp", "acme/bpp", true),
            ("acme/[!a]pp", "acme/app", false),
            ("acme/**", "acme/app", true),
        ] {
            let p: RepoPattern = pattern.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.matches(&repo(path)), want, "{pattern} vs {path}");
            assert_eq!(p.as_str(), pattern);
        }
    }

    #[test]
    fn rejects() {
        for (pattern, want) in [
            (
                "acme",
                "invalid repo pattern \"acme\": expected OWNER/REPO, e.g. \"acme/app\" or \"acme/*\"",
            ),
            ("*", "expected OWNER/REPO"),
            ("acme/", "expected OWNER/REPO"),
            ("/app", "expected OWNER/REPO"),
            ("acme/app/x", "expected OWNER/REPO"),
            ("", "expected OWNER/REPO"),
            ("acme/.git", "repo \"\" is not a valid GitHub name"),
            ("ac.me/app", "'.' is not allowed in the owner part"),
            ("acme/a b", "' ' is not allowed in the repo part"),
            ("acme/a%2fb", "'%' is not allowed in the repo part"),
            ("acme/caf\u{e9}", "'é' is not allowed"),
            ("acme/a\\*", "'\\\\' is not allowed"),
            ("-acme/app", "owner \"-acme\" is not a valid GitHub name"),
            ("acme/..", "repo \"..\" is not a valid GitHub name"),
            ("acme/[a", "unclosed character class"),
            ("acme/{a", "unclosed alternate group"),
        ] {
            let err = pattern
                .parse::<RepoPattern>()
                .expect_err(pattern)
                .to_string();
            assert!(err.contains(want), "{pattern}: {err}");
        }
    }

    #[test]
    fn literal_names() {
        for (pattern, owner, literal) in [
            ("acme/App", true, Some("app")),
            ("acme/app.git", true, Some("app")),
            ("acme/*", true, None),
            ("acme-*/x", true, Some("x")),
            ("other/x", false, Some("x")),
        ] {
            let p: RepoPattern = pattern.parse().unwrap();
            assert_eq!(
                p.matches_owner("acme-eu") || p.matches_owner("acme"),
                owner,
                "{pattern}"
            );
            assert_eq!(p.literal_name(), literal, "{pattern}");
        }
    }

    #[test]
    fn deserializes_with_validation() {
        let ok: Vec<RepoPattern> = serde_yaml::from_str("[acme/app, 'acme/*']").unwrap();
        assert_eq!(ok.len(), 2);
        let err = serde_yaml::from_str::<Vec<RepoPattern>>("- acme/app\n- acme\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("invalid repo pattern \"acme\""), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }
}
