//! Host names as they appear in CONNECT targets, absolute-form URLs and `allowHosts`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::text::printable;

/// Longest DNS name accepted (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label accepted.
const MAX_LABEL_LEN: usize = 63;
/// How much of a bad input is echoed in an error.
const SHOW: usize = 80;

/// A validated host: a lowercase DNS name without trailing dot, an IPv4 literal, or an IPv6
/// literal. Displays canonically, IPv6 in brackets (`[::1]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName {
    text: String,
    ip: Option<IpAddr>,
}

/// Why a host or authority was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The host is empty.
    #[error("host name is empty")]
    Empty,
    /// The name is longer than 253 characters.
    #[error("host name \"{host}\" is longer than 253 characters")]
    TooLong {
        /// The offending host (shortened).
        host: String,
    },
    /// A character outside `a-z 0-9 - .`.
    #[error("host name \"{host}\" contains {ch:?}; expected letters, digits, '-' and '.'")]
    InvalidChar {
        /// The offending host.
        host: String,
        /// The first bad character.
        ch: char,
    },
    /// An empty, overlong or hyphen-framed label.
    #[error("host name \"{host}\" has an invalid label \"{label}\": {why}")]
    InvalidLabel {
        /// The offending host.
        host: String,
        /// The bad label.
        label: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Looks numeric (last label all digits or `0x…`) but is not a dotted-quad IPv4 address,
    /// which resolvers could read as an IP in some other notation.
    #[error("host \"{host}\" looks numeric but is not a dotted-quad IPv4 address")]
    NotIpv4 {
        /// The offending host.
        host: String,
    },
    /// Not a valid IPv6 literal.
    #[error("host \"{host}\" is not a valid IPv6 address")]
    InvalidIpv6 {
        /// The offending host.
        host: String,
    },
    /// An IPv6 literal in an authority without brackets.
    #[error("authority \"{authority}\" has an IPv6 address without brackets; expected [ADDR]:PORT")]
    UnbracketedIpv6 {
        /// The offending authority.
        authority: String,
    },
    /// An authority without `:PORT`.
    #[error("authority \"{authority}\" has no port; expected HOST:PORT")]
    MissingPort {
        /// The offending authority.
        authority: String,
    },
    /// A URL where a host (and port) was expected.
    #[error("\"{authority}\" is a URL; write only the host, with :PORT if not 443 (e.g. {host})")]
    Url {
        /// The offending text.
        authority: String,
        /// The host the URL names.
        host: String,
    },
    /// A port that is not a number in 1..=65535.
    #[error("authority \"{authority}\" has an invalid port \"{port}\"; expected 1..65535")]
    InvalidPort {
        /// The offending authority.
        authority: String,
        /// The bad port text.
        port: String,
    },
}

impl HostName {
    /// Validates and canonicalises a host: a DNS name (ASCII letters, digits, `-`, `.`;
    /// lowercased; one trailing dot stripped), an IPv4 literal, or an IPv6 literal with or
    /// without brackets.
    pub fn parse(input: &str) -> Result<HostName, HostError> {
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = input.strip_prefix('[') {
            return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
                Some(Ok(ip)) => Ok(HostName::from_ip(IpAddr::V6(ip))),
                _ => Err(HostError::InvalidIpv6 { host: show(input) }),
            };
        }
        if input.matches(':').count() >= 2 {
            return input
                .parse::<Ipv6Addr>()
                .map(|ip| HostName::from_ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::InvalidIpv6 { host: show(input) });
        }
        let lower = input.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if let Ok(ip) = name.parse::<Ipv4Addr>() {
            return Ok(HostName::from_ip(IpAddr::V4(ip)));
        }
        validate_dns_name(name)?;
        Ok(HostName {
            text: name.to_owned(),
            ip: None,
        })
    }

    fn from_ip(ip: IpAddr) -> HostName {
        let text = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        HostName { text, ip: Some(ip) }
    }

    /// Whether this is an IP literal rather than a DNS name.
    pub fn is_ip(&self) -> bool {
        self.ip.is_some()
    }

    /// The IP address of an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The canonical text (IPv6 in brackets).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this DNS name lies strictly below `parent` (`a.b.example.com` under
    /// `example.com`, but not `example.com` itself). IP literals are never below anything:
    /// their text ends in a digit or `]`, which no DNS name's last label does.
    pub(crate) fn is_subdomain_of(&self, parent: &HostName) -> bool {
        self.text
            .strip_suffix(parent.text.as_str())
            .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Refuses a URL where a host (and port) belongs, naming the host to write instead.
pub(crate) fn not_a_url(text: &str) -> Result<(), HostError> {
    match text.split_once("://") {
        Some((_, rest)) => Err(HostError::Url {
            authority: show(text),
            host: show(rest.split(['/', '?', '#']).next().unwrap_or_default()),
        }),
        None => Ok(()),
    }
}

fn show(input: &str) -> String {
    printable(input.as_bytes(), SHOW)
}

fn validate_dns_name(name: &str) -> Result<(), HostError> {
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong { host: show(name) });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(HostError::InvalidChar {
            host: show(name),
            ch,
        });
    }
    for label in name.split('.') {
        let why = if label.is_empty() {
            Some("empty label")
        } else if label.len() > MAX_LABEL_LEN {
            Some("longer than 63 characters")
        } else if label.starts_with('-') || label.ends_with('-') {
            Some("starts or ends with '-'")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(HostError::InvalidLabel {
                host: show(name),
                label: show(label),
                why,
            });
        }
    }
    // Resolvers read `127.1`, `2130706433` or `0x7f.1` as IPv4 addresses: a name whose last
    // label is numeric must be a canonical dotted quad, which was tried before.
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
    if hex || last.chars().all(|c| c.is_ascii_digit()) {
        return Err(HostError::NotIpv4 { host: show(name) });
    }
    Ok(())
}

/// Splits a CONNECT target `host:port` or `[v6]:port` (port required, 1..=65535) and
/// validates both parts.
pub fn parse_authority(authority: &str) -> Result<(HostName, u16), HostError> {
    not_a_url(authority)?;
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or_else(|| HostError::InvalidIpv6 {
            host: show(authority),
        })?;
        let (host, rest) = authority.split_at(end + 1);
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| HostError::MissingPort {
                authority: show(authority),
            })?;
        (host, port)
    } else {
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| HostError::MissingPort {
                authority: show(authority),
            })?;
        if host.contains(':') {
            return Err(HostError::UnbracketedIpv6 {
                authority: show(authority),
            });
        }
        (host, port)
    };
    let port = parse_port(port).ok_or_else(|| HostError::InvalidPort {
        authority: show(authority),
        port: show(port),
    })?;
    Ok((HostName::parse(host)?, port))
}

/// A decimal port in 1..=65535 (digits only: no sign, no spaces).
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        for (input, canonical, is_ip) in [
            ("github.com", "github.com", false),
            ("GitHub.COM", "github.com", false),
            ("github.com.", "github.com", false),
            ("a-b.c0.example", "a-b.c0.example", false),
            ("1password.com", "1password.com", false),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1.", "10.0.0.1", true),
            ("::1", "[::1]", true),
            ("[::1]", "[::1]", true),
            ("[2001:DB8::0:1]", "[2001:db8::1]", true),
            ("localhost", "localhost", false),
        ] {
            let host = HostName::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(host.to_string(), canonical, "{input}");
            assert_eq!(host.is_ip(), is_ip, "{input}");
        }
    }

    #[test]
    fn rejects_bad_hosts() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        for (input, want) in [
            ("", "host name is empty"),
            ("git hub.com", "contains ' '"),
            ("github.com:443", "contains ':'"),
            ("gith\u{fc}b.com", "contains 'ü'"),
            ("git_hub.com", "contains '_'"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("a.b..", "empty label"),
            ("-a.com", "starts or ends with '-'"),
            ("a-.com", "starts or ends with '-'"),
            (&long_label, "longer than 63"),
            (&long_name, "longer than 253"),
            ("127.1", "looks numeric"),
            ("2130706433", "looks numeric"),
            ("0x7f000001", "looks numeric"),
            ("1.2.3.04", "looks numeric"),
            ("[::1", "not a valid IPv6"),
            ("[github.com]", "not a valid IPv6"),
            ("fe80::1%eth0", "not a valid IPv6"),
            ("a:b:c", "not a valid IPv6"),
        ] {
            let err = HostName::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn parses_authorities() {
        for (input, host, port) in [
            ("github.com:443", "github.com", 443),
            ("GitHub.com.:443", "github.com", 443),
            ("10.0.0.1:8080", "10.0.0.1", 8080),
            ("[::1]:22", "[::1]", 22),
            ("h:0443", "h", 443),
            ("h:65535", "h", 65535),
        ] {
            let (h, p) = parse_authority(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((h.as_str(), p), (host, port), "{input}");
        }
    }

    #[test]
    fn rejects_bad_authorities() {
        for (input, want) in [
            ("github.com", "has no port"),
            ("[::1]", "has no port"),
            ("[::1]443", "has no port"),
            ("::1:443", "without brackets"),
            ("github.com:", "invalid port \"\""),
            (
                "https://crates.io/x",
                "\"https://crates.io/x\" is a URL; write only the host, with :PORT if not 443 (e.g. crates.io)",
            ),
            ("github.com:0", "invalid port \"0\""),
            ("github.com:65536", "invalid port"),
            ("github.com:+443", "invalid port"),
            ("github.com:443 ", "invalid port"),
            ("github.com:000443", "invalid port"),
            (":443", "host name is empty"),
            ("[::1:443", "not a valid IPv6"),
            ("git hub:443", "contains ' '"),
        ] {
            let err = parse_authority(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn subdomains() {
        let parse = |s| HostName::parse(s).unwrap();
        for (child, parent, want) in [
            ("a.example.com", "example.com", true),
            ("a.b.example.com", "example.com", true),
            ("example.com", "example.com", false),
            ("badexample.com", "example.com", false),
            ("10.0.0.1", "example.com", false),
            ("a.example.com", "10.0.0.1", false),
        ] {
            assert_eq!(
                parse(child).is_subdomain_of(&parse(parent)),
                want,
                "{child} {parent}"
            );
        }
    }
}
