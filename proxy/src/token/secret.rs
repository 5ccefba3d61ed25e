//! A credential that never shows itself in logs or `Debug` output.

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

/// A token, JWT or key material. `Debug` and `Display` print `[redacted]`;
/// the value is reachable only through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(Arc<Inner>);

struct Inner {
    value: Box<str>,
    /// The git `Authorization` value, made on first use (every git request needs it).
    basic: OnceLock<HeaderValue>,
}

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(Arc::new(Inner {
            value: value.into(),
            basic: OnceLock::new(),
        }))
    }

    /// The credential itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0.value
    }

    /// `Basic` authorization as `x-access-token` with this token (git smart HTTP and LFS),
    /// marked sensitive.
    pub(crate) fn basic(&self) -> HeaderValue {
        self.0
            .basic
            .get_or_init(|| {
                let encoded = STANDARD.encode(format!("x-access-token:{}", self.expose()));
                sensitive(format!("Basic {encoded}"))
            })
            .clone()
    }
}

/// A header value for a credential: never shown by `Debug`, never compressed by HTTP/2.
pub(crate) fn sensitive(value: String) -> HeaderValue {
    let mut value = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("ghs_supersecret");
        assert_eq!(
            format!("{s:?} {s} {:?}", Some(&s)),
            "[redacted] [redacted] Some([redacted])"
        );
        assert_eq!(s.expose(), "ghs_supersecret");
    }

    #[test]
    fn basic_is_the_access_token_pair_made_once() {
        let s = Secret::new("ghs_abc");
        // base64("x-access-token:ghs_abc")
        assert_eq!(s.basic(), "Basic eC1hY2Nlc3MtdG9rZW46Z2hzX2FiYw==");
        assert!(s.basic().is_sensitive());
        let same = s.clone();
        assert!(std::ptr::eq(
            s.0.basic.get().unwrap(),
            same.0.basic.get().unwrap()
        ));
        assert_ne!(Secret::new("ghs_other").basic(), s.basic());
        assert_eq!(format!("{:?}", s.basic()), "Sensitive");
    }
}
