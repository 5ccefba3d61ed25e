//! `allowedRefs` entries: a branch glob (`main`, `release/*`) or a full ref glob
//! (`refs/tags/v*`).

use std::str::FromStr;

use globset::GlobMatcher;

use crate::pattern::{PatternError, PatternKind, compile_glob, glob_matches, pattern_traits};
use crate::refname::{RefName, RefNameProblem, problem};

const BRANCH_PREFIX: &str = "refs/heads/";

/// A validated `allowedRefs` entry. Without a `refs/` prefix it names branches (`main`
/// means `refs/heads/main`); with it, full ref names. Matched case-sensitively; `*` does not
/// cross `/`, `**` does.
#[derive(Clone)]
pub struct RefPattern {
    text: String,
    glob: GlobMatcher,
}

pattern_traits!(RefPattern, "a ref pattern such as \"main\"");

impl RefPattern {
    /// Whether the ref matches.
    pub fn matches(&self, name: &RefName) -> bool {
        glob_matches(&self.glob, name.as_str())
    }
}

impl FromStr for RefPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<RefPattern, PatternError> {
        let error = |reason: String| PatternError::new(PatternKind::Ref, text, reason);
        if text.is_empty() || text == "refs/" {
            return Err(error(
                "expected a branch like \"main\" or \"release/*\", or a full ref like \"refs/tags/v*\""
                    .to_owned(),
            ));
        }
        let full = if text.starts_with("refs/") {
            text.to_owned()
        } else {
            format!("{BRANCH_PREFIX}{text}")
        };
        // The ref-name rules apply to the literal parts: check a copy in which the glob
        // characters git forbids in names stand for a plain letter. A single level below
        // `refs/` is fine for a pattern (`refs/**`).
        let literal: String = full
            .chars()
            .map(|c| if matches!(c, '*' | '?' | '[') { 'x' } else { c })
            .collect();
        match problem(&literal) {
            None | Some(RefNameProblem::OneLevel) => {}
            Some(problem) => return Err(error(format!("{full} {problem}"))),
        }
        let glob = compile_glob(PatternKind::Ref, text, &full)?;
        Ok(RefPattern {
            text: text.to_owned(),
            glob,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        for (pattern, name, want) in [
            ("main", "refs/heads/main", true),
            ("main", "refs/heads/Main", false),
            ("main", "refs/tags/main", false),
            ("main", "refs/heads/main2", false),
            ("release/*", "refs/heads/release/1.0", true),
            ("release/*", "refs/heads/release/a/b", false),
            ("release/**", "refs/heads/release/a/b", true),
            ("feature-?", "refs/heads/feature-a", true),
            ("refs/tags/v*", "refs/tags/v1.2", true),
            ("refs/tags/v*", "refs/heads/v1", false),
            ("refs/**", "refs/notes/commits", true),
            ("*", "refs/heads/x", true),
            ("*", "refs/heads/x/y", false),
            ("{main,dev}", "refs/heads/dev", true),
            ("[ab]x", "refs/heads/bx", true),
            ("heads/x", "refs/heads/heads/x", true),
        ] {
            let p: RefPattern = pattern.parse().unwrap_or_else(|e| panic!("{e}"));
            let n = RefName::parse(name).unwrap();
            assert_eq!(p.matches(&n), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn rejects() {
        for (pattern, want) in [
            ("", "expected a branch like \"main\""),
            ("refs/", "expected a branch"),
            ("a..b", "refs/heads/a..b contains \"..\""),
            ("a b", "contains a space"),
            ("a~", "contains \"~\""),
            ("a^", "contains \"^\""),
            ("a:b", "contains \":\""),
            ("a\\*", "contains \"\\\""),
            ("x/", "ends with \"/\""),
            ("x.", "ends with \".\""),
            ("/x", "contains \"//\""),
            ("a//b", "contains \"//\""),
            (".x", "component \".x\" starts with \".\""),
            ("x.lock", "ends with \".lock\""),
            ("a@{1}", "contains \"@{\""),
            ("a\n", "control character"),
            ("[a", "unclosed character class"),
            ("{a", "unclosed alternate group"),
        ] {
            let err = pattern
                .parse::<RefPattern>()
                .expect_err(pattern)
                .to_string();
            assert!(err.contains(want), "{pattern:?}: {err}");
            assert!(err.starts_with("invalid ref pattern"), "{err}");
        }
    }
}
