//! Git object ids in lowercase hex.

use std::fmt;

use crate::text::printable;

/// The hash function of a repository, which fixes the object id length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectFormat {
    /// SHA-1: 40 hex digits.
    Sha1,
    /// SHA-256: 64 hex digits.
    Sha256,
}

impl ObjectFormat {
    /// Parses the value of the `object-format=` capability.
    pub fn from_capability(value: &str) -> Option<ObjectFormat> {
        match value {
            "sha1" => Some(ObjectFormat::Sha1),
            "sha256" => Some(ObjectFormat::Sha256),
            _ => None,
        }
    }

    /// Length of an object id in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            ObjectFormat::Sha1 => 40,
            ObjectFormat::Sha256 => 64,
        }
    }

    /// The capability value (`sha1`, `sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        }
    }
}

/// An object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

/// Why an object id was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectIdError {
    /// Not 40 or 64 characters long.
    #[error("bad object id \"{0}\": expected 40 or 64 hex digits")]
    Length(String),
    /// Contains something other than lowercase hex digits.
    #[error("bad object id \"{0}\": expected lowercase hex digits")]
    NotHex(String),
}

impl ObjectId {
    /// Parses a lowercase hex object id of SHA-1 or SHA-256 length.
    pub fn parse(hex: &str) -> Result<ObjectId, ObjectIdError> {
        ObjectId::from_bytes(hex.as_bytes())
    }

    /// Parses an object id straight from wire bytes.
    pub fn from_bytes(hex: &[u8]) -> Result<ObjectId, ObjectIdError> {
        let shown = || printable(hex, 70);
        if hex.len() != 40 && hex.len() != 64 {
            return Err(ObjectIdError::Length(shown()));
        }
        if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ObjectIdError::NotHex(shown()));
        }
        Ok(ObjectId(hex.iter().map(|&b| char::from(b)).collect()))
    }

    /// The all-zero id of a format (the "old" of a create, the "new" of a delete).
    pub fn zero(format: ObjectFormat) -> ObjectId {
        ObjectId("0".repeat(format.hex_len()))
    }

    /// Whether this is the all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }

    /// The format implied by the length.
    pub fn format(&self) -> ObjectFormat {
        if self.0.len() == ObjectFormat::Sha256.hex_len() {
            ObjectFormat::Sha256
        } else {
            ObjectFormat::Sha1
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "f387feda1a52fa96e02b4e58283eb476aaf06124";

    #[test]
    fn parses() {
        let sha256 = "ab".repeat(32);
        for (hex, format, zero) in [
            (SHA1, ObjectFormat::Sha1, false),
            (sha256.as_str(), ObjectFormat::Sha256, false),
            (&"0".repeat(40), ObjectFormat::Sha1, true),
            (&"0".repeat(64), ObjectFormat::Sha256, true),
        ] {
            let id = ObjectId::parse(hex).unwrap();
            assert_eq!(
                (id.format(), id.is_zero(), id.as_str()),
                (format, zero, hex)
            );
        }
        assert_eq!(
            ObjectId::zero(ObjectFormat::Sha256).as_str(),
            "0".repeat(64)
        );
    }

    #[test]
    fn rejects() {
        for (hex, want) in [
            ("", "expected 40 or 64"),
            (&SHA1[..39], "expected 40 or 64"),
            (&format!("{SHA1}0"), "expected 40 or 64"),
            (&SHA1.to_uppercase(), "lowercase hex"),
            (&format!("{}g", &SHA1[..39]), "lowercase hex"),
            (&format!("{} ", &SHA1[..39]), "lowercase hex"),
        ] {
            let err = ObjectId::parse(hex).expect_err(hex).to_string();
            assert!(err.contains(want), "{hex}: {err}");
        }
    }

    #[test]
    fn object_format_capability() {
        for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
            assert_eq!(ObjectFormat::from_capability(format.as_str()), Some(format));
        }
        assert_eq!(ObjectFormat::from_capability("md5"), None);
    }
}
