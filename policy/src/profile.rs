//! One sandbox profile: its name, how a client proves it is that sandbox, and its policy.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;

use crate::pattern::pattern_traits;
use crate::policy::{ConfigError, Policy};
use crate::raw::RawPolicy;

/// `Hash` and `Ord` through the text, consistent with the `Eq` of `pattern_traits!`.
macro_rules! hash_and_order_by_text {
    ($ty:ident) => {
        impl std::hash::Hash for $ty {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.text.hash(state);
            }
        }

        impl PartialOrd for $ty {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $ty {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.text.cmp(&other.text)
            }
        }
    };
}

/// A profile name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`. It is the
/// `Proxy-Authorization` user name, a file name in `profilesDir` and a metric label.
#[derive(Clone)]
pub struct ProfileName {
    text: Arc<str>,
}

pattern_traits!(ProfileName, "a profile name");
hash_and_order_by_text!(ProfileName);

impl ProfileName {
    /// The name, shared.
    pub fn shared(&self) -> Arc<str> {
        self.text.clone()
    }
}

impl FromStr for ProfileName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let valid = (1..=64).contains(&text.len())
            && !text.starts_with(['.', '-'])
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self { text: text.into() })
        } else {
            Err(format!(
                "invalid profile name \"{}\": use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                crate::text::printable(text.as_bytes(), 80)
            ))
        }
    }
}

/// A client address range, `10.0.3.0/24` or a single address (`127.0.0.2`).
#[derive(Clone)]
pub struct Cidr {
    text: String,
    network: IpAddr,
    prefix: u8,
}

pattern_traits!(Cidr, "an address range such as 10.0.3.0/24");

impl Cidr {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        mask(addr.to_canonical(), self.prefix) == Some(self.network)
    }
}

/// `addr` with all but its first `prefix` bits cleared; `None` if `prefix` is too long.
pub(crate) fn mask(addr: IpAddr, prefix: u8) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(v4) if prefix <= 32 => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V4(bits.into()))
        }
        IpAddr::V6(v6) if prefix <= 128 => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V6(bits.into()))
        }
        _ => None,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid address range \"{}\": {why}",
                crate::text::printable(text.as_bytes(), 80)
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr)
            .map_err(|_| bad("expected ADDRESS/PREFIX, e.g. 10.0.3.0/24 or fd00::/64"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0 to {max}")))?,
        };
        let network = mask(addr, prefix).ok_or_else(|| bad("prefix too long"))?;
        if network != addr {
            return Err(bad(&format!(
                "the address has bits set past the prefix; did you mean {network}/{prefix}?"
            )));
        }
        Ok(Self {
            text: text.to_owned(),
            network,
            prefix,
        })
    }
}

/// A client certificate identity: `CN=agent-a` (subject common name) or
/// `URI=spiffe://cluster/ns/agents/sa/agent-a` (a URI subject alternative name).
#[derive(Clone)]
pub struct CertSubject {
    text: String,
}

pattern_traits!(CertSubject, "CN=NAME or URI=URI");
hash_and_order_by_text!(CertSubject);

impl CertSubject {
    /// The subject for a certificate's common name.
    pub fn common_name(cn: &str) -> Self {
        Self {
            text: format!("CN={cn}"),
        }
    }

    /// The subject for a certificate's URI subject alternative name.
    pub fn uri(uri: &str) -> Self {
        Self {
            text: format!("URI={uri}"),
        }
    }
}

impl FromStr for CertSubject {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('=').and_then(|(kind, value)| {
            if value.is_empty() || value.chars().any(char::is_control) {
                return None;
            }
            match kind.trim().to_ascii_uppercase().as_str() {
                "CN" => Some(Self::common_name(value)),
                "URI" => Some(Self::uri(value)),
                _ => None,
            }
        });
        parsed.ok_or_else(|| {
            format!(
                "invalid client certificate subject \"{}\": expected CN=NAME or URI=URI",
                crate::text::printable(text.as_bytes(), 120)
            )
        })
    }
}

/// The SHA-256 of a profile's proxy secret, as 64 hex digits.
#[derive(Clone)]
pub struct SecretSha256 {
    text: String,
    digest: [u8; 32],
}

pattern_traits!(SecretSha256, "64 hex digits");

impl SecretSha256 {
    /// Whether `digest` (the SHA-256 of the secret a client sent) is this one, compared
    /// in constant time.
    pub fn matches(&self, digest: &[u8; 32]) -> bool {
        self.digest
            .iter()
            .zip(digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl FromStr for SecretSha256 {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let hex = text.trim().to_ascii_lowercase();
        let mut digest = [0u8; 32];
        let valid = hex.len() == 64
            && hex
                .as_bytes()
                .chunks(2)
                .zip(digest.iter_mut())
                .all(|(pair, out)| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .map(|b| *out = b)
                        .is_some()
                });
        if valid {
            Ok(Self { text: hex, digest })
        } else {
            Err("secretSha256 must be the SHA-256 of the proxy secret as 64 hex digits (e.g. `printf %s \"$SECRET\" | sha256sum`)".into())
        }
    }
}

/// A profile as written: under `profiles.NAME` or in `profilesDir/NAME.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProfile {
    /// `Proxy-Authorization: Basic NAME:SECRET` identifies the sandbox.
    pub secret_sha256: Option<SecretSha256>,
    /// Clients from these addresses are this sandbox.
    pub source_cidrs: Vec<Cidr>,
    /// Clients presenting a certificate with one of these subjects (on `listenTls`).
    pub client_cert_subjects: Vec<CertSubject>,
    /// What the sandbox may do.
    pub policy: RawPolicy,
}

/// A compiled profile.
#[derive(Debug)]
pub struct Profile {
    /// Its name.
    pub name: ProfileName,
    /// Its policy.
    pub policy: Arc<Policy>,
    pub(crate) secret: Option<SecretSha256>,
    pub(crate) cidrs: Vec<Cidr>,
    pub(crate) subjects: Vec<CertSubject>,
}

/// Why a profile could not be compiled or added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Its policy is invalid.
    #[error("profile {profile}: {source}")]
    Policy {
        /// The profile.
        profile: String,
        /// What is wrong with the policy.
        #[source]
        source: ConfigError,
    },
    /// It names no way for a client to be recognised.
    #[error(
        "profile {0} has no identity: set secretSha256, sourceCidrs or clientCertSubjects, or no client can ever use it"
    )]
    NoIdentity(String),
    /// Two profiles claim the same name, address range or certificate subject.
    #[error("{what} is claimed by both profile {first} and profile {second}")]
    Conflict {
        /// The contested name, range or subject.
        what: String,
        /// Where the second profile claims it (`sourceCidrs[0]`); empty for the name.
        key: String,
        /// The profile that had it.
        first: String,
        /// The profile that also wants it.
        second: String,
    },
}

impl ProfileError {
    /// The key inside the profile that the error is about (`policy.allowHosts[1]`), when
    /// it is known.
    pub fn key(&self) -> Option<String> {
        match self {
            ProfileError::Policy { source, .. } => Some(
                source
                    .key()
                    .map_or("policy".into(), |key| format!("policy.{key}")),
            ),
            ProfileError::Conflict { key, .. } if !key.is_empty() => Some(key.clone()),
            _ => None,
        }
    }
}

impl Profile {
    /// Everything the profile decides with, exactly: its name, how its clients are
    /// recognised, and its policy ([`Policy::exact`]). What its fingerprint is taken of.
    pub fn exact(&self) -> String {
        let list = |items: &mut dyn Iterator<Item = &str>| items.collect::<Vec<_>>().join(",");
        format!(
            "profile {}\nsecretSha256: {}\nsourceCidrs: {}\nclientCertSubjects: {}\n{}",
            self.name,
            self.secret.as_ref().map_or("", |s| s.as_str()),
            list(&mut self.cidrs.iter().map(Cidr::as_str)),
            list(&mut self.subjects.iter().map(CertSubject::as_str)),
            self.policy.exact()
        )
    }

    /// Compiles `raw` as profile `name`; `github_hosts` as for [`Policy::compile`].
    pub fn compile(
        name: ProfileName,
        raw: &RawProfile,
        github_hosts: &[String],
    ) -> Result<Profile, ProfileError> {
        if raw.secret_sha256.is_none()
            && raw.source_cidrs.is_empty()
            && raw.client_cert_subjects.is_empty()
        {
            return Err(ProfileError::NoIdentity(name.to_string()));
        }
        let policy =
            Policy::compile(&raw.policy, github_hosts).map_err(|source| ProfileError::Policy {
                profile: name.to_string(),
                source,
            })?;
        Ok(Profile {
            name,
            policy: Arc::new(policy),
            secret: raw.secret_sha256.clone(),
            cidrs: raw.source_cidrs.clone(),
            subjects: raw.client_cert_subjects.clone(),
        })
    }

    /// How clients are recognised as this profile, for `gitgate check`.
    pub fn identities(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.secret.is_some() {
            out.push(format!("proxy secret (user {})", self.name));
        }
        out.extend(self.cidrs.iter().map(|c| format!("source {c}")));
        out.extend(
            self.subjects
                .iter()
                .map(|s| format!("client certificate {s}")),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exact_text_tells_apart_profiles_that_recognise_other_clients() {
        let exact = |yaml: &str| {
            let raw: RawProfile = serde_yaml::from_str(yaml).unwrap();
            Profile::compile("a".parse().unwrap(), &raw, &["github.com".to_owned()])
                .unwrap()
                .exact()
        };
        let base = exact("{sourceCidrs: [10.0.0.0/8], policy: {allowedRepos: [a/b]}}");
        for other in [
            "{sourceCidrs: [10.0.0.0/16], policy: {allowedRepos: [a/b]}}",
            "{sourceCidrs: [10.0.0.0/8], clientCertSubjects: [CN=x], policy: {allowedRepos: [a/b]}}",
            "{sourceCidrs: [10.0.0.0/8], policy: {allowedRepos: [a/c]}}",
        ] {
            assert_ne!(exact(other), base, "{other}");
        }
    }

    #[test]
    fn names() {
        for ok in ["agent-a", "ci_7", "A.b"] {
            assert_eq!(ok.parse::<ProfileName>().unwrap().as_str(), ok);
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "a:b", &"x".repeat(65)] {
            assert!(bad.parse::<ProfileName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.3.0/24".parse().unwrap();
        assert!(c.contains("10.0.3.77".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.3.1".parse().unwrap()));
        assert!(!c.contains("10.0.4.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        let one: Cidr = "127.0.0.2".parse().unwrap();
        assert_eq!(one.prefix(), 32);
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.3".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let err = "10.0.3.5/24".parse::<Cidr>().unwrap_err();
        assert!(err.contains("did you mean 10.0.3.0/24"), "{err}");
        assert!("10.0.3.0/33".parse::<Cidr>().is_err());
        assert!("host/24".parse::<Cidr>().is_err());
    }

    #[test]
    fn subjects_and_secrets() {
        assert_eq!(
            "cn=agent-a".parse::<CertSubject>().unwrap(),
            CertSubject::common_name("agent-a")
        );
        assert_eq!(
            "URI=spiffe://c/ns/a".parse::<CertSubject>().unwrap(),
            CertSubject::uri("spiffe://c/ns/a")
        );
        for bad in ["agent-a", "O=acme", "CN="] {
            assert!(bad.parse::<CertSubject>().is_err(), "{bad}");
        }
        let hex = "AB".repeat(32);
        let s: SecretSha256 = hex.parse().unwrap();
        assert!(s.matches(&[0xab; 32]));
        assert!(!s.matches(&[0xac; 32]));
        assert!("ab".parse::<SecretSha256>().is_err());
        assert!("zz".repeat(32).parse::<SecretSha256>().is_err());
    }

    #[test]
    fn a_profile_needs_an_identity_and_a_valid_policy() {
        let name: ProfileName = "a".parse().unwrap();
        let err = Profile::compile(name.clone(), &RawProfile::default(), &[]).unwrap_err();
        assert!(err.to_string().contains("has no identity"), "{err}");
        let raw: RawProfile =
            serde_yaml::from_str("sourceCidrs: [127.0.0.2]\npolicy: {allowedRepos: [acme/app]}")
                .unwrap();
        let p = Profile::compile(name, &raw, &["github.com".into()]).unwrap();
        assert_eq!(p.identities(), vec!["source 127.0.0.2"]);
        let err = serde_yaml::from_str::<RawProfile>("sourceCidrs: [10.0.0.1/8]").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(serde_yaml::from_str::<RawProfile>("secret: x").is_err());
    }
}
