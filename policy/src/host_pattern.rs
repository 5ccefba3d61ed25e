//! `allowHosts` entries: `example.com`, `*.example.com` (subdomains only), IP literals, each
//! with an optional `:PORT`.

use std::str::FromStr;

use crate::host::{HostName, parse_port};
use crate::pattern::{PatternError, PatternKind, pattern_traits};

const EXPECTED: &str =
    "expected a host such as \"crates.io\", \"*.crates.io\", \"10.0.0.1\" or \"example.com:8443\"";

/// A validated `allowHosts` entry. `*.example.com` matches subdomains at any depth but not
/// `example.com` itself. Without a port the entry allows port 443 for CONNECT and port 80 for
/// plain HTTP; with a port exactly that port.
#[derive(Clone)]
pub struct HostPattern {
    text: String,
    host: HostName,
    wildcard: bool,
    port: Option<u16>,
}

pattern_traits!(HostPattern, "a host pattern such as \"crates.io\"");

impl HostPattern {
    /// Whether `host` matches, ignoring the port.
    pub fn matches_host(&self, host: &HostName) -> bool {
        if self.wildcard {
            host.is_subdomain_of(&self.host)
        } else {
            *host == self.host
        }
    }

    /// Whether `host:port` matches; `default_port` stands in for an entry without a port.
    pub fn matches(&self, host: &HostName, port: u16, default_port: u16) -> bool {
        self.port.unwrap_or(default_port) == port && self.matches_host(host)
    }

    /// The host part (for a wildcard: the parent domain).
    pub fn host(&self) -> &HostName {
        &self.host
    }

    /// Whether this is a `*.` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<HostPattern, PatternError> {
        let error = |reason: String| PatternError::new(PatternKind::Host, text, reason);
        crate::host::not_a_url(text).map_err(|e| error(e.to_string()))?;
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.is_empty() {
            return Err(error(EXPECTED.to_owned()));
        }
        if rest.contains('*') {
            return Err(error(
                "only a leading \"*.\" wildcard is supported, e.g. \"*.example.com\"".to_owned(),
            ));
        }
        let (host, port) = split_port(rest);
        let port = port
            .map(|port| {
                parse_port(port)
                    .ok_or_else(|| error(format!("invalid port \"{port}\"; expected 1..65535")))
            })
            .transpose()?;
        let host = HostName::parse(host).map_err(|e| error(e.to_string()))?;
        if wildcard && host.is_ip() {
            return Err(error(
                "a \"*.\" wildcard needs a DNS name, e.g. \"*.example.com\"".to_owned(),
            ));
        }
        Ok(HostPattern {
            text: text.to_owned(),
            host,
            wildcard,
            port,
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, bare `v6` or `host` into host and port text.
fn split_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        if let Some(end) = text.find(']') {
            let (host, rest) = text.split_at(end + 1);
            if let Some(port) = rest.strip_prefix(':') {
                return (host, Some(port));
            }
        }
        return (text, None);
    }
    match text.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        for (pattern, host, port, default_port, want) in [
            ("crates.io", "crates.io", 443, 443, true),
            ("crates.io", "CRATES.IO.", 443, 443, true),
            ("crates.io", "crates.io", 80, 80, true),
            ("crates.io", "crates.io", 8443, 443, false),
            ("crates.io", "static.crates.io", 443, 443, false),
            ("*.crates.io", "static.crates.io", 443, 443, true),
            ("*.crates.io", "a.b.crates.io", 443, 443, true),
            ("*.crates.io", "crates.io", 443, 443, false),
            ("*.crates.io", "evilcrates.io", 443, 443, false),
            ("example.com:8443", "example.com", 8443, 443, true),
            ("example.com:8443", "example.com", 443, 443, false),
            ("example.com:8080", "example.com", 8080, 80, true),
            ("10.0.0.1", "10.0.0.1", 443, 443, true),
            ("10.0.0.1:5000", "10.0.0.1", 5000, 443, true),
            ("[::1]:8080", "::1", 8080, 443, true),
            ("[::1]", "[::1]", 443, 443, true),
            ("::1", "[0::1]", 443, 443, true),
        ] {
            let p: HostPattern = pattern.parse().unwrap_or_else(|e| panic!("{e}"));
            let h = HostName::parse(host).unwrap();
            assert_eq!(
                p.matches(&h, port, default_port),
                want,
                "{pattern} vs {host}:{port}"
            );
        }
    }

    #[test]
    fn rejects() {
        for (pattern, want) in [
            ("", "expected a host such as"),
            ("*.", "expected a host such as"),
            ("*", "only a leading \"*.\" wildcard"),
            ("a.*.com", "only a leading \"*.\" wildcard"),
            ("*.*.com", "only a leading \"*.\" wildcard"),
            ("foo*.com", "only a leading"),
            ("crates.io:0", "invalid port \"0\""),
            ("crates.io:99999", "invalid port"),
            ("crates.io:", "invalid port \"\""),
            ("[::1]:x", "invalid port \"x\""),
            ("*.10.0.0.1", "needs a DNS name"),
            (
                "https://crates.io",
                "is a URL; write only the host, with :PORT if not 443 (e.g. crates.io)",
            ),
            ("crates io", "contains ' '"),
            ("crates.io/x", "contains '/'"),
            ("127.1", "looks numeric"),
        ] {
            let err = pattern
                .parse::<HostPattern>()
                .expect_err(pattern)
                .to_string();
            assert!(err.contains(want), "{pattern:?}: {err}");
            assert!(err.starts_with("invalid host pattern"), "{err}");
        }
    }
}
