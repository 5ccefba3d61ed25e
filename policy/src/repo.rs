//! Canonical GitHub repository paths (`owner/name`).

use std::fmt;

use crate::text::printable;

/// Longest owner (GitHub user or organisation) name.
const MAX_OWNER_LEN: usize = 39;
/// Longest repository name.
const MAX_NAME_LEN: usize = 100;

/// A validated repository in canonical form: owner and name lowercase, name without `.git`.
/// Displays as `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath {
    owner: String,
    name: String,
}

/// Why an `owner/name` was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepoPathError {
    /// Not exactly one `/`.
    #[error("repository \"{input}\" is not of the form OWNER/REPO")]
    Shape {
        /// The offending input (shortened).
        input: String,
    },
    /// The owner part is invalid.
    #[error(
        "repository owner \"{owner}\" is invalid: expected 1 to 39 of a-z 0-9 _ -, not starting with -"
    )]
    Owner {
        /// The offending owner (shortened).
        owner: String,
    },
    /// The name part is invalid.
    #[error(
        "repository name \"{name}\" is invalid: expected 1 to 100 of a-z 0-9 . _ - (plus an optional .git), not . or .."
    )]
    Name {
        /// The offending name (shortened).
        name: String,
    },
}

impl RepoPath {
    /// Parses `Owner/Name[.git]` into canonical form.
    pub fn parse(input: &str) -> Result<RepoPath, RepoPathError> {
        match input.split_once('/') {
            Some((owner, name)) if !name.contains('/') => RepoPath::from_parts(owner, name),
            _ => Err(RepoPathError::Shape {
                input: printable(input.as_bytes(), 150),
            }),
        }
    }

    /// Builds a canonical path from an owner and a name (one `.git` suffix is stripped).
    pub fn from_parts(owner: &str, name: &str) -> Result<RepoPath, RepoPathError> {
        let owner_lc = owner.to_ascii_lowercase();
        if !is_owner(&owner_lc) {
            return Err(RepoPathError::Owner {
                owner: printable(owner.as_bytes(), 50),
            });
        }
        let name_lc = name.to_ascii_lowercase();
        let stripped = name_lc.strip_suffix(".git").unwrap_or(&name_lc);
        if !is_name(stripped) {
            return Err(RepoPathError::Name {
                name: printable(name.as_bytes(), 110),
            });
        }
        Ok(RepoPath {
            owner: owner_lc,
            name: stripped.to_owned(),
        })
    }

    /// The lowercase owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lowercase name without `.git`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Lowercase owner: `[a-z0-9_-]{1,39}`, not starting with `-`.
pub(crate) fn is_owner(owner: &str) -> bool {
    (1..=MAX_OWNER_LEN).contains(&owner.len())
        && !owner.starts_with('-')
        && owner.bytes().all(is_owner_byte)
}

/// Lowercase name without `.git`: `[a-z0-9._-]{1,100}`, not `.` or `..`.
pub(crate) fn is_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(is_name_byte)
}

/// A byte allowed in a lowercase owner.
pub(crate) fn is_owner_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

/// A byte allowed in a lowercase repository name.
pub(crate) fn is_name_byte(b: u8) -> bool {
    is_owner_byte(b) || b == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalises() {
        for (input, want) in [
            ("acme/app", "acme/app"),
            ("Acme/App.git", "acme/app"),
            ("acme/app.GIT", "acme/app"),
            ("acme/app.git.git", "acme/app.git"),
            ("a_b-c/x.y_z-1", "a_b-c/x.y_z-1"),
            ("acme/...", "acme/..."),
            ("acme/.github", "acme/.github"),
        ] {
            let repo = RepoPath::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(repo.to_string(), want, "{input}");
        }
        let repo = RepoPath::parse("Acme/App.git").unwrap();
        assert_eq!((repo.owner(), repo.name()), ("acme", "app"));
    }

    #[test]
    fn rejects() {
        let long_owner = format!("{}/app", "a".repeat(40));
        let long_name = format!("acme/{}", "a".repeat(101));
        let max = format!("{}/{}.git", "a".repeat(39), "b".repeat(100));
        assert!(RepoPath::parse(&max).is_ok());
        for (input, want) in [
            ("acme", "not of the form"),
            ("acme/app/x", "not of the form"),
            ("/app", "owner \"\""),
            ("-acme/app", "owner \"-acme\""),
            ("ac.me/app", "owner"),
            ("ac%me/app", "owner"),
            (&long_owner, "owner"),
            ("acme/", "name \"\""),
            ("acme/.git", "name \".git\""),
            ("acme/.", "name"),
            ("acme/..", "name"),
            ("acme/..git", "name"),
            ("acme/a b", "name"),
            ("acme/a\u{e9}", "name \"a\\xc3\\xa9\""),
            (&long_name, "name"),
        ] {
            let err = RepoPath::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
