//! Full ref names validated like `git check-ref-format` (without `--allow-onelevel`), and
//! additionally required to live under `refs/`.

use std::fmt;

use crate::text::printable;

/// A valid full ref name such as `refs/heads/main`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

/// A rejected ref name and why. Displays as
/// `refs/heads/a..b is not a valid ref name (contains "..")`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a valid ref name ({problem})", shown(name))]
#[non_exhaustive]
pub struct RefNameError {
    /// The offending name.
    pub name: String,
    /// The first rule it breaks.
    pub problem: RefNameProblem,
}

/// The git-check-ref-format rule a name breaks. (`@` alone and a leading `/` are covered by
/// the `refs/` prefix rule.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefNameProblem {
    /// Does not start with `refs/`.
    #[error("does not start with \"refs/\"")]
    NotUnderRefs,
    /// Nothing but one component after `refs/`.
    #[error("has no \"/\" after \"refs/\"")]
    OneLevel,
    /// An ASCII control character or DEL.
    #[error("contains a control character")]
    Control,
    /// A space.
    #[error("contains a space")]
    Space,
    /// One of `~ ^ : ? * [ \`.
    #[error("contains \"{0}\"")]
    Forbidden(char),
    /// `..`.
    #[error("contains \"..\"")]
    DoubleDot,
    /// `@{`.
    #[error("contains \"@{{\"")]
    AtBrace,
    /// An empty component (`//`).
    #[error("contains \"//\"")]
    EmptyComponent,
    /// A trailing `/`.
    #[error("ends with \"/\"")]
    TrailingSlash,
    /// A trailing `.`.
    #[error("ends with \".\"")]
    TrailingDot,
    /// A component starting with `.`.
    #[error("component \"{0}\" starts with \".\"")]
    DotComponent(String),
    /// A component ending in `.lock`.
    #[error("component \"{0}\" ends with \".lock\"")]
    LockComponent(String),
}

fn shown(name: &str) -> String {
    if name.is_empty() {
        "\"\"".to_owned()
    } else {
        printable(name.as_bytes(), 256)
    }
}

impl RefName {
    /// Validates a full ref name.
    pub fn parse(name: &str) -> Result<RefName, RefNameError> {
        match problem(name) {
            None => Ok(RefName(name.to_owned())),
            Some(problem) => Err(RefNameError {
                name: name.to_owned(),
                problem,
            }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RefName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

pub(crate) fn problem(name: &str) -> Option<RefNameProblem> {
    let Some(below) = name.strip_prefix("refs/") else {
        return Some(RefNameProblem::NotUnderRefs);
    };
    if let Some(c) = name.chars().find(|c| is_forbidden(*c)) {
        return Some(match c {
            ' ' => RefNameProblem::Space,
            c if c.is_ascii_control() => RefNameProblem::Control,
            c => RefNameProblem::Forbidden(c),
        });
    }
    if name.contains("..") {
        return Some(RefNameProblem::DoubleDot);
    }
    if name.contains("@{") {
        return Some(RefNameProblem::AtBrace);
    }
    if name.ends_with('/') {
        return Some(RefNameProblem::TrailingSlash);
    }
    if name.ends_with('.') {
        return Some(RefNameProblem::TrailingDot);
    }
    if !below.contains('/') {
        return Some(RefNameProblem::OneLevel);
    }
    name.split('/').find_map(|component| {
        if component.is_empty() {
            Some(RefNameProblem::EmptyComponent)
        } else if component.starts_with('.') {
            Some(RefNameProblem::DotComponent(component.to_owned()))
        } else if component.ends_with(".lock") {
            Some(RefNameProblem::LockComponent(component.to_owned()))
        } else {
            None
        }
    })
}

fn is_forbidden(c: char) -> bool {
    c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_@{}-][a-zA-Z0-9_.@{}-]{0,10}[a-zA-Z0-9_@}-]|[a-zA-Z0-9_-]"
            .prop_filter("git rules", |c| {
                !c.contains("..") && !c.contains("@{") && !c.ends_with(".lock")
            })
    }

    proptest! {
        #[test]
        fn accepts_well_formed_names(parts in proptest::collection::vec(component(), 2..6)) {
            let name = format!("refs/{}", parts.join("/"));
            let at_brace = name.contains("@{");
            prop_assert_eq!(RefName::parse(&name).is_ok(), !at_brace);
            if !at_brace {
                prop_assert_eq!(RefName::parse(&name).map(|n| n.to_string()), Ok(name.clone()));
            }
        }

        #[test]
        fn accepts_only_what_git_accepts(tail in prop_oneof!["[ -~]{0,24}", any::<String>()]) {
            let name = format!("refs/{tail}");
            if let Ok(parsed) = RefName::parse(&name) {
                prop_assert_eq!(parsed.as_str(), name.as_str());
                prop_assert!(!name.chars().any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c)));
                let forbidden_pair = name.contains("..") || name.contains("@{");
                prop_assert!(!forbidden_pair);
                prop_assert!(!name.ends_with('/') && !name.ends_with('.'));
                prop_assert!(tail.contains('/'));
                for component in name.split('/') {
                    prop_assert!(!component.is_empty() && !component.starts_with('.') && !component.ends_with(".lock"));
                }
            }
            let _ = RefName::parse(&tail);
        }
    }

    #[test]
    fn accepts_valid_names() {
        for name in [
            "refs/heads/main",
            "refs/heads/feature/x-1_2",
            "refs/tags/v1.2.3",
            "refs/heads/a.b",
            "refs/heads/@",
            "refs/heads/a@b",
            "refs/heads/caf\u{e9}",
            "refs/heads/a{b}",
            "refs/heads/x.locked",
            "refs/notes/commits",
            "refs/pull/1/head",
        ] {
            assert!(RefName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_with_reason() {
        for (name, reason) in [
            ("", "does not start with \"refs/\""),
            ("heads/main", "does not start with \"refs/\""),
            ("/refs/heads/main", "does not start with \"refs/\""),
            ("@", "does not start with \"refs/\""),
            ("refs/main", "has no \"/\" after \"refs/\""),
            ("refs/", "ends with \"/\""),
            ("refs/heads/a..b", "contains \"..\""),
            ("refs/heads/a\x01", "contains a control character"),
            ("refs/heads/a\x7f", "contains a control character"),
            ("refs/heads/a b", "contains a space"),
            ("refs/heads/a~1", "contains \"~\""),
            ("refs/heads/a^", "contains \"^\""),
            ("refs/heads/a:b", "contains \":\""),
            ("refs/heads/a?", "contains \"?\""),
            ("refs/heads/a*", "contains \"*\""),
            ("refs/heads/a[b", "contains \"[\""),
            ("refs/heads/a\\b", "contains \"\\\""),
            ("refs/heads/a@{1}", "contains \"@{\""),
            ("refs/heads/a/", "ends with \"/\""),
            ("refs/heads/a.", "ends with \".\""),
            ("refs/heads//a", "contains \"//\""),
            ("refs/heads/.a", "component \".a\" starts with \".\""),
            ("refs/heads/x/.", "ends with \".\""),
            (
                "refs/heads/a.lock",
                "component \"a.lock\" ends with \".lock\"",
            ),
            (
                "refs/heads/a.lock/b",
                "component \"a.lock\" ends with \".lock\"",
            ),
        ] {
            let err = RefName::parse(name).expect_err(name);
            assert_eq!(err.problem.to_string(), reason, "{name:?}");
        }
    }

    #[test]
    fn error_message() {
        let err = RefName::parse("refs/heads/a..b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "refs/heads/a..b is not a valid ref name (contains \"..\")"
        );
        let err = RefName::parse("").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"\" is not a valid ref name (does not start with \"refs/\")"
        );
        let err = RefName::parse("refs/heads/a\nb").unwrap_err();
        assert_eq!(
            err.to_string(),
            "refs/heads/a\\x0ab is not a valid ref name (contains a control character)"
        );
    }
}
