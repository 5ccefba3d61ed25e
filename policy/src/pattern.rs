//! What the three pattern kinds of a policy (`allowedRepos`, `allowedRefs`, `allowHosts`)
//! share: the error type, glob compilation, and the traits implemented through the original
//! text.

use std::fmt;

use globset::{Candidate, GlobBuilder, GlobMatcher};

/// Which list a pattern belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// An `allowedRepos` entry.
    Repo,
    /// An `allowedRefs` entry.
    Ref,
    /// An `allowHosts` entry.
    Host,
    /// A `protectedPaths` entry.
    Path,
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternKind::Repo => "repo",
            PatternKind::Ref => "ref",
            PatternKind::Host => "host",
            PatternKind::Path => "path",
        })
    }
}

/// A rejected pattern: `invalid repo pattern "acme": expected OWNER/REPO, …`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} pattern \"{pattern}\": {reason}")]
#[non_exhaustive]
pub struct PatternError {
    /// The list the pattern was meant for.
    pub kind: PatternKind,
    /// The pattern as written (control characters escaped).
    pub pattern: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl PatternError {
    pub(crate) fn new(kind: PatternKind, pattern: &str, reason: impl Into<String>) -> Self {
        PatternError {
            kind,
            pattern: crate::text::printable(pattern.as_bytes(), 200),
            reason: reason.into(),
        }
    }
}

/// Characters with a meaning in glob syntax that patterns may use.
pub(crate) const GLOB_CHARS: &[u8] = b"*?[]{},!";

/// Whether a pattern part uses glob syntax (else it is matched literally).
pub(crate) fn has_glob(part: &str) -> bool {
    part.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
}

/// The one place globs are built: `*` and `?` never match `/`, `**` crosses it.
pub(crate) fn compile_glob(
    kind: PatternKind,
    original: &str,
    glob: &str,
) -> Result<GlobMatcher, PatternError> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| PatternError::new(kind, original, e.kind().to_string()))
}

/// Matches a glob against text without any path interpretation.
pub(crate) fn glob_matches(glob: &GlobMatcher, text: &str) -> bool {
    glob.is_match_candidate(&Candidate::from_bytes(text.as_bytes()))
}

/// Implements `Display`, `Debug`, `PartialEq`, `Eq`, `as_str` and a validating
/// `Deserialize` (through `FromStr`) for a pattern type with a `text` field.
macro_rules! pattern_traits {
    ($ty:ident, $expecting:literal) => {
        impl $ty {
            /// The pattern as written in the configuration.
            pub fn as_str(&self) -> &str {
                &self.text
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.text).finish()
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.text == other.text
            }
        }

        impl Eq for $ty {}

        /// Validates while deserializing (inside the visitor, so that the YAML error points
        /// at the entry itself).
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$ty, E> {
                        text.parse().map_err(E::custom)
                    }
                }

                deserializer.deserialize_str(Visitor)
            }
        }
    };
}
pub(crate) use pattern_traits;
