//! Many sandboxes, one gitgate: which profile a client is, found by hash lookups (never
//! a scan of every profile), and the policy that then applies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::policy::Policy;
use crate::profile::{CertSubject, Cidr, Profile, ProfileError, mask};

/// What a client presented: checked against the profiles in this order.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    /// `Proxy-Authorization`, if the request carried one.
    pub proxy_auth: Option<ProxyAuth<'a>>,
    /// The subjects of the client certificate verified on `listenTls`, if any.
    pub cert_subjects: &'a [CertSubject],
    /// The client's address.
    pub source: IpAddr,
}

/// A `Proxy-Authorization` header, decoded by the caller.
#[derive(Debug, Clone, Copy)]
pub enum ProxyAuth<'a> {
    /// `Basic` with this user name and the SHA-256 of the password.
    Basic {
        /// The profile the client claims to be.
        user: &'a str,
        /// SHA-256 of the secret it sent.
        secret_sha256: [u8; 32],
    },
    /// Present but not a well-formed `Basic` credential.
    Malformed,
}

/// Why no profile applies to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The client did not identify itself (answered `407`).
    #[error(
        "gitgate serves several sandboxes and this client did not identify itself: put the profile name and its proxy secret in the proxy URL (HTTPS_PROXY=http://PROFILE:SECRET@HOST:PORT)"
    )]
    Missing,
    /// `Proxy-Authorization` did not prove a profile (answered `407`).
    #[error(
        "the proxy credentials are wrong: {0}; check the profile name and secret in the proxy URL"
    )]
    BadCredentials(String),
    /// The client is identified, but no profile is configured for it (answered `403`).
    #[error("{0} is not mapped to any profile; ask the gitgate operator to add one")]
    NoProfile(String),
    /// The profile a connection was opened under no longer exists.
    #[error("profile {0} was removed from gitgate's configuration; reconnect")]
    Gone(String),
}

impl IdentityError {
    /// Whether the answer is `407 Proxy Authentication Required` (else `403`).
    pub fn wants_credentials(&self) -> bool {
        matches!(self, Self::Missing | Self::BadCredentials(_))
    }
}

/// Longest-prefix lookup of client addresses: one hash map per prefix length in use.
#[derive(Debug, Default)]
struct CidrIndex {
    /// `(prefix, network → profile)`, longest prefix first.
    levels: Vec<(u8, bool, HashMap<IpAddr, Arc<Profile>>)>,
}

impl CidrIndex {
    /// The profile that has exactly `cidr`, if any.
    fn exact(&self, cidr: &Cidr) -> Option<&Arc<Profile>> {
        let key = (cidr.prefix(), cidr.network().is_ipv4());
        self.levels
            .iter()
            .find(|l| (l.0, l.1) == key)
            .and_then(|l| l.2.get(&cidr.network()))
    }

    fn insert(&mut self, cidr: &Cidr, profile: &Arc<Profile>) {
        let key = (cidr.prefix(), cidr.network().is_ipv4());
        let same = |level: &(u8, bool, _)| (level.0, level.1) == key;
        if !self.levels.iter().any(same) {
            self.levels.push((key.0, key.1, HashMap::new()));
            self.levels.sort_by_key(|level| std::cmp::Reverse(level.0));
        }
        if let Some((_, _, level)) = self.levels.iter_mut().find(|l| same(l)) {
            level.insert(cidr.network(), profile.clone());
        }
    }

    fn lookup(&self, addr: IpAddr) -> Option<&Arc<Profile>> {
        let addr = addr.to_canonical();
        self.levels
            .iter()
            .filter(|(_, v4, _)| *v4 == addr.is_ipv4())
            .find_map(|(prefix, _, map)| map.get(&mask(addr, *prefix)?))
    }
}

/// `what` (at `key` in `second`'s entry) is claimed by both profiles.
fn conflict(what: String, key: String, first: &Profile, second: &Profile) -> ProfileError {
    ProfileError::Conflict {
        what,
        key,
        first: first.name.to_string(),
        second: second.name.to_string(),
    }
}

/// Every profile, indexed by name, client certificate subject and address range.
#[derive(Debug, Default)]
pub struct ProfileSet {
    by_name: HashMap<Arc<str>, Arc<Profile>>,
    by_subject: HashMap<CertSubject, Arc<Profile>>,
    by_source: CidrIndex,
}

impl ProfileSet {
    /// Indexes `profiles`; two profiles may not claim the same name, exact address
    /// range or certificate subject (overlapping ranges are fine: the longest prefix wins).
    pub fn new(profiles: impl IntoIterator<Item = Arc<Profile>>) -> Result<Self, ProfileError> {
        let mut set = Self::default();
        for profile in profiles {
            set.insert(profile)?;
        }
        Ok(set)
    }

    /// Adds `profile`, or leaves the set unchanged and says what it conflicts with.
    pub fn insert(&mut self, profile: Arc<Profile>) -> Result<(), ProfileError> {
        if let Some(first) = self.by_name.get(profile.name.as_str()) {
            return Err(conflict(
                format!("the name {}", profile.name),
                String::new(),
                first,
                &profile,
            ));
        }
        for (i, subject) in profile.subjects.iter().enumerate() {
            if let Some(first) = self.by_subject.get(subject) {
                return Err(conflict(
                    format!("client certificate {subject}"),
                    format!("clientCertSubjects[{i}]"),
                    first,
                    &profile,
                ));
            }
        }
        for (i, cidr) in profile.cidrs.iter().enumerate() {
            if let Some(first) = self.by_source.exact(cidr) {
                return Err(conflict(
                    format!("source range {}/{}", cidr.network(), cidr.prefix()),
                    format!("sourceCidrs[{i}]"),
                    first,
                    &profile,
                ));
            }
        }
        for subject in &profile.subjects {
            self.by_subject.insert(subject.clone(), profile.clone());
        }
        for cidr in &profile.cidrs {
            self.by_source.insert(cidr, &profile);
        }
        self.by_name.insert(profile.name.shared(), profile);
        Ok(())
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.by_name.get(name)
    }

    /// Every profile, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.by_name.values()
    }

    /// The profile names for a message: sorted, the first twenty, `…` after them.
    pub fn listed(&self) -> String {
        let mut names: Vec<&str> = self.by_name.keys().map(|n| &**n).collect();
        names.sort_unstable();
        let more = if names.len() > LISTED { ", …" } else { "" };
        names.truncate(LISTED);
        format!("{}{more}", names.join(", "))
    }

    /// How many profiles there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The profile `claims` prove. A `Proxy-Authorization` header, when present, must be
    /// right (it is never passed over for a weaker identity); then the client
    /// certificate; then the source address.
    pub fn identify(&self, claims: &Claims<'_>) -> Result<&Arc<Profile>, IdentityError> {
        match claims.proxy_auth {
            Some(ProxyAuth::Basic {
                user,
                secret_sha256,
            }) => {
                let known = self.by_name.get(user);
                return match known.and_then(|p| p.secret.as_ref().map(|s| (p, s))) {
                    Some((profile, secret)) if secret.matches(&secret_sha256) => Ok(profile),
                    Some(_) => Err(IdentityError::BadCredentials(format!(
                        "wrong secret for profile {user}"
                    ))),
                    None => Err(IdentityError::BadCredentials(format!(
                        "no profile {} takes a proxy secret",
                        crate::text::printable(user.as_bytes(), 64)
                    ))),
                };
            }
            Some(ProxyAuth::Malformed) => {
                return Err(IdentityError::BadCredentials(
                    "Proxy-Authorization is not Basic base64(PROFILE:SECRET)".into(),
                ));
            }
            None => {}
        }
        if let Some(profile) = claims
            .cert_subjects
            .iter()
            .find_map(|s| self.by_subject.get(s))
        {
            return Ok(profile);
        }
        if let Some(profile) = self.by_source.lookup(claims.source) {
            return Ok(profile);
        }
        match claims.cert_subjects.first() {
            Some(subject) => Err(IdentityError::NoProfile(format!(
                "client certificate {subject}"
            ))),
            None => Err(IdentityError::Missing),
        }
    }
}

/// The policies in force: one for every client, or one per profile.
#[derive(Debug)]
pub enum Policies {
    /// No identity is configured: `policy:` applies to every client.
    Single(Arc<Policy>),
    /// `profiles` / `profilesDir`: a client gets its profile's policy, or nothing.
    Profiles(ProfileSet),
}

/// Who a client is and the policy that applies to it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The profile, when profiles are configured.
    pub profile: Option<Arc<str>>,
    /// Its policy.
    pub policy: Arc<Policy>,
}

impl Policies {
    /// Identifies a client by `claims`.
    pub fn identify(&self, claims: &Claims<'_>) -> Result<Identity, IdentityError> {
        match self {
            Policies::Single(policy) => Ok(Identity {
                profile: None,
                policy: policy.clone(),
            }),
            Policies::Profiles(set) => set.identify(claims).map(|p| Identity {
                profile: Some(p.name.shared()),
                policy: p.policy.clone(),
            }),
        }
    }

    /// The current policy of a client identified earlier as `profile` (a connection
    /// keeps its identity; its profile may have been edited since).
    pub fn current(&self, profile: Option<&str>) -> Result<Arc<Policy>, IdentityError> {
        match (self, profile) {
            (Policies::Single(policy), _) => Ok(policy.clone()),
            (Policies::Profiles(set), Some(name)) => set
                .get(name)
                .map(|p| p.policy.clone())
                .ok_or_else(|| IdentityError::Gone(name.to_owned())),
            (Policies::Profiles(_), None) => Err(IdentityError::Missing),
        }
    }

    /// Every policy in force.
    pub fn all(&self) -> Box<dyn Iterator<Item = &Policy> + '_> {
        match self {
            Policies::Single(policy) => Box::new(std::iter::once(&**policy)),
            Policies::Profiles(set) => Box::new(set.iter().map(|p| &*p.policy)),
        }
    }
}

/// How many profile names [`ProfileSet::listed`] shows.
const LISTED: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileName, RawProfile};
    use proptest::prelude::*;

    fn profile(name: &str, yaml: &str) -> Arc<Profile> {
        let raw: RawProfile = serde_yaml::from_str(yaml).unwrap();
        let name: ProfileName = name.parse().unwrap();
        Arc::new(Profile::compile(name, &raw, &["github.com".into()]).unwrap())
    }

    fn sha(byte: u8) -> String {
        format!("{byte:02x}").repeat(32)
    }

    fn set() -> ProfileSet {
        ProfileSet::new([
            profile(
                "a",
                &format!(
                    "secretSha256: {}\nsourceCidrs: [10.0.0.0/8]\nclientCertSubjects: [CN=a]",
                    sha(1)
                ),
            ),
            profile("b", "sourceCidrs: [10.1.0.0/16, 127.0.0.3]"),
            profile("c", "clientCertSubjects: [\"URI=spiffe://x/c\"]"),
        ])
        .unwrap()
    }

    #[test]
    fn names_are_listed_sorted_and_cut() {
        assert_eq!(set().listed(), "a, b, c");
        let many = ProfileSet::new((0..25).map(|i| {
            profile(
                &format!("p{i:02}"),
                &format!("sourceCidrs: [10.{i}.0.0/16]"),
            )
        }))
        .unwrap();
        let listed = many.listed();
        assert!(
            listed.starts_with("p00, p01, ") && listed.ends_with("p19, …"),
            "{listed}"
        );
    }

    fn claims<'a>(
        auth: Option<ProxyAuth<'a>>,
        subjects: &'a [CertSubject],
        ip: &str,
    ) -> Claims<'a> {
        Claims {
            proxy_auth: auth,
            cert_subjects: subjects,
            source: ip.parse().unwrap(),
        }
    }

    fn name(r: Result<&Arc<Profile>, IdentityError>) -> Result<String, IdentityError> {
        r.map(|p| p.name.to_string())
    }

    #[test]
    fn basic_auth_must_be_right_and_wins() {
        let s = set();
        let ok = ProxyAuth::Basic {
            user: "a",
            secret_sha256: [1; 32],
        };
        assert_eq!(
            name(s.identify(&claims(Some(ok), &[], "127.0.0.3"))),
            Ok("a".into())
        );
        for bad in [
            ProxyAuth::Basic {
                user: "a",
                secret_sha256: [2; 32],
            },
            ProxyAuth::Basic {
                user: "b",
                secret_sha256: [1; 32],
            },
            ProxyAuth::Basic {
                user: "zz",
                secret_sha256: [1; 32],
            },
            ProxyAuth::Malformed,
        ] {
            // A wrong credential is never passed over for the address that would match.
            let err = s.identify(&claims(Some(bad), &[], "10.1.2.3")).unwrap_err();
            assert!(err.wants_credentials(), "{err}");
        }
    }

    #[test]
    fn certificates_then_longest_prefix() {
        let s = set();
        let c = [CertSubject::uri("spiffe://x/c")];
        assert_eq!(
            name(s.identify(&claims(None, &c, "10.1.0.1"))),
            Ok("c".into())
        );
        assert_eq!(
            name(s.identify(&claims(None, &[], "10.1.0.1"))),
            Ok("b".into())
        );
        assert_eq!(
            name(s.identify(&claims(None, &[], "10.2.0.1"))),
            Ok("a".into())
        );
        assert_eq!(
            name(s.identify(&claims(None, &[], "::ffff:127.0.0.3"))),
            Ok("b".into())
        );
        assert_eq!(
            s.identify(&claims(None, &[], "127.0.0.2")).unwrap_err(),
            IdentityError::Missing
        );
        let unknown = [CertSubject::common_name("zed")];
        let err = s
            .identify(&claims(None, &unknown, "127.0.0.2"))
            .unwrap_err();
        assert!(
            !err.wants_credentials() && err.to_string().contains("CN=zed"),
            "{err}"
        );
    }

    #[test]
    fn conflicts_name_both_profiles() {
        let err = ProfileSet::new([
            profile("a", "sourceCidrs: [10.0.0.0/8]"),
            profile("b", "sourceCidrs: [10.0.0.0/8]"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("10.0.0.0/8") && err.contains("profile a") && err.contains("profile b"),
            "{err}"
        );
        assert!(
            ProfileSet::new([
                profile("a", "clientCertSubjects: [CN=x]"),
                profile("b", "clientCertSubjects: [cn=x]")
            ])
            .is_err()
        );
        assert!(
            ProfileSet::new([
                profile("a", "sourceCidrs: [10.0.0.1]"),
                profile("a", "sourceCidrs: [10.0.0.2]")
            ])
            .is_err()
        );
    }

    #[test]
    fn policies_single_and_profiles() {
        let single = Policies::Single(Arc::new(
            Policy::from_yaml("{}", &["github.com".into()]).unwrap(),
        ));
        let id = single.identify(&claims(None, &[], "1.2.3.4")).unwrap();
        assert!(id.profile.is_none());
        assert!(single.current(Some("x")).is_ok());
        let many = Policies::Profiles(set());
        assert!(many.current(Some("b")).is_ok());
        assert_eq!(
            many.current(Some("gone")).unwrap_err(),
            IdentityError::Gone("gone".into())
        );
        assert_eq!(many.current(None).unwrap_err(), IdentityError::Missing);
        assert_eq!(many.all().count(), 3);
    }

    proptest! {
        /// The index finds exactly what a scan of every range would (longest prefix).
        #[test]
        fn index_agrees_with_a_scan(
            ranges in proptest::collection::vec((any::<u32>(), 8u8..=32), 1..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut profiles = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (i, (addr, prefix)) in ranges.iter().enumerate() {
                let net = mask(IpAddr::V4((*addr).into()), *prefix).unwrap();
                if seen.insert((net, *prefix)) {
                    profiles.push(profile(&format!("p{i}"), &format!("sourceCidrs: [\"{net}/{prefix}\"]")));
                }
            }
            let set = ProfileSet::new(profiles.clone()).unwrap();
            for probe in probes.iter().chain(ranges.iter().map(|r| &r.0)) {
                let ip = IpAddr::V4((*probe).into());
                let scan = profiles
                    .iter()
                    .filter(|p| p.cidrs[0].contains(ip))
                    .max_by_key(|p| p.cidrs[0].prefix())
                    .map(|p| p.name.to_string());
                let found = set.by_source.lookup(ip).map(|p| p.name.to_string());
                prop_assert_eq!(found, scan);
            }
        }
    }
}
