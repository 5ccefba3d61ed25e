//! Reads LFS batch requests and responses and lock changes: never panics, no storage host
//! is granted for longer than the cap, and a lock change is allowed only on a plain path
//! outside `protectedPaths`.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use gitgate_policy::Policy;
use gitgate_policy::git::lfs::{LfsCall, MAX_GRANT, batch_request, storage_grants};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::from_yaml(
            "{allowedRepos: [a/b], allowedRefs: [main], protectedPaths: ['.github/**']}",
            &["github.com".to_owned()],
        )
        .expect("policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = batch_request(data);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30);
    if let Ok(grants) = storage_grants(data, now, |_| false) {
        assert!(
            grants
                .iter()
                .all(|g| g.until > now && g.until <= now + MAX_GRANT)
        );
    }
    let _ = policy().decide_lock_change(LfsCall::Unlock, data);
    if policy().decide_lock_change(LfsCall::Lock, data).allowed {
        let body: serde_json::Value = serde_json::from_slice(data).expect("allowed, so JSON");
        let path = body["path"].as_str().expect("allowed, so a path");
        assert!(
            !path.starts_with(".github/") && !path.split('/').any(|s| s == ".." || s.is_empty())
        );
    }
});
