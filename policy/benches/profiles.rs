//! Profile lookup at scale: compiling and indexing N generated profiles, identifying
//! clients by proxy secret, client certificate and source address, and the memory an
//! idle profile costs.
//!
//! ```text
//! cargo bench -p gitgate-policy --bench profiles
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use gitgate_policy::{
    CertSubject, Claims, Profile, ProfileName, ProfileSet, ProxyAuth, RawProfile, RepoPath,
};

const LOOKUPS: usize = 1_000_000;

/// A profile as an operator would write it: a secret, an address, a certificate and a
/// policy of a few patterns.
fn yaml(i: usize) -> String {
    format!(
        "secretSha256: \"{:064x}\"\nsourceCidrs: [\"{}/32\"]\nclientCertSubjects: [\"CN=agent-{i}\"]\npolicy:\n  allowedRepos: [org-{i}/app, \"org-{i}/lib-*\"]\n  allowedRefs: [main, \"agent-{i}/*\"]\n  allowHosts: [crates.io, \"*.crates.io\"]\n",
        i,
        address(i)
    )
}

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).expect("small"))
}

fn digest(i: usize) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[24..].copy_from_slice(&(i as u64).to_be_bytes());
    d
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn per_op(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let hosts = ["github.com".to_owned(), "api.github.com".to_owned()];
    println!(
        "profiles | compile+index ms | by secret ns | by certificate ns | by address ns | miss ns | decide ns | RSS per profile KiB"
    );
    for n in [1_000usize, 10_000] {
        let texts: Vec<String> = (0..n).map(yaml).collect();
        let before = resident_bytes();
        let start = Instant::now();
        let profiles: Vec<Arc<Profile>> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let raw: RawProfile = serde_yaml::from_str(text).expect("profile yaml");
                let name: ProfileName = format!("agent-{i}").parse().expect("name");
                Arc::new(Profile::compile(name, &raw, &hosts).expect("profile"))
            })
            .collect();
        let set = ProfileSet::new(profiles).expect("no conflicts");
        let build_ms = start.elapsed().as_secs_f64() * 1e3;
        let rss_per_profile = resident_bytes().saturating_sub(before) as f64 / n as f64 / 1024.0;
        drop(texts);

        let names: Vec<String> = (0..n).map(|i| format!("agent-{i}")).collect();
        let subjects: Vec<[CertSubject; 1]> = (0..n)
            .map(|i| [CertSubject::common_name(&format!("agent-{i}"))])
            .collect();
        let claims = |auth, subjects: &'static [CertSubject], ip| Claims {
            proxy_auth: auth,
            cert_subjects: subjects,
            source: ip,
        };
        let stranger = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));

        let start = Instant::now();
        for k in 0..LOOKUPS {
            let i = k % n;
            let auth = ProxyAuth::Basic {
                user: &names[i],
                secret_sha256: digest(i),
            };
            black_box(set.identify(&claims(Some(auth), &[], stranger)).is_ok());
        }
        let by_secret = per_op(start, LOOKUPS);

        let start = Instant::now();
        for k in 0..LOOKUPS {
            let i = k % n;
            let c = Claims {
                proxy_auth: None,
                cert_subjects: &subjects[i],
                source: stranger,
            };
            black_box(set.identify(&c).is_ok());
        }
        let by_cert = per_op(start, LOOKUPS);

        let start = Instant::now();
        for k in 0..LOOKUPS {
            let ip = IpAddr::V4(address(k % n));
            black_box(set.identify(&claims(None, &[], ip)).is_ok());
        }
        let by_address = per_op(start, LOOKUPS);

        let start = Instant::now();
        for _ in 0..LOOKUPS {
            black_box(
                set.identify(&claims(None, &[], black_box(stranger)))
                    .is_err(),
            );
        }
        let miss = per_op(start, LOOKUPS);

        let repos: Vec<RepoPath> = (0..n)
            .map(|i| RepoPath::parse(&format!("org-{i}/lib-core")).expect("repo"))
            .collect();
        let start = Instant::now();
        for k in 0..LOOKUPS {
            let i = k % n;
            let profile = set.get(&names[i]).expect("profile");
            black_box(profile.policy.decide_push(&repos[i]).allowed);
        }
        let decide = per_op(start, LOOKUPS);

        println!(
            "{n} | {build_ms:.1} | {by_secret:.0} | {by_cert:.0} | {by_address:.0} | {miss:.0} | {decide:.0} | {rss_per_profile:.1}"
        );
    }
}
