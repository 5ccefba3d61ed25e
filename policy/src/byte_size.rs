//! Sizes in the configuration: `50MB`, `2GiB`, `1048576`.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A number of bytes, written as a plain integer or with a unit: `B`, `KB`/`MB`/`GB`
/// (powers of 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// Why a size did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {0:?}: write a number of bytes, optionally with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 50MB"
)]
pub struct ByteSizeError(String);

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ByteSizeError(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000 * 1000,
            "gb" => 1000 * 1000 * 1000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            _ => return Err(bad()),
        };
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    /// Bytes in the largest decimal unit that keeps three significant digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let (value, unit) = match n {
            0..1_000 => return write!(f, "{n} B"),
            1_000..1_000_000 => (n as f64 / 1e3, "KB"),
            1_000_000..1_000_000_000 => (n as f64 / 1e6, "MB"),
            _ => (n as f64 / 1e9, "GB"),
        };
        let digits = if value < 10.0 {
            2
        } else if value < 100.0 {
            1
        } else {
            0
        };
        write!(f, "{value:.digits$} {unit}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes, optionally with a unit (e.g. 50MB)")
            }
            fn visit_u64<E: Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(ByteSizeError(n.to_string())))
            }
            fn visit_f64<E: Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(ByteSizeError(format!("{n:?}"))))
            }
            fn visit_str<E: Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("50MB", 50_000_000),
            ("50 mb", 50_000_000),
            ("2GiB", 2 << 30),
            ("64KiB", 64 << 10),
            ("7kb", 7000),
            ("12B", 12),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in ["", "MB", "-5MB", "5 TB", "1.5MB", "99999999999999999999GB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_readably() {
        for (bytes, text) in [
            (12, "12 B"),
            (1_500, "1.50 KB"),
            (62_914_560, "62.9 MB"),
            (50_000_000, "50.0 MB"),
            (3_200_000_000, "3.20 GB"),
        ] {
            assert_eq!(ByteSize(bytes).to_string(), text);
        }
    }

    #[test]
    fn deserializes_numbers_and_text() {
        let sizes: Vec<ByteSize> = serde_yaml::from_str("[1024, 50MB]").unwrap();
        assert_eq!(sizes, [ByteSize(1024), ByteSize(50_000_000)]);
        let error = serde_yaml::from_str::<Vec<ByteSize>>("[5 parsecs]").unwrap_err();
        assert!(error.to_string().contains("invalid size"), "{error}");
    }
}
